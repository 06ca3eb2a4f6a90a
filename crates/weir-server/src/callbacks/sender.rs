//! The sender task: POSTs outbox events to their application's callback
//! URL, signed, and records each outcome.
//!
//! It asks the outbox for due events (the oldest pending event of each
//! room, see [`weir_store::Store::due_events`]), claims each for one
//! attempt and runs up to `concurrency` attempts at once: rooms in
//! parallel, one event at a time within a room. It wakes when the writer
//! stored events, when an attempt ends, and when the next event is due.
//! Database errors are logged and retried later; nothing here panics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use weir_store::{AttemptFailure, OutboxEvent, Store, StoreError};

use super::dispatcher::{unix_now_ms, DeliverySettings};
use super::{sign, RetryDecision, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::serve::metrics::ServerMetrics;

/// Added to the request timeout for a claim's lease: an attempt whose
/// outcome is not recorded by then (the process died) is made again.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Longest sleep without looking at the outbox (catches events that became
/// due by other means than this process).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Pause when due events exist but none could be claimed.
const CONTENDED_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause after database errors.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);
/// How often delivered events past their retention are deleted.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// The sender task's state.
pub(super) struct Sender {
    attempt: Arc<Attempter>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    concurrency: usize,
    retention: Option<Duration>,
}

impl Sender {
    pub(super) fn new(
        store: Store,
        settings: DeliverySettings,
        metrics: Arc<ServerMetrics>,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> Sender {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                error!(error = %e, "cannot configure the callback HTTP client; using the defaults");
                reqwest::Client::new()
            });
        Sender {
            attempt: Arc::new(Attempter {
                store,
                http,
                settings: settings.clone(),
                metrics,
            }),
            wake,
            stop,
            concurrency: settings.concurrency.max(1),
            retention: settings.retention,
        }
    }

    /// Runs until told to stop, then waits for the running attempts.
    pub(super) async fn run(mut self) {
        let mut running = JoinSet::new();
        let mut errors = 0u32;
        let mut housekeeping_at = Instant::now();
        while !*self.stop.borrow() {
            if Instant::now() >= housekeeping_at {
                self.delete_expired().await;
                housekeeping_at = Instant::now() + HOUSEKEEPING_INTERVAL;
            }
            let wake_at = match self.start_due_attempts(&mut running).await {
                Ok(wake_at) => {
                    errors = 0;
                    wake_at
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    let pause = error_backoff(errors);
                    warn!(error = %e, retry_in = ?pause, "callback sender: database error");
                    Instant::now() + pause
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {}
                Some(ended) = running.join_next(), if !running.is_empty() => {
                    if let Err(e) = ended {
                        error!(error = %e, "a callback attempt task failed");
                    }
                }
                changed = self.stop.changed() => {
                    // The writer is gone without a word: stop too.
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        debug!(running = running.len(), "callback sender stopping");
        while let Some(ended) = running.join_next().await {
            if let Err(e) = ended {
                error!(error = %e, "a callback attempt task failed");
            }
        }
    }

    /// Claims and starts due attempts while slots are free; returns when
    /// to look again (an ending attempt or a wake-up may come sooner).
    async fn start_due_attempts(&self, running: &mut JoinSet<()>) -> Result<Instant, StoreError> {
        let store = &self.attempt.store;
        let free = self.concurrency.saturating_sub(running.len());
        if free == 0 {
            return Ok(Instant::now() + MAX_IDLE);
        }
        let now_ms = unix_now_ms();
        let due = store
            .due_events(now_ms, u32::try_from(free).unwrap_or(u32::MAX))
            .await?;
        let lease_ms = duration_ms(self.attempt.settings.request_timeout + LEASE_MARGIN);
        let mut started = 0usize;
        for event in due {
            if store
                .claim_event(&event, now_ms, now_ms.saturating_add(lease_ms))
                .await?
            {
                running.spawn(self.attempt.clone().run(event, now_ms));
                started += 1;
            }
        }
        if started == free {
            // Maybe more is due: look again once a slot frees up.
            return Ok(Instant::now() + MAX_IDLE);
        }
        let now = Instant::now();
        Ok(match store.next_due_at_ms().await? {
            None => now + MAX_IDLE,
            Some(due_ms) if due_ms <= now_ms => now + CONTENDED_PAUSE,
            Some(due_ms) => {
                let wait = Duration::from_millis(u64::try_from(due_ms - now_ms).unwrap_or(0));
                now + wait.min(MAX_IDLE)
            }
        })
    }

    async fn delete_expired(&self) {
        let Some(retention) = self.retention else {
            return;
        };
        let before = unix_now_ms().saturating_sub(duration_ms(retention));
        match self.attempt.store.delete_delivered_events(before).await {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, "deleted delivered callback events past retention"),
            Err(e) => warn!(error = %e, "cannot delete old callback events"),
        }
    }
}

/// What one attempt needs.
struct Attempter {
    store: Store,
    http: reqwest::Client,
    settings: DeliverySettings,
    metrics: Arc<ServerMetrics>,
}

/// How an attempt ended.
enum Outcome {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// Try again later (or give up, per the retry policy).
    Failed(AttemptFailure),
    /// Trying again cannot help: give up now.
    Undeliverable(AttemptFailure),
    /// The configuration could not be read: leave the claim to expire.
    StoreUnavailable(StoreError),
}

impl Attempter {
    /// One attempt of `event`, claimed at `claimed_at_ms`, and its record.
    async fn run(self: Arc<Self>, event: OutboxEvent, claimed_at_ms: i64) {
        let outcome = self.deliver(&event).await;
        let now_ms = unix_now_ms();
        let recorded = match outcome {
            Outcome::Delivered(status) => {
                self.metrics.callbacks_delivered.inc();
                debug!(event_id = %event.event_id, status, "callback delivered");
                self.store
                    .mark_delivered(&event.event_id, now_ms, status)
                    .await
            }
            Outcome::Failed(failure) => {
                self.metrics.callbacks_failed_attempts.inc();
                let first_ms = event.first_attempt_at_ms.unwrap_or(claimed_at_ms);
                let since_first =
                    Duration::from_millis(u64::try_from(now_ms - first_ms).unwrap_or(0));
                let failed_attempts = event.attempts.saturating_add(1);
                match self
                    .settings
                    .retry
                    .after_failure(failed_attempts, since_first)
                {
                    RetryDecision::RetryIn(delay) => {
                        debug!(event_id = %event.event_id, error = %failure.error,
                            retry_in = ?delay, "callback attempt failed");
                        self.store
                            .record_failed_attempt(
                                &event.event_id,
                                &failure,
                                now_ms.saturating_add(duration_ms(delay)),
                            )
                            .await
                    }
                    RetryDecision::GiveUp => self.give_up(&event, &failure).await,
                }
            }
            Outcome::Undeliverable(failure) => self.give_up(&event, &failure).await,
            Outcome::StoreUnavailable(e) => {
                warn!(event_id = %event.event_id, error = %e,
                    "cannot read the callback configuration; the event will be tried again");
                return;
            }
        };
        if let Err(e) = recorded {
            warn!(event_id = %event.event_id, error = %e,
                "cannot record a callback attempt; the event will be tried again");
        }
    }

    async fn give_up(
        &self,
        event: &OutboxEvent,
        failure: &AttemptFailure,
    ) -> Result<(), StoreError> {
        self.metrics.callbacks_gave_up.inc();
        warn!(event_id = %event.event_id, app_id = %event.app_id, error = %failure.error,
            attempts = event.attempts.saturating_add(1), "gave up on a callback");
        self.store.mark_failed(&event.event_id, failure).await
    }

    /// POSTs the event's body to its application's current callback URL.
    async fn deliver(&self, event: &OutboxEvent) -> Outcome {
        let config = match self.store.callback_config(&event.app_id).await {
            Ok(Some(config)) => config,
            Ok(None) | Err(StoreError::NotFound { .. }) => {
                return Outcome::Undeliverable(AttemptFailure {
                    error: "the application has no callback configuration".to_string(),
                    status_code: None,
                })
            }
            Err(e) => return Outcome::StoreUnavailable(e),
        };
        // Milliseconds since the Unix epoch, as signed.
        let timestamp = unix_now_ms().to_string();
        let signature = sign(&config.key, &timestamp, event.body.as_bytes());
        let response = self
            .http
            .post(&config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(event.body.clone())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) => Outcome::Failed(AttemptFailure {
                error: format!("HTTP {}", response.status()),
                status_code: Some(response.status().as_u16()),
            }),
            Err(e) if e.is_builder() => Outcome::Undeliverable(AttemptFailure {
                error: describe(&e),
                status_code: None,
            }),
            Err(e) if e.is_timeout() => Outcome::Failed(AttemptFailure {
                error: format!(
                    "no answer within {} ms",
                    duration_ms(self.settings.request_timeout)
                ),
                status_code: None,
            }),
            Err(e) => Outcome::Failed(AttemptFailure {
                error: describe(&e),
                status_code: None,
            }),
        }
    }
}

/// The error and its causes (`error sending request: client error
/// (Connect): tcp connect error: Connection refused (os error 111)`),
/// without the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.ends_with(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = e.source();
    }
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    text
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// 0.5 s, doubling per consecutive error, at most [`MAX_ERROR_BACKOFF`].
fn error_backoff(consecutive_errors: u32) -> Duration {
    let exponent = consecutive_errors.saturating_sub(1).min(16);
    Duration::from_millis(500)
        .saturating_mul(1u32 << exponent)
        .min(MAX_ERROR_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_back_off_up_to_a_cap() {
        assert_eq!(error_backoff(1), Duration::from_millis(500));
        assert_eq!(error_backoff(2), Duration::from_secs(1));
        assert_eq!(error_backoff(7), MAX_ERROR_BACKOFF);
        assert_eq!(error_backoff(u32::MAX), MAX_ERROR_BACKOFF);
    }
}
