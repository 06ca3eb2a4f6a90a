//! Per-direction link statistics read from RTCP (via str0m's periodic stats
//! events): what the quality-monitoring issue builds on.

use std::time::{Duration, Instant};

use str0m::stats::{MediaEgressStats, MediaIngressStats};

/// The latest statistics of one RTP stream on one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    pub bytes: u64,
    pub packets: u64,
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    /// Round-trip time from RTCP reports.
    pub rtt: Option<Duration>,
    /// Fraction lost (0.0..=1.0) from the latest report.
    pub loss: Option<f32>,
    /// Interarrival jitter in media clock ticks.
    pub jitter_ticks: Option<u32>,
    pub updated: Instant,
}

impl LinkStats {
    /// A publisher's stream as the server receives it.
    pub fn from_ingress(stats: &MediaIngressStats) -> Self {
        LinkStats {
            bytes: stats.bytes,
            packets: stats.packets,
            nacks: stats.nacks,
            plis: stats.plis,
            firs: stats.firs,
            rtt: stats.rtt,
            loss: stats.loss,
            jitter_ticks: Some(stats.jitter),
            updated: stats.timestamp,
        }
    }

    /// Keeps the round-trip time of `previous` when this report could not
    /// measure one: a receiver report sent at once after a sender report
    /// (DLSR 0), or one that answers no sender report of ours, carries no
    /// RTT, which does not mean the link has none.
    pub fn keeping_rtt_of(mut self, previous: Option<&LinkStats>) -> Self {
        if self.rtt.is_none() {
            self.rtt = previous.and_then(|p| p.rtt);
        }
        self
    }

    /// A subscriber's stream as the subscriber reports receiving it.
    pub fn from_egress(stats: &MediaEgressStats) -> Self {
        LinkStats {
            bytes: stats.bytes,
            packets: stats.packets,
            nacks: stats.nacks,
            plis: stats.plis,
            firs: stats.firs,
            rtt: stats.rtt,
            loss: stats.loss,
            jitter_ticks: stats.remote.as_ref().map(|r| r.jitter),
            updated: stats.timestamp,
        }
    }
}
