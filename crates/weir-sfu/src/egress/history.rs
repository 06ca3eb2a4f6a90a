//! What Weir's own egress keeps to answer NACKs: one history of the
//! publisher's packets per track (shared by all its subscribers), and per
//! subscription a small ring from the sequence numbers it was sent back to
//! the publisher's packet and the rewritten fields.
//!
//! str0m keeps a copy of every sent packet per subscriber instead (~420 B
//! a slot, ~64 KiB per video subscriber at 1.5 Mbit/s for 500 ms).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rtp_header::MediaExtensions;

/// A publisher's packet as a retransmission needs it (the rewritten
/// fields are the subscription's, in [`SentPacket`]).
#[derive(Debug, Clone)]
pub struct KeptPacket {
    pub ssrc: u32,
    /// Extended sequence number.
    pub seq: u64,
    pub payload: Arc<[u8]>,
    /// The header extensions that are forwarded.
    pub extensions: MediaExtensions,
}

/// The publisher's recent packets of one track, oldest first, kept for
/// `max_age` and at most `max_packets`.
#[derive(Debug)]
pub struct PacketHistory {
    packets: VecDeque<(Instant, KeptPacket)>,
    max_age: Duration,
    max_packets: usize,
}

impl PacketHistory {
    pub fn new(max_age: Duration, max_packets: usize) -> PacketHistory {
        PacketHistory {
            packets: VecDeque::new(),
            max_age,
            max_packets: max_packets.max(1),
        }
    }

    /// Changes how long packets are kept (from the next push on).
    pub fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
    }

    /// Keeps `packet` (received at `now`) and forgets what is too old.
    pub fn push(&mut self, now: Instant, packet: KeptPacket) {
        self.evict(now);
        if self.packets.len() >= self.max_packets {
            self.packets.pop_front();
        }
        self.packets.push_back((now, packet));
    }

    fn evict(&mut self, now: Instant) {
        while let Some((at, _)) = self.packets.front() {
            if now.saturating_duration_since(*at) <= self.max_age {
                break;
            }
            self.packets.pop_front();
        }
    }

    /// The packet of SSRC `ssrc` whose extended sequence number has
    /// `seq` as its low 32 bits, if it is still kept (and not older than
    /// the history's age at `now`).
    pub fn get(&self, now: Instant, ssrc: u32, seq: u32) -> Option<&KeptPacket> {
        self.packets
            .iter()
            .rev()
            .take_while(|(at, _)| now.saturating_duration_since(*at) <= self.max_age)
            .map(|(_, packet)| packet)
            .find(|p| p.ssrc == ssrc && p.seq as u32 == seq)
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

/// The shortest time packets are kept for NACKs whatever the round trip:
/// a receiver notices a loss when the next packet comes (up to a frame
/// interval later), asks again about every 100 ms while it does not know
/// the round trip (libwebrtc's default), and Weir answers the first
/// `1 + MAX_RESENDS` (three) requests: the third comes ~250 ms after the
/// loss, plus the round trip.
pub const NACK_WINDOW_FLOOR: Duration = Duration::from_millis(300);
/// Round trips added to [`NACK_WINDOW_FLOOR`]: each request and answer
/// crosses the link.
const NACK_WINDOW_ROUND_TRIPS: u32 = 2;

/// How long a track's packets are kept for NACKs: long enough for the
/// requests its subscribers can still make in time, given the longest
/// round trip among them, and never longer than `configured`
/// (`media.nack_history_ms`); `configured` itself while no round trip is
/// known. On a short link this keeps far less than a fixed window
/// (~300 ms instead of 500 on a LAN), on a long one as much as allowed.
pub fn nack_window(longest_round_trip: Option<Duration>, configured: Duration) -> Duration {
    match longest_round_trip {
        Some(rtt) => (NACK_WINDOW_FLOOR + rtt * NACK_WINDOW_ROUND_TRIPS).min(configured),
        None => configured,
    }
}

/// The longest round trip reported over the last 5-10 s (two periods of
/// `RecentMax::PERIOD`): a subscriber's longer round trip counts at
/// once, a shorter one once the longer is that old.
#[derive(Debug, Clone, Default)]
pub struct RecentMax {
    current: Option<Duration>,
    previous: Option<Duration>,
    period_start: Option<Instant>,
}

impl RecentMax {
    const PERIOD: Duration = Duration::from_secs(5);

    pub fn observe(&mut self, now: Instant, value: Duration) {
        self.roll(now);
        self.current = Some(self.current.map_or(value, |c| c.max(value)));
    }

    /// The longest value seen in the current and the previous period.
    pub fn get(&mut self, now: Instant) -> Option<Duration> {
        self.roll(now);
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn roll(&mut self, now: Instant) {
        let start = *self.period_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < Self::PERIOD {
            return;
        }
        // One period on: the current becomes the previous; two: both old.
        self.previous = if elapsed < Self::PERIOD * 2 {
            self.current.take()
        } else {
            self.current = None;
            None
        };
        self.period_start = Some(now);
    }
}

/// How one packet was sent to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPacket {
    /// The extended sequence number it was sent with (its low 16 bits on
    /// the wire; all of it is the SRTP index).
    pub out_seq: u64,
    pub out_timestamp: u32,
    pub payload_type: u8,
    pub marker: bool,
    /// The publisher's packet: its SSRC and the low 32 bits of its
    /// extended sequence number (a history never holds two that share
    /// them).
    pub in_ssrc: u32,
    pub in_seq: u32,
    /// Went through str0m (which answers NACKs for it from its own cache).
    pub via_str0m: bool,
    /// Times sent again on request (counted up to 3).
    pub resent: u8,
}

/// A [`SentPacket`] in 16 bytes: the sequence number as on the wire
/// (extended again from the ring's latest on the way out), the flags in
/// one byte.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    out_seq: u16,
    flags: u8,
    payload_type: u8,
    in_ssrc: u32,
    in_seq: u32,
    out_timestamp: u32,
}

const OCCUPIED: u8 = 1;
const MARKER: u8 = 2;
const VIA_STR0M: u8 = 4;
const RESENT_SHIFT: u8 = 4;
const RESENT_MAX: u8 = 3;

/// The last [`SENT_RING`] packets sent on one subscription, by the
/// sequence number the subscriber saw.
#[derive(Debug)]
pub struct SentRing {
    slots: Box<[Slot]>,
    /// The highest extended sequence number recorded: the ring's entries
    /// are the [`SENT_RING`] before it, which extends theirs.
    latest_out_seq: u64,
}

/// Entries per subscription: 1.5 s of a 1.5 Mbit/s video stream, more
/// than any NACK history age worth having (4 KiB).
pub const SENT_RING: usize = 256;

impl Default for SentRing {
    fn default() -> Self {
        SentRing {
            slots: vec![Slot::default(); SENT_RING].into_boxed_slice(),
            latest_out_seq: 0,
        }
    }
}

impl SentRing {
    /// Reads the slot the next record writes (see
    /// [`crate::room::own_egress::ParticipantEgress::warm`]).
    pub fn warm(&self) -> usize {
        let next = Self::index(self.latest_out_seq.wrapping_add(1) as u16);
        self.slots.get(next).map_or(0, |slot| slot.in_seq as usize)
    }

    pub fn record(&mut self, sent: SentPacket) {
        let mut flags = OCCUPIED | (sent.resent.min(RESENT_MAX) << RESENT_SHIFT);
        if sent.marker {
            flags |= MARKER;
        }
        if sent.via_str0m {
            flags |= VIA_STR0M;
        }
        self.slots[Self::index(sent.out_seq as u16)] = Slot {
            out_seq: sent.out_seq as u16,
            flags,
            payload_type: sent.payload_type,
            in_ssrc: sent.in_ssrc,
            in_seq: sent.in_seq,
            out_timestamp: sent.out_timestamp,
        };
        self.latest_out_seq = self.latest_out_seq.max(sent.out_seq);
    }

    /// The packet sent as `out_seq`, if its slot was not reused since.
    pub fn get(&self, out_seq: u16) -> Option<SentPacket> {
        let slot = self.occupied(out_seq)?;
        Some(SentPacket {
            out_seq: self.extend(out_seq)?,
            out_timestamp: slot.out_timestamp,
            payload_type: slot.payload_type,
            marker: slot.flags & MARKER != 0,
            in_ssrc: slot.in_ssrc,
            in_seq: slot.in_seq,
            via_str0m: slot.flags & VIA_STR0M != 0,
            resent: slot.flags >> RESENT_SHIFT,
        })
    }

    /// Counts one more resend of the packet sent as `out_seq`.
    pub fn mark_resent(&mut self, out_seq: u16) {
        let index = Self::index(out_seq);
        if self.occupied(out_seq).is_some() {
            let slot = &mut self.slots[index];
            let resent = (slot.flags >> RESENT_SHIFT)
                .saturating_add(1)
                .min(RESENT_MAX);
            slot.flags = (slot.flags & !(RESENT_MAX << RESENT_SHIFT)) | (resent << RESENT_SHIFT);
        }
    }

    fn index(out_seq: u16) -> usize {
        usize::from(out_seq) % SENT_RING
    }

    fn occupied(&self, out_seq: u16) -> Option<&Slot> {
        let slot = &self.slots[Self::index(out_seq)];
        (slot.flags & OCCUPIED != 0 && slot.out_seq == out_seq).then_some(slot)
    }

    /// The extended sequence number at or before the latest recorded one
    /// whose low 16 bits are `wire`.
    fn extend(&self, wire: u16) -> Option<u64> {
        let latest = self.latest_out_seq;
        let candidate = (latest & !0xffff) | u64::from(wire);
        if candidate <= latest {
            Some(candidate)
        } else {
            candidate.checked_sub(0x1_0000)
        }
    }
}

/// The sequence numbers one NACK entry asks for (RFC 4585 section
/// 6.2.1): `pid`, and `pid + i + 1` for each bit `i` set in `blp`.
pub fn nacked(pid: u16, blp: u16) -> impl Iterator<Item = u16> {
    std::iter::once(pid).chain(
        (0..16u16)
            .filter(move |bit| blp & (1 << bit) != 0)
            .map(move |bit| pid.wrapping_add(bit + 1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ssrc: u32, seq: u64) -> KeptPacket {
        KeptPacket {
            ssrc,
            seq,
            payload: Arc::from(&b"payload"[..]),
            extensions: MediaExtensions::default(),
        }
    }

    #[test]
    fn the_nack_window_follows_the_longest_round_trip_within_the_configured_age() {
        let configured = Duration::from_millis(500);
        assert_eq!(nack_window(None, configured), configured);
        assert_eq!(
            nack_window(Some(Duration::from_millis(1)), configured),
            Duration::from_millis(302)
        );
        assert_eq!(
            nack_window(Some(Duration::from_millis(80)), configured),
            Duration::from_millis(460)
        );
        assert_eq!(
            nack_window(Some(Duration::from_millis(300)), configured),
            configured
        );
        // A configured age below the floor is kept to.
        let short = Duration::from_millis(100);
        assert_eq!(nack_window(Some(Duration::ZERO), short), short);
    }

    #[test]
    fn the_recent_maximum_forgets_a_long_round_trip_after_two_periods() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rtt = RecentMax::default();
        assert_eq!(rtt.get(t0), None);
        rtt.observe(t0, ms(200));
        rtt.observe(t0 + ms(100), ms(20));
        assert_eq!(rtt.get(t0 + ms(200)), Some(ms(200)));
        // Next period: the 200 ms is the previous period's, still counted.
        rtt.observe(t0 + Duration::from_secs(6), ms(20));
        assert_eq!(rtt.get(t0 + Duration::from_secs(6)), Some(ms(200)));
        // Another period on: only the 20 ms of the last one is left.
        assert_eq!(rtt.get(t0 + Duration::from_secs(11)), Some(ms(20)));
        // Nothing reported for two whole periods: nothing known.
        assert_eq!(rtt.get(t0 + Duration::from_secs(30)), None);
    }

    #[test]
    fn history_finds_by_ssrc_and_sequence_and_forgets_by_age_and_count() {
        let t0 = Instant::now();
        let mut history = PacketHistory::new(Duration::from_millis(500), 4);
        history.push(t0, packet(1, 10));
        history.push(t0, packet(2, 10));
        history.push(t0 + Duration::from_millis(100), packet(1, 11));
        let at = t0 + Duration::from_millis(200);
        assert_eq!(history.get(at, 1, 10).map(|p| p.seq), Some(10));
        assert_eq!(history.get(at, 2, 10).map(|p| p.ssrc), Some(2));
        assert!(history.get(at, 1, 12).is_none());
        // Older than the age at the time asked, though not evicted yet.
        assert!(history
            .get(t0 + Duration::from_millis(550), 1, 10)
            .is_none());
        assert!(history
            .get(t0 + Duration::from_millis(550), 1, 11)
            .is_some());
        // Count bound.
        for seq in 12..20 {
            history.push(at, packet(1, seq));
        }
        assert_eq!(history.len(), 4);
        assert!(history.get(at, 1, 15).is_none());
        assert!(history.get(at, 1, 19).is_some());
        // Age eviction on push.
        history.push(t0 + Duration::from_secs(5), packet(1, 20));
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn sent_ring_keeps_the_latest_per_slot() {
        let mut ring = SentRing::default();
        let sent = |out_seq: u64, in_seq: u32| SentPacket {
            out_seq,
            out_timestamp: 0,
            payload_type: 96,
            marker: false,
            in_ssrc: 7,
            in_seq,
            via_str0m: false,
            resent: 0,
        };
        ring.record(sent(65_535, 100));
        ring.record(sent(65_536, 101));
        assert_eq!(ring.get(65_535).map(|s| s.in_seq), Some(100));
        assert_eq!(ring.get(0).map(|s| s.in_seq), Some(101));
        // Extended again across the wrap.
        assert_eq!(ring.get(65_535).map(|s| s.out_seq), Some(65_535));
        assert_eq!(ring.get(0).map(|s| s.out_seq), Some(65_536));
        ring.record(sent(SENT_RING as u64, 500));
        assert!(ring.get(0).is_none(), "slot reused");
        assert_eq!(ring.get(SENT_RING as u16).map(|s| s.in_seq), Some(500));
        assert!(ring.get(5).is_none());
    }

    #[test]
    fn sent_ring_entries_round_trip_and_count_resends() {
        let mut ring = SentRing::default();
        let sent = SentPacket {
            out_seq: (7 << 16) + 1234,
            out_timestamp: 0xdead_beef,
            payload_type: 111,
            marker: true,
            in_ssrc: 0x0102_0304,
            in_seq: u32::MAX,
            via_str0m: true,
            resent: 0,
        };
        ring.record(sent);
        assert_eq!(ring.get(1234), Some(sent));
        for expected in [1, 2, 3, 3] {
            ring.mark_resent(1234);
            assert_eq!(ring.get(1234).map(|s| s.resent), Some(expected));
        }
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        // A sequence number never recorded, or before the first: nothing.
        assert!(ring.get(1235).is_none());
        let mut young = SentRing::default();
        young.record(SentPacket { out_seq: 3, ..sent });
        assert_eq!(young.get(3).map(|s| s.out_seq), Some(3));
        assert!(young.extend(4).is_none());
    }

    #[test]
    fn nack_entries_expand_to_sequence_numbers() {
        assert_eq!(nacked(100, 0).collect::<Vec<_>>(), [100]);
        assert_eq!(nacked(100, 0b101).collect::<Vec<_>>(), [100, 101, 103]);
        assert_eq!(nacked(65_535, 1 << 15).collect::<Vec<_>>(), [65_535, 15]);
        assert_eq!(nacked(1, u16::MAX).count(), 17);
    }
}
