//! Applications over the REST API: create, list, read, update, disable and
//! enable, rotate the secret, delete; what each does to joins; every bad
//! input answered with its error code.
//!
//! Run inside a loopback-only namespace (scripts/test.sh does).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, unix_now, TestServer, ALL_GRANTS, WAIT};
use weir_client::weir_protocol::{ErrorCode, Grant, ServerMessage};
use weir_client::{Client, Error, Event, JoinOptions};
use weir_server::token::{self, AppKey};

async fn create(server: &TestServer, body: Value) -> (StatusCode, Value) {
    server.api(Method::POST, "/apps", Some(body)).await
}

fn key_from(created: &Value) -> AppKey {
    AppKey {
        app_id: created["app_id"].as_str().expect("app_id").to_string(),
        secret: created["secret_key"]
            .as_str()
            .expect("secret_key")
            .to_string(),
        enabled: true,
        room_permission_required: false,
    }
}

fn mint(key: &AppKey, room: &str, user: &str, grants: &[Grant]) -> String {
    token::mint(
        key,
        room,
        user,
        grants,
        std::time::Duration::from_secs(600),
        unix_now(),
    )
    .expect("mint")
}

#[track_caller]
fn assert_refused(result: Result<Client, Error>, code: ErrorCode) {
    match result {
        Err(Error::Server { code: got, .. }) => assert_eq!(got, code),
        Err(other) => panic!("expected {code:?}, got {other}"),
        Ok(_) => panic!("expected {code:?}, but the join succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_are_created_read_listed_and_updated() {
    let server = TestServer::start().await;
    let (status, created) = create(
        &server,
        json!({
            "name": "Live-class_1", "description": "Lessons", "type": "education",
            "tags": [{"key": "team", "value": "media"}],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let app_id = created["app_id"].as_str().expect("app_id").to_string();
    assert!(app_id.starts_with("app_"));
    assert_eq!(created["name"], "Live-class_1");
    assert_eq!(created["description"], "Lessons");
    assert_eq!(created["type"], "education");
    assert_eq!(created["tags"], json!([{"key": "team", "value": "media"}]));
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["room_permission_required"], false);
    assert!(created["created_at"].as_i64().expect("created_at") > 0);
    assert_eq!(
        created["secret_key"].as_str().expect("secret").len(),
        weir_store::SECRET_LEN
    );

    // Defaults, and the secret is never shown again.
    let (status, minimal) = create(&server, json!({"name": "b"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(minimal["type"], "other");
    assert_eq!(minimal["description"], "");
    assert_eq!(minimal["tags"], json!([]));
    let (status, read) = server
        .api(Method::GET, &format!("/apps/{app_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(read.get("secret_key").is_none(), "{read}");
    assert_eq!(read["name"], "Live-class_1");

    // The default app plus two; paging and the status filter.
    let (_, all) = server.api(Method::GET, "/apps", None).await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["page"], 1);
    assert_eq!(all["page_size"], 20);
    assert!(all["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .all(|a| a.get("secret_key").is_none()));
    let (_, second_page) = server
        .api(Method::GET, "/apps?page=2&page_size=2", None)
        .await;
    assert_eq!(second_page["apps"].as_array().expect("apps").len(), 1);
    assert_eq!(second_page["apps"][0]["name"], "b");
    server
        .api(Method::POST, &format!("/apps/{app_id}/disable"), None)
        .await;
    let (_, disabled) = server.api(Method::GET, "/apps?status=disabled", None).await;
    assert_eq!(disabled["total"], 1);
    assert_eq!(disabled["apps"][0]["app_id"], app_id.as_str());
    let (_, enabled) = server.api(Method::GET, "/apps?status=enabled", None).await;
    assert_eq!(enabled["total"], 2);

    // Patch changes only what it names.
    let (status, patched) = server
        .api(
            Method::PATCH,
            &format!("/apps/{app_id}"),
            Some(json!({"description": "Evening lessons", "tags": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Live-class_1");
    assert_eq!(patched["description"], "Evening lessons");
    assert_eq!(patched["tags"], json!([]));
    assert_eq!(patched["status"], "disabled");
    assert!(patched["updated_at"].as_i64() >= created["updated_at"].as_i64());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_code() {
    let server = TestServer::start().await;
    let refused_before = server.metrics().api_requests_refused.get();
    let long_name = "n".repeat(65);
    let many_tags: Vec<Value> = (0..21)
        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
        .collect();
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": long_name}), "name"),
        (json!({"name": "has space"}), "name"),
        (json!({"name": "ünï"}), "name"),
        (
            json!({"name": "ok", "description": "d".repeat(301)}),
            "description",
        ),
        (json!({"name": "ok", "type": "gaming"}), "type"),
        (json!({"name": "ok", "tags": many_tags}), "tags"),
        (json!({"name": 42}), "name"),
        (json!({"name": "ok", "tags": "x"}), "tags"),
        (json!({"name": "ok", "colour": "red"}), "colour"),
        (json!({}), "name"),
    ] {
        let (status, answer) = create(&server, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(error_code(&answer), "INVALID_ARGUMENT", "{body}");
        let message = answer["error"]["message"].as_str().expect("a message");
        assert!(message.contains(field), "{body}: {message}");
    }

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/apps", server.http_base());
    // Not JSON, the wrong content type, a body over the limit.
    let not_json = http
        .post(&url)
        .bearer_auth(&server.admin_key)
        .header("content-type", "application/json")
        .body("{name:")
        .send()
        .await
        .expect("answers");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let text = http
        .post(&url)
        .bearer_auth(&server.admin_key)
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = text.json().await.expect("JSON");
    assert_eq!(error_code(&body), "UNSUPPORTED_MEDIA_TYPE");
    let huge = json!({"name": "x", "description": "d".repeat(200_000)});
    let oversized = http
        .post(&url)
        .bearer_auth(&server.admin_key)
        .json(&huge)
        .send()
        .await
        .expect("answers");
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Not reused for the next request (the body was not read).
    assert_eq!(
        oversized.headers().get(reqwest::header::CONNECTION),
        Some(&reqwest::header::HeaderValue::from_static("close"))
    );
    let body: Value = oversized.json().await.expect("JSON");
    assert_eq!(error_code(&body), "BODY_TOO_LARGE");
    // Without the admin key.
    let anonymous = http
        .post(&url)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Unknown ids, bad paging, a bad status filter, a bad patch.
    for (method, path) in [
        (Method::GET, "/apps/app_nope"),
        (Method::POST, "/apps/app_nope/disable"),
        (Method::POST, "/apps/app_nope/enable"),
        (Method::POST, "/apps/app_nope/rotate-secret"),
        (Method::DELETE, "/apps/app_nope"),
    ] {
        let (status, body) = server.api(method.clone(), path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(error_code(&body), "APP_NOT_FOUND");
    }
    let (status, body) = server
        .api(
            Method::PATCH,
            "/apps/app_nope",
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APP_NOT_FOUND")
    );
    for query in [
        "page=0",
        "page_size=0",
        "page_size=101",
        "page=-1",
        "page=x",
        "status=paused",
    ] {
        let (status, body) = server
            .api(Method::GET, &format!("/apps?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(error_code(&body), "INVALID_ARGUMENT");
    }
    let app = server.app.app_id.clone();
    for patch in [
        json!({"name": ""}),
        json!({"type": "x"}),
        json!({"room_permission_required": "yes"}),
        json!({"secret_key": "mine"}),
    ] {
        let (status, body) = server
            .api(Method::PATCH, &format!("/apps/{app}"), Some(patch.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{patch}: {body}");
    }
    // Every refusal above was counted (11 bodies, 4 raw requests, 6 unknown
    // ids, 6 queries, 4 patches), and none was a server error.
    let metrics = server.metrics();
    assert_eq!(metrics.api_requests_refused.get() - refused_before, 31);
    assert_eq!(metrics.api_requests_failed.get(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_refuses_new_joins_but_keeps_the_call_and_delete_needs_it() {
    let server = TestServer::start().await;
    let (_, created) = create(&server, json!({"name": "school"})).await;
    let key = key_from(&created);
    let app_id = key.app_id.clone();
    let url = server.ws_url();

    let ann = Client::connect(
        &url,
        &mint(&key, "class", "ann", &ALL_GRANTS),
        JoinOptions::default(),
    )
    .await
    .expect("ann joins");
    let (status, body) = server
        .api(Method::POST, &format!("/apps/{app_id}/disable"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "disabled");

    // New joins are refused at once, over WebSocket and WHIP.
    assert_refused(
        Client::connect(
            &url,
            &mint(&key, "class", "bob", &ALL_GRANTS),
            JoinOptions::default(),
        )
        .await,
        ErrorCode::AppDisabled,
    );
    let whip = reqwest::Client::new()
        .post(format!("{}/whip/v1/rooms/class", server.http_base()))
        .bearer_auth(mint(&key, "class", "cam", &[Grant::Publish]))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .expect("answers");
    assert_eq!(whip.status(), StatusCode::FORBIDDEN);
    // Minting through the API is refused too.
    let (status, body) = server
        .api(
            Method::POST,
            &format!("/apps/{app_id}/tokens"),
            Some(json!({"user_id": "bob", "room_id": "class"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "APP_DISABLED")
    );
    // The participant already in the room stays: the room still lists ann,
    // and she still talks to the server.
    let (status, room) = server
        .api(Method::GET, &format!("/apps/{app_id}/rooms/class"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!(room["participants"][0]["user_id"], "ann");
    ann.publish_video_vp8(weir_client::weir_protocol::TrackSource::Camera)
        .await
        .expect("ann still publishes after the disable");

    // An enabled app cannot be deleted; enabling lets joins in again.
    let (status, body) = server
        .api(Method::POST, &format!("/apps/{app_id}/enable"), None)
        .await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("enabled"))
    );
    let bob = Client::connect(
        &url,
        &mint(&key, "class", "bob", &ALL_GRANTS),
        JoinOptions::default(),
    )
    .await
    .expect("bob joins after the enable");
    let (status, body) = server
        .api(Method::DELETE, &format!("/apps/{app_id}"), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "APP_NOT_DISABLED")
    );

    // Disable, then delete: the room closes and the app is gone.
    server
        .api(Method::POST, &format!("/apps/{app_id}/disable"), None)
        .await;
    let (status, _) = server
        .api(Method::DELETE, &format!("/apps/{app_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut bob = bob;
    let left = tokio::time::timeout(WAIT, async {
        loop {
            match bob.next_event().await {
                Some(Event::Message(ServerMessage::Leave { .. })) | None => return true,
                Some(_) => {}
            }
        }
    })
    .await;
    assert_eq!(left, Ok(true), "bob is told the room closed");
    let (status, body) = server
        .api(Method::GET, &format!("/apps/{app_id}"), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "APP_NOT_FOUND")
    );
    assert_refused(
        Client::connect(
            &url,
            &mint(&key, "class", "carl", &ALL_GRANTS),
            JoinOptions::default(),
        )
        .await,
        ErrorCode::UnknownApp,
    );
    drop(ann);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_secret_invalidates_old_tokens() {
    let server = TestServer::start().await;
    let (_, created) = create(&server, json!({"name": "rotating"})).await;
    let old = key_from(&created);
    let old_token = mint(&old, "r", "u", &ALL_GRANTS);
    let (status, rotated) = server
        .api(
            Method::POST,
            &format!("/apps/{}/rotate-secret", old.app_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rotated["app_id"], old.app_id.as_str());
    let new = key_from(&rotated);
    assert_ne!(new.secret, old.secret);
    assert_refused(
        Client::connect(&server.ws_url(), &old_token, JoinOptions::default()).await,
        ErrorCode::TokenInvalid,
    );
    let (_, verdict) = server
        .api(
            Method::POST,
            "/tokens/verify",
            Some(json!({"token": old_token})),
        )
        .await;
    assert_eq!(verdict["reason"], "bad_signature");
    let client = Client::connect(
        &server.ws_url(),
        &mint(&new, "r", "u", &ALL_GRANTS),
        JoinOptions::default(),
    )
    .await
    .expect("the new secret works");
    client.leave().await.expect("leave");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_permission_required_wants_exact_rooms_and_explicit_grants() {
    let server = TestServer::start().await;
    let (_, created) = create(&server, json!({"name": "strict"})).await;
    let key = key_from(&created);
    let app_id = key.app_id.clone();
    let wildcard = mint(&key, "*", "ann", &ALL_GRANTS);
    let other_room = mint(&key, "other", "ann", &ALL_GRANTS);
    let exact = mint(&key, "vip", "ann", &[Grant::Subscribe]);
    let (status, patched) = server
        .api(
            Method::PATCH,
            &format!("/apps/{app_id}"),
            Some(json!({"room_permission_required": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["room_permission_required"], true);

    let url = format!("{}?room=vip", server.ws_url());
    assert_refused(
        Client::connect(&url, &wildcard, JoinOptions::default()).await,
        ErrorCode::RoomPermissionRequired,
    );
    assert_refused(
        Client::connect(&url, &other_room, JoinOptions::default()).await,
        ErrorCode::TokenWrongRoom,
    );
    let ann = Client::connect(&url, &exact, JoinOptions::default())
        .await
        .expect("an exact room with explicit grants joins");
    // The API refuses to mint a wildcard token for this app.
    let (status, body) = server
        .api(
            Method::POST,
            &format!("/apps/{app_id}/tokens"),
            Some(json!({"user_id": "bob", "room_id": "*"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT")
    );
    // Switching it off lets the wildcard token in again.
    server
        .api(
            Method::PATCH,
            &format!("/apps/{app_id}"),
            Some(json!({"room_permission_required": false})),
        )
        .await;
    let bob = Client::connect(
        &format!("{}?room=vip", server.ws_url()),
        &mint(&key, "*", "bob", &ALL_GRANTS),
        JoinOptions::default(),
    )
    .await
    .expect("the wildcard joins once the rule is off");
    for client in [ann, bob] {
        client.leave().await.expect("leave");
    }
    server.shutdown().await;
}
