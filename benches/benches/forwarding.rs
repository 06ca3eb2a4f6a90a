//! The forwarding hot path, per publisher packet.
//!
//! - `forwarding/room_to_{1,50}_subscribers`: one SRTP datagram of a VP8
//!   publisher (1150-byte payload) into `weir_sfu::Room`, as the server's
//!   room task feeds it: `handle_datagram` (SRTP open, routing, the
//!   forwarder's decision and SSRC/sequence/timestamp rewrite per
//!   subscriber, the packet sealed by Weir's own egress into the
//!   subscriber's queue, one every 4 s per subscriber written through
//!   str0m for its sender reports) and the drive pass it makes due
//!   (queues flushed, one datagram per subscriber), outputs drained.
//!   Throughput counts forwarded packets (datagrams out).
//! - `forwarding/room_to_50_subscribers_by_frame`: the same 50-subscriber
//!   room fed a frame's packets ([`PACKETS_PER_FRAME`]) per pass, as the
//!   room task takes a burst that arrived together: the room forwards them
//!   subscriber by subscriber (`Room::fan_out`). Throughput counts
//!   forwarded packets, as above.
//! - `forwarding/room_to_50_subscribers_through_str0m`: the same with
//!   `own_egress` off: str0m's `write_rtp` (with its RTX cache copy) per
//!   subscriber and its timeout pass (str0m sends written packets only on
//!   a timeout input: the SRTP seal, one datagram per subscriber).
//! - `forwarding/forwarder_decide`: the rewrite decision alone
//!   (`weir_sfu::forwarder::Forwarder::decide`), no str0m.
//!
//! `cargo bench -p weir-benches --bench forwarding`
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_benches::sim::{Downlink, SimRoom, PACKETS_PER_FRAME, PAYLOAD_BYTES};
use weir_sfu::forwarder::{ForwardDecision, Forwarder, IncomingPacket};
use weir_sfu::keyframe::VideoCodec;
use weir_sfu::sequence::{ExtendedSeq, RtpTimestamp};

/// Publisher packets made (untimed) per round of timed inputs.
const CHUNK: u64 = 64;

fn room(c: &mut Criterion) {
    let mut group = c.benchmark_group("forwarding");
    for (subscribers, own_egress) in [(1usize, true), (50, true), (50, false)] {
        let mut sim = SimRoom::with_egress(subscribers, Downlink::Discard, own_egress);
        let suffix = if own_egress { "" } else { "_through_str0m" };
        eprintln!(
            "forwarding: {subscribers} subscriber(s), forwarded datagrams of {} bytes",
            sim.forwarded_datagram_len()
        );
        let forwarded_before = sim.room().counters().rtp_forwarded;
        let mut inputs = 0u64;
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(format!("room_to_{subscribers}_subscribers{suffix}"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let packets = sim.publisher_packets(n as usize);
                    for (at, datagram) in &packets {
                        sim.prepare(*at);
                        let start = Instant::now();
                        let sent = sim.forward(*at, datagram);
                        elapsed += start.elapsed();
                        assert_eq!(sent, subscribers, "one datagram out per subscriber");
                    }
                    sim.settle();
                    inputs += n;
                    left -= n;
                }
                elapsed
            })
        });
        let counters = sim.room().counters();
        eprintln!(
            "forwarding: {} of {} forwarded packets sealed by Weir",
            counters.rtp_sealed_by_weir, counters.rtp_forwarded
        );
        let forwarded = counters.rtp_forwarded - forwarded_before;
        assert_eq!(
            forwarded,
            inputs * subscribers as u64,
            "room counters agree"
        );
    }
    group.finish();
}

fn room_by_frame(c: &mut Criterion) {
    let subscribers = 50usize;
    let mut group = c.benchmark_group("forwarding");
    let mut sim = SimRoom::with_egress(subscribers, Downlink::Discard, true);
    let per_frame = PACKETS_PER_FRAME as usize;
    group.throughput(Throughput::Elements((subscribers * per_frame) as u64));
    group.bench_function("room_to_50_subscribers_by_frame", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let frames = left.min(CHUNK / PACKETS_PER_FRAME);
                let packets = sim.publisher_packets(frames as usize * per_frame);
                for frame in packets.chunks(per_frame) {
                    if let Some((last, _)) = frame.last() {
                        sim.prepare(*last);
                    }
                    let start = Instant::now();
                    let sent = sim.forward_burst(frame);
                    elapsed += start.elapsed();
                    assert_eq!(
                        sent,
                        subscribers * frame.len(),
                        "every packet of the frame to every subscriber"
                    );
                }
                sim.settle();
                left -= frames;
            }
            elapsed
        })
    });
    group.finish();
}

fn forwarder(c: &mut Criterion) {
    let mut group = c.benchmark_group("forwarding");
    let t0 = Instant::now();
    let mut keyframe = vec![0x10, 0x00, 0x9d, 0x01, 0x2a];
    keyframe.resize(PAYLOAD_BYTES, 0xAB);
    let mut delta = vec![0x10, 0x01];
    delta.resize(PAYLOAD_BYTES, 0xAB);
    let mut forwarder = Forwarder::new(true, 90_000, 1000, 5000);
    let packet = |seq: u64, payload| IncomingPacket {
        ssrc: 0x1234_5678,
        layer: None,
        seq: ExtendedSeq(seq),
        timestamp: RtpTimestamp((seq / 5 * 3000) as u32),
        arrival: t0 + Duration::from_micros(seq * 6667),
        payload,
        video_codec: Some(VideoCodec::Vp8),
    };
    assert!(matches!(
        forwarder.decide(packet(1 << 16, &keyframe)),
        ForwardDecision::Forward(_)
    ));
    let mut seq = 1u64 << 16;
    group.throughput(Throughput::Elements(1));
    group.bench_function("forwarder_decide", |b| {
        b.iter(|| {
            seq += 1;
            match forwarder.decide(packet(seq, black_box(&delta))) {
                ForwardDecision::Forward(rewritten) => rewritten,
                other => panic!("not forwarded: {other:?}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, room, room_by_frame, forwarder);
criterion_main!(benches);
