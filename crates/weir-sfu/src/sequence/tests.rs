use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn packet(ssrc: u32, seq: u64, ts: u32, at: Instant) -> SourcePacket {
    SourcePacket {
        ssrc,
        seq: ExtendedSeq(seq),
        timestamp: RtpTimestamp(ts),
        arrival: at,
    }
}

#[test]
fn first_packet_maps_to_the_initial_values() {
    let now = Instant::now();
    let mut rw = SequenceRewriter::new(90_000, 65_530, 4_000_000_000);
    let out = rw.rewrite(packet(1, 500, 12345, now)).expect("forwarded");
    assert_eq!(out.seq.wire(), 65_530);
    assert_eq!(out.timestamp, RtpTimestamp(4_000_000_000));
}

#[test]
fn a_new_source_continues_numbering_and_advances_time() {
    let start = Instant::now();
    let mut rw = SequenceRewriter::new(90_000, 100, 1000);
    for i in 0..10u64 {
        rw.rewrite(packet(1, 50 + i, 3000 * i as u32, start))
            .expect("forwarded");
    }
    // Publisher restarts 2 s later with a new SSRC and random numbering.
    let later = start + Duration::from_secs(2);
    let out = rw
        .rewrite(packet(2, 40_000, 7_777_777, later))
        .expect("forwarded");
    assert_eq!(out.seq.0, 110);
    assert_eq!(out.timestamp, RtpTimestamp(1000 + 27_000 + 180_000));
    let next = rw
        .rewrite(packet(2, 40_001, 7_777_777 + 3000, later))
        .expect("forwarded");
    assert_eq!(next.seq.0, 111);
    assert_eq!(next.timestamp, RtpTimestamp(1000 + 27_000 + 183_000));
}

#[test]
fn a_new_source_after_hours_still_advances_time() {
    // Found by fuzz/ (forwarder): after a pause of more than 2^31 ticks
    // (6.6 h at 90 kHz) the new source's timestamp stepped backwards.
    let start = Instant::now();
    for hours in [7, 14, 1000] {
        let mut rw = SequenceRewriter::new(90_000, 100, 0);
        let first = rw.rewrite(packet(1, 10, 0, start)).expect("forwarded");
        let later = start + Duration::from_secs(hours * 3600);
        let out = rw.rewrite(packet(2, 500, 77, later)).expect("forwarded");
        assert_eq!(out.seq, first.seq.next());
        assert!(out.timestamp.delta_since(first.timestamp) > 0, "{hours} h");
    }
}

#[test]
fn late_packets_of_the_previous_source_are_dropped() {
    let now = Instant::now();
    let mut rw = SequenceRewriter::new(48_000, 0, 0);
    rw.rewrite(packet(1, 10, 0, now)).expect("forwarded");
    rw.rewrite(packet(2, 900, 0, now)).expect("forwarded");
    // Back to SSRC 1 counts as another switch; but an old packet of the new
    // mapping's SSRC before its first sequence is refused.
    assert_eq!(
        rw.rewrite(packet(2, 899, 0, now)),
        Err(RewriteDrop::BeforeSwitch)
    );
}

#[test]
fn reset_source_with_the_same_ssrc_renumbers_continuously() {
    let now = Instant::now();
    let mut rw = SequenceRewriter::new(48_000, 7, 0);
    rw.rewrite(packet(5, 100, 960, now)).expect("forwarded");
    rw.reset_source();
    // Same SSRC, but the publisher's numbering jumped (republish).
    let out = rw
        .rewrite(packet(5, 30_000, 5, now + Duration::from_millis(20)))
        .expect("forwarded");
    assert_eq!(out.seq.0, 8);
}

#[test]
fn unwrapper_extends_across_the_16_bit_wrap() {
    let mut u = SeqUnwrapper::default();
    let a = u.unwrap(65_534);
    let b = u.unwrap(65_535);
    let c = u.unwrap(0);
    let d = u.unwrap(65_535); // reordered
    let e = u.unwrap(1);
    assert_eq!(b.0, a.0 + 1);
    assert_eq!(c.0, a.0 + 2);
    assert_eq!(d.0, b.0);
    assert_eq!(e.0, a.0 + 3);
}

#[test]
fn timestamp_delta_is_signed_across_the_wrap() {
    assert_eq!(RtpTimestamp(5).delta_since(RtpTimestamp(u32::MAX - 4)), 10);
    assert_eq!(RtpTimestamp(u32::MAX - 4).delta_since(RtpTimestamp(5)), -10);
}

proptest! {
    /// Whatever the publisher's starting numbers and however many restarts,
    /// in-order input produces outgoing wire sequence numbers that advance by
    /// exactly one (mod 2^16) and timestamps that never go backwards
    /// (mod 2^32), across both wraps.
    #[test]
    fn output_is_continuous_across_wraps_and_restarts(
        initial_seq in any::<u16>(),
        initial_ts in any::<u32>(),
        sources in prop::collection::vec((any::<u32>(), any::<u16>(), any::<u32>(), 1usize..300), 1..6),
    ) {
        let start = Instant::now();
        let mut rw = SequenceRewriter::new(90_000, initial_seq, initial_ts);
        let mut unwrapper_per_source = Vec::new();
        let mut prev: Option<Rewritten> = None;
        let mut clock = start;
        for (index, (ssrc, first_seq, first_ts, count)) in sources.iter().enumerate() {
            // Distinct SSRC per source so each counts as a restart.
            let ssrc = ssrc.wrapping_add(index as u32);
            let mut unwrapper = SeqUnwrapper::default();
            for i in 0..*count {
                clock += Duration::from_millis(33);
                let wire = first_seq.wrapping_add(i as u16);
                let ts = first_ts.wrapping_add(3000 * i as u32);
                let out = rw.rewrite(SourcePacket {
                    ssrc,
                    seq: unwrapper.unwrap(wire),
                    timestamp: RtpTimestamp(ts),
                    arrival: clock,
                }).expect("in-order packets are forwarded");
                if let Some(p) = prev {
                    prop_assert_eq!(out.seq.wire(), p.seq.wire().wrapping_add(1));
                    prop_assert_eq!(out.seq.0, p.seq.0 + 1);
                    prop_assert!(out.timestamp.delta_since(p.timestamp) > 0);
                } else {
                    prop_assert_eq!(out.seq.wire(), initial_seq);
                    prop_assert_eq!(out.timestamp.0, initial_ts);
                }
                prev = Some(out);
            }
            unwrapper_per_source.push(unwrapper);
        }
    }

    /// Reordering inside a source maps every packet to the same outgoing
    /// number it would have had in order.
    #[test]
    fn reordering_preserves_the_mapping(
        first in any::<u16>(),
        swaps in prop::collection::vec(0usize..50, 0..20),
    ) {
        let now = Instant::now();
        let mut order: Vec<u16> = (0..50).collect();
        for s in swaps {
            order.swap(s, (s + 1) % 50);
        }
        // Packet 0 first so the mapping is anchored.
        order.retain(|&i| i != 0);
        order.insert(0, 0);
        let mut rw = SequenceRewriter::new(48_000, 1000, 0);
        let mut unwrapper = SeqUnwrapper::default();
        let base = unwrapper.unwrap(first);
        for i in order {
            let seq = ExtendedSeq(base.0 + u64::from(i));
            let out = rw.rewrite(SourcePacket { ssrc: 9, seq, timestamp: RtpTimestamp(u32::from(i) * 960), arrival: now })
                .expect("forwarded");
            prop_assert_eq!(out.seq.0, 1000 + u64::from(i));
        }
    }
}
