//! Test support: media made by ffmpeg, a test-only RTP packetizer, a
//! simulated clock driving the recorder, an in-memory file store, and the
//! independent validators (ffprobe/ffmpeg).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant, SystemTime};

use weir_recorder::{
    Codec, Command, FileCompleted, FileStarted, MediaKind, Recorder, RecorderConfig, RtpPacket,
    RtpTime, SeqNo,
};

/// Whether ffmpeg and ffprobe are installed (tests that need them skip
/// with a message otherwise).
pub fn have_ffmpeg() -> bool {
    let ok = Process::new("ffmpeg").arg("-version").output().is_ok()
        && Process::new("ffprobe").arg("-version").output().is_ok();
    if !ok {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed (scripts/test.sh installs them)");
    }
    ok
}

fn run_ffmpeg(args: &[&str]) {
    let out = Process::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Media of a publisher: video access units (NAL units each, or one VP8
/// frame) at `fps`, Opus packets of 20 ms.
#[derive(Debug, Clone)]
pub struct Media {
    pub codec: Codec,
    pub fps: u32,
    pub video: Vec<Vec<Vec<u8>>>,
    pub audio: Vec<Vec<u8>>,
}

/// H.264 (baseline, no B-frames, GOP `gop`) + Opus made by ffmpeg.
pub fn make_h264_opus(dir: &Path, seconds: u32, size: &str, gop: u32) -> Media {
    let h264 = dir.join(format!("v_{size}_{seconds}.h264"));
    let t = seconds.to_string();
    let g = gop.to_string();
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={size}:rate=30"),
        "-t",
        &t,
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-bf",
        "0",
        "-g",
        &g,
        "-keyint_min",
        &g,
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-bsf:v",
        "h264_metadata=aud=insert",
        "-f",
        "h264",
        h264.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&h264).unwrap();
    let mut video: Vec<Vec<Vec<u8>>> = Vec::new();
    for nal in split_annexb(&bytes) {
        if nal.first().map(|b| b & 0x1f) == Some(9) {
            video.push(Vec::new());
            continue;
        }
        if let Some(au) = video.last_mut() {
            au.push(nal);
        }
    }
    Media {
        codec: Codec::H264,
        fps: 30,
        video,
        audio: make_opus(dir, seconds),
    }
}

/// VP8 (via IVF) + Opus made by ffmpeg.
pub fn make_vp8_opus(dir: &Path, seconds: u32) -> Media {
    let ivf = dir.join("v.ivf");
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libvpx",
        "-g",
        "30",
        "-deadline",
        "realtime",
        "-b:v",
        "300k",
        ivf.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&ivf).unwrap();
    let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    let mut at = header_len;
    let mut video = Vec::new();
    while at + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        video.push(vec![bytes[at + 12..at + 12 + size].to_vec()]);
        at += 12 + size;
    }
    Media {
        codec: Codec::Vp8,
        fps: 30,
        video,
        audio: make_opus(dir, seconds),
    }
}

/// VP9 or AV1 (via IVF, low-latency settings) + Opus made by ffmpeg.
pub fn make_ivf_opus(dir: &Path, seconds: u32, codec: Codec) -> Media {
    let ivf = dir.join(format!("v_{codec:?}.ivf"));
    let t = seconds.to_string();
    let mut args: Vec<&str> = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        &t,
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
    ];
    match codec {
        Codec::Vp9 => args.extend([
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-lag-in-frames",
            "0",
            "-auto-alt-ref",
            "0",
            "-b:v",
            "300k",
        ]),
        Codec::Av1 => args.extend([
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "300k",
        ]),
        _ => panic!("not an IVF codec"),
    }
    let out = ivf.to_str().unwrap().to_owned();
    args.push(&out);
    run_ffmpeg(&args);
    let bytes = std::fs::read(&ivf).unwrap();
    let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    let mut at = header_len;
    let mut video = Vec::new();
    while at + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        video.push(vec![bytes[at + 12..at + 12 + size].to_vec()]);
        at += 12 + size;
    }
    Media {
        codec,
        fps: 30,
        video,
        audio: make_opus(dir, seconds),
    }
}

/// AV1 OBUs of a temporal unit (sized, low-overhead format).
fn obus(mut tu: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !tu.is_empty() {
        let header = tu[0];
        let header_len = 1 + usize::from(header & 0x04 != 0);
        let (mut len, mut used, mut shift) = (0usize, 0usize, 0);
        loop {
            let b = tu[header_len + used];
            len |= usize::from(b & 0x7f) << shift;
            used += 1;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let end = header_len + used + len;
        out.push(&tu[..end]);
        tu = &tu[end..];
    }
    out
}

/// Opus packets (20 ms) of a sine, from an Ogg file made by ffmpeg.
pub fn make_opus(dir: &Path, seconds: u32) -> Vec<Vec<u8>> {
    let ogg = dir.join(format!("a_{seconds}.ogg"));
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &seconds.to_string(),
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-frame_duration",
        "20",
        "-ac",
        "2",
        ogg.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&ogg).unwrap();
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
        let segments = usize::from(bytes[at + 26]);
        let table = &bytes[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(&bytes[body..body + usize::from(lace)]);
            body += usize::from(lace);
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = body;
    }
    // Drop OpusHead and OpusTags.
    packets
        .into_iter()
        .filter(|p| !p.starts_with(b"OpusHead") && !p.starts_with(b"OpusTags"))
        .collect()
}

fn split_annexb(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if bytes[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(bytes.len(), |n| n - 3);
        while end > s && bytes[end - 1] == 0 {
            end -= 1;
        }
        nals.push(bytes[s..end].to_vec());
    }
    nals
}

/// RTP payloads of one access unit: SPS+PPS aggregated (STAP-A), big NAL
/// units fragmented (FU-A), others single.
pub fn packetize(codec: Codec, au: &[Vec<u8>], mtu: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match codec {
        Codec::H264 => {
            let mut i = 0;
            while i < au.len() {
                let nal = &au[i];
                let kind = nal[0] & 0x1f;
                if kind == 7 && au.get(i + 1).is_some_and(|n| n[0] & 0x1f == 8) {
                    let pps = &au[i + 1];
                    let mut p = vec![24];
                    for n in [nal, pps] {
                        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                        p.extend_from_slice(n);
                    }
                    out.push(p);
                    i += 2;
                    continue;
                }
                if nal.len() <= mtu {
                    out.push(nal.clone());
                } else {
                    let header = nal[0];
                    let chunks: Vec<&[u8]> = nal[1..].chunks(mtu - 2).collect();
                    for (k, c) in chunks.iter().enumerate() {
                        let mut fu = 0x1f & header;
                        if k == 0 {
                            fu |= 0x80;
                        }
                        if k + 1 == chunks.len() {
                            fu |= 0x40;
                        }
                        let mut p = vec![(header & 0xe0) | 28, fu];
                        p.extend_from_slice(c);
                        out.push(p);
                    }
                }
                i += 1;
            }
        }
        Codec::Vp8 => {
            let frame = &au[0];
            for (k, c) in frame.chunks(mtu - 1).enumerate() {
                let mut p = vec![if k == 0 { 0x10 } else { 0x00 }];
                p.extend_from_slice(c);
                out.push(p);
            }
        }
        Codec::Vp9 => {
            let frame = &au[0];
            let key = frame[0] >> 6 == 2 && frame[0] & 0x0c == 0;
            let chunks: Vec<&[u8]> = frame.chunks(mtu - 1).collect();
            for (k, c) in chunks.iter().enumerate() {
                let mut d = if key { 0 } else { 0x40 };
                if k == 0 {
                    d |= 0x08;
                }
                if k + 1 == chunks.len() {
                    d |= 0x04;
                }
                let mut p = vec![d];
                p.extend_from_slice(c);
                out.push(p);
            }
        }
        Codec::Av1 => {
            let tu = &au[0];
            let list: Vec<&[u8]> = obus(tu)
                .into_iter()
                .filter(|o| (o[0] >> 3) & 0x0f != 2)
                .collect();
            let key = list.iter().any(|o| (o[0] >> 3) & 0x0f == 1);
            let mut first = true;
            for obu in list {
                let chunks: Vec<&[u8]> = obu.chunks(mtu - 1).collect();
                for (k, c) in chunks.iter().enumerate() {
                    let mut h = 0x10;
                    if k > 0 {
                        h |= 0x80;
                    }
                    if k + 1 < chunks.len() {
                        h |= 0x40;
                    }
                    if first && key {
                        h |= 0x08;
                    }
                    first = false;
                    let mut p = vec![h];
                    p.extend_from_slice(c);
                    out.push(p);
                }
            }
        }
        Codec::Opus => panic!("audio is not packetized here"),
    }
    out
}

/// One packet to send at a time.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub at: Duration,
    pub kind: MediaKind,
    pub packet: RtpPacket,
}

/// How the publisher sends.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// RTP timestamp of the first video / audio packet.
    pub video_ts: u32,
    pub audio_ts: u32,
    /// First sequence numbers.
    pub video_seq: u16,
    pub audio_seq: u16,
    /// The publisher is away in these media-time ranges (new SSRC after).
    pub away: Vec<(Duration, Duration)>,
    /// Audio is silent (DTX: no packets, timestamps go on) in these ranges.
    pub dtx: Vec<(Duration, Duration)>,
    /// Video packet indexes (over the whole stream) that are lost.
    pub lose_video: Vec<usize>,
    /// Audio arrives this much later than video of the same time.
    pub audio_delay: Duration,
}

impl Default for SendPlan {
    fn default() -> Self {
        Self {
            video_ts: 1_000,
            audio_ts: 5_000,
            video_seq: 100,
            audio_seq: 200,
            away: Vec::new(),
            dtx: Vec::new(),
            lose_video: Vec::new(),
            audio_delay: Duration::ZERO,
        }
    }
}

fn within(ranges: &[(Duration, Duration)], t: Duration) -> bool {
    ranges.iter().any(|(a, b)| t >= *a && t < *b)
}

fn session(ranges: &[(Duration, Duration)], t: Duration) -> u32 {
    ranges.iter().filter(|(_, b)| t >= *b).count() as u32
}

/// Packets of `media` sent in real time from t=0, following `plan`.
pub fn schedule(media: &Media, plan: &SendPlan, t0: Instant) -> Vec<Scheduled> {
    let mut all = Vec::new();
    let mut seq = plan.video_seq;
    let mut index = 0usize;
    let frame = Duration::from_secs(1) / media.fps;
    let ticks = 90_000 / media.fps;
    for (n, au) in media.video.iter().enumerate() {
        let t = frame * n as u32;
        let payloads = packetize(media.codec, au, 1200);
        if within(&plan.away, t) {
            continue;
        }
        let s = session(&plan.away, t);
        let ts = plan
            .video_ts
            .wrapping_add(ticks * n as u32)
            .wrapping_add(s * 7_777_777);
        let last = payloads.len() - 1;
        for (k, payload) in payloads.into_iter().enumerate() {
            let lost = plan.lose_video.contains(&index);
            index += 1;
            let packet = RtpPacket {
                ssrc: 1000 + s,
                seq: SeqNo(seq),
                timestamp: RtpTime(ts),
                marker: k == last,
                payload,
                arrival: t0 + t,
            };
            seq = seq.wrapping_add(1);
            if !lost {
                all.push(Scheduled {
                    at: t,
                    kind: MediaKind::Video,
                    packet,
                });
            }
        }
    }
    let mut seq = plan.audio_seq;
    for (n, payload) in media.audio.iter().enumerate() {
        let t = Duration::from_millis(20) * n as u32;
        if within(&plan.away, t) || within(&plan.dtx, t) {
            continue;
        }
        let s = session(&plan.away, t);
        let ts = plan
            .audio_ts
            .wrapping_add(960 * n as u32)
            .wrapping_add(s * 3_333_333);
        let at = t + plan.audio_delay;
        all.push(Scheduled {
            at,
            kind: MediaKind::Audio,
            packet: RtpPacket {
                ssrc: 2000 + s,
                seq: SeqNo(seq),
                timestamp: RtpTime(ts),
                marker: false,
                payload: payload.clone(),
                arrival: t0 + at,
            },
        });
        seq = seq.wrapping_add(1);
    }
    all.sort_by_key(|s| s.at);
    all
}

/// The recorder on a simulated clock with an in-memory file store.
pub struct Sim {
    pub recorder: Recorder,
    pub t0: Instant,
    pub now: Instant,
    pub files: BTreeMap<String, Vec<u8>>,
    pub started: Vec<FileStarted>,
    pub completed: Vec<FileCompleted>,
    /// Simulated time of each completion.
    pub completed_at: Vec<Duration>,
    pub keyframe_requests: usize,
}

impl Sim {
    pub fn new(config: RecorderConfig, codec: Codec) -> Self {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut recorder = Recorder::new(config.clone(), t0, wall);
        if config.content != weir_recorder::Content::Audio {
            recorder.add_track(t0, codec);
        }
        if config.content != weir_recorder::Content::Video {
            recorder.add_track(t0, Codec::Opus);
        }
        let mut sim = Self {
            recorder,
            t0,
            now: t0,
            files: BTreeMap::new(),
            started: Vec::new(),
            completed: Vec::new(),
            completed_at: Vec::new(),
            keyframe_requests: 0,
        };
        sim.drain();
        sim
    }

    /// Runs the clock to `t0 + at`, firing timeouts on the way.
    pub fn advance(&mut self, at: Duration) {
        let target = self.t0 + at;
        while let Some(deadline) = self.recorder.poll_timeout() {
            if deadline > target {
                break;
            }
            let deadline = deadline.max(self.now);
            self.now = deadline;
            self.recorder.handle_timeout(deadline);
            self.drain();
            let next = self.recorder.poll_timeout();
            assert!(
                next.is_none_or(|n| n > deadline),
                "stale timeout {:?} after handling {:?}",
                next.map(|n| n - self.t0),
                deadline - self.t0
            );
        }
        self.now = self.now.max(target);
    }

    pub fn send(&mut self, packets: Vec<Scheduled>) {
        for s in packets {
            self.advance(s.at);
            self.recorder.handle_rtp(self.now, s.kind, s.packet);
            self.drain();
        }
    }

    pub fn stop_at(&mut self, at: Duration) {
        self.advance(at);
        self.recorder.stop(self.now);
        self.drain();
    }

    pub fn drain(&mut self) {
        while let Some(c) = self.recorder.poll_command() {
            match c {
                Command::WriteFile { path, bytes } => {
                    self.files.insert(path, bytes);
                }
                Command::Append { path, bytes } => {
                    self.files
                        .get_mut(&path)
                        .expect("append to unknown file")
                        .extend(bytes);
                }
                Command::WriteAt {
                    path,
                    offset,
                    bytes,
                } => {
                    let f = self.files.get_mut(&path).expect("patch of unknown file");
                    let o = offset as usize;
                    assert!(o + bytes.len() <= f.len(), "patch past the end");
                    f[o..o + bytes.len()].copy_from_slice(&bytes);
                }
                Command::FileStarted(s) => self.started.push(s),
                Command::FileCompleted(c) => {
                    self.completed.push(c);
                    self.completed_at.push(self.now - self.t0);
                }
                Command::RequestKeyframe => self.keyframe_requests += 1,
            }
        }
    }

    /// Writes every file under `dir`.
    pub fn write_to(&self, dir: &Path) {
        for (path, bytes) in &self.files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
}

/// What ffprobe says about a file.
#[derive(Debug)]
pub struct Probe {
    pub duration: f64,
    pub width: u64,
    pub height: u64,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
}

pub fn ffprobe(path: &Path) -> Probe {
    let out = Process::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {path:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |key: &str, after: usize| -> Option<String> {
        let k = format!("\"{key}\": ");
        let at = text[after..].find(&k)? + after + k.len();
        let rest = &text[at..];
        let end = rest.find([',', '\n']).unwrap_or(rest.len());
        Some(rest[..end].trim_matches('"').to_string())
    };
    let video_at = text.find("\"codec_type\": \"video\"");
    let audio_at = text.find("\"codec_type\": \"audio\"");
    let fmt_at = text.find("\"format\": {").unwrap_or(0);
    let codec_before = |at: Option<usize>| {
        at.and_then(|a| {
            let start = text[..a].rfind("\"codec_name\": ")?;
            field("codec_name", start)
        })
    };
    Probe {
        duration: field("duration", fmt_at)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        width: video_at
            .and_then(|a| field("width", a.saturating_sub(800)))
            .and_then(|w| w.parse().ok())
            .unwrap_or(0),
        height: video_at
            .and_then(|a| field("height", a.saturating_sub(800)))
            .and_then(|w| w.parse().ok())
            .unwrap_or(0),
        video_codec: codec_before(video_at),
        audio_codec: codec_before(audio_at),
    }
}

/// `ffmpeg -v error -xerror -i X -f null -`: must exit 0 with empty stderr.
pub fn decode_clean(path: &Path) {
    let out = Process::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "decode of {path:?}: {stderr}"
    );
}

/// Video packets: (pts, keyframe) in decode order.
pub fn video_packets(path: &Path) -> Vec<(f64, bool)> {
    let out = Process::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(',');
            let pts = parts.next()?.parse().ok()?;
            let flags = parts.next().unwrap_or("");
            Some((pts, flags.starts_with('K')))
        })
        .collect()
}

/// Checks: first video packet a keyframe, timestamps strictly increasing.
pub fn check_video_timeline(path: &Path) -> Vec<(f64, bool)> {
    let packets = video_packets(path);
    assert!(!packets.is_empty(), "no video packets in {path:?}");
    assert!(
        packets[0].1,
        "first video packet of {path:?} is not a keyframe"
    );
    for w in packets.windows(2) {
        assert!(
            w[1].0 > w[0].0,
            "timestamps not increasing in {path:?}: {w:?}"
        );
    }
    packets
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_of(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}

/// Top-level box types of an MP4 file.
pub fn top_level_boxes(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let mut size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string();
        if size == 1 {
            size = u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        } else if size == 0 {
            size = (bytes.len() - at) as u64;
        }
        out.push(kind);
        at += size as usize;
    }
    out
}
