//! Weir's signalling protocol: the JSON messages exchanged over the WebSocket
//! at `GET /rtc/v1?token=...`, shared by the server, the Rust client and tests.
//!
//! Every message is a JSON object with a `type` field (snake_case). The
//! protocol is versioned by [`PROTOCOL_VERSION`]; a client states the version
//! it speaks in its `join` message and the server refuses versions it does not
//! know with [`ErrorCode::UnsupportedVersion`]. `docs/protocol.md` documents
//! the exchange for humans.
//!
//! This crate owns only data types and their (de)serialisation; it does no IO.

use serde::{Deserialize, Serialize};

mod error_code;
mod ids;

pub use error_code::ErrorCode;
pub use ids::{ParticipantId, TrackId};

/// The signalling protocol version this crate describes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest text message the server accepts on the signalling socket (bytes).
/// SDP for a dozen m-lines fits comfortably in 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What kind of media a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// Where a track's media comes from, as the publisher declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
    Unknown,
}

impl TrackSource {
    /// The source assumed when a publisher does not say: camera for video,
    /// microphone for audio.
    pub fn default_for(kind: TrackKind) -> Self {
        match kind {
            TrackKind::Audio => TrackSource::Microphone,
            TrackKind::Video => TrackSource::Camera,
        }
    }
}

/// A permission carried by a join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    Publish,
    Subscribe,
    Data,
}

impl Grant {
    pub const ALL: [Grant; 3] = [Grant::Publish, Grant::Subscribe, Grant::Data];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Publish => "publish",
            Grant::Subscribe => "subscribe",
            Grant::Data => "data",
        }
    }

    /// Parses `publish`, `subscribe` or `data` (case-insensitive).
    pub fn parse(text: &str) -> Option<Grant> {
        match text.trim().to_ascii_lowercase().as_str() {
            "publish" => Some(Grant::Publish),
            "subscribe" => Some(Grant::Subscribe),
            "data" => Some(Grant::Data),
            _ => None,
        }
    }
}

/// A published track as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub track_id: TrackId,
    pub participant_id: ParticipantId,
    pub user_id: String,
    pub kind: TrackKind,
    pub source: TrackSource,
    pub muted: bool,
    /// Codec mime type once known, e.g. `video/VP8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// True when the publisher sends several simulcast layers.
    #[serde(default)]
    pub simulcast: bool,
}

/// A participant in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub participant_id: ParticipantId,
    pub user_id: String,
    pub tracks: Vec<TrackInfo>,
    /// Milliseconds since the Unix epoch when the participant joined.
    pub joined_at_ms: u64,
}

/// A track the client announces before (or together with) the offer that
/// carries it. `mid` is the transceiver's mid after `setLocalDescription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub mid: String,
    pub kind: TrackKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TrackSource>,
    /// Preferred codecs in order, e.g. `["H264", "VP8"]`. The server answers
    /// with the first of these that the offer contains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<String>,
}

/// Messages a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message on a new socket. The token is in the URL.
    Join {
        version: u32,
        /// Subscribe to every track in the room automatically (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auto_subscribe: Option<bool>,
    },
    /// An SDP offer from the client (for its own publications).
    Offer {
        sdp: String,
    },
    /// The client's answer to a server offer (for subscriptions).
    Answer {
        sdp: String,
    },
    /// Declares a track the next offer publishes.
    Publish(PublishRequest),
    /// Stops publishing a track; the client also removes it from its offer.
    Unpublish {
        track_id: TrackId,
    },
    /// Mutes or unmutes one of the client's own tracks.
    Mute {
        track_id: TrackId,
        muted: bool,
    },
    /// Subscribes to a track (needed when auto_subscribe is false, or after
    /// an unsubscribe).
    Subscribe {
        track_id: TrackId,
    },
    Unsubscribe {
        track_id: TrackId,
    },
    /// Keepalive; the server answers with `pong` carrying the same `ts`.
    Ping {
        ts: u64,
    },
    Leave,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    ClientLeft,
    Disconnected,
    PingTimeout,
    Kicked,
    RoomClosed,
    ServerShutdown,
    Error,
}

/// Messages the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        protocol_version: u32,
        server_version: String,
        room: String,
        participant_id: ParticipantId,
        user_id: String,
        /// Everyone else already in the room, with their tracks.
        participants: Vec<ParticipantInfo>,
        /// How often the client should ping, and when the server gives up.
        ping_interval_ms: u64,
        ping_timeout_ms: u64,
    },
    /// A server offer: new subscriptions were added or removed.
    Offer {
        sdp: String,
    },
    /// The answer to the client's offer.
    Answer {
        sdp: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
        user_id: String,
        reason: LeaveReason,
    },
    /// Sent to everyone, the publisher included (it learns the track id of its mid).
    TrackPublished {
        track: TrackInfo,
        /// The publisher's mid, present only in the copy sent to the publisher.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
    },
    TrackUnpublished {
        track_id: TrackId,
        participant_id: ParticipantId,
    },
    TrackMuted {
        track_id: TrackId,
        participant_id: ParticipantId,
        muted: bool,
    },
    /// The subscription to `track_id` arrives on the transceiver with `mid`
    /// (after the offer that adds it is applied).
    Subscribed {
        track_id: TrackId,
        mid: String,
    },
    Unsubscribed {
        track_id: TrackId,
    },
    Pong {
        ts: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The server is closing this session (shutdown, kick, room closed).
    Leave {
        reason: LeaveReason,
    },
    /// An administrator changed this participant's grants. Tracks it may no
    /// longer publish have been unpublished; subscriptions it may no longer
    /// hold have been removed.
    PermissionsChanged {
        grants: Vec<Grant>,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

impl ClientMessage {
    /// Parses one text frame. Oversized, malformed and unknown messages come
    /// back as the error the server replies with.
    pub fn parse(text: &str) -> Result<ClientMessage, (ErrorCode, String)> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err((
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}",
                    text.len()
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| (ErrorCode::MalformedMessage, format!("not valid JSON: {e}")))?;
        let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
            return Err((
                ErrorCode::MalformedMessage,
                "message has no string field `type`".to_string(),
            ));
        };
        if !KNOWN_CLIENT_TYPES.contains(&kind) {
            return Err((
                ErrorCode::UnknownMessage,
                format!("unknown message type `{kind}`"),
            ));
        }
        let kind = kind.to_string();
        serde_json::from_value(value).map_err(|e| {
            (
                ErrorCode::MalformedMessage,
                format!("bad `{kind}` message: {e}"),
            )
        })
    }
}

const KNOWN_CLIENT_TYPES: &[&str] = &[
    "join",
    "offer",
    "answer",
    "publish",
    "unpublish",
    "mute",
    "subscribe",
    "unsubscribe",
    "ping",
    "leave",
];

/// The JSON body of an HTTP error (WHIP/WHEP, health, later the REST API):
/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpErrorBody {
    pub error: HttpError,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub code: ErrorCode,
    pub message: String,
}

/// The body of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub rooms: u64,
    pub participants: u64,
    /// How long the server took from reading a media datagram to sending
    /// what it forwarded, since it started (absent before any media).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding_latency: Option<LatencySummary>,
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests;
