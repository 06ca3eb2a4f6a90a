//! Media helpers of the forwarding tests: real-time synthetic senders,
//! collectors of received packets, and the stream check (byte identity,
//! order, gapless sequence numbers, rewritten SSRC).

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_client::synthetic::{
    verify_opus, verify_vp8, OpusConfig, OpusSource, Stamp, SyntheticPacket, Vp8Config, Vp8Source,
};
use weir_client::weir_protocol::{ServerMessage, TrackId};
use weir_client::{Client, JoinOptions, LocalTrack, ReceivedPacket};

use super::WAIT;

/// What the publisher sent, in order.
#[derive(Default)]
pub struct SentLog {
    pub video: Vec<SyntheticPacket>,
    pub audio: Vec<SyntheticPacket>,
}

/// Sends `frames` VP8 frames (30 fps) and `audio_packets` Opus packets
/// (50/s) in real time, answering keyframe requests.
pub async fn send_synthetic(
    video: Option<LocalTrack>,
    audio: Option<LocalTrack>,
    frames: u32,
    audio_packets: u32,
) -> SentLog {
    let mut vp8 = Vp8Source::new(Vp8Config {
        keyframe_interval: 30,
        ..Vp8Config::default()
    });
    let mut opus = OpusSource::new(OpusConfig::default());
    let mut video_tick = tokio::time::interval(vp8.frame_interval());
    let mut audio_tick = tokio::time::interval(opus.packet_interval());
    let mut frame = Vec::new();
    let mut log = SentLog::default();
    loop {
        let video_due = video.as_ref().filter(|_| vp8.frames() < frames);
        let audio_due = audio.as_ref().filter(|_| opus.packets() < audio_packets);
        if video_due.is_none() && audio_due.is_none() {
            return log;
        }
        tokio::select! {
            _ = video_tick.tick(), if video_due.is_some() => {
                if let Some(track) = video_due {
                    track.send_vp8_frame(&mut vp8, &mut frame).await.expect("send a video frame");
                    log.video.extend(frame.iter().cloned());
                }
            }
            _ = audio_tick.tick(), if audio_due.is_some() => {
                if let Some(track) = audio_due {
                    let packet = track.send_opus_packet(&mut opus).await.expect("send an audio packet");
                    log.audio.push(packet);
                }
            }
        }
    }
}

/// Collects packets until none arrived for `quiet` (after the first one),
/// or `cap` elapsed.
pub async fn collect(
    mut media: mpsc::Receiver<ReceivedPacket>,
    quiet: Duration,
    cap: Duration,
) -> Vec<ReceivedPacket> {
    let mut packets = Vec::new();
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        let wait = if packets.is_empty() { cap } else { quiet };
        let next = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + wait),
            media.recv(),
        );
        match next.await {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) | Err(_) => return packets,
        }
    }
}

/// Checks one received stream against what was sent: it starts at some
/// sent packet (a keyframe's first packet for video), then carries every
/// later packet byte-identical and in order, with gapless sequence numbers,
/// one SSRC that is not the publisher's, and the publisher's timestamp
/// spacing and marker bits.
pub fn check_stream(
    name: &str,
    received: &[&ReceivedPacket],
    sent: &[SyntheticPacket],
    video: bool,
    publisher_ssrc: u32,
) {
    assert!(!received.is_empty(), "{name}: nothing received");
    // Padding-only packets (if any) count for sequence numbers only.
    let media: Vec<&ReceivedPacket> = received
        .iter()
        .copied()
        .filter(|p| !p.payload.is_empty())
        .collect();
    let stamps: Vec<Stamp> = media
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let verified = if video {
                verify_vp8(&p.payload)
            } else {
                verify_opus(&p.payload)
            };
            verified.unwrap_or_else(|e| panic!("{name}: packet {i} is not intact: {e}"))
        })
        .collect();
    if video {
        assert!(
            stamps[0].index == 0 && stamps[0].keyframe,
            "{name}: the first packet is not the start of a keyframe: {:?}",
            stamps[0]
        );
    }
    let start = sent
        .iter()
        .position(|s| s.stamp.packet_id() == stamps[0].packet_id())
        .unwrap_or_else(|| panic!("{name}: the first received packet was never sent"));
    let expected = &sent[start..];
    for (i, (got, want)) in media.iter().zip(expected).enumerate() {
        assert!(
            got.payload == want.payload,
            "{name}: packet {i} differs: got {:?}, sent {:?}",
            stamps[i],
            want.stamp
        );
        assert_eq!(got.marker, want.marker, "{name}: marker of packet {i}");
    }
    assert_eq!(
        media.len(),
        expected.len(),
        "{name}: received {} packets from {:?} on, {} were sent (first missing: {:?})",
        media.len(),
        stamps[0],
        expected.len(),
        expected.get(media.len()).map(|p| p.stamp)
    );
    for (i, pair) in received.windows(2).enumerate() {
        assert_eq!(
            pair[1].sequence_number,
            pair[0].sequence_number.wrapping_add(1),
            "{name}: sequence gap after packet {i}"
        );
    }
    for i in 1..media.len() {
        let got = media[i].timestamp.wrapping_sub(media[i - 1].timestamp);
        let want = expected[i]
            .rtp_timestamp
            .wrapping_sub(expected[i - 1].rtp_timestamp);
        assert_eq!(got, want, "{name}: timestamp spacing before packet {i}");
    }
    let ssrcs: HashSet<u32> = received.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "{name}: several SSRCs {ssrcs:?}");
    assert!(
        !ssrcs.contains(&publisher_ssrc),
        "{name}: the publisher's SSRC was forwarded unchanged"
    );
}

pub fn packets_of<'a>(packets: &'a [ReceivedPacket], track: &TrackId) -> Vec<&'a ReceivedPacket> {
    packets
        .iter()
        .filter(|p| p.track_id.as_deref() == Some(track))
        .collect()
}

/// Waits until `client` has been told which mid carries each of `tracks`.
pub async fn wait_subscribed(client: &mut Client, tracks: &[&TrackId]) {
    let mut missing: HashSet<TrackId> = tracks.iter().map(|t| (*t).clone()).collect();
    while !missing.is_empty() {
        let track = client
            .wait_for_message(WAIT, |m| match m {
                ServerMessage::Subscribed { track_id, .. } => Some(track_id.clone()),
                _ => None,
            })
            .await
            .unwrap_or_else(|e| panic!("subscribed to {missing:?}: {e}"));
        missing.remove(&track);
    }
}

pub fn subscriber_options() -> JoinOptions {
    JoinOptions {
        media_buffer: 65_536,
        ..JoinOptions::default()
    }
}
