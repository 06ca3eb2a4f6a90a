//! Event callbacks (issue 3): the signed HTTP notifications Weir sends to an
//! application's callback URL, and when to retry them.
//!
//! The pure parts: the event body ([`CallbackEvent`]), the signature
//! ([`sign`]) and the retry schedule ([`RetryPolicy`]). On them: the
//! [`Dispatcher`] where the server emits events, whose writer task puts
//! them into the durable outbox of the control-plane database
//! (`weir_store`'s `event_outbox`), and the sender task that POSTs them,
//! in order per room, at least once (`docs/callbacks.md`).

mod dispatcher;
mod event;
mod retry;
mod sender;
mod signature;
#[cfg(test)]
mod tests;

pub use dispatcher::{DeliverySettings, Dispatcher, NewEvent};
pub use event::{CallbackEvent, EventTrack, EventType};
pub use retry::{RetryDecision, RetryPolicy};
pub use signature::{sign, verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};
