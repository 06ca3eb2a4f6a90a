//! Room and server lifecycle: rooms close after their empty timeout, the
//! participant limit is enforced, and a graceful shutdown tells every
//! participant before the server stops.
//!
//! Run inside a loopback-only namespace (scripts/test.sh does).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_client::weir_protocol::{
    ClientMessage, ErrorCode, Grant, Health, LeaveReason, ServerMessage,
};
use weir_client::{Client, Error, Event, JoinOptions};
use weir_server::config::Config;
use weir_server::serve::{self, RunningServer};
use weir_server::token::AppKey;

mod support;

const WAIT: Duration = Duration::from_secs(20);

struct Server {
    running: RunningServer,
    app: AppKey,
    _data_dir: tempfile::TempDir,
}

/// Defaults, with ephemeral loopback ports and `data_dir`.
fn loopback_config(data_dir: &std::path::Path) -> Config {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.http.listen = SocketAddr::new(localhost, 0);
    config.media.udp_listen = SocketAddr::new(localhost, 0);
    config
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn start(adjust: impl FnOnce(&mut Config)) -> Server {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = loopback_config(data_dir.path());
    adjust(&mut config);
    let running = serve::start(config).await.expect("server starts");
    assert!(
        running.created_app.is_some(),
        "a fresh data dir creates the default app"
    );
    let app = support::app_key(running.store(), None).await;
    Server {
        running,
        app,
        _data_dir: data_dir,
    }
}

impl Server {
    fn url(&self) -> String {
        format!("ws://{}/rtc/v1", self.running.http_addr)
    }

    fn token(&self, room: &str, user: &str) -> String {
        let now = unix_now();
        weir_server::token::mint(
            &self.app,
            room,
            user,
            &[Grant::Publish, Grant::Subscribe],
            Duration::from_secs(600),
            now,
        )
        .expect("mint")
    }

    async fn health(&self) -> Health {
        reqwest::get(format!("http://{}/healthz", self.running.http_addr))
            .await
            .expect("healthz answers")
            .json()
            .await
            .expect("healthz is JSON")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_rooms_close_after_their_timeout() {
    let server = start(|c| c.rooms.empty_timeout_seconds = 1).await;
    let client = Client::connect(
        &server.url(),
        &server.token("brief", "a"),
        JoinOptions::default(),
    )
    .await
    .expect("joins");
    let health = server.health().await;
    assert_eq!((health.rooms, health.participants), (1, 1));
    client.leave().await.expect("leaves");
    // Still open right after the last participant left...
    assert_eq!(server.health().await.rooms, 1);
    // ...and closed once the empty timeout has passed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let health = server.health().await;
        if health.rooms == 0 && health.participants == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "room never closed: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new join creates the room again.
    let again = Client::connect(
        &server.url(),
        &server.token("brief", "b"),
        JoinOptions::default(),
    )
    .await
    .expect("joins the re-created room");
    assert_eq!(server.health().await.rooms, 1);
    again.leave().await.expect("leaves");
    server.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_participant_limit_is_enforced() {
    let server = start(|c| c.rooms.max_participants = 2).await;
    let a = Client::connect(
        &server.url(),
        &server.token("small", "a"),
        JoinOptions::default(),
    )
    .await
    .expect("first joins");
    let b = Client::connect(
        &server.url(),
        &server.token("small", "b"),
        JoinOptions::default(),
    )
    .await
    .expect("second joins");
    match Client::connect(
        &server.url(),
        &server.token("small", "c"),
        JoinOptions::default(),
    )
    .await
    {
        Err(Error::Server { code, .. }) => assert_eq!(code, ErrorCode::RoomFull),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a third participant joined a room limited to two"),
    }
    // Another room is not affected.
    let other = Client::connect(
        &server.url(),
        &server.token("other", "c"),
        JoinOptions::default(),
    )
    .await
    .expect("joins another room");
    for client in [a, b, other] {
        client.leave().await.expect("leaves");
    }
    server.running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_every_participant_and_refuses_new_ones() {
    let server = start(|_| {}).await;
    let mut clients = Vec::new();
    for user in ["a", "b", "c"] {
        let room = if user == "c" { "second" } else { "first" };
        clients.push(
            Client::connect(
                &server.url(),
                &server.token(room, user),
                JoinOptions::default(),
            )
            .await
            .expect("joins"),
        );
    }
    let url = server.url();
    let late_token = server.token("first", "late");
    // Messages still on their way to the server while it closes: a socket
    // closed with them unread is reset, and the reset can discard the
    // `leave` sent just before (the closing handshake drains them).
    for client in &clients {
        for ts in 0..20 {
            client.send(ClientMessage::Ping { ts }).expect("sends");
        }
    }
    let shutdown = tokio::spawn(server.running.shutdown());
    for client in &mut clients {
        let (reason, closed) = tokio::time::timeout(WAIT, async {
            let mut reason = None;
            loop {
                match client.next_event().await {
                    Some(Event::Message(ServerMessage::Leave { reason: r })) => reason = Some(r),
                    Some(Event::Closed { code, reason: why }) => {
                        return (reason, Some((code, why)))
                    }
                    Some(_) => continue,
                    None => return (reason, None),
                }
            }
        })
        .await
        .expect("told within the wait");
        assert_eq!(reason, Some(LeaveReason::ServerShutdown));
        assert_eq!(
            closed,
            Some((None, String::new())),
            "the server's Close frame ends the session, not a reset"
        );
    }
    shutdown.await.expect("task").expect("shutdown succeeds");
    // The listener is gone afterwards.
    assert!(Client::connect(&url, &late_token, JoinOptions::default())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_of_different_applications_are_separate() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    // Two applications in an apps.json of an earlier version: imported at
    // start, with their ids and secrets.
    let legacy = |app_id: &str, secret: char| {
        serde_json::json!({
            "app_id": app_id, "name": app_id, "secret": secret.to_string().repeat(40),
            "enabled": true, "created_at_ms": 1,
        })
    };
    let file = serde_json::json!({
        "version": 1,
        "apps": [legacy("app_first", 'a'), legacy("app_second", 'b')],
    });
    std::fs::write(
        data_dir.path().join(weir_server::apps::APPS_FILE),
        serde_json::to_vec(&file).expect("json"),
    )
    .expect("write apps.json");
    let running = serve::start(loopback_config(data_dir.path()))
        .await
        .expect("server starts");
    assert!(running.created_app.is_none(), "the existing apps are used");
    let first = support::app_key(running.store(), Some("app_first")).await;
    let second = support::app_key(running.store(), Some("app_second")).await;
    assert_eq!(first.secret, "a".repeat(40), "the secret was kept");
    assert!(
        data_dir
            .path()
            .join(weir_server::apps::IMPORTED_APPS_FILE)
            .exists(),
        "apps.json is moved aside once imported"
    );
    let url = format!("ws://{}/rtc/v1", running.http_addr);
    let now = unix_now();
    let token = |app: &AppKey, user: &str| {
        weir_server::token::mint(
            app,
            "same",
            user,
            &[Grant::Subscribe],
            Duration::from_secs(600),
            now,
        )
        .expect("mint")
    };
    let a = Client::connect(&url, &token(&first, "alice"), JoinOptions::default())
        .await
        .expect("joins through the first app");
    let b = Client::connect(&url, &token(&second, "bob"), JoinOptions::default())
        .await
        .expect("joins through the second app");
    assert!(
        b.joined().participants.is_empty(),
        "bob sees nobody from the other app's room"
    );
    let c = Client::connect(&url, &token(&first, "carol"), JoinOptions::default())
        .await
        .expect("joins through the first app again");
    let others: Vec<&str> = c
        .joined()
        .participants
        .iter()
        .map(|p| p.user_id.as_str())
        .collect();
    assert_eq!(others, vec!["alice"], "carol shares alice's room only");
    for client in [a, b, c] {
        client.leave().await.expect("leave");
    }
    running.shutdown().await.expect("shutdown");
}
