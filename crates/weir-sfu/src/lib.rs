//! Weir's media core: rooms, participants and selective forwarding, with no
//! IO and no clock of its own.
//!
//! A [`Room`] owns one `str0m::Rtc` per participant (RTP mode, ICE-lite,
//! DTLS-SRTP) and forwards every publisher's RTP packets to its subscribers,
//! rewriting SSRC, sequence numbers and timestamps per subscriber
//! ([`forwarder`], [`sequence`]), gating video on keyframes ([`keyframe`]),
//! and merging keyframe requests toward publishers ([`keyframe_requests`]).
//! Forwarded packets are sealed by Weir for each subscriber
//! ([`egress`], `room::own_egress`; str0m still sends one every 4 s
//! per stream, for its sender reports), and subscribers' NACKs are answered
//! from the track's packet history (str0m's per-stream cache, with RTX,
//! when `own_egress` is off or the session's SRTP profile is AES-CM);
//! losses from publishers are NACKed by str0m.
//!
//! The owner feeds [`Room::handle_datagram`], [`Room::handle_message`],
//! [`Room::handle_timeout`] (each with `now`) and drains
//! [`Room::poll_output`]. See ARCHITECTURE.md.

pub mod config;
pub mod counters;
pub mod datagrams;
pub mod egress;
pub mod forwarder;
mod ids;
pub mod keyframe;
pub mod keyframe_requests;
pub mod link_stats;
pub mod participant;
pub mod room;
pub mod sdp_order;
pub mod sequence;
pub mod stun;
pub mod tap;
pub mod track;

pub use config::RoomConfig;
pub use counters::RoomCounters;
pub use datagrams::{Datagrams, LocalSpares, SpareBuffers};
pub use participant::{ParticipantKey, SessionKind};
pub use room::admin::AdminError;
pub use room::{JoinError, JoinRequest, Joined, Room, RoomOutput, TrackSnapshot};
pub use tap::{TapCodec, TapSenderReport, TappedPacket};

/// Installs str0m's crypto provider (aws-lc-rs). Call once at start; later
/// calls are no-ops.
pub fn install_crypto() {
    str0m::crypto::from_feature_flags().install_process_default();
}
