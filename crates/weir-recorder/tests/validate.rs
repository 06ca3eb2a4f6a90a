//! End-to-end through the core: ffmpeg-made H.264/VP8 + Opus, packetized
//! into RTP, recorded on a simulated clock, then checked by ffprobe/ffmpeg.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use weir_recorder::{
    Codec, Format, GapMerge, MediaKind, NamingContext, OutputConfig, RecorderConfig,
};

fn config(outputs: Vec<OutputConfig>) -> RecorderConfig {
    RecorderConfig::new(NamingContext::new("app", "room", "alice"), outputs)
}

fn hls(slice: u64) -> OutputConfig {
    let mut o = OutputConfig::new(Format::Hls);
    o.slice = Duration::from_secs(slice);
    o
}

#[test]
fn h264_opus_to_mp4_and_hls_plays_in_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 8, "640x360", 30);
    let mut sim = Sim::new(
        config(vec![OutputConfig::new(Format::Mp4), hls(2)]),
        Codec::H264,
    );
    let t0 = sim.t0;
    sim.send(schedule(&media, &SendPlan::default(), t0));
    // Crash safety: the file as it is mid-recording (no finalization) is a
    // fragmented MP4 that plays up to its last flushed fragment.
    let in_progress = dir.path().join("in_progress");
    sim.write_to(&in_progress);
    let started = sim
        .started
        .iter()
        .find(|s| s.format == Format::Mp4)
        .unwrap();
    let partial = in_progress.join(&started.object);
    decode_clean(&partial);
    check_video_timeline(&partial);
    assert!(ffprobe(&partial).duration > 6.0);

    sim.stop_at(Duration::from_secs(9));
    let out = dir.path().join("out");
    sim.write_to(&out);

    assert_eq!(sim.completed.len(), 2, "{:?}", sim.completed);
    assert_eq!(sim.started.len(), 2);
    assert!(sim.keyframe_requests >= 1, "a PLI at start");
    for done in &sim.completed {
        let path = out.join(&done.object);
        decode_clean(&path);
        let probe = ffprobe(&path);
        assert_eq!((probe.width, probe.height), (640, 360), "{}", done.object);
        assert_eq!((done.width, done.height), (640, 360));
        assert_eq!(probe.audio_codec.as_deref(), Some("opus"));
        assert_eq!(probe.video_codec.as_deref(), Some("h264"));
        let reported = done.duration.as_secs_f64();
        assert!(
            (probe.duration - reported).abs() <= 0.1,
            "{}: ffprobe {} vs reported {}",
            done.object,
            probe.duration,
            reported
        );
        assert!((reported - 8.0).abs() < 0.25, "duration {reported}");
        assert_eq!(
            done.end_time.duration_since(done.start_time).unwrap(),
            done.duration
        );
        check_video_timeline(&path);
        let stored: u64 = done.paths.iter().map(|p| sim.files[p].len() as u64).sum();
        assert_eq!(stored, done.size, "file_size == stored bytes");
    }
    // The finalized MP4 is a regular one: the fragments are hidden inside
    // one big mdat, the sample tables are in a trailing moov.
    let mp4 = sim
        .completed
        .iter()
        .find(|c| c.format == Format::Mp4)
        .unwrap();
    assert_eq!(
        top_level_boxes(&sim.files[&mp4.object]),
        ["ftyp", "free", "mdat", "moov"]
    );

    // HLS: playlist rules and keyframe-aligned segments.
    let hls = sim
        .completed
        .iter()
        .find(|c| c.format == Format::Hls)
        .unwrap();
    let media_playlist = hls.object.replace(".m3u8", "_media.m3u8");
    let text = String::from_utf8(sim.files[&media_playlist].clone()).unwrap();
    for tag in [
        "#EXT-X-VERSION:7",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-MAP:URI=",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-ENDLIST",
    ] {
        assert!(text.contains(tag), "missing {tag} in\n{text}");
    }
    let target: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .unwrap()
        .parse()
        .unwrap();
    let extinf: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| v.trim_end_matches(',').parse().unwrap())
        .collect();
    assert!(extinf.len() >= 3, "{text}");
    assert!(extinf.iter().all(|d| d.round() <= target), "{text}");
    assert!((extinf.iter().sum::<f64>() - hls.duration.as_secs_f64()).abs() < 0.05);
    let init = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .unwrap()
        .trim_end_matches('"');
    let dir_of = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap();
    let base = dir_of(&hls.object);
    let init_bytes = &sim.files[&format!("{base}/{init}")];
    for seg in text.lines().filter(|l| l.ends_with(".m4s")) {
        let mut joined = init_bytes.clone();
        joined.extend_from_slice(&sim.files[&format!("{base}/{seg}")]);
        let p = out.join(format!("joined_{seg}.mp4"));
        std::fs::write(&p, joined).unwrap();
        check_video_timeline(&p);
    }
    let multivariant = String::from_utf8(sim.files[&hls.object].clone()).unwrap();
    assert!(
        multivariant.contains("CODECS=\"avc1.42c01e,opus\""),
        "{multivariant}"
    );
    assert!(
        multivariant.contains("RESOLUTION=640x360"),
        "{multivariant}"
    );
}

#[test]
fn vp8_opus_to_mp4_plays_in_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_vp8_opus(dir.path(), 4);
    let mut sim = Sim::new(config(vec![OutputConfig::new(Format::Mp4)]), Codec::Vp8);
    let t0 = sim.t0;
    sim.send(schedule(&media, &SendPlan::default(), t0));
    sim.stop_at(Duration::from_secs(5));
    let out = dir.path().join("out");
    sim.write_to(&out);
    assert_eq!(sim.completed.len(), 1);
    let done = &sim.completed[0];
    let path = out.join(&done.object);
    decode_clean(&path);
    let probe = ffprobe(&path);
    assert_eq!(probe.video_codec.as_deref(), Some("vp8"));
    assert_eq!((probe.width, probe.height), (320, 240));
    assert!((probe.duration - done.duration.as_secs_f64()).abs() <= 0.1);
    check_video_timeline(&path);
}

#[test]
fn merged_gap_keeps_one_file_with_discontinuity_and_wall_clock() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 12, "320x240", 30);
    let mut mp4 = OutputConfig::new(Format::Mp4);
    mp4.gap_merge = GapMerge::Window(Duration::from_secs(10));
    let mut h = hls(4);
    h.gap_merge = GapMerge::Window(Duration::from_secs(10));
    let mut sim = Sim::new(config(vec![mp4, h]), Codec::H264);
    let plan = SendPlan {
        away: vec![(Duration::from_secs(4), Duration::from_secs(7))],
        ..Default::default()
    };
    let t0 = sim.t0;
    sim.send(schedule(&media, &plan, t0));
    sim.stop_at(Duration::from_secs(13));
    let out = dir.path().join("out");
    sim.write_to(&out);
    assert_eq!(
        sim.completed.len(),
        2,
        "one file per format: {:?}",
        sim.completed
    );
    for done in &sim.completed {
        let path = out.join(&done.object);
        decode_clean(&path);
        check_video_timeline(&path);
        let reported = done.duration.as_secs_f64();
        assert!((reported - 12.0).abs() < 0.3, "{}: {reported}", done.object);
        assert_eq!(
            done.end_time.duration_since(done.start_time).unwrap(),
            done.duration
        );
        let probe = ffprobe(&path);
        if (probe.duration - reported).abs() > 0.1 {
            for (p, b) in &sim.files {
                if p.ends_with(".m3u8") {
                    eprintln!("{p}:\n{}", String::from_utf8_lossy(b));
                }
            }
        }
        assert!(
            (probe.duration - reported).abs() <= 0.1,
            "{}: {} vs {reported}",
            done.object,
            probe.duration
        );
    }
    let hls = sim
        .completed
        .iter()
        .find(|c| c.format == Format::Hls)
        .unwrap();
    let text =
        String::from_utf8(sim.files[&hls.object.replace(".m3u8", "_media.m3u8")].clone()).unwrap();
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
}

fn vp9_or_av1_to_mp4_and_hls(codec: Codec, name: &str) {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_ivf_opus(dir.path(), 4, codec);
    let mut sim = Sim::new(config(vec![OutputConfig::new(Format::Mp4), hls(2)]), codec);
    let t0 = sim.t0;
    sim.send(schedule(&media, &SendPlan::default(), t0));
    sim.stop_at(Duration::from_secs(5));
    let out = dir.path().join("out");
    sim.write_to(&out);
    assert_eq!(sim.completed.len(), 2, "{:?}", sim.completed);
    for done in &sim.completed {
        let path = out.join(&done.object);
        decode_clean(&path);
        let probe = ffprobe(&path);
        assert_eq!(probe.video_codec.as_deref(), Some(name));
        assert_eq!((probe.width, probe.height), (320, 240));
        assert_eq!((done.width, done.height), (320, 240));
        assert!((probe.duration - done.duration.as_secs_f64()).abs() <= 0.1);
        check_video_timeline(&path);
    }
    let hls = sim
        .completed
        .iter()
        .find(|c| c.format == Format::Hls)
        .unwrap();
    let multivariant = String::from_utf8(sim.files[&hls.object].clone()).unwrap();
    let prefix = if codec == Codec::Vp9 {
        "CODECS=\"vp09."
    } else {
        "CODECS=\"av01."
    };
    assert!(multivariant.contains(prefix), "{multivariant}");
}

#[test]
fn vp9_opus_to_mp4_and_hls_plays_in_ffmpeg() {
    vp9_or_av1_to_mp4_and_hls(Codec::Vp9, "vp9");
}

#[test]
fn av1_opus_to_mp4_and_hls_plays_in_ffmpeg() {
    vp9_or_av1_to_mp4_and_hls(Codec::Av1, "av1");
}

#[test]
fn a_crashed_mp4_is_recovered_into_a_regular_file_losing_at_most_the_torn_fragment() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 8, "640x360", 30);
    let mut sim = Sim::new(config(vec![OutputConfig::new(Format::Mp4)]), Codec::H264);
    let t0 = sim.t0;
    sim.send(schedule(&media, &SendPlan::default(), t0));
    // The process dies here: no stop, no finalization; the last fragment
    // was being written when it died (a torn box at the end).
    let started = sim.started.first().expect("a file started").clone();
    let mut bytes = sim.files.get(&started.object).expect("the file").clone();
    let flushed = bytes.len() as u64;
    bytes.extend_from_slice(&[0, 0, 0x40, 0, b'm', b'o', b'o', b'f']);
    bytes.extend_from_slice(&[7u8; 300]);

    let recovered = weir_recorder::recover::recover_mp4(
        &mut std::io::Cursor::new(&bytes),
        bytes.len() as u64,
        &started.object,
    )
    .expect("recovers");
    assert_eq!(recovered.keep_len, flushed, "exactly the torn tail is cut");
    bytes.truncate(recovered.keep_len as usize);
    for command in recovered.commands {
        match command {
            weir_recorder::config::Command::WriteAt {
                offset, bytes: b, ..
            } => {
                let o = offset as usize;
                bytes[o..o + b.len()].copy_from_slice(&b);
            }
            weir_recorder::config::Command::Append { bytes: b, .. } => bytes.extend(b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(bytes.len() as u64, recovered.size);
    assert_eq!(
        top_level_boxes(&bytes),
        vec!["ftyp", "free", "mdat", "moov"],
        "a regular MP4"
    );
    let path = dir.path().join("recovered.mp4");
    std::fs::write(&path, &bytes).expect("write");
    decode_clean(&path);
    check_video_timeline(&path);
    let probe = ffprobe(&path);
    assert_eq!((probe.width, probe.height), (640, 360));
    assert_eq!((recovered.width, recovered.height), (640, 360));
    let reported = recovered.duration.as_secs_f64();
    assert!(
        (probe.duration - reported).abs() <= 0.1,
        "ffprobe {} vs recovered {reported}",
        probe.duration
    );
    // Sent 8 s; the unflushed last fragment (about 1 s) is what is lost.
    assert!(reported > 6.5, "recovered {reported} s");

    // Not a recording: refused, never a panic.
    for junk in [&b""[..], &b"garbage"[..], &[0u8; 64][..]] {
        assert!(weir_recorder::recover::recover_mp4(
            &mut std::io::Cursor::new(junk),
            junk.len() as u64,
            "x.mp4"
        )
        .is_err());
    }
}

#[test]
fn a_crashed_hls_recording_is_finished_with_its_complete_segments() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 8, "640x360", 30);
    let mut sim = Sim::new(config(vec![hls(4)]), Codec::H264);
    let t0 = sim.t0;
    // The process dies 7.5 s in: the segment of [4 s, 8 s) is open, with
    // its first fragments flushed.
    let packets: Vec<_> = schedule(&media, &SendPlan::default(), t0)
        .into_iter()
        .filter(|p| p.at < Duration::from_millis(7500))
        .collect();
    sim.send(packets);
    let started = sim.started.first().expect("a file started").clone();
    let top = sim
        .files
        .get(&started.object)
        .expect("multivariant")
        .clone();
    let base = match started.object.rfind('/') {
        Some(i) => started.object[..=i].to_string(),
        None => String::new(),
    };
    let media_uri = weir_recorder::recover::hls_media_uri(&top).expect("a variant");
    let playlist = sim
        .files
        .get(&format!("{base}{media_uri}"))
        .expect("media playlist")
        .clone();
    assert!(!String::from_utf8_lossy(&playlist).contains("#EXT-X-ENDLIST"));
    // The segment being written at the crash: not listed yet, its complete
    // fragments are kept (plus a torn one appended here).
    let listed = String::from_utf8_lossy(&playlist).to_string();
    let open_path = sim
        .files
        .keys()
        .find(|p| p.ends_with(".m4s") && !listed.contains(p.rsplit('/').next().unwrap_or("")))
        .cloned()
        .expect("a segment in progress");
    let mut open_bytes = sim.files.get(&open_path).expect("segment").clone();
    let flushed = open_bytes.len() as u64;
    open_bytes.extend_from_slice(&[0, 0, 0x20, 0, b'm', b'o', b'o', b'f', 1, 2, 3]);
    let init_path = sim
        .files
        .keys()
        .find(|p| p.ends_with("_init1.mp4"))
        .cloned()
        .expect("an init segment");
    let kept = weir_recorder::recover::recover_segment(
        sim.files.get(&init_path).expect("init"),
        &mut std::io::Cursor::new(&open_bytes),
        open_bytes.len() as u64,
    )
    .expect("scans")
    .expect("complete fragments");
    assert_eq!(kept.keep_len, flushed, "only the torn fragment is cut");
    open_bytes.truncate(kept.keep_len as usize);
    sim.files.insert(open_path.clone(), open_bytes);
    let open_uri = open_path.rsplit('/').next().unwrap_or_default().to_string();
    let init_uri = init_path.rsplit('/').next().unwrap_or_default().to_string();
    let recovered = weir_recorder::recover::recover_hls(
        &top,
        &playlist,
        Some(weir_recorder::recover::TrailingSegment {
            uri: &open_uri,
            duration: kept.duration,
            init_uri: &init_uri,
        }),
    )
    .expect("recovers");
    assert!(
        recovered.paths.contains(&open_uri),
        "the open segment is listed"
    );
    let text = String::from_utf8(recovered.media_playlist.clone()).expect("UTF-8");
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    assert_eq!((recovered.width, recovered.height), (640, 360));
    for path in &recovered.paths {
        assert!(
            sim.files.contains_key(&format!("{base}{path}")),
            "{path} exists"
        );
    }
    sim.files
        .insert(format!("{base}{media_uri}"), recovered.media_playlist);
    let out = dir.path().join("out");
    sim.write_to(&out);
    let path = out.join(&started.object);
    decode_clean(&path);
    let probe = ffprobe(&path);
    let reported = recovered.duration.as_secs_f64();
    assert!(
        (probe.duration - reported).abs() <= 0.2,
        "ffprobe {} vs {reported}",
        probe.duration
    );
    assert!(reported >= 6.0, "recovered {reported} s of 7.5");
    assert!(weir_recorder::recover::recover_hls(b"junk", b"junk", None).is_err());
}

#[test]
fn a_microphone_coming_on_after_the_camera_is_declared_in_every_init() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 8, "640x360", 30);
    let mut sim = Sim::new(
        config(vec![hls(2), OutputConfig::new(Format::Mp4)]),
        Codec::H264,
    );
    let t0 = sim.t0;
    // The publisher's microphone comes on 3 s after its camera.
    let plan = SendPlan {
        dtx: vec![(Duration::ZERO, Duration::from_secs(3))],
        ..SendPlan::default()
    };
    sim.send(schedule(&media, &plan, t0));
    sim.stop_at(Duration::from_secs(9));
    let out = dir.path().join("out");
    sim.write_to(&out);
    assert_eq!(sim.completed.len(), 2, "{:?}", sim.completed);
    for done in &sim.completed {
        let path = out.join(&done.object);
        decode_clean(&path);
        let probe = ffprobe(&path);
        assert_eq!(
            probe.audio_codec.as_deref(),
            Some("opus"),
            "{}",
            done.object
        );
        assert_eq!(probe.video_codec.as_deref(), Some("h264"));
        check_video_timeline(&path);
    }
}

/// How the recording of a publisher whose camera stops before its
/// microphone ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// The job is stopped just after the audio.
    Stop,
    /// The publisher is gone: the interruption pauses the files and the
    /// merge window (2 s) closes them.
    WindowExpires,
}

/// The camera stops `audio_ms - 4 000` ms before the microphone: the
/// audio is kept whole, the last picture stays on until it ends, and both
/// files (HLS, MP4) report what ffprobe sees, the same for both.
fn camera_stops_first(audio_ms: u64, ending: Ending) {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 8, "320x240", 30);
    let mut outputs = vec![hls(2), OutputConfig::new(Format::Mp4)];
    if let Ending::WindowExpires = ending {
        for output in &mut outputs {
            output.gap_merge = GapMerge::Window(Duration::from_secs(2));
        }
    }
    let mut sim = Sim::new(config(outputs), Codec::H264);
    let t0 = sim.t0;
    let packets: Vec<_> = schedule(&media, &SendPlan::default(), t0)
        .into_iter()
        .filter(|p| {
            let end = match p.kind {
                MediaKind::Video => Duration::from_millis(4_000),
                MediaKind::Audio => Duration::from_millis(audio_ms),
            };
            p.at < end
        })
        .collect();
    sim.send(packets);
    match ending {
        Ending::Stop => sim.stop_at(Duration::from_millis(audio_ms + 50)),
        Ending::WindowExpires => {
            // Silence 3 s: an interruption; the window closes 2 s later.
            sim.advance(Duration::from_millis(audio_ms + 6_000));
            assert_eq!(sim.completed.len(), 2, "closed by the window");
            sim.stop_at(Duration::from_millis(audio_ms + 6_500));
        }
    }
    let out = dir.path().join("out");
    sim.write_to(&out);
    assert_eq!(sim.completed.len(), 2, "{:?}", sim.completed);
    let expected = audio_ms as f64 / 1000.0;
    let probed: Vec<f64> = sim
        .completed
        .iter()
        .map(|done| {
            let path = out.join(&done.object);
            decode_clean(&path);
            check_video_timeline(&path);
            let probe = ffprobe(&path);
            let reported = done.duration.as_secs_f64();
            assert!(
                (probe.duration - reported).abs() <= 0.03,
                "{ending:?}: {}: ffprobe {} vs reported {reported}",
                done.object,
                probe.duration
            );
            assert!(
                (reported - expected).abs() <= 0.05,
                "{ending:?}: {}: {reported} s, the audio lasted {expected} s",
                done.object
            );
            probe.duration
        })
        .collect();
    assert!(
        (probed[0] - probed[1]).abs() <= 0.03,
        "{ending:?}: HLS and MP4 last the same: {probed:?}"
    );
}

#[test]
fn audio_after_the_last_video_frame_is_kept_when_the_job_stops() {
    camera_stops_first(4_300, Ending::Stop);
}

#[test]
fn audio_after_the_last_video_frame_is_kept_when_the_window_closes_the_file() {
    camera_stops_first(4_300, Ending::WindowExpires);
}

#[test]
fn a_camera_stopped_seconds_before_the_microphone_is_frozen_to_the_end() {
    camera_stops_first(6_500, Ending::WindowExpires);
}
