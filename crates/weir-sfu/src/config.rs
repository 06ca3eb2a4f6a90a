//! Settings of one room's media core.

use std::net::SocketAddr;
use std::time::Duration;

/// How a [`Room`](crate::Room) behaves. Built by the server from its config.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The address ICE candidates advertise (the shared UDP port).
    pub advertised_addr: SocketAddr,
    /// 0 = unlimited.
    pub max_participants: u32,
    /// Minimum spacing of keyframe requests toward one publisher track.
    pub keyframe_request_interval: Duration,
    /// How many sent packets per subscribed track are kept to answer NACKs.
    pub nack_cache_packets: usize,
    /// How long sent packets are kept to answer NACKs at most: 500 ms of a
    /// 1.5 Mbit/s stream is ~110 kB. On Weir's own egress (one history per
    /// track) the window follows the subscribers' longest round trip
    /// (`egress::history::nack_window`: 300 ms + 2 round trips) up to this;
    /// on str0m's path (per subscriber) it is this. A retransmission is
    /// useful only while the receiver still waits for the packet, so links
    /// with a round trip of more than ~100 ms want more.
    pub nack_cache_age: Duration,
    /// Reported in `joined`.
    pub server_version: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// One DTLS certificate for every connection (its fingerprint is in
    /// every answer). Generating a key pair per participant costs join
    /// time; `None` lets str0m generate one per connection.
    pub dtls_cert: Option<str0m::config::DtlsCert>,
    /// Forwarded RTP is sealed by Weir for each subscriber
    /// (`room::own_egress`) instead of going through str0m's
    /// per-subscriber send path; sessions that negotiated AES-CM stay on
    /// str0m's.
    pub own_egress: bool,
}

impl RoomConfig {
    /// Generates the shared DTLS certificate with str0m's crypto provider.
    pub fn with_generated_dtls_cert(mut self) -> Self {
        self.dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        self
    }

    pub fn new(advertised_addr: SocketAddr) -> Self {
        RoomConfig {
            advertised_addr,
            max_participants: 100,
            keyframe_request_interval: Duration::from_millis(500),
            nack_cache_packets: 1024,
            nack_cache_age: Duration::from_millis(500),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(30),
            dtls_cert: None,
            own_egress: true,
        }
    }
}
