use std::time::{Duration, Instant};

use super::*;
use crate::keyframe::VideoCodec;

const VP8_KEY: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a];
const VP8_DELTA_START: &[u8] = &[0x10, 0x01, 0x00];
const VP8_CONT: &[u8] = &[0x00, 0x00, 0x00];

fn pkt<'a>(
    ssrc: u32,
    layer: Option<&'a str>,
    seq: u64,
    payload: &'a [u8],
    at: Instant,
) -> IncomingPacket<'a> {
    IncomingPacket {
        ssrc,
        layer,
        seq: ExtendedSeq(seq),
        timestamp: RtpTimestamp(seq as u32 * 3000),
        arrival: at,
        payload,
        video_codec: Some(VideoCodec::Vp8),
    }
}

fn forwarded(d: ForwardDecision) -> Option<u64> {
    match d {
        ForwardDecision::Forward(r) => Some(r.seq.0),
        ForwardDecision::Drop { .. } => None,
    }
}

#[test]
fn video_waits_for_a_keyframe_and_asks_for_one() {
    let now = Instant::now();
    let mut f = Forwarder::new(true, 90_000, 10, 0);
    assert_eq!(
        f.decide(pkt(1, None, 100, VP8_DELTA_START, now)),
        ForwardDecision::Drop {
            reason: DropReason::WaitingForKeyframe,
            request_keyframe: true
        }
    );
    assert_eq!(forwarded(f.decide(pkt(1, None, 101, VP8_CONT, now))), None);
    assert_eq!(
        forwarded(f.decide(pkt(1, None, 102, VP8_KEY, now))),
        Some(10)
    );
    assert_eq!(
        forwarded(f.decide(pkt(1, None, 103, VP8_CONT, now))),
        Some(11)
    );
    assert_eq!(f.forwarded(), 2);
    assert_eq!(f.dropped(), 2);
}

#[test]
fn audio_is_never_gated() {
    let now = Instant::now();
    let mut f = Forwarder::new(false, 48_000, 0, 0);
    let mut audio = pkt(7, None, 5, &[1, 2, 3], now);
    audio.video_codec = None;
    assert_eq!(forwarded(f.decide(audio)), Some(0));
}

#[test]
fn simulcast_forwards_one_layer_and_switches_on_keyframe() {
    let now = Instant::now();
    let mut f = Forwarder::new(true, 90_000, 0, 0);
    f.set_target_layer(Some("h".into()));
    // Low layer packets are dropped while the target is "h".
    assert_eq!(
        forwarded(f.decide(pkt(1, Some("l"), 1, VP8_KEY, now))),
        None
    );
    assert_eq!(
        forwarded(f.decide(pkt(2, Some("h"), 50, VP8_KEY, now))),
        Some(0)
    );
    assert_eq!(
        forwarded(f.decide(pkt(2, Some("h"), 51, VP8_CONT, now))),
        Some(1)
    );
    assert_eq!(
        forwarded(f.decide(pkt(1, Some("l"), 2, VP8_CONT, now))),
        None
    );
    // Switch down: continues numbering only from the low layer's keyframe.
    f.set_target_layer(Some("l".into()));
    assert_eq!(
        forwarded(f.decide(pkt(1, Some("l"), 3, VP8_CONT, now))),
        None
    );
    assert_eq!(
        forwarded(f.decide(pkt(2, Some("h"), 52, VP8_CONT, now))),
        Some(2)
    );
    let later = now + Duration::from_millis(40);
    assert_eq!(
        forwarded(f.decide(pkt(1, Some("l"), 4, VP8_KEY, later))),
        Some(3)
    );
    assert_eq!(
        forwarded(f.decide(pkt(2, Some("h"), 53, VP8_CONT, later))),
        None
    );
}

#[test]
fn restart_keeps_numbering_and_waits_for_keyframe() {
    let now = Instant::now();
    let mut f = Forwarder::new(true, 90_000, 65_534, 0);
    assert_eq!(
        forwarded(f.decide(pkt(1, None, 1, VP8_KEY, now))),
        Some(65_534)
    );
    assert_eq!(
        forwarded(f.decide(pkt(1, None, 2, VP8_CONT, now))),
        Some(65_535)
    );
    f.restart_source();
    assert_eq!(forwarded(f.decide(pkt(9, None, 777, VP8_CONT, now))), None);
    assert_eq!(
        forwarded(f.decide(pkt(9, None, 778, VP8_KEY, now))),
        Some(65_536)
    );
}

#[test]
fn paused_subscription_drops_and_resumes_at_keyframe() {
    let now = Instant::now();
    let mut f = Forwarder::new(true, 90_000, 0, 0);
    assert_eq!(forwarded(f.decide(pkt(1, None, 1, VP8_KEY, now))), Some(0));
    f.set_paused(true);
    assert_eq!(forwarded(f.decide(pkt(1, None, 2, VP8_KEY, now))), None);
    f.set_paused(false);
    assert_eq!(forwarded(f.decide(pkt(1, None, 3, VP8_CONT, now))), None);
    assert_eq!(forwarded(f.decide(pkt(1, None, 4, VP8_KEY, now))), Some(1));
}
