//! Real encoded media for the depacketizer benchmarks: short 1280x720
//! 30 fps clips made by ffmpeg (VP8, VP9, AV1 with real-time encoder
//! settings, ~2 Mbit/s) and Opus, packetized into RTP payloads the way
//! `weir-recorder`'s tests do (1200-byte MTU; the same packetizer as the
//! recorder's `mux` bench).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_recorder::{Codec, RtpPacket, RtpTime, SeqNo};

#[path = "../../crates/weir-recorder/tests/support/mod.rs"]
mod recorder_support;

/// RTP payload size limit of the packetizer.
pub const MTU: usize = 1200;

/// Whether ffmpeg is installed (`scripts/test.sh` installs it).
pub fn have_ffmpeg() -> bool {
    Command::new("ffmpeg").arg("-version").output().is_ok()
}

/// A clip's RTP packets, in sending order.
#[derive(Debug, Clone)]
pub struct Clip {
    pub codec: Codec,
    /// Frames (video access units, or Opus packets) in the clip.
    pub frames: usize,
    pub packets: Vec<RtpPacket>,
}

/// `seconds` of 1280x720 30 fps test pattern in `codec` (VP8, VP9 or AV1),
/// one keyframe every 30 frames, packetized.
pub fn video_clip(dir: &Path, codec: Codec, seconds: u32) -> Clip {
    let ivf = dir.join(format!("clip_{codec:?}.ivf"));
    let t = seconds.to_string();
    let mut args: Vec<&str> = vec![
        "-hide_banner",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=1280x720:rate=30",
        "-t",
        &t,
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        "2M",
    ];
    match codec {
        Codec::Vp8 => args.extend(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]),
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
        ]),
        Codec::Av1 => args.extend(["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8"]),
        Codec::H264 | Codec::Opus => panic!("not an IVF video codec: {codec:?}"),
    }
    let out = ivf.to_str().expect("UTF-8 path").to_owned();
    args.push(&out);
    let status = Command::new("ffmpeg")
        .args(&args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the {codec:?} clip");
    let bytes = std::fs::read(&ivf).expect("the IVF file");
    let frames = ivf_frames(&bytes);
    let t0 = Instant::now();
    let mut packets = Vec::new();
    let mut seq = 1000u16;
    for (n, frame) in frames.iter().enumerate() {
        let payloads = recorder_support::packetize(codec, std::slice::from_ref(frame), MTU);
        let last = payloads.len() - 1;
        for (k, payload) in payloads.into_iter().enumerate() {
            packets.push(RtpPacket {
                ssrc: 1,
                seq: SeqNo(seq),
                timestamp: RtpTime(3000 * n as u32),
                marker: k == last,
                payload,
                arrival: t0 + Duration::from_millis(33 * n as u64),
            });
            seq = seq.wrapping_add(1);
        }
    }
    Clip {
        codec,
        frames: frames.len(),
        packets,
    }
}

/// `seconds` of Opus (20 ms packets, 32 kbit/s stereo sine) as RTP.
pub fn opus_clip(dir: &Path, seconds: u32) -> Clip {
    let t0 = Instant::now();
    let packets: Vec<RtpPacket> = recorder_support::make_opus(dir, seconds)
        .into_iter()
        .enumerate()
        .map(|(n, payload)| RtpPacket {
            ssrc: 2,
            seq: SeqNo(n as u16),
            timestamp: RtpTime(960 * n as u32),
            marker: false,
            payload,
            arrival: t0 + Duration::from_millis(20 * n as u64),
        })
        .collect();
    Clip {
        codec: Codec::Opus,
        frames: packets.len(),
        packets,
    }
}

/// The frames of an IVF file.
fn ivf_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    let mut at = header_len;
    let mut frames = Vec::new();
    while at + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        frames.push(bytes[at + 12..at + 12 + size].to_vec());
        at += 12 + size;
    }
    frames
}
