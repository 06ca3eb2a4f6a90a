//! The dispatcher and the sender against a local receiver and a SQLite
//! outbox in a temp dir: signatures, headers, order per room, outages,
//! retries, restarts and giving up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_store::{CallbackConfig, NewApp, OutboxStatus, RetryOutcome, Store};

use super::*;
use crate::serve::metrics::ServerMetrics;

/// Upper bound of any wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------ receiver

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Answers 200 after this long (past the sender's timeout: a timeout).
    Slow(Duration),
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    content_type: String,
    timestamp: String,
    signature: String,
    body: String,
    json: serde_json::Value,
}

impl Received {
    fn event_id(&self) -> &str {
        self.json["event_id"].as_str().unwrap_or_default()
    }

    fn room_id(&self) -> &str {
        self.json["room_id"].as_str().unwrap_or_default()
    }

    fn n(&self) -> u64 {
        self.json["n"].as_u64().unwrap_or(u64::MAX)
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Answers for the next requests, in order; then `usual`.
    script: Mutex<VecDeque<Answer>>,
    usual: Mutex<Option<Answer>>,
    /// Requests being answered, in all and per room.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    in_flight_per_room: Mutex<HashMap<String, usize>>,
    /// Times a room had two requests at once (must stay 0).
    room_overlaps: AtomicUsize,
}

/// A callback receiver on 127.0.0.1 that records every request.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::default()).await
    }

    /// Listens on `addr` with `state` (to come back after [`Receiver::stop`]).
    async fn start_on(addr: SocketAddr, state: Arc<ReceiverState>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            addr,
            state,
            stop,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Closes the port; returns what to restart it with.
    async fn stop(self) -> (SocketAddr, Arc<ReceiverState>) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(WAIT, self.task).await;
        (self.addr, self.state)
    }

    fn answer_usually(&self, answer: Answer) {
        *lock(&self.state.usual) = Some(answer);
    }

    fn answer_next(&self, answers: &[Answer]) {
        lock(&self.state.script).extend(answers.iter().copied());
    }

    fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Waits until `count` different events arrived.
    async fn wait_for_events(&self, count: usize) -> Vec<Received> {
        wait_until(&format!("{count} events at the receiver"), || async {
            distinct_events(&self.received()) >= count
        })
        .await;
        self.received()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let room = json["room_id"].as_str().unwrap_or_default().to_string();
    lock(&state.received).push(Received {
        content_type: header("content-type"),
        timestamp: header(TIMESTAMP_HEADER),
        signature: header(SIGNATURE_HEADER),
        body,
        json,
    });
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_in_flight.fetch_max(now, Ordering::SeqCst);
    {
        let mut per_room = lock(&state.in_flight_per_room);
        let count = per_room.entry(room.clone()).or_default();
        *count += 1;
        if *count > 1 {
            state.room_overlaps.fetch_add(1, Ordering::SeqCst);
        }
    }
    let answer = lock(&state.script)
        .pop_front()
        .or(*lock(&state.usual))
        .unwrap_or(Answer::Status(200));
    let status = match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(count) = lock(&state.in_flight_per_room).get_mut(&room) {
        *count -= 1;
    }
    status
}

fn distinct_events(received: &[Received]) -> usize {
    received
        .iter()
        .map(Received::event_id)
        .collect::<HashSet<_>>()
        .len()
}

/// The first arrival of each event, per room, in arrival order.
fn first_arrivals_per_room(received: &[Received]) -> HashMap<String, Vec<u64>> {
    let mut seen = HashSet::new();
    let mut rooms: HashMap<String, Vec<u64>> = HashMap::new();
    for r in received {
        if seen.insert(r.event_id().to_string()) {
            rooms
                .entry(r.room_id().to_string())
                .or_default()
                .push(r.n());
        }
    }
    rooms
}

// ------------------------------------------------------------ fixture

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An application with a callback configuration in a SQLite store.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    app_id: String,
    key: String,
    metrics: Arc<ServerMetrics>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::sqlite_in(dir.path()).await.expect("open the store");
        let app_id = new_app(&store, "callbacks").await;
        Fixture {
            dir,
            store,
            app_id,
            key: "Key0123456789abcdefghijklmnopqrstuvwxyz".to_string(),
            metrics: Arc::default(),
        }
    }

    async fn send_to(&self, url: &str, events: &[EventType]) {
        self.store
            .set_callback_config(
                &self.app_id,
                CallbackConfig {
                    url: url.to_string(),
                    key: self.key.clone(),
                    events: events.iter().map(|e| e.as_str().to_string()).collect(),
                },
            )
            .await
            .expect("set the callback configuration");
    }

    async fn dispatcher(&self, settings: DeliverySettings) -> Dispatcher {
        Dispatcher::start(self.store.clone(), settings, self.metrics.clone())
            .await
            .expect("the dispatcher starts")
    }

    /// Event number `n` of `room` (`n` is in the body, to check the order).
    fn event(&self, event_type: EventType, room: &str, n: u64) -> NewEvent {
        let mut event = NewEvent::room(event_type, &self.app_id, room);
        event.user_id = Some(format!("user-{n}"));
        event.extra.insert("n".into(), n.into());
        event
    }

    async fn count(&self, status: OutboxStatus) -> u64 {
        self.store
            .list_outbox_events(&self.app_id, Some(status), 1, 1)
            .await
            .expect("list the outbox")
            .total
    }
}

async fn new_app(store: &Store, name: &str) -> String {
    store
        .create_app(NewApp {
            name: name.to_string(),
            ..NewApp::default()
        })
        .await
        .expect("create an app")
        .0
        .app_id
}

/// Retries within milliseconds, a 300 ms request timeout.
fn fast() -> DeliverySettings {
    DeliverySettings {
        retry: RetryPolicy {
            initial_delay: Duration::from_millis(30),
            max_delay: Duration::from_millis(200),
            give_up_after: Duration::from_secs(60),
        },
        request_timeout: Duration::from_millis(300),
        concurrency: 16,
        retention: None,
    }
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn delivers_signed_events_with_the_contract_headers() {
    let fixture = Fixture::new().await;
    let receiver = Receiver::start().await;
    fixture.send_to(&receiver.url(), &[]).await;
    let dispatcher = fixture.dispatcher(fast()).await;
    let before_ms = u64::try_from(dispatcher::unix_now_ms()).unwrap_or(0);

    let mut joined = fixture.event(EventType::TrackPublished, "r1", 1);
    joined.track = Some(EventTrack {
        track_id: "TR_1".into(),
        kind: weir_protocol::TrackKind::Video,
        source: weir_protocol::TrackSource::Screen,
    });
    dispatcher.emit(fixture.event(EventType::RoomCreated, "r1", 0));
    dispatcher.emit(joined);
    let received = receiver.wait_for_events(2).await;

    for r in &received {
        assert_eq!(r.content_type, "application/json");
        let sent_ms: u64 = r.timestamp.parse().expect("X-Weir-Timestamp is unix ms");
        assert!(sent_ms >= before_ms && sent_ms < before_ms + 60_000);
        assert!(
            verify(&fixture.key, &r.timestamp, r.body.as_bytes(), &r.signature),
            "the signature verifies"
        );
        assert!(!verify(
            "0".repeat(32).as_str(),
            &r.timestamp,
            r.body.as_bytes(),
            &r.signature
        ));
        let event: CallbackEvent = serde_json::from_str(&r.body).expect("the body parses");
        assert_eq!(event.app_id, fixture.app_id);
        assert_eq!(event.room_id, "r1");
        assert!(event.timestamp_ms >= before_ms);
    }
    assert_eq!(received[0].json["event_type"], "ROOM_CREATED");
    assert_eq!(received[1].json["event_type"], "TRACK_PUBLISHED");
    assert_eq!(received[1].json["track"]["source"], "screen");
    assert_eq!(received[1].json["user_id"], "user-1");

    wait_until("both delivered", || async {
        fixture.count(OutboxStatus::Delivered).await == 2
    })
    .await;
    let listed = fixture
        .store
        .list_outbox_events(&fixture.app_id, None, 1, 10)
        .await
        .expect("list");
    for event in &listed.items {
        assert_eq!(event.attempts, 1);
        assert_eq!(event.last_status_code, Some(200));
        assert!(received.iter().any(|r| r.body == event.body));
    }
    assert_eq!(fixture.metrics.callbacks_enqueued.get(), 2);
    assert_eq!(fixture.metrics.callbacks_delivered.get(), 2);
    assert_eq!(fixture.metrics.callbacks_failed_attempts.get(), 0);
    dispatcher.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn only_configured_apps_and_event_types_are_stored() {
    let fixture = Fixture::new().await;
    let unconfigured = new_app(&fixture.store, "quiet").await;
    fixture
        .send_to("http://127.0.0.1:9/hook", &[EventType::RoomCreated])
        .await;
    let dispatcher = fixture.dispatcher(fast()).await;
    dispatcher.emit(fixture.event(EventType::RoomCreated, "r", 1));
    dispatcher.emit(fixture.event(EventType::ParticipantJoined, "r", 2));
    dispatcher.emit(NewEvent::room(EventType::RoomCreated, &unconfigured, "r"));
    dispatcher.emit(NewEvent::room(EventType::RoomCreated, "app_unknown", "r"));
    dispatcher.flush().await;

    let all = fixture
        .store
        .list_outbox_events(&fixture.app_id, None, 1, 10)
        .await
        .expect("list");
    assert_eq!(all.total, 1);
    assert_eq!(all.items[0].event_type, "ROOM_CREATED");
    let quiet = fixture
        .store
        .list_outbox_events(&unconfigured, None, 1, 10)
        .await
        .expect("list");
    assert_eq!(quiet.total, 0);
    assert_eq!(fixture.metrics.callbacks_enqueued.get(), 1);
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn order_per_room_is_kept_while_rooms_run_in_parallel() {
    let fixture = Fixture::new().await;
    let receiver = Receiver::start().await;
    receiver.answer_usually(Answer::Slow(Duration::from_millis(40)));
    fixture.send_to(&receiver.url(), &[]).await;
    let settings = DeliverySettings {
        request_timeout: Duration::from_secs(5),
        ..fast()
    };
    let dispatcher = fixture.dispatcher(settings).await;
    let rooms = ["a", "b", "c", "d"];
    for n in 0..6 {
        for room in rooms {
            dispatcher.emit(fixture.event(EventType::ParticipantJoined, room, n));
        }
    }
    let received = receiver.wait_for_events(24).await;
    let per_room = first_arrivals_per_room(&received);
    for room in rooms {
        assert_eq!(
            per_room.get(room),
            Some(&(0..6).collect::<Vec<_>>()),
            "{room}"
        );
    }
    assert_eq!(
        receiver.state.room_overlaps.load(Ordering::SeqCst),
        0,
        "two events of one room were in flight at once"
    );
    assert!(
        receiver.state.most_in_flight.load(Ordering::SeqCst) > 1,
        "rooms were not delivered in parallel"
    );
    dispatcher.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_receiver_outage_loses_nothing() {
    let fixture = Fixture::new().await;
    let (addr, state) = Receiver::start().await.stop().await;
    fixture.send_to(&format!("http://{addr}/hook"), &[]).await;
    let dispatcher = fixture.dispatcher(fast()).await;
    for n in 0..5 {
        dispatcher.emit(fixture.event(EventType::ParticipantJoined, "r1", n));
        dispatcher.emit(fixture.event(EventType::ParticipantLeft, "r2", n));
    }
    wait_until("failed attempts", || async {
        fixture.metrics.callbacks_failed_attempts.get() >= 4
    })
    .await;
    let pending = fixture
        .store
        .list_outbox_events(&fixture.app_id, Some(OutboxStatus::Pending), 1, 100)
        .await
        .expect("list");
    assert_eq!(pending.total, 10);
    let tried = pending
        .items
        .iter()
        .find(|e| e.attempts > 0)
        .expect("an attempted event");
    assert_eq!(tried.last_status_code, None);
    let error = tried.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("Connection refused"), "{error}");
    assert!(!error.contains("http://"), "the URL is left out: {error}");

    let receiver = Receiver::start_on(addr, state).await;
    let received = receiver.wait_for_events(10).await;
    let per_room = first_arrivals_per_room(&received);
    assert_eq!(per_room["r1"], (0..5).collect::<Vec<_>>());
    assert_eq!(per_room["r2"], (0..5).collect::<Vec<_>>());
    wait_until("all delivered", || async {
        fixture.count(OutboxStatus::Delivered).await == 10
    })
    .await;
    dispatcher.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn errors_and_timeouts_are_retried_with_the_same_event() {
    let fixture = Fixture::new().await;
    let receiver = Receiver::start().await;
    receiver.answer_next(&[
        Answer::Status(500),
        Answer::Slow(Duration::from_secs(1)),
        Answer::Status(302),
        Answer::Status(204),
    ]);
    fixture.send_to(&receiver.url(), &[]).await;
    let dispatcher = fixture.dispatcher(fast()).await;
    dispatcher.emit(fixture.event(EventType::RoomDissolved, "r", 1));
    wait_until("delivered", || async {
        fixture.count(OutboxStatus::Delivered).await == 1
    })
    .await;

    let received = receiver.received();
    assert_eq!(received.len(), 4, "{received:?}");
    for r in &received {
        assert_eq!(r.event_id(), received[0].event_id());
        assert_eq!(
            r.body, received[0].body,
            "every attempt sends the same bytes"
        );
        assert!(verify(
            &fixture.key,
            &r.timestamp,
            r.body.as_bytes(),
            &r.signature
        ));
    }
    let event = fixture
        .store
        .outbox_event(received[0].event_id())
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(event.attempts, 4);
    assert_eq!(event.last_status_code, Some(204));
    assert_eq!(event.last_error, None);
    assert!(event.first_attempt_at_ms.is_some() && event.delivered_at_ms.is_some());
    assert_eq!(fixture.metrics.callbacks_failed_attempts.get(), 3);
    assert_eq!(fixture.metrics.callbacks_delivered.get(), 1);
    dispatcher.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn pending_events_are_sent_after_a_restart() {
    let fixture = Fixture::new().await;
    let (addr, state) = Receiver::start().await.stop().await;
    fixture.send_to(&format!("http://{addr}/hook"), &[]).await;
    let first_run = fixture.dispatcher(fast()).await;
    for n in 0..4 {
        first_run.emit(fixture.event(EventType::ParticipantJoined, "r1", n));
        first_run.emit(fixture.event(EventType::ParticipantJoined, "r2", n));
    }
    wait_until("a failed attempt", || async {
        fixture.metrics.callbacks_failed_attempts.get() >= 1
    })
    .await;
    first_run.shutdown().await;
    fixture.store.close().await;

    // A new process: the store reopened from the file, a new dispatcher.
    let store = Store::sqlite_in(fixture.dir.path()).await.expect("reopen");
    let receiver = Receiver::start_on(addr, state).await;
    let metrics = Arc::new(ServerMetrics::default());
    let second_run = Dispatcher::start(store.clone(), fast(), metrics.clone())
        .await
        .expect("the dispatcher starts");
    second_run.emit(fixture.event(EventType::ParticipantLeft, "r1", 4));
    let received = receiver.wait_for_events(9).await;
    let per_room = first_arrivals_per_room(&received);
    assert_eq!(per_room["r1"], (0..5).collect::<Vec<_>>());
    assert_eq!(per_room["r2"], (0..4).collect::<Vec<_>>());
    wait_until("all delivered", || async {
        metrics.callbacks_delivered.get() == 9
    })
    .await;
    second_run.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn gives_up_after_the_window_and_a_retry_delivers() {
    let fixture = Fixture::new().await;
    let receiver = Receiver::start().await;
    receiver.answer_usually(Answer::Status(503));
    fixture.send_to(&receiver.url(), &[]).await;
    let settings = DeliverySettings {
        retry: RetryPolicy {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            give_up_after: Duration::from_millis(300),
        },
        ..fast()
    };
    let dispatcher = fixture.dispatcher(settings).await;
    dispatcher.emit(fixture.event(EventType::ParticipantJoined, "r", 1));
    dispatcher.emit(fixture.event(EventType::ParticipantLeft, "r", 2));
    wait_until("both failed", || async {
        fixture.count(OutboxStatus::Failed).await == 2
    })
    .await;

    // The room's second event was tried only after the first was given up.
    let received = receiver.received();
    let last_of_first = received.iter().rposition(|r| r.n() == 1);
    let first_of_second = received.iter().position(|r| r.n() == 2);
    assert!(last_of_first < first_of_second, "{received:?}");
    let failed = fixture
        .store
        .list_outbox_events(&fixture.app_id, Some(OutboxStatus::Failed), 1, 10)
        .await
        .expect("list");
    for event in &failed.items {
        assert!(event.attempts >= 3, "{event:?}");
        assert_eq!(event.last_status_code, Some(503));
        assert_eq!(event.next_attempt_at_ms, None);
    }
    assert_eq!(fixture.metrics.callbacks_gave_up.get(), 2);

    // An operator's retry, once the receiver is healthy again.
    receiver.answer_usually(Answer::Status(200));
    let event_id = &failed.items[0].event_id;
    let outcome = dispatcher
        .retry_failed(&fixture.app_id, event_id)
        .await
        .expect("retry");
    assert!(matches!(outcome, RetryOutcome::Retried(_)));
    wait_until("the retried event delivered", || async {
        fixture.count(OutboxStatus::Delivered).await == 1
    })
    .await;
    dispatcher.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn events_of_a_deleted_application_fail() {
    let fixture = Fixture::new().await;
    let (addr, _) = Receiver::start().await.stop().await;
    fixture.send_to(&format!("http://{addr}/hook"), &[]).await;
    let dispatcher = fixture.dispatcher(fast()).await;
    dispatcher.emit(fixture.event(EventType::RoomCreated, "r", 1));
    dispatcher.flush().await;
    let listed = fixture
        .store
        .list_outbox_events(&fixture.app_id, None, 1, 10)
        .await
        .expect("list");
    let event_id = listed.items[0].event_id.clone();
    fixture
        .store
        .set_app_status(&fixture.app_id, weir_store::AppStatus::Disabled)
        .await
        .expect("disable");
    fixture
        .store
        .delete_app(&fixture.app_id)
        .await
        .expect("delete");

    wait_until("the event failed", || async {
        matches!(
            fixture.store.outbox_event(&event_id).await,
            Ok(Some(event)) if event.status == OutboxStatus::Failed
        )
    })
    .await;
    let event = fixture
        .store
        .outbox_event(&event_id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        event.last_error.as_deref(),
        Some("the application has no callback configuration")
    );
    dispatcher.shutdown().await;
}

#[tokio::test]
async fn after_shutdown_events_are_dropped_and_counted() {
    let fixture = Fixture::new().await;
    fixture.send_to("http://127.0.0.1:9/hook", &[]).await;
    let dispatcher = fixture.dispatcher(fast()).await;
    let clone = dispatcher.clone();
    dispatcher.emit(fixture.event(EventType::RoomCreated, "r", 1));
    dispatcher.shutdown().await;
    assert_eq!(
        fixture.count(OutboxStatus::Pending).await,
        1,
        "stored first"
    );
    clone.emit(fixture.event(EventType::RoomDissolved, "r", 2));
    clone.flush().await;
    clone.shutdown().await;
    assert_eq!(fixture.metrics.callbacks_dropped.get(), 1);
    assert_eq!(fixture.count(OutboxStatus::Pending).await, 1);
}
