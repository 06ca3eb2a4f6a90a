//! The REST API's room administration (issue 3, first part) against a live
//! call: list and inspect rooms, revoke publish live, server-side mute,
//! kick, close; admin authentication and error bodies; the served OpenAPI
//! document.
//!
//! Run inside a loopback-only namespace (scripts/test.sh does).

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{error_code, TestServer, WAIT};
use weir_client::weir_protocol::{Grant, LeaveReason, ServerMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_administration_on_a_live_call() {
    let server = TestServer::start().await;
    let app = server.app.app_id.clone();
    let room = "admin-call";

    let (alice, video) = server.camera_publisher(room, "alice").await;
    let track_id = video.track_id().expect("track id").to_string();
    let mut bob = server
        .join(room, "bob", &[Grant::Subscribe])
        .await
        .expect("bob joins");

    // List and inspect.
    let (status, list) = server
        .api(reqwest::Method::GET, &format!("/apps/{app}/rooms"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let rooms = list["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["room_id"], room);
    let (status, detail) = server
        .api(
            reqwest::Method::GET,
            &format!("/apps/{app}/rooms/{room}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let users: Vec<&str> = detail["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["user_id"].as_str())
        .collect();
    assert_eq!(users, vec!["alice", "bob"]);
    assert_eq!(
        detail["participants"][0]["tracks"][0]["track_id"],
        track_id.as_str()
    );
    assert!(detail["since"].as_u64().is_some_and(|t| t > 0));

    // Server-side mute: bob is told.
    let (status, _) = server
        .api(
            reqwest::Method::POST,
            &format!("/apps/{app}/rooms/{room}/tracks/{track_id}/mute"),
            Some(json!({"muted": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    bob.wait_for_message(WAIT, |m| match m {
        ServerMessage::TrackMuted {
            muted: true,
            track_id: t,
            ..
        } if t.as_str() == track_id => Some(()),
        _ => None,
    })
    .await
    .expect("bob hears of the mute");

    // Revoke alice's publish grant live: her track goes away at once.
    let (status, body) = server
        .api(
            reqwest::Method::PATCH,
            &format!("/apps/{app}/rooms/{room}/participants/alice"),
            Some(json!({"grants": ["subscribe"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grants"], json!(["subscribe"]));
    bob.wait_for_message(WAIT, |m| match m {
        ServerMessage::TrackUnpublished { track_id: t, .. } if t.as_str() == track_id => Some(()),
        _ => None,
    })
    .await
    .expect("bob sees the track unpublished");

    // Bad inputs.
    let (status, body) = server
        .api(
            reqwest::Method::PATCH,
            &format!("/apps/{app}/rooms/{room}/participants/alice"),
            Some(json!({"grants": ["fly"]})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    let (status, body) = server
        .api(
            reqwest::Method::POST,
            &format!("/apps/{app}/rooms/{room}/participants/nobody/kick"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "PARTICIPANT_NOT_FOUND")
    );
    let (status, body) = server
        .api(
            reqwest::Method::POST,
            &format!("/apps/{app}/rooms/{room}/tracks/TR_none/mute"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "TRACK_NOT_FOUND")
    );
    let (status, body) = server
        .api(
            reqwest::Method::GET,
            &format!("/apps/{app}/rooms/nowhere"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "ROOM_NOT_FOUND")
    );
    let (status, body) = server
        .api(reqwest::Method::GET, "/apps/app_unknown/rooms", None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APP_NOT_FOUND")
    );

    // Kick bob.
    let (status, _) = server
        .api(
            reqwest::Method::POST,
            &format!("/apps/{app}/rooms/{room}/participants/bob/kick"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let reason = bob
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Leave { reason } => Some(*reason),
            _ => None,
        })
        .await
        .expect("bob is told");
    assert_eq!(reason, LeaveReason::Kicked);

    // Close the room.
    let mut alice = alice;
    let (status, _) = server
        .api(
            reqwest::Method::DELETE,
            &format!("/apps/{app}/rooms/{room}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let reason = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Leave { reason } => Some(*reason),
            _ => None,
        })
        .await
        .expect("alice is told");
    assert_eq!(reason, LeaveReason::RoomClosed);
    drop(video);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_requires_the_admin_key() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/api/v1/apps/{}/rooms",
        server.http_base(),
        server.app.app_id
    );
    for request in [
        http.get(&url),
        http.get(&url).bearer_auth("wrong-key"),
        http.get(&url)
            .header("authorization", format!("Basic {}", server.admin_key)),
    ] {
        let response = request.send().await.expect("answers");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(error_code(&body), "UNAUTHORIZED");
    }
    let ok = http
        .get(&url)
        .bearer_auth(&server.admin_key)
        .send()
        .await
        .expect("answers");
    assert_eq!(ok.status(), StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let server = TestServer::start().await;
    let spec: Value = reqwest::get(format!("{}/api/v1/openapi.json", server.http_base()))
        .await
        .expect("served")
        .json()
        .await
        .expect("JSON");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().expect("paths");
    let expected = [
        ("/api/v1/apps", vec!["get", "post"]),
        ("/api/v1/apps/{app_id}", vec!["get", "patch", "delete"]),
        ("/api/v1/apps/{app_id}/disable", vec!["post"]),
        ("/api/v1/apps/{app_id}/enable", vec!["post"]),
        ("/api/v1/apps/{app_id}/rotate-secret", vec!["post"]),
        ("/api/v1/apps/{app_id}/rooms", vec!["get", "post"]),
        (
            "/api/v1/apps/{app_id}/rooms/{room_id}",
            vec!["get", "delete"],
        ),
        (
            "/api/v1/apps/{app_id}/rooms/{room_id}/participants/{user_id}/kick",
            vec!["post"],
        ),
        (
            "/api/v1/apps/{app_id}/rooms/{room_id}/participants/{user_id}",
            vec!["patch"],
        ),
        (
            "/api/v1/apps/{app_id}/rooms/{room_id}/tracks/{track_id}/mute",
            vec!["post"],
        ),
        ("/api/v1/apps/{app_id}/tokens", vec!["post"]),
        ("/api/v1/apps/{app_id}/callbacks", vec!["get", "put"]),
        ("/api/v1/apps/{app_id}/callbacks/deliveries", vec!["get"]),
        (
            "/api/v1/apps/{app_id}/callbacks/deliveries/{event_id}/retry",
            vec!["post"],
        ),
        ("/api/v1/apps/{app_id}/recording-rule", vec!["get", "put"]),
        ("/api/v1/apps/{app_id}/storage/test", vec!["post"]),
        ("/api/v1/apps/{app_id}/recording-stats", vec!["get"]),
        ("/api/v1/apps/{app_id}/recordings", vec!["get", "post"]),
        (
            "/api/v1/apps/{app_id}/recordings/{job_id}",
            vec!["get", "patch", "delete"],
        ),
        ("/api/v1/tokens/verify", vec!["post"]),
    ];
    assert_eq!(
        paths.len(),
        expected.len(),
        "paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in expected {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is documented"));
        for method in methods {
            assert!(item.get(method).is_some(), "{method} {path} is documented");
        }
    }
    assert!(spec["components"]["securitySchemes"]["admin_key"].is_object());
    assert!(spec["components"]["schemas"]["ApiErrorBody"].is_object());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_can_be_pre_created_with_their_own_limits() {
    let server = TestServer::start().await;
    let app = server.app.app_id.clone();
    let rooms = format!("/apps/{app}/rooms");
    let (status, created) = server
        .api(
            reqwest::Method::POST,
            &rooms,
            Some(json!({
                "room_id": "town-hall", "max_participants": 1,
                "empty_timeout_seconds": 2, "metadata": {"topic": "budget"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["room_id"], "town-hall");
    assert_eq!(created["max_participants"], 1);
    assert_eq!(created["empty_timeout_seconds"], 2);
    assert_eq!(created["metadata"], json!({"topic": "budget"}));
    assert_eq!(created["participants"], json!([]));
    let (status, body) = server
        .api(
            reqwest::Method::POST,
            &rooms,
            Some(json!({"room_id": "town-hall"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "ROOM_EXISTS")
    );

    // Its own participant limit applies to joins.
    let first = server
        .join("town-hall", "mayor", &[Grant::Subscribe])
        .await
        .expect("the first joins");
    match server
        .join("town-hall", "second", &[Grant::Subscribe])
        .await
    {
        Err(weir_client::Error::Server { code, .. }) => {
            assert_eq!(code, weir_client::weir_protocol::ErrorCode::RoomFull)
        }
        other => panic!("expected ROOM_FULL, got {:?}", other.map(|_| ())),
    }
    let (_, listed) = server.api(reqwest::Method::GET, &rooms, None).await;
    assert_eq!(listed["rooms"][0]["metadata"]["topic"], "budget");
    // Its own empty timeout: it closes about 2 s after the last one left.
    first.leave().await.expect("leave");
    let path = format!("{rooms}/town-hall");
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            let (status, _) = server.api(reqwest::Method::GET, &path, None).await;
            if status == StatusCode::NOT_FOUND {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the room closed after its empty timeout");

    // Bad input.
    for body in [
        json!({"room_id": "a b"}),
        json!({"room_id": ""}),
        json!({"room_id": "r", "max_participants": 0}),
        json!({"room_id": "r", "max_participants": 10_001}),
        json!({"room_id": "r", "max_participants": -1}),
        json!({"room_id": "r", "empty_timeout_seconds": 0}),
        json!({"room_id": "r", "empty_timeout_seconds": 86_401}),
        json!({"room_id": "r", "metadata": {"blob": "x".repeat(5000)}}),
        json!({"room_id": "r", "colour": "red"}),
        json!({}),
    ] {
        let (status, answer) = server
            .api(reqwest::Method::POST, &rooms, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_code(&answer), "INVALID_ARGUMENT");
    }
    let (status, body) = server
        .api(
            reqwest::Method::POST,
            "/apps/app_nope/rooms",
            Some(json!({"room_id": "r"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APP_NOT_FOUND")
    );
    server.shutdown().await;
}

/// Once a shutdown began, neither the API nor a join opens a room (a room
/// opened behind the closing ones would outlive the shutdown, its
/// participants never told).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_room_opens_once_shutdown_began() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut server = TestServer::start().await;
    let app = server.app.app_id.clone();
    // A participant whose connection stops reading: the server waits for
    // its Close (up to 2 s) before the listener stops, the window in which
    // the requests below arrive.
    let url = format!(
        "{}?token={}",
        server.ws_url(),
        server.token("open", "ann", &[Grant::Subscribe])
    );
    let (mut silent, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    silent
        .send(Message::text(r#"{"type":"join","version":1}"#))
        .await
        .expect("send join");
    let joined = tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = silent.next().await {
            if frame
                .to_text()
                .is_ok_and(|t| t.contains(r#""type":"joined""#))
            {
                return true;
            }
        }
        false
    })
    .await
    .expect("joined within the wait");
    assert!(joined, "the silent participant joined");

    let health = format!("{}/healthz", server.http_base());
    let stopping = server.begin_shutdown();
    let began = tokio::time::timeout(WAIT, async {
        loop {
            let status = match reqwest::get(&health).await {
                Ok(response) => response.json::<Value>().await.ok(),
                Err(_) => None,
            };
            if status.is_some_and(|s| s["status"] == "shutting_down") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(began.is_ok(), "healthz reports the shutdown");

    let (status, body) = server
        .api(
            reqwest::Method::POST,
            &format!("/apps/{app}/rooms"),
            Some(json!({"room_id": "late"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        "{body}"
    );
    match server.join("late", "bob", &[Grant::Subscribe]).await {
        Err(weir_client::Error::Server { code, .. }) => {
            assert_eq!(
                code,
                weir_client::weir_protocol::ErrorCode::ServerShuttingDown
            )
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("joined during the shutdown"),
    }
    drop(silent);
    stopping
        .await
        .expect("the shutdown task")
        .expect("shutdown succeeds");
}
