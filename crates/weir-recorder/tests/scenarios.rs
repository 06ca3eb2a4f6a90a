//! Scenario tests of the segmenter on a simulated clock, faster than real
//! time: gap modes, cycle cuts, timestamp wrap, DTX, loss, SPS change,
//! size split, content modes. Every produced file is checked by ffmpeg.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use weir_recorder::{
    Codec, Content, FileCompleted, Format, GapMerge, NamingContext, OutputConfig, RecorderConfig,
};

fn config(outputs: Vec<OutputConfig>) -> RecorderConfig {
    RecorderConfig::new(NamingContext::new("app", "room", "bob"), outputs)
}

fn output(format: Format, gap: GapMerge) -> OutputConfig {
    let mut o = OutputConfig::new(format);
    o.gap_merge = gap;
    o.slice = Duration::from_secs(4);
    o
}

/// Records `media` with `plan`, stops at `stop` s, checks every file with
/// ffmpeg/ffprobe and returns the completed files.
fn record(
    media: &Media,
    cfg: RecorderConfig,
    plan: &SendPlan,
    stop: u64,
    dir: &std::path::Path,
) -> (Sim, Vec<FileCompleted>) {
    let mut sim = Sim::new(cfg, media.codec);
    let t0 = sim.t0;
    sim.send(schedule(media, plan, t0));
    sim.stop_at(Duration::from_secs(stop));
    let out = dir.join("out");
    sim.write_to(&out);
    for done in &sim.completed {
        let path = out.join(&done.object);
        decode_clean(&path);
        let probe = ffprobe(&path);
        let reported = done.duration.as_secs_f64();
        if (probe.duration - reported).abs() > 0.1 {
            for (p, b) in &sim.files {
                if p.ends_with("_media.m3u8") {
                    eprintln!("{p}:\n{}", String::from_utf8_lossy(b));
                }
            }
        }
        assert!(
            (probe.duration - reported).abs() <= 0.1,
            "{}: ffprobe {} vs reported {reported}",
            done.object,
            probe.duration
        );
        if probe.video_codec.is_some() {
            check_video_timeline(&path);
            assert_eq!(
                (probe.width, probe.height),
                (u64::from(done.width), u64::from(done.height))
            );
        }
        let stored: u64 = done.paths.iter().map(|p| sim.files[p].len() as u64).sum();
        assert_eq!(stored, done.size, "{}", done.object);
    }
    let completed = sim.completed.clone();
    (sim, completed)
}

fn durations(files: &[FileCompleted], format: Format) -> Vec<f64> {
    files
        .iter()
        .filter(|f| f.format == format)
        .map(|f| f.duration.as_secs_f64())
        .collect()
}

#[test]
fn gap_longer_than_window_makes_two_files() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 24, "320x240", 30);
    let gap = GapMerge::Window(Duration::from_secs(10));
    let plan = SendPlan {
        away: vec![(Duration::from_secs(4), Duration::from_secs(19))],
        ..Default::default()
    };
    let cfg = config(vec![output(Format::Mp4, gap), output(Format::Hls, gap)]);
    let (_, files) = record(&media, cfg, &plan, 25, dir.path());
    for format in [Format::Mp4, Format::Hls] {
        let d = durations(&files, format);
        assert_eq!(d.len(), 2, "{format:?}: {d:?}");
        assert!(
            (d[0] - 4.0).abs() < 0.2 && (d[1] - 5.0).abs() < 0.2,
            "{d:?}"
        );
    }
}

#[test]
fn new_file_mode_splits_at_every_interruption() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 10, "320x240", 30);
    let plan = SendPlan {
        away: vec![(Duration::from_secs(3), Duration::from_secs(6))],
        ..Default::default()
    };
    let cfg = config(vec![
        output(Format::Mp4, GapMerge::NewFile),
        output(Format::Hls, GapMerge::NewFile),
    ]);
    let (_, files) = record(&media, cfg, &plan, 11, dir.path());
    for format in [Format::Mp4, Format::Hls] {
        let d = durations(&files, format);
        assert_eq!(d.len(), 2, "{format:?}: {d:?}");
        assert!(
            (d[0] - 3.0).abs() < 0.2 && (d[1] - 4.0).abs() < 0.2,
            "{d:?}"
        );
    }
    // Completion of the first file is not held back in new_file mode.
    assert!(files[0].end_time < files[2].start_time || files.len() == 4);
}

#[test]
fn never_split_keeps_one_playlist_and_skips_the_gap() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 12, "320x240", 30);
    let plan = SendPlan {
        away: vec![(Duration::from_secs(4), Duration::from_secs(8))],
        ..Default::default()
    };
    let cfg = config(vec![output(Format::Hls, GapMerge::NeverSplit)]);
    let (sim, files) = record(&media, cfg, &plan, 13, dir.path());
    assert_eq!(files.len(), 1);
    let d = files[0].duration.as_secs_f64();
    assert!((d - 8.0).abs() < 0.2, "media time only: {d}");
    let wall = files[0]
        .end_time
        .duration_since(files[0].start_time)
        .unwrap()
        .as_secs_f64();
    assert!(
        (wall - 12.0).abs() < 0.2,
        "wall clock spans the gap: {wall}"
    );
    let playlist = &sim.files[&files[0].object.replace(".m3u8", "_media.m3u8")];
    eprintln!("{}", String::from_utf8_lossy(playlist));
    assert!(String::from_utf8_lossy(playlist).contains("#EXT-X-DISCONTINUITY"));
}

#[test]
fn cycle_cuts_at_keyframes_without_losing_media() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 10, "320x240", 15);
    let mut mp4 = output(Format::Mp4, GapMerge::NewFile);
    mp4.cycle = Some(Duration::from_secs(3));
    let mut hls = output(Format::Hls, GapMerge::NewFile);
    hls.cycle = Some(Duration::from_secs(4));
    let (sim, files) = record(
        &media,
        config(vec![mp4, hls]),
        &SendPlan::default(),
        11,
        dir.path(),
    );
    for format in [Format::Mp4, Format::Hls] {
        let d = durations(&files, format);
        assert!(d.len() >= 3, "{format:?}: {d:?}");
        let total: f64 = d.iter().sum();
        assert!(
            (total - 10.0).abs() < 0.1,
            "{format:?}: no media lost: {d:?}"
        );
        // Files follow each other on the wall clock.
        let f: Vec<&FileCompleted> = files.iter().filter(|c| c.format == format).collect();
        for w in f.windows(2) {
            let gap = w[1]
                .start_time
                .duration_since(w[0].end_time)
                .unwrap_or_default();
            assert!(gap < Duration::from_millis(40), "{format:?}: {gap:?}");
        }
    }
    assert!(sim.keyframe_requests >= 2, "a PLI before planned cuts");
}

#[test]
fn timestamps_and_sequence_numbers_wrap() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 6, "320x240", 30);
    let plan = SendPlan {
        video_ts: u32::MAX - 90_000,
        audio_ts: u32::MAX - 48_000,
        video_seq: u16::MAX - 50,
        audio_seq: u16::MAX - 10,
        ..Default::default()
    };
    let cfg = config(vec![
        output(Format::Mp4, GapMerge::NewFile),
        output(Format::Hls, GapMerge::NewFile),
    ]);
    let (_, files) = record(&media, cfg, &plan, 7, dir.path());
    assert_eq!(files.len(), 2);
    for f in &files {
        assert!((f.duration.as_secs_f64() - 6.0).abs() < 0.1, "{f:?}");
    }
}

#[test]
fn opus_dtx_gap_is_filled_and_keeps_the_timeline() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 6, "320x240", 30);
    let plan = SendPlan {
        dtx: vec![(Duration::from_secs(2), Duration::from_millis(3500))],
        ..Default::default()
    };
    let cfg = RecorderConfig {
        content: Content::Audio,
        ..config(vec![output(Format::Mp4, GapMerge::NewFile)])
    };
    let (_, files) = record(&media, cfg, &plan, 7, dir.path());
    assert_eq!(files.len(), 1);
    assert!(
        (files[0].duration.as_secs_f64() - 6.0).abs() < 0.1,
        "{:?}",
        files[0].duration
    );
    assert_eq!((files[0].width, files[0].height), (0, 0));
}

#[test]
fn loss_drops_to_the_next_keyframe_and_asks_for_one() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 6, "640x360", 30);
    // Lose a few video packets in the middle of the second GOP.
    let plan = SendPlan {
        lose_video: vec![150, 151, 400],
        ..Default::default()
    };
    let cfg = config(vec![output(Format::Mp4, GapMerge::NewFile)]);
    let (sim, files) = record(&media, cfg, &plan, 7, dir.path());
    assert_eq!(files.len(), 1);
    assert!(sim.keyframe_requests >= 2, "PLI at start and after loss");
    let stats = sim.recorder.stats();
    assert!(stats.frames > 0);
}

#[test]
fn sps_change_starts_a_new_init() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let mut media = make_h264_opus(dir.path(), 3, "320x240", 30);
    let second = make_h264_opus(dir.path(), 3, "640x360", 30);
    media.video.extend(second.video);
    media.audio.extend(second.audio);
    let cfg = config(vec![
        output(Format::Mp4, GapMerge::NewFile),
        output(Format::Hls, GapMerge::NewFile),
    ]);
    let (sim, files) = record(&media, cfg, &SendPlan::default(), 7, dir.path());
    let mp4: Vec<&FileCompleted> = files.iter().filter(|f| f.format == Format::Mp4).collect();
    assert_eq!(mp4.len(), 2, "MP4: a new file per resolution");
    assert_eq!((mp4[0].width, mp4[1].width), (320, 640));
    let hls: Vec<&FileCompleted> = files.iter().filter(|f| f.format == Format::Hls).collect();
    assert_eq!(hls.len(), 1);
    let text = String::from_utf8_lossy(&sim.files[&hls[0].object.replace(".m3u8", "_media.m3u8")])
        .to_string();
    assert_eq!(text.matches("#EXT-X-MAP").count(), 2, "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
    assert!((hls[0].duration.as_secs_f64() - 6.0).abs() < 0.1);
}

#[test]
fn files_split_before_the_size_limit() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 10, "640x360", 15);
    let limit = 100_000;
    let cfg = RecorderConfig {
        max_file_bytes: limit,
        ..config(vec![output(Format::Mp4, GapMerge::NewFile)])
    };
    let (_, files) = record(&media, cfg, &SendPlan::default(), 11, dir.path());
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        assert!(f.size <= limit, "{} > {limit}", f.size);
    }
    let total: f64 = files.iter().map(|f| f.duration.as_secs_f64()).sum();
    assert!((total - 10.0).abs() < 0.1);
}

#[test]
fn audio_arriving_late_is_aligned_by_sender_reports() {
    if !have_ffmpeg() {
        return;
    }
    use weir_recorder::{MediaKind, RtpTime, SenderReport};
    let dir = temp_dir();
    let media = make_h264_opus(dir.path(), 4, "320x240", 30);
    // Audio packets arrive 300 ms late; the sender reports say they belong
    // with the video of the same capture time.
    let plan = SendPlan {
        audio_delay: Duration::from_millis(300),
        ..Default::default()
    };
    let mut sim = Sim::new(
        config(vec![output(Format::Mp4, GapMerge::NewFile)]),
        Codec::H264,
    );
    let t0 = sim.t0;
    let ntp = |secs: f64| ((3_900_000_000.0 + secs) * 4_294_967_296.0) as u64;
    sim.recorder.handle_sender_report(
        t0,
        MediaKind::Video,
        SenderReport {
            ntp_time: ntp(0.0),
            rtp_time: RtpTime(plan.video_ts),
        },
    );
    sim.recorder.handle_sender_report(
        t0,
        MediaKind::Audio,
        SenderReport {
            ntp_time: ntp(0.0),
            rtp_time: RtpTime(plan.audio_ts),
        },
    );
    sim.send(schedule(&media, &plan, t0));
    sim.stop_at(Duration::from_secs(6));
    let out = dir.path().join("out");
    sim.write_to(&out);
    let path = out.join(&sim.completed[0].object);
    decode_clean(&path);
    let start = |stream: &str| -> f64 {
        let o = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_entries",
                "packet=pts_time",
                "-of",
                "csv=p=0",
                "-read_intervals",
                "%+#1",
            ])
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (v, a) = (start("v:0"), start("a:0"));
    assert!(
        (v - a).abs() <= 0.02,
        "A/V start aligned within 20 ms: video {v} audio {a}"
    );
}
