//! The recorder core (`weir_recorder::Recorder`, the segmenter): arbitrary
//! sequences of audio/video RTP packets, sender reports, track ends and
//! clock jumps, on a synthetic clock, into MP4 and/or HLS outputs; and crash
//! recovery (`weir_recorder::recover`) of the files in progress at any
//! point.
//!
//! Input: two configuration bytes (video codec, formats, gap merge,
//! content, size/cycle/slice limits, naming template), then operations,
//! each an op byte: 0/1 video/audio packet (flags, `i8` sequence step,
//! `i32` timestamp step, `u8` ms since the previous input, payload), 2 time
//! passes (`u16` x 10 ms), 3 sender report, 4 track ended, 5 publisher
//! left, 6 crash now (`u32` truncation of each file in progress), 7 a track
//! (re)declared.
//!
//! Invariants: no panic; the commands are consistent (see
//! `weir_fuzz::recording::Files`: appends and patches only to files written
//! first, within their length, nothing after completion, sizes add up,
//! finished MP4s demux, finished HLS playlists list exactly their
//! segments, keyframe requests at most every 500 ms); after
//! `stop` every started file is completed; an MP4 in progress demuxes as
//! fragmented MP4 and is recovered (also when torn at any byte) into an MP4
//! that demuxes; a recovered HLS recording lists only files that exist.
#![no_main]

use std::io::Cursor;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use weir_fuzz::recording::{check_fmp4, check_mp4, Files};
use weir_fuzz::Reader;
use weir_recorder::recover::{
    hls_media_uri, recover_hls, recover_mp4, recover_segment, TrailingSegment,
};
use weir_recorder::{
    Codec, Command, Content, Format, GapMerge, MediaKind, NamingContext, OutputConfig, Recorder,
    RecorderConfig, RtpPacket, RtpTime, SenderReport, SeqNo,
};

const VIDEO: [Codec; 4] = [Codec::H264, Codec::Vp8, Codec::Vp9, Codec::Av1];

struct Sim {
    recorder: Recorder,
    files: Files,
    now: Instant,
    seq: [u16; 2],
    ts: [u32; 2],
}

impl Sim {
    fn drain(&mut self) {
        while let Some(command) = self.recorder.poll_command() {
            self.files.apply(self.now, command);
        }
    }

    /// Lets time pass to `until`, with `handle_timeout` at every deadline
    /// (as the server's recorder thread does).
    fn advance(&mut self, until: Instant) {
        for _ in 0..2000 {
            match self.recorder.poll_timeout() {
                Some(at) if at <= until => {
                    let step = at.max(self.now);
                    self.now = step;
                    self.recorder.handle_timeout(step);
                    self.drain();
                    if self
                        .recorder
                        .poll_timeout()
                        .is_some_and(|next| next <= step)
                    {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.recorder.handle_timeout(self.now);
        self.drain();
    }

    /// The process dies now: what recovery makes of each file in progress,
    /// whole and cut after `cut` bytes.
    fn crash(&mut self, cut: u32) {
        let open: Vec<(Format, String)> = self
            .files
            .open()
            .iter()
            .map(|s| (s.format, s.object.clone()))
            .collect();
        for (format, object) in open {
            match format {
                Format::Mp4 => {
                    let bytes = self.files.files[&object].clone();
                    check_fmp4(&bytes);
                    recover_mp4_file(&bytes, &object, true);
                    let len = cut as usize % (bytes.len() + 1);
                    recover_mp4_file(&bytes[..len], &object, false);
                }
                Format::Hls => self.recover_hls(&object),
            }
        }
    }

    fn recover_hls(&self, object: &str) {
        let files = &self.files.files;
        let dir = object.rfind('/').map_or("", |i| &object[..=i]);
        let top = &files[object];
        let Ok(media_uri) = hls_media_uri(top) else {
            // Not written yet.
            return;
        };
        let Some(media) = files.get(&format!("{dir}{media_uri}")) else {
            return;
        };
        let listed = String::from_utf8_lossy(media);
        // Like the finisher: the segment being written is the `.m4s` the
        // playlist does not list; the init segment is the latest `_init`.
        let names: Vec<&str> = files
            .keys()
            .filter_map(|p| p.strip_prefix(dir))
            .filter(|p| !p.contains('/'))
            .collect();
        let segment = names
            .iter()
            .rev()
            .find(|n| n.ends_with(".m4s") && !listed.contains(**n))
            .map(|n| n.to_string());
        let init = names
            .iter()
            .filter(|n| n.contains("_init") && n.ends_with(".mp4"))
            .max()
            .map(|n| n.to_string());
        let trailing = match (&segment, &init) {
            (Some(segment), Some(init)) => {
                let bytes = &files[&format!("{dir}{segment}")];
                let kept = recover_segment(
                    &files[&format!("{dir}{init}")],
                    &mut Cursor::new(bytes),
                    bytes.len() as u64,
                )
                .expect("the open segment of a recording is readable");
                kept.map(|k| {
                    assert!(k.keep_len <= bytes.len() as u64);
                    (segment.as_str(), k.duration, init.as_str())
                })
            }
            _ => None,
        };
        let Ok(recovered) = recover_hls(
            top,
            media,
            trailing.map(|(uri, duration, init_uri)| TrailingSegment {
                uri,
                duration,
                init_uri,
            }),
        ) else {
            return;
        };
        for path in &recovered.paths {
            assert!(
                files.contains_key(&format!("{dir}{path}")),
                "recovered HLS lists {path}, not written"
            );
        }
    }
}

fn recover_mp4_file(bytes: &[u8], object: &str, whole: bool) {
    let recovered = match recover_mp4(&mut Cursor::new(bytes), bytes.len() as u64, object) {
        Ok(r) => r,
        Err(e) => {
            assert!(!whole, "an MP4 in progress is not recovered: {e}");
            return;
        }
    };
    assert!(recovered.keep_len <= bytes.len() as u64);
    let mut file = bytes[..recovered.keep_len as usize].to_vec();
    for command in recovered.commands {
        match command {
            Command::WriteAt {
                path,
                offset,
                bytes,
            } => {
                assert_eq!(path, object);
                let start = offset as usize;
                assert!(
                    start + bytes.len() <= file.len(),
                    "recovery patch past the end"
                );
                file[start..start + bytes.len()].copy_from_slice(&bytes);
            }
            Command::Append { path, bytes } => {
                assert_eq!(path, object);
                file.extend_from_slice(&bytes);
            }
            other => panic!("recovery emitted {other:?}"),
        }
    }
    assert_eq!(file.len() as u64, recovered.size);
    check_mp4(&file);
}

fn config(r: &mut Reader<'_>) -> (RecorderConfig, Codec, bool) {
    let a = r.u8();
    let b = r.u8();
    let video = VIDEO[usize::from(a % 4)];
    let audio = a & 0x04 == 0;
    let gap = match (a >> 5) & 3 {
        0 => GapMerge::NewFile,
        1 => GapMerge::NeverSplit,
        2 => GapMerge::Window(Duration::from_secs(2)),
        _ => GapMerge::Window(Duration::from_secs(20)),
    };
    let mut hls = OutputConfig::new(Format::Hls);
    hls.gap_merge = gap;
    hls.slice = Duration::from_secs([2, 4, 6, 10][usize::from((b >> 4) & 3)]);
    let mut mp4 = OutputConfig::new(Format::Mp4);
    mp4.gap_merge = if gap == GapMerge::NeverSplit {
        GapMerge::NewFile
    } else {
        gap
    };
    if b & 0x08 != 0 {
        hls.cycle = Some(Duration::from_secs(8));
        mp4.cycle = Some(Duration::from_secs(3));
    }
    let mut outputs = match (a >> 3) & 3 {
        0 => vec![mp4],
        1 => vec![hls],
        _ => vec![hls, mp4],
    };
    // Naming templates: accepted ones, and one the rule refuses (nothing
    // is recorded, errors are counted).
    let naming = [
        weir_recorder::naming::DEFAULT_TEMPLATE,
        "{app_id}/{room_id}/{user_id}/{file_start_time}",
        "{app_id}/rec @{room_id}/{user_id}+{file_start_time}",
        "{app_id}/#{stream}",
    ][usize::from(a >> 7) * 2 + usize::from(b >> 7)];
    for output in &mut outputs {
        output.naming = naming.to_string();
    }
    let mut config = RecorderConfig::new(NamingContext::new("app", "room", "alice"), outputs);
    config.content = [Content::AudioVideo, Content::Audio, Content::Video][usize::from(b % 3)];
    if b & 0x04 != 0 {
        config.max_file_bytes = 20_000;
    }
    if b & 0x40 != 0 {
        config.first_file_indexes = vec![7, 3];
    }
    (config, video, audio)
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let t0 = Instant::now();
    let (config, video, audio) = config(&mut r);
    let mut sim = Sim {
        recorder: Recorder::new(
            config,
            t0,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ),
        files: Files::default(),
        now: t0,
        seq: [0; 2],
        ts: [0; 2],
    };
    sim.recorder.add_track(t0, video);
    if audio {
        sim.recorder.add_track(t0, Codec::Opus);
    }
    sim.drain();
    let mut ops = 0;
    while !r.is_empty() && ops < 20_000 {
        ops += 1;
        let op = r.u8();
        match op % 8 {
            kind @ (0 | 1) => {
                let (media, slot) = if kind == 0 {
                    (MediaKind::Video, 1)
                } else {
                    (MediaKind::Audio, 0)
                };
                let flags = r.u8();
                let seq_step = r.u8() as i8;
                let ts_step = r.u32();
                let advance = Duration::from_millis(u64::from(r.u8()));
                let payload = r.bytes().to_vec();
                sim.seq[slot] = sim.seq[slot].wrapping_add(seq_step as u16);
                sim.ts[slot] = sim.ts[slot].wrapping_add(ts_step);
                let until = sim.now + advance;
                sim.advance(until);
                sim.recorder.handle_rtp(
                    sim.now,
                    media,
                    RtpPacket {
                        ssrc: 0x1000 + u32::from(flags >> 4),
                        seq: SeqNo(sim.seq[slot]),
                        timestamp: RtpTime(sim.ts[slot]),
                        marker: flags & 1 != 0,
                        payload,
                        arrival: sim.now,
                    },
                );
                sim.drain();
            }
            2 => {
                let until = sim.now + Duration::from_millis(u64::from(r.u16()) * 10);
                sim.advance(until);
            }
            3 => {
                let (media, slot) = if r.bool() {
                    (MediaKind::Video, 1)
                } else {
                    (MediaKind::Audio, 0)
                };
                let ntp_time = r.u64();
                let rtp = sim.ts[slot].wrapping_add(r.u32());
                sim.recorder.handle_sender_report(
                    sim.now,
                    media,
                    SenderReport {
                        ntp_time,
                        rtp_time: RtpTime(rtp),
                    },
                );
                sim.drain();
            }
            4 => {
                let media = if r.bool() {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                };
                sim.recorder.handle_track_ended(sim.now, media);
                sim.drain();
            }
            5 => {
                sim.recorder.handle_publisher_left(sim.now);
                sim.drain();
            }
            6 => {
                let cut = r.u32();
                sim.crash(cut);
            }
            _ => {
                let codec = [Codec::H264, Codec::Vp8, Codec::Vp9, Codec::Av1, Codec::Opus]
                    [usize::from(r.u8() % 5)];
                sim.recorder.add_track(sim.now, codec);
                sim.drain();
            }
        }
    }
    sim.crash(u32::MAX);
    let end = sim.now;
    sim.recorder.stop(end);
    sim.drain();
    let open: Vec<String> = sim.files.open().iter().map(|s| s.object.clone()).collect();
    assert!(open.is_empty(), "files still open after stop: {open:?}");
    let _ = sim.recorder.stats();
});
