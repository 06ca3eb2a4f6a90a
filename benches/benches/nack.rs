//! Answering NACKs through the room.
//!
//! `nack/room_answers_nack_from_track_history` (Weir's own egress, the
//! default): the NACK is answered from the track's packet history, the
//! packet sealed again by Weir on the forwarding SSRC.
//!
//! `nack/room_answers_nack_with_rtx` (str0m's egress): a subscriber behind a lossy downlink
//! (one forwarded packet in 20 lost) NACKs what it misses, as its str0m
//! does by itself; each such SRTCP datagram into
//! `weir_sfu::Room::handle_datagram`, with the `handle_timeout` pass it
//! makes due and the room's output drained, is timed: SRTCP open, the NACK (and any receiver report in the same
//! compound packet), the RTX cache lookup, the RTX packet built and SRTP
//! sealed. Throughput counts retransmitted packets.
//!
//! `cargo bench -p weir-benches --bench nack`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_benches::sim::{Downlink, NackStats, SimRoom};

/// Publisher packets per round (~10 of them lost and NACKed).
const ROUND: usize = 200;

fn nack(c: &mut Criterion) {
    for (name, own_egress) in [
        ("room_answers_nack_from_track_history", true),
        ("room_answers_nack_with_rtx", false),
    ] {
        bench_nack(c, name, own_egress);
    }
}

fn bench_nack(c: &mut Criterion, name: &str, own_egress: bool) {
    let mut group = c.benchmark_group("nack");
    let mut sim = SimRoom::with_egress(1, Downlink::LoseOneIn(20), own_egress);
    let mut all = NackStats::default();
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = NackStats::default();
            while total.retransmitted < iters {
                let round = sim.stream_with_losses(ROUND);
                assert!(round.retransmitted > 0, "NACKs were answered: {round:?}");
                total.elapsed += round.elapsed;
                total.datagrams += round.datagrams;
                total.retransmitted += round.retransmitted;
            }
            all.datagrams += total.datagrams;
            all.retransmitted += total.retransmitted;
            // Per retransmitted packet, scaled to the iterations asked for.
            total
                .elapsed
                .mul_f64(iters as f64 / total.retransmitted as f64)
        })
    });
    group.finish();
    // The retransmissions recovered the losses.
    let forwarded = sim.room().counters().rtp_forwarded;
    let received = sim.subscriber_received(0);
    assert!(sim.lost_downlink() > 0, "the downlink lost packets");
    assert!(
        received as f64 >= forwarded as f64 * 0.99,
        "the subscriber got {received} of {forwarded} forwarded packets"
    );
    eprintln!(
        "{name}: {forwarded} packets forwarded, {} lost on the downlink, {received} received; \
         {} NACK datagrams answered with {} retransmissions",
        sim.lost_downlink(),
        all.datagrams,
        all.retransmitted
    );
}

criterion_group!(benches, nack);
criterion_main!(benches);
