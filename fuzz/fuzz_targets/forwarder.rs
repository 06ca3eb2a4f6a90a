//! The SFU's per-subscription forwarding state machine
//! (`weir_sfu::forwarder::Forwarder`, with `SequenceRewriter`,
//! `SeqUnwrapper` and keyframe detection) and the keyframe request
//! throttle: arbitrary publisher packet sequences (SSRC changes, simulcast
//! layers, sequence and timestamp jumps, reordering), layer switches,
//! restarts, pauses and clock jumps.
//!
//! Input: a byte choosing audio or a video codec and the initial outgoing
//! numbers, then operations: 0-3 a packet (SSRC and layer, `i16` sequence
//! step, `i32` timestamp step, `u16` ms since the previous packet,
//! payload), 4 a target layer, 5 a source restart, 6 pause or resume, 7 a
//! keyframe request (with a clock jump in seconds).
//!
//! Invariants (what ARCHITECTURE.md promises a subscriber): no panic;
//! nothing is forwarded while paused; for video the first packet forwarded
//! after the start, a restart, a resume or a layer switch starts a
//! keyframe, and only the current layer is forwarded; the first packet of
//! a new source continues the outgoing sequence (highest + 1) with a later
//! timestamp; within one source, sequence numbers and timestamps keep their
//! offsets (gaps are preserved); nothing older than the reorder window is
//! forwarded; keyframe requests are sent at most every interval.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weir_fuzz::Reader;
use weir_sfu::forwarder::{DropReason, ForwardDecision, Forwarder, IncomingPacket, LayerId};
use weir_sfu::keyframe::{starts_keyframe, VideoCodec};
use weir_sfu::keyframe_requests::{KeyframeDecision, KeyframeRequestThrottle};
use weir_sfu::sequence::{ExtendedSeq, RtpTimestamp, SeqUnwrapper};

const LAYERS: [Option<&str>; 4] = [None, Some("q"), Some("h"), Some("f")];
const CODECS: [Option<VideoCodec>; 6] = [
    None,
    Some(VideoCodec::Vp8),
    Some(VideoCodec::Vp9),
    Some(VideoCodec::H264),
    Some(VideoCodec::Av1),
    Some(VideoCodec::Other),
];

#[derive(Default)]
struct Source {
    wire_seq: u16,
    ts: u32,
    unwrapper: SeqUnwrapper,
}

/// What the subscriber has been sent, and what must come next.
struct Model {
    /// Highest outgoing sequence number and its timestamp.
    highest: Option<(ExtendedSeq, RtpTimestamp)>,
    /// The source the rewriter maps (None: the next packet starts one).
    mapped: Option<u32>,
    /// Outgoing - incoming offsets of the current source.
    offsets: Option<(u64, u32)>,
    /// The next forwarded video packet must start a keyframe.
    need_keyframe: bool,
    forwarded_layer: Option<LayerId>,
    paused: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let codec = CODECS[usize::from(r.u8()) % CODECS.len()];
    let is_video = codec.is_some();
    let initial_seq = r.u16();
    let initial_ts = r.u32();
    let clock_rate = if is_video { 90_000 } else { 48_000 };
    let mut forwarder = Forwarder::new(is_video, clock_rate, initial_seq, initial_ts);
    let mut throttle = KeyframeRequestThrottle::new(Duration::from_millis(500));
    let mut last_request: Option<Instant> = None;
    let mut now = Instant::now();
    let mut sources: HashMap<u32, Source> = HashMap::new();
    let mut model = Model {
        highest: None,
        mapped: None,
        offsets: None,
        need_keyframe: is_video,
        forwarded_layer: None,
        paused: false,
    };
    let mut ops = 0;
    while !r.is_empty() && ops < 10_000 {
        ops += 1;
        match r.u8() % 8 {
            0..=3 => {
                let which = r.u8();
                let ssrc = 0x100 + u32::from(which & 0x03);
                let layer = LAYERS[usize::from(which >> 2) % LAYERS.len()];
                let seq_step = r.u16() as i16;
                let ts_step = r.u32();
                now += Duration::from_millis(u64::from(r.u16()));
                let payload = r.bytes();
                let source = sources.entry(ssrc).or_default();
                source.wire_seq = source.wire_seq.wrapping_add(seq_step as u16);
                source.ts = source.ts.wrapping_add(ts_step);
                let seq = source.unwrapper.unwrap(source.wire_seq);
                let timestamp = RtpTimestamp(source.ts);
                let layer_before = forwarder.current_layer().cloned();
                let decision = forwarder.decide(IncomingPacket {
                    ssrc,
                    layer,
                    seq,
                    timestamp,
                    arrival: now,
                    payload,
                    video_codec: codec,
                });
                let layer_id: LayerId = layer.map(str::to_string);
                if forwarder.current_layer().cloned() != layer_before {
                    // A layer switch resets the source mapping.
                    model.mapped = None;
                }
                let reached_rewriter = matches!(
                    decision,
                    ForwardDecision::Forward(_)
                        | ForwardDecision::Drop {
                            reason: DropReason::Rewrite(_),
                            ..
                        }
                );
                let new_source = reached_rewriter && model.mapped != Some(ssrc);
                match decision {
                    ForwardDecision::Forward(out) => {
                        assert!(!model.paused, "forwarded while paused");
                        assert_eq!(
                            forwarder.current_layer(),
                            Some(&layer_id),
                            "forwarded another layer"
                        );
                        if is_video && model.forwarded_layer.as_ref() != Some(&layer_id) {
                            model.need_keyframe = true;
                        }
                        if model.need_keyframe {
                            let codec = codec.expect("video");
                            assert!(
                                starts_keyframe(codec, payload),
                                "first packet forwarded is not a keyframe"
                            );
                            model.need_keyframe = false;
                        }
                        model.forwarded_layer = Some(layer_id);
                        if new_source {
                            match model.highest {
                                None => {
                                    assert_eq!(out.seq, ExtendedSeq(u64::from(initial_seq)));
                                    assert_eq!(out.timestamp, RtpTimestamp(initial_ts));
                                }
                                Some((highest, highest_ts)) => {
                                    assert_eq!(
                                        out.seq,
                                        highest.next(),
                                        "a new source leaves a gap"
                                    );
                                    assert!(
                                        out.timestamp.delta_since(highest_ts) > 0,
                                        "a new source's timestamp {} does not follow {}",
                                        out.timestamp.0,
                                        highest_ts.0
                                    );
                                }
                            }
                            model.offsets = Some((
                                out.seq.0.wrapping_sub(seq.0),
                                out.timestamp.0.wrapping_sub(timestamp.0),
                            ));
                        } else {
                            let (seq_offset, ts_offset) = model.offsets.expect("a source");
                            assert_eq!(out.seq.0.wrapping_sub(seq.0), seq_offset, "gap not kept");
                            assert_eq!(out.timestamp.0.wrapping_sub(timestamp.0), ts_offset);
                        }
                        match model.highest {
                            Some((highest, _)) if out.seq <= highest => {
                                assert!(highest.0 - out.seq.0 <= 1000, "too old forwarded");
                            }
                            _ => model.highest = Some((out.seq, out.timestamp)),
                        }
                    }
                    ForwardDecision::Drop { reason, .. } => {
                        if model.paused {
                            assert_eq!(reason, DropReason::Paused);
                        }
                        assert!(
                            !new_source,
                            "the first packet of a source is dropped: {reason:?}"
                        );
                    }
                }
                if reached_rewriter {
                    model.mapped = Some(ssrc);
                }
            }
            4 => {
                let layer = LAYERS[usize::from(r.u8()) % LAYERS.len()];
                forwarder.set_target_layer(layer.map(str::to_string));
            }
            5 => {
                forwarder.restart_source();
                model.mapped = None;
                model.need_keyframe |= is_video;
            }
            6 => {
                let paused = r.bool();
                if model.paused && !paused {
                    model.mapped = None;
                    model.need_keyframe |= is_video;
                }
                forwarder.set_paused(paused);
                model.paused = paused;
            }
            _ => {
                now += Duration::from_secs(u64::from(r.u32() % 200_000));
                if throttle.request(now) == KeyframeDecision::Send {
                    if let Some(last) = last_request {
                        assert!(now.duration_since(last) >= Duration::from_millis(500));
                    }
                    last_request = Some(now);
                }
            }
        }
    }
    let _ = (
        forwarder.forwarded(),
        forwarder.dropped(),
        throttle.sent(),
        throttle.merged(),
    );
});
