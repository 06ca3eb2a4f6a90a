//! Event callbacks through a running server: the deliveries API (listing,
//! filters, paging, retrying a failed event), and end to end, room events
//! reaching a Python receiver across a 30 s receiver outage and a server
//! restart.
//!
//! The end-to-end test starts WebRTC peers: run it in a loopback-only
//! network namespace (`scripts/test.sh` does).

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, TestServer, ALL_GRANTS, WAIT};
use tokio::io::AsyncBufReadExt;
use weir_protocol::Grant;
use weir_server::config::Config;
use weir_store::{AttemptFailure, NewOutboxEvent};

const KEY: &str = "Key0123456789abcdefghijklmnopqrstuvwxyz";

fn unix_now_ms() -> i64 {
    i64::try_from(support::unix_now()).unwrap_or(0) * 1000
}

/// Polls `condition` every 50 ms until it holds, for at most `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn configure_callbacks(server: &TestServer, url: &str) {
    let (status, body) = server
        .api(
            Method::PUT,
            &format!("/apps/{}/callbacks", server.app.app_id),
            Some(json!({"url": url, "key": KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

// ------------------------------------------------------------ deliveries API

/// A receiver on 127.0.0.1 that accepts everything and counts requests.
async fn counting_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), count)
}

/// An event created an hour from now: the outbox makes a new event due at
/// its creation time, so the running server's sender (which looks at the
/// outbox on its own, e.g. right after starting) never finds these due
/// while the test writes their states. Only the retried one becomes due.
fn outbox_event(app_id: &str, room_id: &str, event_id: &str) -> NewOutboxEvent {
    NewOutboxEvent {
        event_id: event_id.to_string(),
        app_id: app_id.to_string(),
        room_id: room_id.to_string(),
        event_type: "PARTICIPANT_JOINED".to_string(),
        body: json!({"event_id": event_id, "event_type": "PARTICIPANT_JOINED",
            "app_id": app_id, "room_id": room_id, "timestamp_ms": 1})
        .to_string(),
        created_at_ms: unix_now_ms() + 3_600_000,
    }
}

fn failure(error: &str) -> AttemptFailure {
    AttemptFailure {
        error: error.to_string(),
        status_code: Some(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_listed_and_failed_ones_retried() {
    let server = TestServer::start().await;
    let app_id = server.app.app_id.clone();
    let (url, received) = counting_receiver().await;
    configure_callbacks(&server, &url).await;

    // Three events in three states, written straight into the outbox: one
    // delivered, one given up on, one waiting an hour for its next attempt.
    let store = server.store();
    let mut sequencer = store.outbox_sequencer().await.expect("sequencer");
    store
        .enqueue_events(
            &mut sequencer,
            &[
                outbox_event(&app_id, "r1", "ev_delivered"),
                outbox_event(&app_id, "r2", "ev_failed"),
                outbox_event(&app_id, "r3", "ev_waiting"),
            ],
        )
        .await
        .expect("enqueue");
    let now_ms = unix_now_ms();
    store
        .mark_delivered("ev_delivered", now_ms, 200)
        .await
        .expect("delivered");
    store
        .mark_failed("ev_failed", &failure("HTTP 500 Internal Server Error"))
        .await
        .expect("failed");
    store
        .record_failed_attempt("ev_waiting", &failure("HTTP 500"), now_ms + 3_600_000)
        .await
        .expect("waiting");

    let path = format!("/apps/{app_id}/callbacks/deliveries");
    let (status, all) = server.api(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        (
            all["total"].as_u64(),
            all["page"].as_u64(),
            all["page_size"].as_u64()
        ),
        (Some(3), Some(1), Some(20))
    );
    let ids: Vec<&str> = all["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter_map(|d| d["event_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["ev_waiting", "ev_failed", "ev_delivered"],
        "newest first"
    );
    let waiting = &all["deliveries"][0];
    assert_eq!(waiting["status"], "pending");
    assert_eq!(waiting["room_id"], "r3");
    assert_eq!(waiting["event_type"], "PARTICIPANT_JOINED");
    assert_eq!(waiting["attempts"], 1);
    assert_eq!(waiting["last_status_code"], 500);
    assert_eq!(waiting["next_attempt_at_ms"], now_ms + 3_600_000);
    assert_eq!(waiting["delivered_at_ms"], Value::Null);
    assert!(waiting["created_at_ms"].as_i64().is_some());
    assert_eq!(all["deliveries"][2]["delivered_at_ms"], now_ms);

    let (status, failed) = server
        .api(Method::GET, &format!("{path}?status=failed"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(failed["total"], 1);
    assert_eq!(failed["deliveries"][0]["event_id"], "ev_failed");
    assert_eq!(
        failed["deliveries"][0]["last_error"],
        "HTTP 500 Internal Server Error"
    );
    let (status, second_page) = server
        .api(Method::GET, &format!("{path}?page=2&page_size=2"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second_page["deliveries"][0]["event_id"], "ev_delivered");
    assert_eq!(second_page["total"], 3);

    for bad in [
        "?status=lost",
        "?page=0",
        "?page_size=0",
        "?page_size=101",
        "?page=x",
    ] {
        let (status, body) = server.api(Method::GET, &format!("{path}{bad}"), None).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "{bad}: {body}"
        );
    }
    let (status, body) = server
        .api(Method::GET, "/apps/app_unknown/callbacks/deliveries", None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APP_NOT_FOUND")
    );
    let unauthenticated = reqwest::get(format!("{}/api/v1{path}", server.http_base()))
        .await
        .expect("answers");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    // Retrying: only failed events, of this application.
    let retry = |event_id: &str| format!("{path}/{event_id}/retry");
    let (status, body) = server.api(Method::POST, &retry("ev_delivered"), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "EVENT_NOT_FAILED")
    );
    let (status, body) = server.api(Method::POST, &retry("ev_nope"), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "EVENT_NOT_FOUND")
    );
    let (status, body) = server
        .api(
            Method::POST,
            "/apps/app_unknown/callbacks/deliveries/ev_failed/retry",
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APP_NOT_FOUND")
    );

    let (status, body) = server.api(Method::POST, &retry("ev_failed"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event_id"], "ev_failed");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["attempts"], 0);
    // The sender is woken and delivers it to the receiver.
    let delivered_path = format!("{path}?status=delivered");
    wait_until("the retried event delivered", WAIT, || async {
        server.api(Method::GET, &delivered_path, None).await.1["total"] == 2
    })
    .await;
    assert_eq!(received.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

// ------------------------------------------------------------ end to end

/// `e2e/callbacks/receiver.py`: checks signatures with Python's hmac and
/// logs every request as a JSON line.
struct PythonReceiver {
    child: tokio::process::Child,
    port: u16,
}

impl PythonReceiver {
    /// Starts the receiver on `port` (0 picks one) and waits until it listens.
    async fn start(port: u16, log: &Path) -> PythonReceiver {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../e2e/callbacks/receiver.py"
        );
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .args(["--key", KEY, "--port", &port.to_string(), "--log"])
            .arg(log)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the receiver");
        let stdout = child.stdout.take().expect("the receiver's stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the receiver starts in time")
            .expect("the receiver's stdout reads")
            .expect("the receiver prints `listening PORT`");
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected receiver output {first:?}"));
        PythonReceiver { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One request the receiver logged.
#[derive(Debug)]
struct Logged {
    verified: bool,
    content_type: String,
    body: String,
    event: Value,
}

fn read_log(path: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| line.ends_with('}'))
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("a JSON log line");
            let body = record["body"].as_str().unwrap_or_default().to_string();
            Logged {
                verified: record["verified"] == true,
                content_type: record["content_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                event: serde_json::from_str(&body).unwrap_or(Value::Null),
                body,
            }
        })
        .collect()
}

fn event_id(event: &Value) -> &str {
    event["event_id"].as_str().unwrap_or_default()
}

/// Every callback event of the application as the server's API lists it,
/// oldest (lowest `seq`) first.
async fn outbox(server: &TestServer) -> Vec<Value> {
    let mut events = Vec::new();
    for page in 1.. {
        let (status, body) = server
            .api(
                Method::GET,
                &format!(
                    "/apps/{}/callbacks/deliveries?page={page}&page_size=100",
                    server.app.app_id
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["deliveries"].as_array().cloned().unwrap_or_default();
        let done = items.len() < 100;
        events.extend(items);
        if done {
            break;
        }
    }
    events.reverse();
    events
}

/// Waits until the outbox holds `count` events; returns them.
async fn wait_for_outbox(server: &TestServer, count: usize) -> Vec<Value> {
    wait_until(&format!("{count} events in the outbox"), WAIT, || async {
        outbox(server).await.len() >= count
    })
    .await;
    outbox(server).await
}

/// `(event_type, user_id)` of the events of `room` in the receiver's body
/// order.
fn story<'a>(events: impl Iterator<Item = &'a Value>, room: &str) -> Vec<(String, String)> {
    events
        .filter(|e| e["room_id"] == room)
        .map(|e| {
            (
                e["event_type"].as_str().unwrap_or_default().to_string(),
                e["user_id"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn step(event_type: &str, user: &str) -> (String, String) {
    (event_type.to_string(), user.to_string())
}

/// Short retries (the outage lasts 30 s), and rooms that dissolve 1 s after
/// their last participant left.
fn quick_callbacks(config: &mut Config) {
    config.callbacks.retry_initial_ms = 200;
    config.callbacks.retry_max_delay_seconds = 2;
    config.callbacks.give_up_after_seconds = 600;
    config.rooms.empty_timeout_seconds = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_events_survive_a_receiver_outage_and_a_server_restart() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("callbacks.jsonl");
    let receiver = PythonReceiver::start(0, &log).await;
    let mut server = TestServer::start_with(quick_callbacks).await;
    configure_callbacks(&server, &receiver.url()).await;

    // Receiver up: a publisher and a viewer join `lesson`.
    let (alice, camera) = server.camera_publisher("lesson", "alice").await;
    wait_for_outbox(&server, 3).await;
    let bob = server
        .join("lesson", "bob", &[Grant::Subscribe])
        .await
        .expect("bob joins");
    wait_for_outbox(&server, 4).await;
    wait_until("the first events at the receiver", WAIT, || async {
        read_log(&log).len() >= 4
    })
    .await;

    // Receiver down for 30 s; meanwhile the rooms go on and the server
    // restarts (its shutdown ends every room).
    let port = receiver.port;
    receiver.stop().await;
    let outage = tokio::time::Instant::now();
    alice.unpublish(&camera).expect("alice unpublishes");
    wait_for_outbox(&server, 5).await;
    bob.leave().await.expect("bob leaves");
    wait_for_outbox(&server, 6).await;
    let carol = server
        .join("second", "carol", &ALL_GRANTS)
        .await
        .expect("carol joins");
    wait_for_outbox(&server, 8).await;
    server.restart_with(quick_callbacks).await;
    drop((alice, carol));
    let before_restart = 12; // + alice and carol left, both rooms dissolved
    wait_for_outbox(&server, before_restart).await;
    let dave = server
        .join("lesson", "dave", &ALL_GRANTS)
        .await
        .expect("dave joins after the restart");
    wait_for_outbox(&server, before_restart + 2).await;
    dave.leave().await.expect("dave leaves");
    let all_events = before_restart + 4; // + dave left, `lesson` dissolved again
    let outbox_events = wait_for_outbox(&server, all_events).await;
    assert!(
        read_log(&log).len() < all_events,
        "events arrived while the receiver was down"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;

    // Receiver back on the same port: everything arrives.
    let receiver = PythonReceiver::start(port, &log).await;
    wait_until("every event delivered", Duration::from_secs(60), || async {
        let events = outbox(&server).await;
        events.len() == all_events && events.iter().all(|e| e["status"] == "delivered")
    })
    .await;
    receiver.stop().await;
    let delivered = outbox(&server).await;
    assert!(
        delivered
            .iter()
            .any(|e| e["attempts"].as_u64().is_some_and(|n| n > 1)),
        "no event needed a retry: {delivered:?}"
    );

    let logged = read_log(&log);
    assert!(
        logged.iter().all(|l| l.verified),
        "Python refused a signature"
    );
    assert!(logged.iter().all(|l| l.content_type == "application/json"));
    // No event missing, none made up.
    let outbox_ids: HashSet<&str> = outbox_events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default())
        .collect();
    let logged_ids: HashSet<&str> = logged.iter().map(|l| event_id(&l.event)).collect();
    assert_eq!(logged_ids, outbox_ids);
    assert_eq!(outbox_ids.len(), all_events);
    // Duplicates carry the same event_id with the very same bytes.
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for l in &logged {
        let first = *bodies.entry(event_id(&l.event)).or_insert(&l.body);
        assert_eq!(first, l.body, "a duplicate with a different body");
    }
    // First arrivals per room are in the server's order.
    let mut seen = HashSet::new();
    let first_arrivals: Vec<&Value> = logged
        .iter()
        .map(|l| &l.event)
        .filter(|e| seen.insert(event_id(e)))
        .collect();
    for room in ["lesson", "second"] {
        let arrived: Vec<&str> = first_arrivals
            .iter()
            .filter(|e| e["room_id"] == room)
            .map(|e| event_id(e))
            .collect();
        let stored: Vec<&str> = outbox_events
            .iter()
            .filter(|e| e["room_id"] == room)
            .map(|e| e["event_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(arrived, stored, "order in {room}");
    }
    // The story each room told.
    assert_eq!(
        story(first_arrivals.iter().copied(), "lesson"),
        vec![
            step("ROOM_CREATED", "-"),
            step("PARTICIPANT_JOINED", "alice"),
            step("TRACK_PUBLISHED", "alice"),
            step("PARTICIPANT_JOINED", "bob"),
            step("TRACK_UNPUBLISHED", "alice"),
            step("PARTICIPANT_LEFT", "bob"),
            step("PARTICIPANT_LEFT", "alice"),
            step("ROOM_DISSOLVED", "-"),
            step("ROOM_CREATED", "-"),
            step("PARTICIPANT_JOINED", "dave"),
            step("PARTICIPANT_LEFT", "dave"),
            step("ROOM_DISSOLVED", "-"),
        ]
    );
    assert_eq!(
        story(first_arrivals.iter().copied(), "second"),
        vec![
            step("ROOM_CREATED", "-"),
            step("PARTICIPANT_JOINED", "carol"),
            step("PARTICIPANT_LEFT", "carol"),
            step("ROOM_DISSOLVED", "-"),
        ]
    );
    let published = first_arrivals
        .iter()
        .find(|e| e["event_type"] == "TRACK_PUBLISHED")
        .expect("a TRACK_PUBLISHED event");
    assert_eq!(published["track"]["kind"], "video");
    assert_eq!(published["track"]["source"], "camera");
    assert_eq!(published["app_id"], server.app.app_id.as_str());
    server.shutdown().await;
}
