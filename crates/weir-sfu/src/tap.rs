//! The recorder tap: a copy of a published track's RTP packets, after SRTP
//! decryption, for the owner of the room to record.
//!
//! Tapping is off for every track until [`crate::Room::set_tap`] turns it on.
//! A tapped packet costs one output and a reference-counted payload (no
//! copy of the media); the owner must hand it on without waiting (the
//! server uses a bounded channel and counts what it drops).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use weir_protocol::{TrackId, TrackKind};

use crate::participant::ParticipantKey;

/// The codec of a tapped packet's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TapCodec {
    Opus,
    Vp8,
    Vp9,
    H264,
    Av1,
    /// A codec the recorder does not handle (its packets are still tapped).
    Other,
}

/// The newest RTCP sender report of the packet's stream: which RTP time
/// was sent at which wall-clock (NTP) time, for audio/video alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSenderReport {
    pub ntp_time: SystemTime,
    pub rtp_time: u32,
}

/// One RTP packet of a tapped track.
#[derive(Debug, Clone)]
pub struct TappedPacket {
    pub owner: ParticipantKey,
    pub track_id: TrackId,
    pub kind: TrackKind,
    pub codec: TapCodec,
    /// The codec's RTP clock rate (90000 for video, 48000 for Opus).
    pub clock_rate: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    /// The RTP sequence number as sent.
    pub sequence_number: u16,
    /// The RTP timestamp as sent.
    pub rtp_timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    /// When the server received the datagram.
    pub arrival: Instant,
    pub sender_report: Option<TapSenderReport>,
}
