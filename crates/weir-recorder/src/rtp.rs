//! RTP input: a parsed packet view, wrapping counters and their unwrappers.
//!
//! recording.md rule 1 and 8: durations come from RTP timestamps unwrapped to
//! 64 bits with `(ts.wrapping_sub(prev)) as i32`; the same for 16-bit
//! sequence numbers.

use std::time::Instant;

/// A 16-bit RTP sequence number (wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqNo(pub u16);

/// A 32-bit RTP timestamp (wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpTime(pub u32);

/// A sequence number extended to 64 bits (monotonic across wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtSeq(pub i64);

/// An RTP timestamp extended to 64 bits, in the track's clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtTime(pub i64);

impl ExtTime {
    /// Ticks from `earlier` to `self` (negative if `self` is earlier).
    pub fn since(self, earlier: ExtTime) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Extends 16-bit sequence numbers to 64 bits relative to the last one seen.
#[derive(Debug, Default, Clone)]
pub struct SeqUnwrapper {
    last: Option<(u16, i64)>,
}

impl SeqUnwrapper {
    /// The extended value of `seq`; late packets get a smaller value.
    pub fn unwrap(&mut self, seq: SeqNo) -> ExtSeq {
        let ext = match self.last {
            None => i64::from(seq.0),
            Some((prev, prev_ext)) => {
                prev_ext.saturating_add(i64::from(seq.0.wrapping_sub(prev) as i16))
            }
        };
        // Only move the reference forward: late packets must not drag it back.
        match self.last {
            Some((_, prev_ext)) if ext < prev_ext => {}
            _ => self.last = Some((seq.0, ext)),
        }
        ExtSeq(ext)
    }
}

/// Extends 32-bit RTP timestamps to 64 bits relative to the last one seen.
#[derive(Debug, Default, Clone)]
pub struct TimeUnwrapper {
    last: Option<(u32, i64)>,
}

impl TimeUnwrapper {
    /// The extended value of `ts`; timestamps before the reference are negative
    /// deltas (as `i32`), so a wrap in either direction is handled.
    pub fn unwrap(&mut self, ts: RtpTime) -> ExtTime {
        let ext = match self.last {
            None => i64::from(ts.0),
            Some((prev, prev_ext)) => {
                prev_ext.saturating_add(i64::from(ts.0.wrapping_sub(prev) as i32))
            }
        };
        match self.last {
            Some((_, prev_ext)) if ext < prev_ext => {}
            _ => self.last = Some((ts.0, ext)),
        }
        ExtTime(ext)
    }

    /// Extends `ts` without moving the reference (for RTCP SR timestamps).
    pub fn peek(&self, ts: RtpTime) -> ExtTime {
        match self.last {
            None => ExtTime(i64::from(ts.0)),
            Some((prev, prev_ext)) => {
                ExtTime(prev_ext.saturating_add(i64::from(ts.0.wrapping_sub(prev) as i32)))
            }
        }
    }
}

/// One RTP packet as the recorder needs it (after SRTP decryption).
#[derive(Debug, Clone)]
pub struct RtpPacket {
    /// Synchronisation source: a change means a new publisher session.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: SeqNo,
    /// Media timestamp.
    pub timestamp: RtpTime,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// Payload after header, extensions and padding.
    pub payload: Vec<u8>,
    /// When the packet was received (the caller's clock).
    pub arrival: Instant,
}

/// Why raw bytes are not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpParseError {
    /// Fewer bytes than the header claims.
    #[error("truncated RTP packet")]
    Truncated,
    /// Version is not 2.
    #[error("not RTP version 2")]
    BadVersion,
    /// Padding longer than the payload.
    #[error("invalid RTP padding")]
    BadPadding,
}

impl RtpPacket {
    /// Parses a plain (decrypted) RTP packet.
    pub fn parse(buf: &[u8], arrival: Instant) -> Result<Self, RtpParseError> {
        let b0 = *buf.first().ok_or(RtpParseError::Truncated)?;
        if buf.len() < 12 {
            return Err(RtpParseError::Truncated);
        }
        if b0 >> 6 != 2 {
            return Err(RtpParseError::BadVersion);
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0f);
        let marker = buf[1] & 0x80 != 0;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let mut offset = 12 + 4 * csrc_count;
        if has_extension {
            let ext = buf
                .get(offset..offset + 4)
                .ok_or(RtpParseError::Truncated)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            offset += 4 + 4 * words;
        }
        if offset > buf.len() {
            return Err(RtpParseError::Truncated);
        }
        let mut end = buf.len();
        if has_padding {
            let pad = usize::from(buf[end - 1]);
            if pad == 0 || pad > end - offset {
                return Err(RtpParseError::BadPadding);
            }
            end -= pad;
        }
        Ok(Self {
            ssrc,
            seq: SeqNo(seq),
            timestamp: RtpTime(timestamp),
            marker,
            payload: buf[offset..end].to_vec(),
            arrival,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamp_unwraps_forward_across_wrap() {
        let mut u = TimeUnwrapper::default();
        let start = u32::MAX - 1000;
        let a = u.unwrap(RtpTime(start));
        let b = u.unwrap(RtpTime(start.wrapping_add(3000)));
        assert_eq!(b.since(a), 3000);
    }

    #[test]
    fn late_sequence_number_does_not_move_reference() {
        let mut u = SeqUnwrapper::default();
        assert_eq!(u.unwrap(SeqNo(65535)).0, 65535);
        assert_eq!(u.unwrap(SeqNo(1)).0, 65537);
        assert_eq!(u.unwrap(SeqNo(65534)).0, 65534);
        assert_eq!(u.unwrap(SeqNo(2)).0, 65538);
    }

    proptest! {
        #[test]
        fn timestamps_unwrap_to_the_sum_of_steps(start: u32, steps in proptest::collection::vec(0u32..200_000, 1..200)) {
            let mut u = TimeUnwrapper::default();
            let first = u.unwrap(RtpTime(start));
            let mut ts = start;
            let mut total: i64 = 0;
            for s in steps {
                ts = ts.wrapping_add(s);
                total += i64::from(s);
                prop_assert_eq!(u.unwrap(RtpTime(ts)).since(first), total);
            }
        }

        #[test]
        fn sequence_numbers_unwrap_monotonic(start: u16, steps in proptest::collection::vec(1u16..100, 1..2000)) {
            let mut u = SeqUnwrapper::default();
            let mut prev = u.unwrap(SeqNo(start));
            let mut seq = start;
            for s in steps {
                seq = seq.wrapping_add(s);
                let next = u.unwrap(SeqNo(seq));
                prop_assert_eq!(next.0 - prev.0, i64::from(s));
                prev = next;
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RtpPacket::parse(&bytes, Instant::now());
        }
    }
}
