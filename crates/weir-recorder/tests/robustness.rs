//! Malformed input never panics: random payloads, headers, sequences and
//! timestamps for every codec, and random raw bytes through the RTP parser.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use weir_recorder::{
    Codec, Command, Format, GapMerge, MediaKind, NamingContext, OutputConfig, Recorder,
    RecorderConfig, RtpPacket, RtpTime, SenderReport, SeqNo,
};

fn recorder(codec: Codec, t0: Instant) -> Recorder {
    let mut hls = OutputConfig::new(Format::Hls);
    hls.gap_merge = GapMerge::Window(Duration::from_secs(2));
    hls.slice = Duration::from_secs(2);
    let mut mp4 = OutputConfig::new(Format::Mp4);
    mp4.cycle = Some(Duration::from_secs(3));
    let mut config = RecorderConfig::new(NamingContext::new("a", "r", "u"), vec![hls, mp4]);
    config.max_file_bytes = 20_000;
    let mut r = Recorder::new(config, t0, SystemTime::UNIX_EPOCH);
    r.add_track(t0, codec);
    r.add_track(t0, Codec::Opus);
    r
}

#[derive(Debug, Clone)]
struct Input {
    video: bool,
    ssrc: u8,
    seq_step: i8,
    ts_step: i32,
    marker: bool,
    advance_ms: u16,
    payload: Vec<u8>,
    report: bool,
}

fn input() -> impl Strategy<Value = Input> {
    (
        any::<bool>(),
        0u8..3,
        any::<i8>(),
        prop_oneof![Just(3000i32), Just(960), any::<i32>()],
        any::<bool>(),
        0u16..4000,
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            // Plausible headers with random bodies.
            (
                prop_oneof![
                    Just(0x7cu8),
                    Just(24),
                    Just(28),
                    Just(0x10),
                    Just(0x90),
                    Just(0x8e),
                    Just(0x68),
                    Just(0x78)
                ],
                proptest::collection::vec(any::<u8>(), 0..60)
            )
                .prop_map(|(h, mut b)| {
                    b.insert(0, h);
                    b
                }),
        ],
        proptest::bool::weighted(0.05),
    )
        .prop_map(
            |(video, ssrc, seq_step, ts_step, marker, advance_ms, payload, report)| Input {
                video,
                ssrc,
                seq_step,
                ts_step,
                marker,
                advance_ms,
                payload,
                report,
            },
        )
}

fn drive(codec: Codec, inputs: Vec<Input>) {
    let t0 = Instant::now();
    let mut r = recorder(codec, t0);
    let mut now = t0;
    let (mut seq, mut ts) = (0u16, 0u32);
    for i in inputs {
        now += Duration::from_millis(
            u64::from(i.advance_ms % 200) + if i.advance_ms > 3900 { 5000 } else { 0 },
        );
        seq = seq.wrapping_add(i.seq_step as u16);
        ts = ts.wrapping_add(i.ts_step as u32);
        let kind = if i.video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        if i.report {
            r.handle_sender_report(
                now,
                kind,
                SenderReport {
                    ntp_time: u64::from(ts) << 20,
                    rtp_time: RtpTime(ts),
                },
            );
        }
        r.handle_rtp(
            now,
            kind,
            RtpPacket {
                ssrc: u32::from(i.ssrc),
                seq: SeqNo(seq),
                timestamp: RtpTime(ts),
                marker: i.marker,
                payload: i.payload,
                arrival: now,
            },
        );
        if let Some(t) = r.poll_timeout() {
            if t <= now {
                r.handle_timeout(now);
            }
        }
        while let Some(c) = r.poll_command() {
            if let Command::WriteAt { offset, bytes, .. } = c {
                assert!(offset < 1 << 40 && !bytes.is_empty());
            }
        }
    }
    r.stop(now);
    while r.poll_command().is_some() {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_h264_input_never_panics(inputs in proptest::collection::vec(input(), 1..300)) {
        drive(Codec::H264, inputs);
    }

    #[test]
    fn random_vp8_input_never_panics(inputs in proptest::collection::vec(input(), 1..300)) {
        drive(Codec::Vp8, inputs);
    }

    #[test]
    fn random_vp9_input_never_panics(inputs in proptest::collection::vec(input(), 1..300)) {
        drive(Codec::Vp9, inputs);
    }

    #[test]
    fn random_av1_input_never_panics(inputs in proptest::collection::vec(input(), 1..300)) {
        drive(Codec::Av1, inputs);
    }

    #[test]
    fn random_bytes_never_panic_the_rtp_parser(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = RtpPacket::parse(&bytes, Instant::now());
    }
}
