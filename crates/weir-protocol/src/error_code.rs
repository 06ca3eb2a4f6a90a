//! Error codes shared by the signalling socket and the HTTP endpoints.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A machine-readable error code (SCREAMING_SNAKE_CASE on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The message is not JSON, or lacks required fields.
    MalformedMessage,
    /// The message's `type` is not one this protocol version knows.
    UnknownMessage,
    /// The message exceeds the size limit.
    MessageTooLarge,
    /// `join` named a protocol version the server does not speak.
    UnsupportedVersion,
    /// A message other than `join` arrived before `join`.
    NotJoined,
    /// A second `join` on the same socket.
    AlreadyJoined,
    /// No token in the request.
    TokenMissing,
    /// The token is not a well-formed JWT, or its signature does not verify.
    TokenInvalid,
    /// The token's `exp` is in the past.
    TokenExpired,
    /// The token was issued for another room.
    TokenWrongRoom,
    /// The token names an application the server does not know.
    UnknownApp,
    /// The token's application is disabled.
    AppDisabled,
    /// The application requires room permissions: the token must name the
    /// exact room and carry explicit grants.
    RoomPermissionRequired,
    /// The participant lacks the grant this action needs.
    PermissionDenied,
    /// The room has reached its participant limit.
    RoomFull,
    /// The SDP could not be parsed or applied.
    SdpInvalid,
    /// The request names a track that does not exist (or is not yours).
    TrackNotFound,
    /// The request names a room or participant that does not exist.
    NotFound,
    /// Wrong content type, or a request the endpoint does not accept.
    BadRequest,
    /// No ping within the timeout.
    PingTimeout,
    /// The server is shutting down and accepts no new sessions.
    ServerShuttingDown,
    /// An unexpected server-side failure.
    Internal,
}

impl ErrorCode {
    /// The wire spelling, e.g. `TOKEN_EXPIRED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedMessage => "MALFORMED_MESSAGE",
            ErrorCode::UnknownMessage => "UNKNOWN_MESSAGE",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::NotJoined => "NOT_JOINED",
            ErrorCode::AlreadyJoined => "ALREADY_JOINED",
            ErrorCode::TokenMissing => "TOKEN_MISSING",
            ErrorCode::TokenInvalid => "TOKEN_INVALID",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::TokenWrongRoom => "TOKEN_WRONG_ROOM",
            ErrorCode::UnknownApp => "UNKNOWN_APP",
            ErrorCode::AppDisabled => "APP_DISABLED",
            ErrorCode::RoomPermissionRequired => "ROOM_PERMISSION_REQUIRED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::RoomFull => "ROOM_FULL",
            ErrorCode::SdpInvalid => "SDP_INVALID",
            ErrorCode::TrackNotFound => "TRACK_NOT_FOUND",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::PingTimeout => "PING_TIMEOUT",
            ErrorCode::ServerShuttingDown => "SERVER_SHUTTING_DOWN",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
