//! The [`Dispatcher`]: where the server emits events, and the writer task
//! that puts them into the database's outbox for the [sender](super::sender).
//!
//! `emit` never waits: it stamps the event (id, time) and queues it for the
//! writer, which stores batches of events in one transaction each (only
//! those the application's callback configuration asks for) and then wakes
//! the sender. Once an event is in the outbox it survives restarts and
//! receiver outages; [`Dispatcher::flush`] waits until everything emitted so
//! far is there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};
use weir_store::{
    CallbackConfig, NewOutboxEvent, OutboxSequencer, RetryOutcome, Store, StoreError,
};

use super::sender::Sender;
use super::{CallbackEvent, EventTrack, EventType, RetryPolicy};
use crate::config::CallbacksConfig;
use crate::serve::metrics::ServerMetrics;

/// Most events stored in one transaction.
const MAX_BATCH: usize = 256;
/// Longest pause between two tries to store a batch while the database fails.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(10);

/// An event as the server emits it; the dispatcher adds its id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: EventType,
    pub app_id: String,
    pub room_id: String,
    pub user_id: Option<String>,
    pub track: Option<EventTrack>,
    /// More fields at the top level of the body (for event types that carry
    /// more). The body's own names (`event_id`, `room_id`, ...) are dropped.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A fixed event id for an event that must be sent once even if it is
    /// emitted again after a crash (the outbox skips an id it holds);
    /// `None`: a fresh random id.
    pub event_id: Option<String>,
}

impl NewEvent {
    /// An event of a room, without user, track or extra fields.
    pub fn room(event_type: EventType, app_id: &str, room_id: &str) -> NewEvent {
        NewEvent {
            event_type,
            app_id: app_id.to_string(),
            room_id: room_id.to_string(),
            user_id: None,
            track: None,
            extra: serde_json::Map::new(),
            event_id: None,
        }
    }

    /// The body to deliver: a new event id, `timestamp_ms`, and the extra
    /// fields that do not collide with the body's own.
    fn stamp(self, timestamp_ms: u64) -> CallbackEvent {
        let mut extra = self.extra;
        for name in CallbackEvent::RESERVED_FIELDS {
            if extra.remove(name).is_some() {
                warn!(
                    field = name,
                    event_type = self.event_type.as_str(),
                    "dropped an extra event field that would replace a body field"
                );
            }
        }
        CallbackEvent {
            event_id: self.event_id.unwrap_or_else(new_event_id),
            event_type: self.event_type,
            app_id: self.app_id,
            room_id: self.room_id,
            user_id: self.user_id,
            track: self.track,
            timestamp_ms,
            extra,
        }
    }
}

/// `ev_` and 32 random hex digits.
fn new_event_id() -> String {
    format!("ev_{:032x}", rand::random::<u128>())
}

/// How callbacks are sent and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    /// How long a receiver has to answer (the contract says 5 s).
    pub request_timeout: Duration,
    /// Rooms whose events are sent in parallel (one at a time per room).
    pub concurrency: usize,
    /// Delivered events older than this are deleted; `None` keeps them.
    pub retention: Option<Duration>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(5),
            concurrency: 16,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl DeliverySettings {
    /// The settings of the `[callbacks]` configuration section.
    pub fn from_config(config: &CallbacksConfig) -> DeliverySettings {
        DeliverySettings {
            retry: RetryPolicy {
                initial_delay: Duration::from_millis(config.retry_initial_ms),
                max_delay: Duration::from_secs(config.retry_max_delay_seconds),
                give_up_after: Duration::from_secs(config.give_up_after_seconds),
            },
            retention: (config.retention_days > 0)
                .then(|| Duration::from_secs(config.retention_days.saturating_mul(24 * 3600))),
            ..DeliverySettings::default()
        }
    }
}

/// The handle where events are emitted (cheap to clone; every clone feeds
/// the same writer). Dropping every clone stops the writer and the sender
/// like [`Dispatcher::shutdown`] does.
#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    commands: mpsc::UnboundedSender<Command>,
    wake_sender: Arc<Notify>,
    metrics: Arc<ServerMetrics>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("stopped", &self.commands.is_closed())
            .finish()
    }
}

enum Command {
    Emit(CallbackEvent),
    /// Answered once every event queued before it is stored.
    Flush(oneshot::Sender<()>),
    /// Stores what is queued, stops the sender, then answers.
    Shutdown(oneshot::Sender<()>),
}

impl Dispatcher {
    /// Starts the writer and the sender. The sender begins with whatever
    /// the outbox holds: events left pending by an earlier run are sent.
    pub async fn start(
        store: Store,
        settings: DeliverySettings,
        metrics: Arc<ServerMetrics>,
    ) -> Result<Dispatcher, StoreError> {
        let sequencer = store.outbox_sequencer().await?;
        let wake_sender = Arc::new(Notify::new());
        let (stop_sender, stop) = watch::channel(false);
        let sender = tokio::spawn(
            Sender::new(
                store.clone(),
                settings,
                metrics.clone(),
                wake_sender.clone(),
                stop,
            )
            .run(),
        );
        let (commands, queue) = mpsc::unbounded_channel();
        let writer = Writer {
            store: store.clone(),
            sequencer,
            queue,
            wake_sender: wake_sender.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(writer.run(stop_sender, sender));
        Ok(Dispatcher {
            store,
            commands,
            wake_sender,
            metrics,
        })
    }

    /// Queues an event for delivery; never waits. The event gets its id and
    /// `timestamp_ms` now. After shutdown the event is dropped and counted.
    pub fn emit(&self, event: NewEvent) {
        let event = event.stamp(unix_now_ms_u64());
        if self.commands.send(Command::Emit(event)).is_err() {
            self.metrics.callbacks_dropped.inc();
            debug!("event emitted after the dispatcher stopped: dropped");
        }
    }

    /// Makes the sender look for due events now (after an event was made
    /// pending again outside the dispatcher).
    pub fn wake(&self) {
        self.wake_sender.notify_one();
    }

    /// Sends a failed event of the application again, now, with a fresh
    /// retry window (see [`Store::retry_failed_event`]).
    pub async fn retry_failed(
        &self,
        app_id: &str,
        event_id: &str,
    ) -> Result<RetryOutcome, StoreError> {
        let outcome = self
            .store
            .retry_failed_event(app_id, event_id, unix_now_ms())
            .await?;
        if matches!(outcome, RetryOutcome::Retried(_)) {
            self.wake();
        }
        Ok(outcome)
    }

    /// Waits until every event emitted so far is in the database (or was
    /// not wanted by its application's configuration).
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }

    /// Stores every event emitted so far, then stops the sender once its
    /// running attempts end (each within the request timeout). Events
    /// emitted afterwards are dropped. Waits as long as the database keeps
    /// failing: bound it with a timeout.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = stopped.await;
        }
    }
}

/// The task that moves emitted events into the outbox.
struct Writer {
    store: Store,
    sequencer: OutboxSequencer,
    queue: mpsc::UnboundedReceiver<Command>,
    wake_sender: Arc<Notify>,
    metrics: Arc<ServerMetrics>,
}

impl Writer {
    async fn run(mut self, stop_sender: watch::Sender<bool>, sender: JoinHandle<()>) {
        let mut shutdowns = Vec::new();
        while shutdowns.is_empty() {
            let Some(first) = self.queue.recv().await else {
                break;
            };
            let mut events = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Command::Emit(event) => events.push(event),
                    Command::Flush(done) => flushes.push(done),
                    Command::Shutdown(done) => shutdowns.push(done),
                }
                next = if events.len() < MAX_BATCH {
                    self.queue.try_recv().ok()
                } else {
                    None
                };
            }
            self.store_until_done(&events).await;
            self.wake_sender.notify_one();
            for done in flushes {
                let _ = done.send(());
            }
        }
        // Nothing is accepted any more.
        self.queue.close();
        let _ = stop_sender.send(true);
        if let Err(e) = sender.await {
            error!(error = %e, "the callback sender task failed");
        }
        // What came after the shutdown request is dropped (and counted).
        while let Ok(command) = self.queue.try_recv() {
            match command {
                Command::Emit(_) => self.metrics.callbacks_dropped.inc(),
                Command::Flush(done) | Command::Shutdown(done) => shutdowns.push(done),
            }
        }
        for done in shutdowns {
            let _ = done.send(());
        }
    }

    /// Stores `events`, trying again (with backoff) while the database fails.
    async fn store_until_done(&mut self, events: &[CallbackEvent]) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store_batch(events).await {
                Ok(stored) => {
                    for _ in 0..stored {
                        self.metrics.callbacks_enqueued.inc();
                    }
                    return;
                }
                Err(e) => {
                    warn!(error = %e, events = events.len(), retry_in = ?backoff,
                        "cannot store events in the callback outbox");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_STORE_BACKOFF);
                }
            }
        }
    }

    /// Stores the events whose application wants them; returns how many.
    async fn store_batch(&mut self, events: &[CallbackEvent]) -> Result<usize, StoreError> {
        let mut configs: HashMap<&str, Option<CallbackConfig>> = HashMap::new();
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let app_id = event.app_id.as_str();
            if !configs.contains_key(app_id) {
                let config = match self.store.callback_config(app_id).await {
                    Ok(config) => config,
                    Err(StoreError::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                configs.insert(app_id, config);
            }
            let config = configs.get(app_id).and_then(Option::as_ref);
            if !wants(config, event.event_type) {
                continue;
            }
            match outbox_row(event) {
                Ok(row) => rows.push(row),
                Err(e) => error!(error = %e, event_id = %event.event_id,
                    "cannot serialise a callback event: dropped"),
            }
        }
        if !rows.is_empty() {
            self.store
                .enqueue_events(&mut self.sequencer, &rows)
                .await?;
        }
        Ok(rows.len())
    }
}

/// Whether an application with `config` wants events of `event_type`.
fn wants(config: Option<&CallbackConfig>, event_type: EventType) -> bool {
    config.is_some_and(|config| {
        config.events.is_empty() || config.events.iter().any(|e| e == event_type.as_str())
    })
}

fn outbox_row(event: &CallbackEvent) -> Result<NewOutboxEvent, serde_json::Error> {
    Ok(NewOutboxEvent {
        event_id: event.event_id.clone(),
        app_id: event.app_id.clone(),
        room_id: event.room_id.clone(),
        event_type: event.event_type.as_str().to_string(),
        body: serde_json::to_string(event)?,
        created_at_ms: i64::try_from(event.timestamp_ms).unwrap_or(i64::MAX),
    })
}

/// The wall clock, in milliseconds since the Unix epoch: the one place the
/// callbacks read it.
pub(super) fn unix_now_ms() -> i64 {
    i64::try_from(unix_now_ms_u64()).unwrap_or(i64::MAX)
}

fn unix_now_ms_u64() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(events: &[&str]) -> CallbackConfig {
        CallbackConfig {
            url: "http://127.0.0.1:9/".into(),
            key: "k".repeat(32),
            events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn only_configured_event_types_are_wanted() {
        assert!(!wants(None, EventType::RoomCreated));
        assert!(wants(Some(&config(&[])), EventType::TrackUnpublished));
        let some = config(&["ROOM_CREATED", "PARTICIPANT_LEFT"]);
        assert!(wants(Some(&some), EventType::RoomCreated));
        assert!(wants(Some(&some), EventType::ParticipantLeft));
        assert!(!wants(Some(&some), EventType::ParticipantJoined));
    }

    #[test]
    fn stamping_adds_an_id_and_keeps_extra_fields_that_do_not_collide() {
        let mut event = NewEvent::room(EventType::RoomCreated, "app_1", "r");
        event.extra.insert("recording_id".into(), "rec_1".into());
        event.extra.insert("room_id".into(), "forged".into());
        event.extra.insert("event_id".into(), "forged".into());
        let a = event.clone().stamp(42);
        let b = event.stamp(42);
        assert_ne!(a.event_id, b.event_id);
        assert!(a.event_id.starts_with("ev_") && a.event_id.len() == 35);
        assert!(a.event_id[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.timestamp_ms, 42);
        assert_eq!(a.room_id, "r");
        assert_eq!(a.extra.len(), 1);
        let body: serde_json::Value =
            serde_json::from_str(&outbox_row(&a).expect("serialises").body).expect("JSON");
        assert_eq!(body["room_id"], "r");
        assert_eq!(body["event_id"], a.event_id.as_str());
        assert_eq!(body["recording_id"], "rec_1");
    }

    #[test]
    fn settings_follow_the_configuration() {
        let defaults = DeliverySettings::from_config(&CallbacksConfig::default());
        assert_eq!(defaults, DeliverySettings::default());
        let settings = DeliverySettings::from_config(&CallbacksConfig {
            retry_initial_ms: 20,
            retry_max_delay_seconds: 2,
            give_up_after_seconds: 60,
            retention_days: 0,
        });
        assert_eq!(settings.retry.initial_delay, Duration::from_millis(20));
        assert_eq!(settings.retry.max_delay, Duration::from_secs(2));
        assert_eq!(settings.retry.give_up_after, Duration::from_secs(60));
        assert_eq!(settings.retention, None);
        assert_eq!(settings.request_timeout, Duration::from_secs(5));
    }
}
