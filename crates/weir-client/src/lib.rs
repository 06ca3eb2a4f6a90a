//! Weir's independent Rust client, built on webrtc-rs (a different WebRTC
//! stack from the server's str0m), for integration tests and the load
//! harness.
//!
//! - [`Client`]: joins a room over the signalling WebSocket
//!   (`ws://HOST/rtc/v1?token=...`, see `docs/protocol.md`), publishes
//!   tracks ([`Client::publish_video_vp8`], [`Client::publish_audio_opus`])
//!   and receives the tracks it subscribes to as [`ReceivedPacket`]s, all
//!   over one peer connection. Server messages arrive as [`Event`]s.
//! - [`LocalTrack`]: write RTP, or frames of the [`synthetic`] sources, to a
//!   published track.
//! - [`media_file`]: an H.264 elementary stream and an Ogg Opus file played
//!   in real time on H.264/Opus tracks ([`Client::publish_video_h264`]),
//!   with a known audio/video alignment.
//! - [`whip_publish`] / [`whep_subscribe`]: the HTTP ingest/egress paths.
//! - [`SdpPeer`]: the same peer connection with the SDP carried by the
//!   caller (signalling of other servers, e.g. Janus in the load harness).
//! - [`lossy_proxy::LossyUdpProxy`]: a UDP relay that drops a seeded
//!   fraction of the server's RTP toward a client
//!   ([`JoinOptions::rewrite_server_candidate`] points the client at it).
//!
//! Each client is a few tokio tasks (signalling session, webrtc-rs driver,
//! one reader per received track, one feedback reader per published track);
//! nothing polls in a loop, and synthetic payloads come from a shared arena,
//! so a load harness can run many clients in one process.
//!
//! The peer connection knows VP8 (+RTX), H.264 (+RTX, packetization mode 1,
//! 42e01f) and Opus; a published track offers only its own [`Codec`]. It
//! runs webrtc-rs's default interceptors (NACK, reports, TWCC feedback),
//! plus two of its own: RTX
//! retransmissions are turned back into their original packets before the
//! NACK generator sees them (webrtc-rs would otherwise NACK recovered packets
//! forever), and PLI/FIR reach [`LocalTrack::take_keyframe_request`].
//!
//! Media sockets bind `127.0.0.1` by default ([`JoinOptions::bind_ip`]): a
//! wildcard bind skips loopback interfaces and gathers no candidate in a
//! loopback-only network namespace.

mod client;
mod codec;
mod error;
mod keyframe_interceptor;
mod local_track;
pub mod lossy_proxy;
pub mod media_file;
mod peer;
mod receive;
mod rtx_repair;
pub mod sdp;
mod sdp_peer;
mod session;
pub mod synthetic;
mod whip;

pub use client::{Client, Event, JoinOptions, JoinedInfo};
pub use codec::{Codec, H264_FMTP};
pub use error::{Error, Result};
pub use local_track::LocalTrack;
pub use peer::PeerState;
pub use receive::{ClientStats, ReceivedPacket};
pub use sdp_peer::SdpPeer;
pub use whip::{whep_subscribe, whip_publish, HttpSessionOptions, WhepSession, WhipSession};

/// The protocol types, re-exported for convenience.
pub use weir_protocol;
