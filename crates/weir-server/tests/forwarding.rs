//! End-to-end forwarding through an in-process server with real WebRTC
//! peers (webrtc-rs, via `weir-client`).
//!
//! These tests open UDP peers on 127.0.0.1: run them in a loopback-only
//! network namespace,
//! `unshare -n bash -c 'ip link set lo up; exec cargo test -p weir-server --test forwarding'`.
//! Every wait is bounded, so a failure never hangs.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::media::{
    check_stream, collect, packets_of, send_synthetic, subscriber_options, wait_subscribed,
};
use support::{TestServer, ALL_GRANTS, WAIT};
use weir_client::lossy_proxy::{LossConfig, LossyUdpProxy};
use weir_client::synthetic::{verify_opus, verify_vp8, SyntheticPacket};
use weir_client::weir_protocol::{Grant, TrackId, TrackKind, TrackSource};
use weir_client::{whep_subscribe, whip_publish, Client, HttpSessionOptions, JoinOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_vp8_and_opus_byte_identical_with_continuous_sequences() {
    let server = TestServer::start().await;
    let room = "forwarding";
    let publisher = server
        .join(room, "publisher", &ALL_GRANTS)
        .await
        .expect("the publisher joins");
    let tracks = publisher
        .publish_tracks(&[
            (TrackKind::Video, TrackSource::Camera),
            (TrackKind::Audio, TrackSource::Microphone),
        ])
        .await
        .expect("publish video and audio");
    let (video, audio) = (tracks[0].clone(), tracks[1].clone());
    let video_id = video.track_id().expect("video track id").clone();
    let audio_id = audio.track_id().expect("audio track id").clone();
    assert_ne!(video_id, audio_id);
    publisher
        .wait_connected(WAIT)
        .await
        .expect("the publisher connects");

    let mut subscribers = Vec::new();
    for name in ["alice", "bob"] {
        let mut client = Client::connect(
            &server.ws_url(),
            &server.token(room, name, &[Grant::Subscribe]),
            subscriber_options(),
        )
        .await
        .expect("a subscriber joins");
        let listed: Vec<TrackId> = client
            .joined()
            .participants
            .iter()
            .flat_map(|p| p.tracks.iter().map(|t| t.track_id.clone()))
            .collect();
        assert!(
            listed.contains(&video_id) && listed.contains(&audio_id),
            "joined lists the publisher's tracks: {listed:?}"
        );
        wait_subscribed(&mut client, &[&video_id, &audio_id]).await;
        client
            .wait_connected(WAIT)
            .await
            .expect("a subscriber connects");
        subscribers.push(client);
    }

    let collectors: Vec<_> = subscribers
        .iter_mut()
        .map(|s| {
            let media = s.take_media().expect("media channel");
            tokio::spawn(collect(
                media,
                Duration::from_secs(3),
                Duration::from_secs(60),
            ))
        })
        .collect();
    let sent = tokio::time::timeout(
        Duration::from_secs(60),
        send_synthetic(Some(video.clone()), Some(audio.clone()), 150, 250),
    )
    .await
    .expect("sending finishes");

    for (collector, name) in collectors.into_iter().zip(["alice", "bob"]) {
        let received = collector.await.expect("collector");
        let video_packets = packets_of(&received, &video_id);
        let audio_packets = packets_of(&received, &audio_id);
        assert_eq!(
            video_packets.len() + audio_packets.len(),
            received.len(),
            "{name}: packets without a known track"
        );
        check_stream(
            &format!("{name}/video"),
            &video_packets,
            &sent.video,
            true,
            video.ssrc(),
        );
        check_stream(
            &format!("{name}/audio"),
            &audio_packets,
            &sent.audio,
            false,
            audio.ssrc(),
        );
        // The stream started early: at most one keyframe interval was skipped.
        assert!(
            video_packets.len() * 10 >= sent.video.len() * 7,
            "{name}: only {} of {} video packets",
            video_packets.len(),
            sent.video.len()
        );
    }
    for s in subscribers {
        assert_eq!(s.stats().packets_dropped, 0, "the test read too slowly");
        s.leave().await.expect("leave");
    }
    publisher.leave().await.expect("leave");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_recovers_five_percent_loss_toward_a_subscriber() {
    let server = TestServer::start().await;
    let room = "lossy";
    let (publisher, video) = server.camera_publisher(room, "publisher").await;
    let video_id = video.track_id().expect("track id").clone();
    publisher.wait_connected(WAIT).await.expect("connected");

    let proxy = LossyUdpProxy::start(
        server.udp_addr,
        LossConfig {
            server_to_client_rtp_loss: 0.05,
            seed: 20_240_607,
        },
    )
    .await
    .expect("the proxy starts");
    let mut subscriber = Client::connect(
        &server.ws_url(),
        &server.token(room, "lossy-viewer", &[Grant::Subscribe]),
        JoinOptions {
            rewrite_server_candidate: Some(proxy.addr()),
            ..subscriber_options()
        },
    )
    .await
    .expect("the subscriber joins");
    wait_subscribed(&mut subscriber, &[&video_id]).await;
    subscriber
        .wait_connected(WAIT)
        .await
        .expect("the subscriber connects through the proxy");
    let media = subscriber.take_media().expect("media");
    let collector = tokio::spawn(collect(
        media,
        Duration::from_secs(3),
        Duration::from_secs(60),
    ));

    let frames = 210;
    let sent = tokio::time::timeout(
        Duration::from_secs(60),
        send_synthetic(Some(video.clone()), None, frames, 0),
    )
    .await
    .expect("sending finishes");
    let received = collector.await.expect("collector");

    let sent_by_id: HashMap<u64, &SyntheticPacket> = sent
        .video
        .iter()
        .map(|p| (p.stamp.packet_id(), p))
        .collect();
    let mut got = HashSet::new();
    let mut first_keyframe = None;
    for packet in packets_of(&received, &video_id) {
        if packet.payload.is_empty() {
            continue;
        }
        let stamp = verify_vp8(&packet.payload).expect("a received packet is intact");
        let original = sent_by_id
            .get(&stamp.packet_id())
            .expect("a received packet was sent");
        assert!(original.payload == packet.payload, "byte-identical");
        if first_keyframe.is_none() {
            assert!(stamp.keyframe && stamp.index == 0, "starts at a keyframe");
            first_keyframe = Some(stamp.frame);
        }
        got.insert(stamp.packet_id());
    }
    let first = first_keyframe.expect("video arrived");
    // Retransmissions stop once recovered (the client's RTX repair runs
    // before its NACK generator): only a few duplicates.
    assert!(
        received.len() <= sent.video.len() + sent.video.len() / 10,
        "{} packets received for {} sent: retransmissions did not stop",
        received.len(),
        sent.video.len()
    );
    // Losses in the last half second cannot be detected (no later packet).
    let window_end = frames - 15;
    let expected: Vec<u64> = sent
        .video
        .iter()
        .filter(|p| p.stamp.frame >= first && p.stamp.frame < window_end)
        .map(|p| p.stamp.packet_id())
        .collect();
    let recovered = expected.iter().filter(|id| got.contains(id)).count();
    let stats = proxy.stats();
    let ratio = recovered as f64 / expected.len() as f64;
    assert!(
        stats.rtp_dropped >= 10,
        "the proxy dropped only {} RTP packets: loss was not exercised ({stats:?})",
        stats.rtp_dropped
    );
    assert!(
        ratio >= 0.99,
        "delivered {recovered} of {} packets ({:.2}%) with {} dropped by the proxy",
        expected.len(),
        ratio * 100.0,
        stats.rtp_dropped
    );
    subscriber.leave().await.expect("leave");
    publisher.leave().await.expect("leave");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publish_and_whep_view() {
    let server = TestServer::start().await;
    let room = "whip";
    let base = server.http_base();
    let whip = whip_publish(
        &base,
        room,
        &server.token(room, "streamer", &[Grant::Publish]),
        HttpSessionOptions::default(),
    )
    .await
    .expect("WHIP publish");
    whip.wait_connected(WAIT).await.expect("WHIP connects");
    let video = whip.video().cloned().expect("a video track");
    let audio = whip.audio().cloned().expect("an audio track");
    let sender = tokio::spawn(send_synthetic(Some(video), Some(audio), 150, 250));
    // Let the publication be announced before viewers ask for it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut viewers = Vec::new();
    for (user, publisher) in [("viewer-1", None), ("viewer-2", Some("streamer"))] {
        let mut whep = whep_subscribe(
            &base,
            room,
            publisher,
            &server.token(room, user, &[Grant::Subscribe]),
            HttpSessionOptions {
                media_buffer: 65_536,
                ..HttpSessionOptions::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("WHEP ({user}) subscribe: {e}"));
        whep.wait_connected(WAIT).await.expect("WHEP connects");
        let media = whep.take_media().expect("media");
        let collector = tokio::spawn(collect(
            media,
            Duration::from_secs(3),
            Duration::from_secs(60),
        ));
        viewers.push((user, whep, collector));
    }
    let sent = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("sending finishes")
        .expect("sender");
    let sent_payloads: HashMap<u64, &SyntheticPacket> = sent
        .video
        .iter()
        .map(|p| (p.stamp.packet_id(), p))
        .collect();
    for (user, whep, collector) in viewers {
        let received = collector.await.expect("collector");
        let mut video = 0;
        let mut audio = 0;
        for packet in &received {
            if let Ok(stamp) = verify_vp8(&packet.payload) {
                let original = sent_payloads.get(&stamp.packet_id()).expect("sent");
                assert!(original.payload == packet.payload, "{user}: byte-identical");
                video += 1;
            } else if verify_opus(&packet.payload).is_ok() {
                audio += 1;
            }
        }
        assert!(
            video >= 100 && audio >= 50,
            "{user}: received {video} video and {audio} audio packets"
        );
        let first = whep.delete().await.expect("WHEP DELETE");
        assert!(
            first.as_u16() == 200 || first.as_u16() == 204,
            "{user}: first DELETE gave {first}"
        );
        let second = whep.delete().await.expect("WHEP DELETE again");
        assert_eq!(second.as_u16(), 404, "{user}: second DELETE");
        whep.close().await.expect("close");
    }
    let first = whip.delete().await.expect("WHIP DELETE");
    assert!(
        first.as_u16() == 200 || first.as_u16() == 204,
        "first WHIP DELETE gave {first}"
    );
    let second = whip.delete().await.expect("WHIP DELETE again");
    assert_eq!(second.as_u16(), 404, "second WHIP DELETE");
    whip.close().await.expect("close");
    server.shutdown().await;
}
