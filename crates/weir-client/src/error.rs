//! The client's error type.

use weir_protocol::ErrorCode;

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a protocol error (`{"type":"error"}` on the
    /// socket, or an HTTP error body from WHIP/WHEP).
    #[error("server error {code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// An HTTP request got an unexpected status without a protocol error body.
    #[error("HTTP {status}: {body}")]
    HttpStatus { status: u16, body: String },
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something this client does not understand.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Offer/answer failed on the client side.
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    /// The signalling session has ended.
    #[error("the session is closed")]
    Closed,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

impl Error {
    /// The protocol error code, when the server refused something.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
