//! Weir's own SRTP egress: forwarding without str0m's per-subscriber send
//! path (used by the room: `room::own_egress`).
//!
//! str0m seals and sends every forwarded packet through a per-subscriber
//! send queue, pacer poll, RTX cache entry and timeout round: about 1.7-2 µs
//! per packet on this project's machine, more than half of the user-space
//! cost of forwarding (docs/performance.md). The way past it is to seal a
//! forwarded packet once per subscriber straight into the send batch. These
//! modules are the pieces that make that possible without changing str0m:
//!
//! - [`key_tap`]: the SRTP keying material of a str0m session, taken from
//!   its DTLS instance through str0m's pluggable crypto provider;
//! - [`srtp_keys`]: the master keys of each direction and the session keys
//!   derived from them (RFC 3711, RFC 7714);
//! - [`srtp_seal`]: RTP sealed as SRTP with AES-GCM into a buffer, with
//!   per-SSRC rollover counters;
//! - [`rtp_header`]: a forwarded packet's RTP header with the header
//!   extensions the subscriber negotiated;
//! - [`history`]: what answers NACKs: the publisher's packets per track and
//!   what each subscription was sent.
//!
//! The tests in `tests/srtp_egress.rs` check the sealing against two
//! independent SRTP implementations: str0m's receiving side over a real
//! DTLS handshake, and webrtc-rs's.

pub mod history;
pub mod key_tap;
pub mod rtp_header;
pub mod srtp_keys;
pub mod srtp_seal;
