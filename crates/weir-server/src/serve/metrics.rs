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

/// Every counter the server shell keeps. Labels never carry user ids.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub rooms: Gauge,
    pub participants: Gauge,
    pub joins_refused: Counter,
    pub signalling_errors: Counter,
    pub udp_datagrams_received: Counter,
    /// Datagrams handed to a room's queue.
    pub udp_datagrams_routed: Counter,
    pub udp_datagrams_sent: Counter,
    /// Datagrams that could not be sent.
    pub udp_send_errors: Counter,
    /// Send syscalls (one per GSO group): `udp_datagrams_sent` over this is
    /// the batching factor.
    pub udp_send_syscalls: Counter,
    /// Receive syscalls (`recvmmsg`) that returned datagrams.
    pub udp_receive_syscalls: Counter,
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
