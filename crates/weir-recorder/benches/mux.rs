//! Depacketize + mux throughput (frames per second of CPU), on a 720p30
//! H.264 + Opus clip made by ffmpeg, packetized into RTP (1200-byte MTU).
//!
//! `cargo bench -p weir-recorder --bench mux`
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_recorder::assembler::FrameAssembler;
use weir_recorder::{
    Codec, Format, MediaKind, NamingContext, OutputConfig, Recorder, RecorderConfig,
};

fn config() -> RecorderConfig {
    RecorderConfig::new(
        NamingContext::new("a", "r", "u"),
        vec![
            OutputConfig::new(Format::Mp4),
            OutputConfig::new(Format::Hls),
        ],
    )
}

fn bench(c: &mut Criterion) {
    if !support::have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let media = support::make_h264_opus(dir.path(), 4, "1280x720", 30);
    let t0 = Instant::now();
    let packets = support::schedule(&media, &support::SendPlan::default(), t0);
    let frames = (media.video.len() + media.audio.len()) as u64;
    let video: Vec<_> = packets
        .iter()
        .filter(|p| p.kind == MediaKind::Video)
        .cloned()
        .collect();

    let mut group = c.benchmark_group("recorder");
    group.throughput(Throughput::Elements(media.video.len() as u64));
    group.bench_function("depacketize_h264_720p", |b| {
        b.iter(|| {
            let mut assembler = FrameAssembler::new(Codec::H264, Duration::from_millis(500));
            let mut out = Vec::new();
            for p in &video {
                assembler.push(p.packet.clone(), &mut out);
            }
            assert!(out.len() >= media.video.len() - 1);
        });
    });
    group.throughput(Throughput::Elements(frames));
    group.bench_function("depacketize_and_mux_720p_h264_opus_mp4_and_hls", |b| {
        b.iter(|| {
            let mut recorder = Recorder::new(config(), t0, SystemTime::UNIX_EPOCH);
            recorder.add_track(t0, Codec::H264);
            recorder.add_track(t0, Codec::Opus);
            let mut bytes = 0usize;
            for p in &packets {
                let now = t0 + p.at;
                if recorder.poll_timeout().is_some_and(|t| t <= now) {
                    recorder.handle_timeout(now);
                }
                recorder.handle_rtp(now, p.kind, p.packet.clone());
                while let Some(cmd) = recorder.poll_command() {
                    if let weir_recorder::Command::Append { bytes: b, .. } = cmd {
                        bytes += b.len();
                    }
                }
            }
            recorder.stop(t0 + Duration::from_secs(5));
            while recorder.poll_command().is_some() {}
            bytes
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
