//! Event callbacks (issue 3): the signed HTTP notifications Weir sends to an
//! application's callback URL, and when to retry them.
//!
//! This module holds the pure parts: the event body, the signature and the
//! retry schedule. The durable outbox (in the control-plane database) and the
//! HTTP sender build on them.

mod event;
mod retry;
mod signature;

pub use event::{CallbackEvent, EventTrack, EventType};
pub use retry::{RetryDecision, RetryPolicy};
pub use signature::{sign, verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};
