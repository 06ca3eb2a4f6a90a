//! A reorder window in front of the depacketizers (recording.md rule 5): a
//! packet is held until the packets before it arrived, or until it has
//! waited `window` (then the missing ones are given up as lost), so NACK
//! retransmissions still make it into the file.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::rtp::{ExtSeq, RtpPacket, SeqUnwrapper};

/// Most packets held at once (bounds memory whatever the input).
const MAX_HELD: usize = 4096;

/// Orders packets of one SSRC by extended sequence number.
#[derive(Debug)]
pub struct ReorderBuffer {
    window: Duration,
    unwrapper: SeqUnwrapper,
    held: BTreeMap<ExtSeq, RtpPacket>,
    next: Option<ExtSeq>,
    /// Packets that came after their slot was given up, or were duplicates.
    pub late_or_duplicate: u64,
}

impl ReorderBuffer {
    /// A buffer that waits at most `window` for a missing packet.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            unwrapper: SeqUnwrapper::default(),
            held: BTreeMap::new(),
            next: None,
            late_or_duplicate: 0,
        }
    }

    /// Adds a packet.
    pub fn push(&mut self, packet: RtpPacket) {
        let seq = self.unwrapper.unwrap(packet.seq);
        let next = *self.next.get_or_insert(seq);
        if seq < next || self.held.contains_key(&seq) {
            self.late_or_duplicate += 1;
            return;
        }
        self.held.insert(seq, packet);
        if self.held.len() > MAX_HELD {
            if let Some((&first, _)) = self.held.iter().next() {
                self.next = Some(first);
            }
        }
    }

    /// Releases the packets that are in order, or whose wait has expired.
    pub fn pop(&mut self, now: Instant) -> Option<(ExtSeq, RtpPacket)> {
        let (&first, packet) = self.held.iter().next()?;
        let next = self.next.unwrap_or(first);
        let expired = now.saturating_duration_since(packet.arrival) >= self.window;
        if first == next || expired || self.held.len() > MAX_HELD {
            let packet = self.held.remove(&first)?;
            self.next = Some(ExtSeq(first.0.saturating_add(1)));
            return Some((first, packet));
        }
        None
    }

    /// When the oldest held packet's wait expires.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.values().next().map(|p| p.arrival + self.window)
    }

    /// Releases everything held (end of stream).
    pub fn drain(&mut self) -> Vec<(ExtSeq, RtpPacket)> {
        let held = std::mem::take(&mut self.held);
        if let Some((&last, _)) = held.iter().next_back() {
            self.next = Some(ExtSeq(last.0.saturating_add(1)));
        }
        held.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{RtpTime, SeqNo};

    fn pkt(seq: u16, at: Instant) -> RtpPacket {
        RtpPacket {
            ssrc: 1,
            seq: SeqNo(seq),
            timestamp: RtpTime(0),
            marker: false,
            payload: vec![],
            arrival: at,
        }
    }

    #[test]
    fn reorders_within_window_and_gives_up_after() {
        let t0 = Instant::now();
        let mut r = ReorderBuffer::new(Duration::from_millis(500));
        r.push(pkt(65535, t0));
        r.push(pkt(1, t0));
        r.push(pkt(0, t0));
        let order: Vec<i64> = std::iter::from_fn(|| r.pop(t0)).map(|(s, _)| s.0).collect();
        assert_eq!(order, vec![65535, 65536, 65537]);
        r.push(pkt(3, t0));
        assert!(r.pop(t0 + Duration::from_millis(100)).is_none());
        assert_eq!(
            r.pop(t0 + Duration::from_millis(500)).map(|(s, _)| s.0),
            Some(65539)
        );
        r.push(pkt(2, t0));
        assert_eq!(r.late_or_duplicate, 1);
    }
}
