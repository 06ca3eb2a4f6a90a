//! Wrapping RTP counters and the per-subscriber rewriter that turns one or
//! more publisher streams into one continuous outgoing stream.
//!
//! RTP sequence numbers are 16 bits and timestamps 32 bits; both wrap. The
//! rewriter works on 64-bit *extended* sequence numbers (str0m unwraps
//! incoming ones and takes extended ones on send) and on 32-bit timestamps
//! with explicit wrapping arithmetic.

use std::time::{Duration, Instant};

/// An extended (unwrapped) RTP sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtendedSeq(pub u64);

impl ExtendedSeq {
    /// The 16 bits carried in the RTP header.
    pub fn wire(self) -> u16 {
        self.0 as u16
    }

    pub fn next(self) -> ExtendedSeq {
        ExtendedSeq(self.0.wrapping_add(1))
    }
}

/// An RTP timestamp (32 bits on the wire, wrapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpTimestamp(pub u32);

impl RtpTimestamp {
    pub fn wrapping_add(self, delta: u32) -> RtpTimestamp {
        RtpTimestamp(self.0.wrapping_add(delta))
    }

    /// Signed distance `self - earlier`, correct across one wrap.
    pub fn delta_since(self, earlier: RtpTimestamp) -> i64 {
        i64::from(self.0.wrapping_sub(earlier.0) as i32)
    }
}

/// Unwraps 16-bit sequence numbers into [`ExtendedSeq`] (RFC 3550 A.1 style,
/// tolerant to reordering within half the number space).
#[derive(Debug, Default, Clone)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    pub fn unwrap(&mut self, wire: u16) -> ExtendedSeq {
        let Some(highest) = self.highest else {
            // Start one cycle up so that early reordered packets below the
            // first one do not underflow.
            let first = (1u64 << 16) | u64::from(wire);
            self.highest = Some(first);
            return ExtendedSeq(first);
        };
        let delta = wire.wrapping_sub(highest as u16) as i16;
        let value = highest.wrapping_add_signed(i64::from(delta));
        if value > highest {
            self.highest = Some(value);
        }
        ExtendedSeq(value)
    }
}

/// Where a forwarded packet came from: the publisher's stream, identified
/// by its SSRC (a new SSRC means a new source: encoder restart, simulcast
/// layer switch, republish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePacket {
    pub ssrc: u32,
    pub seq: ExtendedSeq,
    pub timestamp: RtpTimestamp,
    pub arrival: Instant,
}

/// The rewritten header values for one outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: ExtendedSeq,
    pub timestamp: RtpTimestamp,
}

/// Why a packet was not rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteDrop {
    /// Sent before the current source was switched to; forwarding it would
    /// jump backwards in the outgoing stream.
    BeforeSwitch,
    /// Older than the reorder window of the current source.
    TooOld,
}

#[derive(Debug, Clone, Copy)]
struct SourceMapping {
    ssrc: u32,
    first_in_seq: u64,
    seq_offset: u64,
    ts_offset: u32,
}

/// Rewrites sequence numbers and timestamps so that a subscriber sees one
/// continuous stream per track, whatever happens upstream.
#[derive(Debug, Clone)]
pub struct SequenceRewriter {
    clock_rate: u32,
    mapping: Option<SourceMapping>,
    /// Highest outgoing sequence number and the timestamp/arrival sent with it.
    last_out: Option<(ExtendedSeq, RtpTimestamp, Instant)>,
    /// Sequence numbers of the first outgoing packet (random, as RFC 3550 asks).
    initial_seq: u16,
    initial_timestamp: u32,
    /// Reordered packets more than this far behind the highest are dropped.
    reorder_window: u64,
}

impl SequenceRewriter {
    pub fn new(clock_rate: u32, initial_seq: u16, initial_timestamp: u32) -> Self {
        SequenceRewriter {
            clock_rate: clock_rate.max(1),
            mapping: None,
            last_out: None,
            initial_seq,
            initial_timestamp,
            reorder_window: 1000,
        }
    }

    /// Forgets the current source so the next packet (from any SSRC) starts a
    /// new mapping that continues the outgoing numbering. Call it when the
    /// publisher switches layer or republishes, even with the same SSRC.
    pub fn reset_source(&mut self) {
        self.mapping = None;
    }

    pub fn current_ssrc(&self) -> Option<u32> {
        self.mapping.map(|m| m.ssrc)
    }

    /// The highest sequence number sent so far.
    pub fn last_seq(&self) -> Option<ExtendedSeq> {
        self.last_out.map(|(s, _, _)| s)
    }

    pub fn rewrite(&mut self, packet: SourcePacket) -> Result<Rewritten, RewriteDrop> {
        let mapping = match self.mapping {
            Some(m) if m.ssrc == packet.ssrc => m,
            _ => self.switch_to(packet),
        };
        if packet.seq.0 < mapping.first_in_seq {
            return Err(RewriteDrop::BeforeSwitch);
        }
        let seq = ExtendedSeq(packet.seq.0.wrapping_add(mapping.seq_offset));
        let timestamp = packet.timestamp.wrapping_add(mapping.ts_offset);
        match self.last_out {
            Some((last_seq, _, _)) if seq <= last_seq => {
                if last_seq.0 - seq.0 > self.reorder_window {
                    return Err(RewriteDrop::TooOld);
                }
            }
            _ => self.last_out = Some((seq, timestamp, packet.arrival)),
        }
        Ok(Rewritten { seq, timestamp })
    }

    fn switch_to(&mut self, packet: SourcePacket) -> SourceMapping {
        let (out_seq, out_ts) = match self.last_out {
            None => (
                ExtendedSeq(u64::from(self.initial_seq)),
                RtpTimestamp(self.initial_timestamp),
            ),
            Some((last_seq, last_ts, last_arrival)) => {
                let elapsed = packet.arrival.saturating_duration_since(last_arrival);
                (last_seq.next(), last_ts.wrapping_add(self.ticks(elapsed)))
            }
        };
        let mapping = SourceMapping {
            ssrc: packet.ssrc,
            first_in_seq: packet.seq.0,
            seq_offset: out_seq.0.wrapping_sub(packet.seq.0),
            ts_offset: out_ts.0.wrapping_sub(packet.timestamp.0),
        };
        self.mapping = Some(mapping);
        mapping
    }

    /// Media-clock ticks for a wall-clock duration (at least 1 so timestamps
    /// strictly advance across a switch, at most 2^31 - 1: a longer step
    /// reads as a step back).
    fn ticks(&self, elapsed: Duration) -> u32 {
        let ticks = elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000;
        u32::try_from(ticks)
            .unwrap_or(u32::MAX)
            .clamp(1, i32::MAX as u32)
    }
}

#[cfg(test)]
mod tests;
