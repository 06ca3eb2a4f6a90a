//! Long silences do not turn into bursts: a track that stops sending for an
//! hour costs the recorder bounded memory and work when it comes back
//! (found by fuzz/, segmenter: an out-of-memory).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime};

use weir_recorder::{
    Codec, Command, Content, Format, GapMerge, MediaKind, NamingContext, OutputConfig, Recorder,
    RecorderConfig, RtpPacket, RtpTime, SeqNo,
};

fn config(content: Content, gap_merge: GapMerge) -> RecorderConfig {
    let mut hls = OutputConfig::new(Format::Hls);
    hls.gap_merge = gap_merge;
    hls.slice = Duration::from_secs(2);
    let mut config = RecorderConfig::new(NamingContext::new("a", "r", "u"), vec![hls]);
    config.content = content;
    config
}

/// What one burst of commands wrote.
#[derive(Debug, Default)]
struct Written {
    bytes: usize,
    media_playlist_writes: usize,
    segments: usize,
}

struct Driver {
    recorder: Recorder,
    now: Instant,
    seq: [u16; 2],
}

impl Driver {
    /// A recorder of `content` with `tracks` declared, HLS never split.
    fn new(content: Content, tracks: &[Codec]) -> Driver {
        let now = Instant::now();
        let mut recorder = Recorder::new(
            config(content, GapMerge::NeverSplit),
            now,
            SystemTime::UNIX_EPOCH,
        );
        for codec in tracks {
            recorder.add_track(now, *codec);
        }
        Driver {
            recorder,
            now,
            seq: [0; 2],
        }
    }

    fn drain(&mut self) -> Written {
        let mut written = Written::default();
        while let Some(command) = self.recorder.poll_command() {
            match command {
                Command::WriteFile { path, bytes } => {
                    written.bytes += bytes.len();
                    if path.ends_with("_media.m3u8") {
                        written.media_playlist_writes += 1;
                    }
                    if path.ends_with(".m4s") {
                        written.segments += 1;
                    }
                }
                Command::Append { bytes, .. } | Command::WriteAt { bytes, .. } => {
                    written.bytes += bytes.len();
                }
                _ => {}
            }
        }
        written
    }

    /// Time passes to `now + by`, with the timeouts the recorder asks for.
    fn advance(&mut self, by: Duration) -> Written {
        let until = self.now + by;
        let mut total = Written::default();
        while let Some(at) = self.recorder.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.recorder.handle_timeout(self.now);
            total.add(self.drain());
        }
        self.now = until;
        self.recorder.handle_timeout(self.now);
        total.add(self.drain());
        total
    }

    fn send(&mut self, kind: MediaKind, timestamp: u32, payload: Vec<u8>) -> Written {
        let slot = usize::from(kind == MediaKind::Video);
        self.seq[slot] = self.seq[slot].wrapping_add(1);
        self.recorder.handle_rtp(
            self.now,
            kind,
            RtpPacket {
                ssrc: 1 + slot as u32,
                seq: SeqNo(self.seq[slot]),
                timestamp: RtpTime(timestamp),
                marker: true,
                payload,
                arrival: self.now,
            },
        );
        self.drain()
    }
}

impl Written {
    fn add(&mut self, other: Written) {
        self.bytes += other.bytes;
        self.media_playlist_writes += other.media_playlist_writes;
        self.segments += other.segments;
    }
}

/// A 20 ms Opus packet.
fn opus() -> Vec<u8> {
    vec![0xf8, 0xff, 0xfe]
}

/// A VP8 keyframe of about `size` bytes (one RTP packet), 640x360.
fn vp8_keyframe(size: usize) -> Vec<u8> {
    let mut payload = vec![
        0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
    ];
    payload.resize(size, 0x55);
    payload
}

#[test]
fn a_republished_track_that_stays_silent_is_an_interruption_not_an_hour_of_silence() {
    let mut d = Driver::new(Content::Audio, &[Codec::Opus]);
    let mut ts = 0u32;
    for _ in 0..100 {
        d.send(MediaKind::Audio, ts, opus());
        ts = ts.wrapping_add(960);
        d.advance(Duration::from_millis(20));
    }
    // Republished, then silent for an hour.
    d.recorder.add_track(d.now, Codec::Opus);
    d.advance(Duration::from_secs(3600));
    let mut back = d.send(MediaKind::Audio, ts.wrapping_add(3600 * 48_000), opus());
    back.add(d.advance(Duration::from_secs(1)));
    d.recorder.stop(d.now);
    back.add(d.drain());
    // The hour is a gap skipped (NeverSplit), not thousands of segments
    // of silence written when the track came back (6 002 before the fix).
    assert!(back.segments <= 2, "{back:?}");
    assert!(back.bytes < 64 * 1024, "{back:?}");
}

#[test]
fn ten_minutes_of_frozen_video_are_bounded_and_the_playlist_written_once() {
    let mut d = Driver::new(Content::AudioVideo, &[Codec::Vp8, Codec::Opus]);
    let t0 = d.now;
    const KEYFRAME: usize = 60_000;
    // Video stops after one keyframe; audio goes on (a camera turned off),
    // so nothing is an interruption. (Audio every 90 ms: 20 ms packets,
    // no holes to fill, fewer packets to run.)
    d.send(MediaKind::Video, 0, vp8_keyframe(KEYFRAME));
    let mut audio_ts = 0u32;
    let seconds = 600;
    let audio_step = Duration::from_millis(90);
    while d.now < t0 + Duration::from_secs(u64::from(seconds)) {
        d.send(MediaKind::Audio, audio_ts, opus());
        audio_ts = audio_ts.wrapping_add(90 * 48);
        d.advance(audio_step);
    }
    let mut back = d.send(MediaKind::Video, seconds * 90_000, vp8_keyframe(KEYFRAME));
    back.add(d.advance(Duration::from_secs(1)));
    // Once a second, the keyframe would be 600 copies (36 MB) made at
    // once; the filler is capped at 16 MiB of repeated keyframes.
    assert!(back.bytes < 20 * 1024 * 1024, "{back:?}");
    assert!(
        back.bytes > 12 * 1024 * 1024,
        "the hole was filled: {back:?}"
    );
    // Hundreds of segments ended at once, one playlist rewrite.
    assert!(back.segments > 100, "{back:?}");
    assert!(back.media_playlist_writes <= 2, "{back:?}");
    d.recorder.stop(d.now);
    d.drain();
}
