//! Seeds of the media targets: RTP of short clips ffmpeg encodes here,
//! into the depacketizers, the segmenter and crash recovery.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant, SystemTime};

use weir_fuzz::Writer;
use weir_recorder::{
    Codec, Command, Format, MediaKind, NamingContext, OutputConfig, Recorder, RecorderConfig,
    RtpPacket, RtpTime, SeqNo,
};

use super::Corpus;

pub(super) struct Media {
    /// Access units as NAL units.
    h264: Vec<Vec<Vec<u8>>>,
    vp8: Vec<Vec<u8>>,
    vp9: Vec<Vec<u8>>,
    /// Temporal units as OBUs (with their size fields, as in IVF).
    av1: Vec<Vec<Vec<u8>>>,
    opus: Vec<Vec<u8>>,
}

const FPS: u32 = 5;
const SECONDS: u32 = 3;

fn ffmpeg(args: &[&str]) {
    let status = Process::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

impl Media {
    pub(super) fn encode(work: &Path) -> Media {
        let src = format!("testsrc=size=96x64:rate={FPS}:duration={SECONDS}");
        let gop = (FPS * 2).to_string();
        let path = |name: &str| work.join(name).to_string_lossy().into_owned();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            &gop,
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            &path("v.h264"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libvpx",
            "-g",
            &gop,
            "-b:v",
            "50k",
            "-f",
            "ivf",
            &path("v.vp8.ivf"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libvpx-vp9",
            "-g",
            &gop,
            "-b:v",
            "50k",
            "-f",
            "ivf",
            &path("v.vp9.ivf"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libaom-av1",
            "-cpu-used",
            "8",
            "-g",
            &gop,
            "-b:v",
            "50k",
            "-f",
            "ivf",
            &path("v.av1.ivf"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:duration={SECONDS}"),
            "-c:a",
            "libopus",
            "-b:a",
            "16k",
            "-f",
            "ogg",
            &path("a.ogg"),
        ]);
        let read = |name: &str| std::fs::read(work.join(name)).expect("encoded");
        Media {
            h264: access_units(&read("v.h264")),
            vp8: ivf_frames(&read("v.vp8.ivf")),
            vp9: ivf_frames(&read("v.vp9.ivf")),
            av1: ivf_frames(&read("v.av1.ivf"))
                .iter()
                .map(|tu| obus(tu))
                .collect(),
            opus: ogg_packets(&read("a.ogg")),
        }
    }
}

/// Annex-B H.264 into access units of NAL units (a new unit at each
/// AUD, SPS or first slice).
fn access_units(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
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
        let mut end = starts.get(k + 1).map_or(bytes.len(), |&n| n - 3);
        while end > s && bytes[end - 1] == 0 {
            end -= 1;
        }
        nals.push(bytes[s..end].to_vec());
    }
    let mut units: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut has_slice = false;
    for nal in nals {
        let kind = nal[0] & 0x1f;
        let first_slice = matches!(kind, 1 | 5) && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        if (matches!(kind, 7 | 9) || first_slice) && has_slice {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        has_slice |= matches!(kind, 1 | 5);
        current.push(nal);
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

fn ivf_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 32;
    while at + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        frames.push(bytes[at + 12..at + 12 + size].to_vec());
        at += 12 + size;
    }
    frames
}

/// The OBUs of a temporal unit (each with its size field).
fn obus(tu: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < tu.len() {
        let header = tu[at];
        let header_len = 1 + usize::from(header & 0x04 != 0);
        let (size, used) = weir_fuzz::media::leb128(&tu[at + header_len..]).expect("sized OBU");
        let end = at + header_len + used + size as usize;
        out.push(tu[at..end].to_vec());
        at = end;
    }
    out
}

/// An OBU without its size field (as RTP carries them).
fn unsized_obu(obu: &[u8]) -> Vec<u8> {
    let header_len = 1 + usize::from(obu[0] & 0x04 != 0);
    let (_, used) = weir_fuzz::media::leb128(&obu[header_len..]).expect("sized OBU");
    let mut out = vec![obu[0] & !0x02];
    out.extend_from_slice(&obu[1..header_len]);
    out.extend_from_slice(&obu[header_len + used..]);
    out
}

fn ogg_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
        let segments = usize::from(bytes[at + 26]);
        let table = &bytes[at + 27..at + 27 + segments];
        let mut data = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(&bytes[data..data + usize::from(lace)]);
            data += usize::from(lace);
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = data;
    }
    // Skip OpusHead and OpusTags.
    packets.into_iter().skip(2).collect()
}

/// RTP payloads of one video frame, as a browser would send them.
fn packetize(codec: Codec, media: &Media, frame: usize, mtu: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match codec {
        Codec::H264 => {
            let au = &media.h264[frame];
            let mut i = 0;
            while i < au.len() {
                let nal = &au[i];
                if nal[0] & 0x1f == 7 && au.get(i + 1).is_some_and(|n| n[0] & 0x1f == 8) {
                    let mut p = vec![24];
                    for n in [nal, &au[i + 1]] {
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
                    let chunks: Vec<&[u8]> = nal[1..].chunks(mtu - 2).collect();
                    for (k, chunk) in chunks.iter().enumerate() {
                        let mut fu = nal[0] & 0x1f;
                        if k == 0 {
                            fu |= 0x80;
                        }
                        if k + 1 == chunks.len() {
                            fu |= 0x40;
                        }
                        let mut p = vec![(nal[0] & 0xe0) | 28, fu];
                        p.extend_from_slice(chunk);
                        out.push(p);
                    }
                }
                i += 1;
            }
        }
        Codec::Vp8 => {
            for (k, chunk) in media.vp8[frame].chunks(mtu - 4).enumerate() {
                // X with a 15-bit picture id.
                let mut p = vec![
                    if k == 0 { 0x90 } else { 0x80 },
                    0x80,
                    0x80 | (frame >> 8) as u8,
                    frame as u8,
                ];
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        Codec::Vp9 => {
            let data = &media.vp9[frame];
            let key = data[0] >> 6 == 2 && data[0] & 0x0c == 0;
            let chunks: Vec<&[u8]> = data.chunks(mtu - 1).collect();
            for (k, chunk) in chunks.iter().enumerate() {
                let mut d = if key { 0 } else { 0x40 };
                if k == 0 {
                    d |= 0x08;
                }
                if k + 1 == chunks.len() {
                    d |= 0x04;
                }
                let mut p = vec![d];
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        Codec::Av1 => {
            let list: Vec<Vec<u8>> = media.av1[frame]
                .iter()
                .filter(|o| (o[0] >> 3) & 0x0f != 2)
                .map(|o| unsized_obu(o))
                .collect();
            let key = list.iter().any(|o| (o[0] >> 3) & 0x0f == 1);
            let mut first = true;
            for obu in &list {
                let chunks: Vec<&[u8]> = obu.chunks(mtu - 1).collect();
                for (k, chunk) in chunks.iter().enumerate() {
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
                    p.extend_from_slice(chunk);
                    out.push(p);
                }
            }
        }
        Codec::Opus => out.push(media.opus[frame].clone()),
    }
    out
}

fn frames_of(codec: Codec, media: &Media) -> usize {
    match codec {
        Codec::H264 => media.h264.len(),
        Codec::Vp8 => media.vp8.len(),
        Codec::Vp9 => media.vp9.len(),
        Codec::Av1 => media.av1.len(),
        Codec::Opus => media.opus.len(),
    }
}

pub(super) fn depacketize(c: &mut Corpus, media: &Media) {
    for (codec, name) in [
        (Codec::H264, "h264"),
        (Codec::Vp8, "vp8"),
        (Codec::Vp9, "vp9"),
        (Codec::Av1, "av1"),
        (Codec::Opus, "opus"),
    ] {
        let target = format!("depacketize_{name}");
        // Raw payloads: the first frames, one seed per (mtu) packetization.
        for (mtu, frames) in [(1200usize, 3usize), (120, 2)] {
            let mut w = Writer::default();
            w.u8(0);
            for frame in 0..frames.min(frames_of(codec, media)) {
                let packets = packetize(codec, media, frame, mtu);
                for (k, p) in packets.iter().enumerate() {
                    w.u8(u8::from(k + 1 == packets.len())).bytes(p);
                }
            }
            c.add(&target, &format!("rtp-mtu{mtu}"), w.data);
        }
        // Round trips of the first (key)frame and a later frame.
        for frame in [0, 1] {
            let mut w = Writer::default();
            w.u8(1);
            match codec {
                Codec::H264 => {
                    let au = &media.h264[frame];
                    w.u8((au.len().min(8) - 1) as u8);
                    for nal in au.iter().take(8) {
                        w.u8(nal[0]).bytes(&nal[1..]);
                    }
                    w.raw(&[2, 90, 0, 1, 2, 1, 0, 2, 40]);
                }
                Codec::Vp8 => {
                    w.bytes(&media.vp8[frame])
                        .raw(&[0x0f, 0x34, 0x12, 200])
                        .raw(&[199; 8]);
                }
                Codec::Vp9 => {
                    w.bool(frame != 0)
                        .bytes(&media.vp9[frame])
                        .raw(&[0x0d, 0x34, 0x12, 150])
                        .raw(&[149; 8]);
                }
                Codec::Av1 => {
                    let list: Vec<Vec<u8>> =
                        media.av1[frame].iter().map(|o| unsized_obu(o)).collect();
                    w.u8((list.len().min(6) - 1) as u8).bool(frame == 0);
                    for obu in list.iter().take(6) {
                        let ext = obu[0] & 0x04 != 0;
                        w.u8(((obu[0] >> 3) & 0x0f) | if ext { 0x10 } else { 0 });
                        if ext {
                            w.u8(obu[1]);
                        }
                        w.bytes(&obu[1 + usize::from(ext)..]);
                    }
                    w.raw(&[100, 3, 1]);
                }
                Codec::Opus => continue,
            }
            c.add(&target, &format!("round-trip-{frame}"), w.data);
        }
    }
}

/// Ops of the `segmenter` target for `seconds` of `codec` + Opus, with a
/// sender report per track and a crash in the middle.
fn segmenter_ops(w: &mut Writer, codec: Codec, media: &Media, seconds: u32, mtu: usize) {
    let frames = (frames_of(codec, media) as u32).min(seconds * FPS) as usize;
    let audio = (media.opus.len() as u32).min(seconds * 50) as usize;
    let video_step = 90_000 / FPS;
    let mut events: Vec<(u32, bool, usize)> = Vec::new(); // (ms, video, index)
    for f in 0..frames {
        events.push((f as u32 * 1000 / FPS, true, f));
    }
    for a in 0..audio {
        events.push((a as u32 * 20, false, a));
    }
    events.sort();
    let mut last_ms = 0;
    let mut first = [true, true];
    let mut crashed = false;
    for (ms, video, index) in events {
        if !crashed && ms >= seconds * 500 {
            w.u8(6).u32(u32::MAX - 12345);
            crashed = true;
        }
        let slot = usize::from(video);
        if first[slot] {
            // A sender report: NTP time (seconds << 32), RTP time offset 0.
            w.u8(3)
                .bool(video)
                .u64((3_900_000_000u64 + u64::from(ms) / 1000) << 32)
                .u32(0);
        }
        let packets = if video {
            packetize(codec, media, index, mtu)
        } else {
            vec![media.opus[index].clone()]
        };
        for (k, p) in packets.iter().enumerate() {
            let ts_step = if first[slot] || k > 0 {
                0
            } else if video {
                video_step
            } else {
                960
            };
            let marker = video && k + 1 == packets.len();
            w.u8(if video { 0 } else { 1 })
                .u8(u8::from(marker))
                .u8(1)
                .u32(ts_step)
                .u8((ms - last_ms).min(255) as u8)
                .bytes(p);
            last_ms = ms;
        }
        first[slot] = false;
    }
    // Time passes: the interruption timeout.
    w.u8(2).u16(400);
}

pub(super) fn segmenter(c: &mut Corpus, media: &Media) {
    for (codec, index, name) in [
        (Codec::H264, 0u8, "h264"),
        (Codec::Vp8, 1, "vp8"),
        (Codec::Vp9, 2, "vp9"),
        (Codec::Av1, 3, "av1"),
    ] {
        // Both formats, gap merge 2 s, 2 s slices.
        let mut w = Writer::default();
        w.u8(index | (2 << 3) | (2 << 5)).u8(0);
        segmenter_ops(&mut w, codec, media, SECONDS, 1000);
        c.add("segmenter", &format!("{name}-hls-mp4"), w.data);
    }
    // MP4 only, cycles and the small size limit; HLS only, never split.
    let mut w = Writer::default();
    w.u8(0).u8(0x04 | 0x08 | 0x40);
    segmenter_ops(&mut w, Codec::H264, media, SECONDS, 300);
    c.add("segmenter", "h264-mp4-cycles", w.data);
    let mut w = Writer::default();
    w.u8(1 | (1 << 3) | (1 << 5)).u8(1);
    segmenter_ops(&mut w, Codec::Vp8, media, 2, 1200);
    c.add("segmenter", "vp8-hls-audio-only", w.data);
}

/// Records `codec` + Opus with the core and returns the files as they are
/// halfway through (a recording in progress).
fn files_in_progress(codec: Codec, media: &Media, format: Format) -> BTreeMap<String, Vec<u8>> {
    let t0 = Instant::now();
    let mut output = OutputConfig::new(format);
    output.slice = Duration::from_secs(2);
    let config = RecorderConfig::new(NamingContext::new("app", "room", "alice"), vec![output]);
    let mut recorder = Recorder::new(
        config,
        t0,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    recorder.add_track(t0, codec);
    recorder.add_track(t0, Codec::Opus);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let apply = |recorder: &mut Recorder, files: &mut BTreeMap<String, Vec<u8>>| {
        while let Some(command) = recorder.poll_command() {
            match command {
                Command::WriteFile { path, bytes } => {
                    files.insert(path, bytes);
                }
                Command::Append { path, bytes } => {
                    files.get_mut(&path).expect("written").extend(bytes)
                }
                Command::WriteAt {
                    path,
                    offset,
                    bytes,
                } => {
                    let f = files.get_mut(&path).expect("written");
                    f[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
                }
                _ => {}
            }
        }
    };
    let frames = frames_of(codec, media).min(FPS as usize * 5);
    let mut seq = [0u16; 2];
    for f in 0..frames {
        let at = t0 + Duration::from_millis(f as u64 * 1000 / u64::from(FPS));
        for a in 0..(50 / FPS as usize) {
            let index = f * (50 / FPS as usize) + a;
            if let Some(p) = media.opus.get(index) {
                seq[0] = seq[0].wrapping_add(1);
                recorder.handle_rtp(
                    at,
                    MediaKind::Audio,
                    RtpPacket {
                        ssrc: 1,
                        seq: SeqNo(seq[0]),
                        timestamp: RtpTime(index as u32 * 960),
                        marker: false,
                        payload: p.clone(),
                        arrival: at,
                    },
                );
            }
        }
        let packets = packetize(codec, media, f, 1000);
        for (k, p) in packets.iter().enumerate() {
            seq[1] = seq[1].wrapping_add(1);
            recorder.handle_rtp(
                at,
                MediaKind::Video,
                RtpPacket {
                    ssrc: 2,
                    seq: SeqNo(seq[1]),
                    timestamp: RtpTime(f as u32 * 90_000 / FPS),
                    marker: k + 1 == packets.len(),
                    payload: p.clone(),
                    arrival: at,
                },
            );
        }
        recorder.handle_timeout(at);
        apply(&mut recorder, &mut files);
    }
    files
}

pub(super) fn recover(c: &mut Corpus, media: &Media) {
    let mp4 = files_in_progress(Codec::H264, media, Format::Mp4);
    let (path, bytes) = mp4.iter().next().expect("an MP4 in progress");
    assert!(path.ends_with(".mp4"));
    let mut w = Writer::default();
    w.u8(0).raw(bytes);
    c.add("recover", "mp4-in-progress", w.data);
    // The same, torn inside its last fragment.
    let mut w = Writer::default();
    w.u8(0).raw(&bytes[..bytes.len() - 37]);
    c.add("recover", "mp4-torn", w.data);
    assert!(
        weir_recorder::recover::recover_mp4(&mut Cursor::new(bytes), bytes.len() as u64, path)
            .is_ok()
    );

    let hls = files_in_progress(Codec::Vp8, media, Format::Hls);
    let find = |suffix: &str| {
        hls.iter()
            .find(|(p, _)| p.ends_with(suffix))
            .map(|(p, b)| (p.clone(), b.clone()))
    };
    let (top_path, top) = hls
        .iter()
        .find(|(p, b)| p.ends_with(".m3u8") && b.windows(18).any(|w| w == b"#EXT-X-STREAM-INF:"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .expect("a multivariant playlist");
    let media_uri = weir_recorder::recover::hls_media_uri(&top).expect("media uri");
    let dir = top_path
        .rfind('/')
        .map_or("", |i| &top_path[..=i])
        .to_string();
    let playlist = hls
        .get(&format!("{dir}{media_uri}"))
        .expect("media playlist")
        .clone();
    let init = hls
        .iter()
        .find(|(p, _)| p.contains("_init") && p.ends_with(".mp4"))
        .map(|(_, b)| b.clone())
        .expect("an init segment");
    let (segment_path, segment) = find(".m4s").expect("a segment");
    let segment_name = segment_path.rsplit('/').next().expect("name").to_string();
    let mut w = Writer::default();
    w.u8(1).bytes(&init).raw(&segment);
    c.add("recover", "hls-segment", w.data);
    let mut w = Writer::default();
    let init_name = hls
        .keys()
        .find(|p| p.contains("_init"))
        .and_then(|p| p.rsplit('/').next())
        .expect("init")
        .to_string();
    w.u8(2)
        .bytes(&top)
        .bytes(&playlist)
        .string(&segment_name)
        .u16(1500)
        .string(&init_name);
    c.add("recover", "hls-playlists", w.data);
}
