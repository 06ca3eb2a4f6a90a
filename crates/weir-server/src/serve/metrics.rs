//! Process-wide counters and gauges (exported to Prometheus by a later
//! issue; read by `/healthz` and tests now).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram of durations that many threads add to without a lock:
/// 25 µs buckets up to 5 ms, 1 ms buckets up to 100 ms, then one bucket
/// for everything longer. Percentiles are bucket upper bounds.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
}

const FINE_BUCKET_US: u64 = 25;
const FINE_LIMIT_US: u64 = 5_000;
const COARSE_BUCKET_US: u64 = 1_000;
const COARSE_LIMIT_US: u64 = 100_000;
const FINE_BUCKETS: usize = (FINE_LIMIT_US / FINE_BUCKET_US) as usize;
const COARSE_BUCKETS: usize = ((COARSE_LIMIT_US - FINE_LIMIT_US) / COARSE_BUCKET_US) as usize;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..FINE_BUCKETS + COARSE_BUCKETS + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: std::time::Duration) {
        self.record_n(elapsed, 1);
    }

    /// Records `n` samples of the same duration.
    pub fn record_n(&self, elapsed: std::time::Duration, n: u64) {
        if n == 0 {
            return;
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let index = if us < FINE_LIMIT_US {
            (us / FINE_BUCKET_US) as usize
        } else if us < COARSE_LIMIT_US {
            FINE_BUCKETS + ((us - FINE_LIMIT_US) / COARSE_BUCKET_US) as usize
        } else {
            FINE_BUCKETS + COARSE_BUCKETS
        };
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(n, Ordering::Relaxed);
        }
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    fn upper_bound_us(index: usize) -> u64 {
        if index < FINE_BUCKETS {
            (index as u64 + 1) * FINE_BUCKET_US
        } else if index < FINE_BUCKETS + COARSE_BUCKETS {
            FINE_LIMIT_US + ((index - FINE_BUCKETS) as u64 + 1) * COARSE_BUCKET_US
        } else {
            u64::MAX
        }
    }

    /// Count, p50, p99 and max in microseconds (`None` before any sample).
    pub fn summary(&self) -> Option<weir_protocol::LatencySummary> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let samples: u64 = counts.iter().sum();
        if samples == 0 {
            return None;
        }
        let max_us = self.max_us.load(Ordering::Relaxed);
        let percentile = |p: f64| {
            let rank = ((samples as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Self::upper_bound_us(index).min(max_us);
                }
            }
            max_us
        };
        Some(weir_protocol::LatencySummary {
            samples,
            p50_us: percentile(0.50),
            p99_us: percentile(0.99),
            max_us,
        })
    }
}

/// Every counter the server shell keeps. Labels never carry user ids.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub rooms: Gauge,
    pub participants: Gauge,
    /// Open WebSocket signalling connections (joined or not yet); a
    /// graceful shutdown waits for them to finish their closing handshake.
    pub signalling_connections: Gauge,
    pub joins_refused: Counter,
    pub signalling_errors: Counter,
    pub udp_datagrams_received: Counter,
    /// Datagrams handed to a room's queue.
    pub udp_datagrams_routed: Counter,
    pub udp_datagrams_sent: Counter,
    /// Datagrams that could not be sent.
    pub udp_send_errors: Counter,
    /// Send syscalls (`sendmmsg` of up to 64 messages, or a single send):
    /// `udp_datagrams_sent` over this is the batching factor.
    pub udp_send_syscalls: Counter,
    /// Messages sent (a GSO message carries a run of datagrams to one
    /// destination): `udp_datagrams_sent` over this is what GSO saves.
    pub udp_send_messages: Counter,
    /// Receive syscalls (`recvmmsg`) that returned datagrams.
    pub udp_receive_syscalls: Counter,
    /// Per datagram sent in answer to received media (forwarded RTP and
    /// what came with it): from the `recvmmsg` that read the oldest
    /// datagram of its pass to the end of the send of its chunk.
    pub forwarding_latency: LatencyHistogram,
    /// Datagrams from unknown addresses that were not a STUN request for a
    /// known ICE ufrag (scans, garbage, late packets of departed peers).
    pub udp_datagrams_unroutable: Counter,
    /// Datagrams dropped because a room's queue was full.
    pub udp_datagrams_dropped: Counter,
    pub ws_messages_rejected: Counter,
    pub tokens_rejected: Counter,
    pub http_requests_rejected: Counter,
    /// REST API requests answered 4xx (bad input, unknown ids, no key).
    pub api_requests_refused: Counter,
    /// REST API requests answered 5xx.
    pub api_requests_failed: Counter,
    /// Tapped packets the recorder could not take (its queue was full).
    pub recorder_packets_dropped: Counter,
    /// Spool writes that failed (the file is closed early).
    pub recorder_write_errors: Counter,
    /// Recording files finished and stored.
    pub recordings_completed: Counter,
    /// Recording files that could not be stored.
    pub recordings_failed: Counter,
    /// Events put into the callback outbox.
    pub callbacks_enqueued: Counter,
    /// Events emitted after the dispatcher stopped (not stored).
    pub callbacks_dropped: Counter,
    /// Callbacks the receiver accepted (2xx).
    pub callbacks_delivered: Counter,
    /// Callback attempts that failed (non-2xx, timeout, connection error).
    pub callbacks_failed_attempts: Counter,
    /// Events given up on: retries exhausted or nowhere to send them.
    pub callbacks_gave_up: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latency_percentiles_are_bucket_upper_bounds_capped_by_the_max() {
        let histogram = LatencyHistogram::default();
        assert!(histogram.summary().is_none());
        for _ in 0..98 {
            histogram.record(Duration::from_micros(110));
        }
        histogram.record(Duration::from_micros(1_990));
        histogram.record(Duration::from_millis(250));
        let summary = histogram.summary().expect("samples");
        assert_eq!(summary.samples, 100);
        assert_eq!(summary.p50_us, 125);
        assert_eq!(summary.p99_us, 2_000);
        assert_eq!(summary.max_us, 250_000);
        // 101 samples: the 100th (the p99 rank) is now the 7 ms one, in
        // the 1 ms bucket [7, 8) ms.
        histogram.record(Duration::from_millis(7));
        assert_eq!(histogram.summary().expect("samples").p99_us, 8_000);
    }
}
