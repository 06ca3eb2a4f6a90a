//! Depacketizers of the recorder: RTP packets of one track through
//! `weir_recorder::assembler::FrameAssembler` (reorder window, timestamp
//! unwrapping, the codec's depacketizer) into complete frames in MP4
//! sample form. Real encoder output (ffmpeg): 1280x720 30 fps VP8, VP9 and
//! AV1 at ~2 Mbit/s, and Opus. Throughput counts RTP packets.
//!
//! H.264 and the muxer (MP4 + HLS segmenter) are in the recorder's own
//! bench: `cargo bench -p weir-recorder --bench mux`.
//!
//! `cargo bench -p weir-benches --bench depacketize`
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weir_benches::media::{have_ffmpeg, opus_clip, video_clip, Clip};
use weir_recorder::assembler::FrameAssembler;
use weir_recorder::Codec;

fn depacketize(c: &mut Criterion) {
    if !have_ffmpeg() {
        eprintln!("SKIPPED depacketize: ffmpeg is not installed (scripts/test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clips: Vec<(&str, Clip)> = vec![
        ("vp8_720p", video_clip(dir.path(), Codec::Vp8, 2)),
        ("vp9_720p", video_clip(dir.path(), Codec::Vp9, 2)),
        ("av1_720p", video_clip(dir.path(), Codec::Av1, 2)),
        ("opus", opus_clip(dir.path(), 4)),
    ];
    let mut group = c.benchmark_group("depacketize");
    for (name, clip) in &clips {
        eprintln!(
            "depacketize {name}: {} packets, {} frames",
            clip.packets.len(),
            clip.frames
        );
        group.throughput(Throughput::Elements(clip.packets.len() as u64));
        group.bench_function(*name, |b| {
            b.iter_batched(
                || clip.packets.clone(),
                |packets| {
                    let mut assembler = FrameAssembler::new(clip.codec, Duration::from_millis(500));
                    let mut frames = Vec::with_capacity(clip.frames);
                    for packet in packets {
                        assembler.push(packet, &mut frames);
                    }
                    assembler.flush(&mut frames);
                    assert_eq!(frames.len(), clip.frames, "every frame assembled");
                    assert_eq!(assembler.stats().malformed, 0, "no malformed payload");
                    frames
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, depacketize);
criterion_main!(benches);
