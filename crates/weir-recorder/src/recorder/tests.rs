//! The recorder on a simulated clock: audio and video leave it interleaved
//! even when one track's first sender report comes much later than the
//! other's.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{FileCompleted, Format, OutputConfig};
use crate::naming::NamingContext;
use crate::rtp::{RtpTime, SeqNo};

const VIDEO_SSRC: u32 = 0x1111;
const AUDIO_SSRC: u32 = 0x2222;
const VIDEO_TS: u32 = 3_000_000_000;
const AUDIO_TS: u32 = 1_000;
/// NTP time of media time 0.
const NTP_ZERO: u64 = 3_900_000_000 << 32;

fn ntp_at(seconds: f64) -> u64 {
    NTP_ZERO + (seconds * 4_294_967_296.0) as u64
}

/// A one-packet VP8 frame (keyframes carry the 320x240 header).
fn vp8_payload(keyframe: bool) -> Vec<u8> {
    let tag: u32 = (64 << 5) | (1 << 4) | u32::from(!keyframe);
    let mut payload = vec![0x10, tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
    if keyframe {
        payload.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
    }
    payload.extend_from_slice(&[0x55; 40]);
    payload
}

/// The media playlist's EXTINF durations, from its last version.
fn segment_durations(commands: &[Command]) -> Vec<f64> {
    let playlist = commands
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::WriteFile { path, bytes } if path.ends_with("_media.m3u8") => Some(bytes),
            _ => None,
        })
        .map(|bytes| String::from_utf8_lossy(bytes).to_string())
        .unwrap_or_default();
    playlist
        .lines()
        .filter_map(|line| line.strip_prefix("#EXTINF:"))
        .filter_map(|rest| rest.trim_end_matches(',').parse().ok())
        .collect()
}

#[test]
fn audio_whose_sender_report_comes_late_stays_in_its_hls_segments() {
    let t0 = Instant::now();
    let context = NamingContext::new("app", "room", "user");
    let output = OutputConfig {
        slice: Duration::from_secs(2),
        ..OutputConfig::new(Format::Hls)
    };
    let mut recorder = Recorder::new(
        RecorderConfig::new(context, vec![output]),
        t0,
        SystemTime::now(),
    );
    recorder.add_track(t0, Codec::Vp8);
    recorder.add_track(t0, Codec::Opus);
    // Video's report is known from the start; audio's comes after 1.2 s
    // (within the 1.5 s the recorder waits for one).
    recorder.handle_sender_report(
        t0,
        MediaKind::Video,
        SenderReport {
            ntp_time: ntp_at(0.0),
            rtp_time: RtpTime(VIDEO_TS),
        },
    );
    let mut commands = Vec::new();
    let mut audio_report_sent = false;
    // 4 s: an Opus packet every 20 ms, a VP8 frame every 40 ms (25 fps),
    // a keyframe every 0.4 s; both stamped with their capture time.
    for ms in (0..4_000u32).step_by(20) {
        let now = t0 + Duration::from_millis(u64::from(ms));
        if ms >= 1_200 && !audio_report_sent {
            audio_report_sent = true;
            recorder.handle_sender_report(
                now,
                MediaKind::Audio,
                SenderReport {
                    ntp_time: ntp_at(1.2),
                    rtp_time: RtpTime(AUDIO_TS + 48 * 1_200),
                },
            );
        }
        let k = ms / 20;
        recorder.handle_rtp(
            now,
            MediaKind::Audio,
            RtpPacket {
                ssrc: AUDIO_SSRC,
                seq: SeqNo(k as u16),
                timestamp: RtpTime(AUDIO_TS + 960 * k),
                marker: false,
                payload: vec![0xf8, 0xff, 0xfe],
                arrival: now,
            },
        );
        if ms % 40 == 0 {
            let n = ms / 40;
            recorder.handle_rtp(
                now,
                MediaKind::Video,
                RtpPacket {
                    ssrc: VIDEO_SSRC,
                    seq: SeqNo(n as u16),
                    timestamp: RtpTime(VIDEO_TS.wrapping_add(3_600 * n)),
                    marker: true,
                    payload: vp8_payload(n % 10 == 0),
                    arrival: now,
                },
            );
        }
        recorder.handle_timeout(now);
        commands.extend(std::iter::from_fn(|| recorder.poll_command()));
    }
    recorder.stop(t0 + Duration::from_secs(4));
    commands.extend(std::iter::from_fn(|| recorder.poll_command()));

    let completed: Vec<&FileCompleted> = commands
        .iter()
        .filter_map(|c| match c {
            Command::FileCompleted(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(completed.len(), 1, "one HLS recording");
    let duration = completed[0].duration.as_secs_f64();
    assert!((duration - 4.0).abs() < 0.1, "{duration} s recorded");
    // Every segment holds its own audio: the playlist adds up to the
    // recording (audio released after video would make a segment start
    // with audio from before its keyframe and count that twice).
    let segments = segment_durations(&commands);
    let total: f64 = segments.iter().sum();
    assert!(
        (total - duration).abs() < 0.05,
        "EXTINF {segments:?} add up to {total} s, the recording is {duration} s"
    );
}
