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
    crate::depacketize::vp8::test_frame_payload(keyframe)
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

/// A recording that starts while the publisher is sending: the server taps
/// both tracks at once, but the first packet it hands over may be audio,
/// with the publisher's sender report already known, and the video track
/// reaches the recorder a few packets later. `expect_video`: the server
/// told the recorder of the video track when it tapped it (before any of
/// its packets). `keyframe_at`: the frame (every 40 ms from 60 ms) that is
/// the first keyframe, if any. Returns the completed files and the
/// recorder's counters.
fn record_audio_first(
    expect_video: bool,
    keyframe_at: Option<u32>,
) -> (Vec<FileCompleted>, RecorderStats) {
    let t0 = Instant::now();
    let context = NamingContext::new("app", "room", "user");
    let mut recorder = Recorder::new(
        RecorderConfig::new(context, vec![OutputConfig::new(Format::Mp4)]),
        t0,
        SystemTime::now(),
    );
    if expect_video {
        recorder.expect_track(t0, MediaKind::Video);
    }
    recorder.add_track(t0, Codec::Opus);
    recorder.handle_sender_report(
        t0,
        MediaKind::Audio,
        SenderReport {
            ntp_time: ntp_at(0.0),
            rtp_time: RtpTime(AUDIO_TS),
        },
    );
    let mut commands = Vec::new();
    for ms in (0..9_000u32).step_by(20) {
        let now = t0 + Duration::from_millis(u64::from(ms));
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
        if ms == 60 {
            recorder.add_track(now, Codec::Vp8);
            recorder.handle_sender_report(
                now,
                MediaKind::Video,
                SenderReport {
                    ntp_time: ntp_at(0.06),
                    rtp_time: RtpTime(VIDEO_TS),
                },
            );
        }
        if ms >= 60 && ms % 40 == 20 {
            let n = (ms - 60) / 40;
            recorder.handle_rtp(
                now,
                MediaKind::Video,
                RtpPacket {
                    ssrc: VIDEO_SSRC,
                    seq: SeqNo(n as u16),
                    timestamp: RtpTime(VIDEO_TS.wrapping_add(3_600 * n)),
                    marker: true,
                    payload: vp8_payload(keyframe_at == Some(n)),
                    arrival: now,
                },
            );
        }
        recorder.handle_timeout(now);
        commands.extend(std::iter::from_fn(|| recorder.poll_command()));
    }
    recorder.stop(t0 + Duration::from_secs(9));
    commands.extend(std::iter::from_fn(|| recorder.poll_command()));
    let files = commands
        .into_iter()
        .filter_map(|c| match c {
            Command::FileCompleted(f) => Some(f),
            _ => None,
        })
        .collect();
    (files, recorder.stats())
}

/// Checks a file's picture size ((0, 0): audio only) and duration.
fn assert_file(file: &FileCompleted, size: (u16, u16), seconds: f64, tolerance: f64) {
    let duration = file.duration.as_secs_f64();
    assert_eq!((file.width, file.height), size, "{file:?}");
    assert!(
        (duration - seconds).abs() < tolerance,
        "{duration} s, {seconds} s expected"
    );
}

#[test]
fn a_video_track_tapped_with_the_audio_is_in_the_file_when_audio_comes_first() {
    // The keyframe the recorder asked for comes 0.46 s in; the audio held
    // for it is in the one file: 9 s of media, with video.
    let (files, stats) = record_audio_first(true, Some(10));
    assert_eq!(files.len(), 1, "one MP4: {files:?}");
    assert_file(&files[0], (320, 240), 9.0, 0.1);
    // Told of the track (a request) and then given its codec (a second
    // want, 60 ms later, left pending): the keyframe at 0.46 s answers
    // both, so no second request goes out at 0.5 s.
    assert_eq!(stats.keyframe_requests, 1, "{stats:?}");
}

#[test]
fn video_reaching_an_audio_only_file_starts_the_next_file() {
    // Not told of the video track, the recorder starts an audio-only file
    // at the first audio (audio-only streams start at once, rule 4); the
    // video keyframe then cuts it, and the next file has both tracks.
    let (files, _) = record_audio_first(false, Some(10));
    assert_eq!(files.len(), 2, "{files:?}");
    assert_file(&files[0], (0, 0), 0.46, 0.05);
    assert_file(&files[1], (320, 240), 8.54, 0.1);
}

#[test]
fn audio_waits_for_an_expected_video_track_a_few_seconds_at_most() {
    // Video expected but no keyframe for 6 s: after the 5 s pre-roll the
    // held audio starts an audio-only file (none of it dropped); the
    // keyframe starts the next file, with video.
    let (files, _) = record_audio_first(true, Some(150));
    assert_eq!(files.len(), 2, "{files:?}");
    assert_file(&files[0], (0, 0), 6.06, 0.05);
    assert_file(&files[1], (320, 240), 2.94, 0.1);
}

#[test]
fn audio_of_a_stream_whose_video_never_comes_is_recorded_whole() {
    let (files, _) = record_audio_first(true, None);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_file(&files[0], (0, 0), 9.0, 0.1);
}
