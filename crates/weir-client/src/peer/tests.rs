//! Two of the client's own peer connections over loopback: checks the
//! webrtc-rs plumbing (complete SDP, SSRC/payload type accepted by the
//! sender, remote-track readers, mid resolution, keyframe requests) without
//! a server.

use std::net::Ipv4Addr;

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use weir_protocol::{TrackKind, TrackSource};

use super::*;
use crate::local_track::NewTrack;
use crate::receive::{spawn_reader, Counters, MediaSink, MidMap};
use crate::synthetic::{verify_opus, verify_vp8, OpusConfig, OpusSource, Vp8Config, Vp8Source};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_client_peers_exchange_synthetic_media_and_keyframe_requests() {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let sender = Peer::build(localhost, None).await.expect("sender");
    let mut receiver = Peer::build(localhost, None).await.expect("receiver");

    let mut added = Vec::new();
    for (kind, source) in [
        (TrackKind::Video, TrackSource::Camera),
        (TrackKind::Audio, TrackSource::Microphone),
    ] {
        let track = NewTrack::new(crate::codec::Codec::default_for(kind), source);
        let transceiver = sender.add_sendonly(&track).await.expect("transceiver");
        added.push((track, transceiver));
    }
    let offer = sender.offer().await.expect("offer");
    assert!(
        offer.contains("a=candidate:") && offer.contains(" 127.0.0.1 "),
        "complete offer with a loopback candidate:\n{offer}"
    );
    assert!(offer.contains("VP8/90000") && offer.contains("opus/48000/2"));
    let answer = receiver.answer(&offer).await.expect("answer");
    assert!(
        answer.contains("a=candidate:"),
        "complete answer:\n{answer}"
    );
    sender.accept_answer(&answer).await.expect("accept");

    let mut tracks = Vec::new();
    for (track, transceiver) in added {
        let mid = transceiver.mid().await.expect("mid").expect("some mid");
        tracks.push(track.into_local(mid, None));
    }
    let (video, audio) = (&tracks[0], &tracks[1]);
    assert_eq!((video.mid(), audio.mid()), ("0", "1"));

    sender.wait_connected(WAIT).await.expect("sender connected");
    receiver
        .wait_connected(WAIT)
        .await
        .expect("receiver connected");

    let (media_tx, mut media_rx) = tokio::sync::mpsc::channel(1024);
    let mids = Arc::new(MidMap::default());
    mids.insert("0", weir_protocol::TrackId::new("TR_video"));
    let sink = MediaSink {
        tx: Some(media_tx),
        counters: Arc::new(Counters::default()),
        mids,
    };
    let (_, empty) = tokio::sync::mpsc::unbounded_channel();
    let mut remote_tracks = std::mem::replace(&mut receiver.remote_tracks, empty);
    let weak = Arc::downgrade(&receiver.pc);
    let (remote_tx, mut remote_seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(track) = remote_tracks.recv().await {
            let _ = remote_tx.send(Arc::clone(&track));
            spawn_reader(weak.clone(), track, sink.clone());
        }
    });

    let mut vp8 = Vp8Source::new(Vp8Config::default());
    let mut opus = OpusSource::new(OpusConfig::default());
    let mut frame = Vec::new();
    let mut sent_video = std::collections::HashMap::new();
    let mut got_video = 0;
    let mut got_audio = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while (got_video < 60 || got_audio < 20) && tokio::time::Instant::now() < deadline {
        video
            .send_vp8_frame(&mut vp8, &mut frame)
            .await
            .expect("video");
        for p in &frame {
            sent_video.insert(p.stamp.packet_id(), p.payload.clone());
        }
        audio.send_opus_packet(&mut opus).await.expect("audio");
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(packet) = media_rx.try_recv() {
            match &*packet.mid {
                "0" => {
                    let stamp = verify_vp8(&packet.payload).expect("intact video");
                    assert_eq!(sent_video.get(&stamp.packet_id()), Some(&packet.payload));
                    assert_eq!(packet.ssrc, video.ssrc());
                    assert_eq!(packet.payload_type, crate::codec::VP8_PAYLOAD_TYPE);
                    assert_eq!(
                        packet.track_id.as_deref().map(|t| t.as_str()),
                        Some("TR_video")
                    );
                    got_video += 1;
                }
                "1" => {
                    verify_opus(&packet.payload).expect("intact audio");
                    assert_eq!(packet.ssrc, audio.ssrc());
                    assert!(packet.track_id.is_none());
                    got_audio += 1;
                }
                other => panic!("packet on unexpected mid {other:?}"),
            }
        }
    }
    assert!(
        got_video >= 60 && got_audio >= 20,
        "video {got_video}, audio {got_audio}"
    );

    // A PLI from the receiver reaches the sender's video track.
    let remote_video = loop {
        let track = tokio::time::timeout(WAIT, remote_seen.recv())
            .await
            .expect("remote track in time")
            .expect("remote track");
        if track.kind().await == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video {
            break track;
        }
    };
    assert_eq!(video.keyframe_requests(), 0);
    remote_video
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: video.ssrc(),
        })])
        .await
        .expect("pli");
    let waited = tokio::time::timeout(WAIT, async {
        while video.keyframe_requests() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the PLI never reached the publisher");
    assert!(video.take_keyframe_request());
    assert!(!video.take_keyframe_request());

    sender.pc.close().await.expect("close");
    receiver.pc.close().await.expect("close");
}
