//! Media fixtures made by ffmpeg and checks of recordings by ffmpeg and
//! ffprobe (independent of our parser): a clean decode, the video packets,
//! and where a white flash and a beep are.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Whether ffmpeg and ffprobe are installed; says why a test is skipped
/// when not.
pub fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !ok {
        eprintln!("skipped: ffmpeg/ffprobe are not installed (scripts/test.sh installs them)");
    }
    ok
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn run(program: &str, args: &[&str], dir: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-hide_banner", "-v", "error", "-y"];
    all.extend_from_slice(args);
    let out = run("ffmpeg", &all, None);
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A publisher's media with a known alignment: video that is dim (a
/// darkened test pattern) except for a white frame at each of `flashes`,
/// and audio that is silent except for a 1 kHz beep starting at exactly
/// the same times.
pub struct FlashBeepFixture {
    /// H.264 Annex B: Constrained Baseline, no B-frames, a GOP of 1 s,
    /// SPS/PPS before every IDR.
    pub h264: PathBuf,
    /// Ogg Opus, 48 kHz mono, 20 ms packets, one per page.
    pub ogg: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: u32,
    /// Seconds from the start.
    pub flashes: Vec<f64>,
}

/// Makes the fixture in `dir`: `seconds` long, 1280x720 at 30 fps, flashes
/// and beeps (200 ms) at 2 s and 4 s.
pub fn flash_beep_fixture(dir: &Path, seconds: u32) -> FlashBeepFixture {
    let (width, height, fps) = (1280, 720, 30);
    let flashes = [2.0, 4.0];
    let frames: Vec<String> = flashes
        .iter()
        .map(|t| format!("eq(n\\,{})", (t * f64::from(fps)).round()))
        .collect();
    let video = format!(
        "testsrc2=size={width}x{height}:rate={fps},lutyuv=y=val*0.35,\
         drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='{}'",
        frames.join("+")
    );
    let beeps: Vec<String> = flashes
        .iter()
        .map(|t| format!("between(t\\,{t}\\,{})", t + 0.2))
        .collect();
    let audio = format!(
        "aevalsrc=exprs='if({}\\,0.8*sin(2*PI*1000*t)\\,0)':s=48000:d={seconds}",
        beeps.join("+")
    );
    let h264 = dir.join("flash.h264");
    let ogg = dir.join("beep.ogg");
    let gop = fps.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &video,
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        "1500k",
        "-maxrate",
        "2000k",
        "-bufsize",
        "1000k",
        "-bf",
        "0",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
        "-x264-params",
        "repeat-headers=1",
        "-f",
        "h264",
        path_str(&h264),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &audio,
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        "-frame_duration",
        "20",
        "-page_duration",
        "20000",
        path_str(&ogg),
    ]);
    FlashBeepFixture {
        h264,
        ogg,
        width,
        height,
        fps,
        seconds,
        flashes: flashes.to_vec(),
    }
}

/// `ffmpeg -v error -xerror` decodes every stream of `input` and prints
/// nothing; `Err` with what it printed otherwise. (Frames keep their own
/// timestamps: the null muxer's constant-rate conversion is not the check.)
pub fn decodes_cleanly(input: &Path) -> Result<(), String> {
    let out = run(
        "ffmpeg",
        &[
            "-hide_banner",
            "-v",
            "error",
            "-xerror",
            "-i",
            path_str(input),
            "-fps_mode",
            "passthrough",
            "-f",
            "null",
            "-",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() && stderr.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {stderr}", out.status))
    }
}

/// One video packet, per ffprobe.
#[derive(Debug, Clone)]
pub struct VideoPacket {
    pub pts: f64,
    pub dts: f64,
    pub keyframe: bool,
}

/// What ffprobe says about a recording.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `format.duration`, seconds.
    pub duration: f64,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    pub width: u32,
    pub height: u32,
    pub video_packets: Vec<VideoPacket>,
}

fn ffprobe_json(args: &[&str]) -> Value {
    let mut all = vec!["-v", "error", "-of", "json"];
    all.extend_from_slice(args);
    let out = run("ffprobe", &all, None);
    assert!(
        out.status.success(),
        "ffprobe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe prints JSON")
}

fn seconds(value: &Value) -> f64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn probe(input: &Path) -> Probe {
    let input = path_str(input);
    let info = ffprobe_json(&["-show_streams", "-show_format", input]);
    let streams = info["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("{input} has a video stream: {info}"));
    let audio = streams.iter().find(|s| s["codec_type"] == "audio");
    let packets = ffprobe_json(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,dts_time,flags",
        input,
    ]);
    let video_packets = packets["packets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| VideoPacket {
            pts: seconds(&p["pts_time"]),
            dts: seconds(&p["dts_time"]),
            keyframe: p["flags"].as_str().is_some_and(|f| f.starts_with('K')),
        })
        .collect();
    Probe {
        duration: seconds(&info["format"]["duration"]),
        video_codec: video["codec_name"].as_str().unwrap_or_default().to_string(),
        audio_codec: audio.and_then(|a| a["codec_name"].as_str().map(str::to_string)),
        width: video["width"].as_u64().unwrap_or_default() as u32,
        height: video["height"].as_u64().unwrap_or_default() as u32,
        video_packets,
    }
}

/// Where the flashes and beeps are in a decoded recording (seconds, on the
/// timeline ffmpeg gives both streams of one input).
#[derive(Debug, Clone, Default)]
pub struct FlashesAndBeeps {
    /// The first white frame of each flash (mean luma above 150).
    pub flashes: Vec<f64>,
    /// The end of each silence of at least 0.5 s (-30 dB), i.e. where a
    /// beep starts.
    pub beeps: Vec<f64>,
}

/// Decodes `inputs` (one file, or e.g. `["-r", "30", "-i", video, "-i",
/// audio]` for separate files) and finds flashes with `signalstats` and
/// beep onsets with `silencedetect`, in one ffmpeg run so that both use the
/// same timeline.
pub fn flashes_and_beeps(input_args: &[&str]) -> FlashesAndBeeps {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["-hide_banner", "-v", "error"];
    args.extend_from_slice(input_args);
    // Relative file names: filter arguments would need escaping otherwise.
    let (audio_input, video_input) = if input_args.iter().filter(|a| **a == "-i").count() > 1 {
        ("1:a:0", "0:v:0")
    } else {
        ("0:a:0", "0:v:0")
    };
    let graph = format!(
        "[{video_input}]signalstats,metadata=mode=print:key=lavfi.signalstats.YAVG:file=video.txt[v];\
         [{audio_input}]silencedetect=noise=-30dB:duration=0.5,ametadata=mode=print:file=audio.txt[a]"
    );
    args.extend_from_slice(&[
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-map",
        "[a]",
        "-f",
        "null",
        "-",
    ]);
    let out = run("ffmpeg", &args, Some(dir.path()));
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let mut found = FlashesAndBeeps::default();
    // "frame:N pts:P pts_time:T" then "lavfi.signalstats.YAVG=Y".
    let mut time = f64::NAN;
    let mut bright = false;
    for line in read("video.txt").lines() {
        if let Some(t) = line.split("pts_time:").nth(1) {
            time = t.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(y) = line.strip_prefix("lavfi.signalstats.YAVG=") {
            let now_bright = y.trim().parse::<f64>().is_ok_and(|y| y > 150.0);
            if now_bright && !bright {
                found.flashes.push(time);
            }
            bright = now_bright;
        }
    }
    for line in read("audio.txt").lines() {
        if let Some(t) = line.strip_prefix("lavfi.silence_end=") {
            found.beeps.extend(t.trim().parse::<f64>().ok());
        }
    }
    found
}

/// Pairs each flash with the nearest beep: `(flash, beep, beep - flash)`.
pub fn av_offsets(found: &FlashesAndBeeps) -> Vec<(f64, f64, f64)> {
    found
        .flashes
        .iter()
        .filter_map(|&flash| {
            found
                .beeps
                .iter()
                .copied()
                .min_by(|a, b| (a - flash).abs().total_cmp(&(b - flash).abs()))
                .map(|beep| (flash, beep, beep - flash))
        })
        .collect()
}
