//! Tokens over the REST API: minting with roles, grants and lifetimes, and
//! verification with its reasons; a minted token really joins.
//!
//! Run inside a loopback-only namespace (scripts/test.sh does).

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{unix_now, TestServer, ALL_GRANTS};
use weir_client::weir_protocol::{ErrorCode, TrackSource};
use weir_client::{Client, Error, JoinOptions};

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1{path}", server.http_base()))
        .bearer_auth(&server.admin_key)
        .json(&body)
        .send()
        .await
        .expect("the API answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_carry_their_role_and_join() {
    let server = TestServer::start().await;
    let app = server.app.app_id.clone();
    let mint_path = format!("/apps/{app}/tokens");
    let mint = |body: Value| post(&server, &mint_path, body);

    let (status, anchor) = mint(json!({"user_id": "ann", "room_id": "stage"})).await;
    assert_eq!(status, StatusCode::OK, "{anchor}");
    let expires_at = anchor["expires_at"].as_u64().expect("expires_at");
    let now = unix_now();
    assert!(
        (now + 86_400 - 5..=now + 86_400 + 5).contains(&expires_at),
        "default ttl is one day"
    );
    let anchor_token = anchor["token"].as_str().expect("token").to_string();
    let (_, verified) = post(&server, "/tokens/verify", json!({"token": anchor_token})).await;
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["claims"]["user_id"], "ann");
    assert_eq!(verified["claims"]["room"], "stage");
    assert_eq!(
        verified["claims"]["grants"],
        json!(["publish", "subscribe", "data"])
    );

    let (status, audience) =
        mint(json!({"user_id": "bob", "room_id": "stage", "role": "audience", "ttl_seconds": 60}))
            .await;
    assert_eq!(status, StatusCode::OK, "{audience}");
    let audience_token = audience["token"].as_str().expect("token").to_string();
    let (_, verified) = post(&server, "/tokens/verify", json!({"token": audience_token})).await;
    assert_eq!(verified["claims"]["grants"], json!(["subscribe"]));

    // The tokens work for joining; the audience cannot publish.
    let ann = Client::connect(&server.ws_url(), &anchor_token, JoinOptions::default())
        .await
        .expect("the anchor joins");
    ann.publish_video_vp8(TrackSource::Camera)
        .await
        .expect("the anchor publishes");
    let bob = Client::connect(&server.ws_url(), &audience_token, JoinOptions::default())
        .await
        .expect("the audience joins");
    match bob.publish_video_vp8(TrackSource::Camera).await {
        Err(Error::Server { code, .. }) => assert_eq!(code, ErrorCode::PermissionDenied),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("an audience published"),
    }
    bob.leave().await.expect("leave");
    ann.leave().await.expect("leave");

    // Bad requests.
    for (body, why) in [
        (
            json!({"user_id": "x", "room_id": "r", "role": "audience", "grants": ["publish"]}),
            "audience with publish",
        ),
        (
            json!({"user_id": "x", "room_id": "r", "ttl_seconds": 0}),
            "zero ttl",
        ),
        (
            json!({"user_id": "x", "room_id": "r", "ttl_seconds": 15_552_001u64}),
            "ttl over 180 days",
        ),
        (
            json!({"user_id": "not valid!", "room_id": "r"}),
            "bad user id",
        ),
        (
            json!({"user_id": "x", "room_id": "r", "role": "director"}),
            "unknown role",
        ),
        (
            json!({"user_id": "x", "room_id": "r", "grants": []}),
            "empty grants",
        ),
        (json!({"user_id": "x"}), "missing room"),
        (
            json!({"user_id": "x", "room_id": "r", "extra": 1}),
            "unknown field",
        ),
    ] {
        let (status, body) = mint(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT", "{why}");
    }
    let (status, body) = post(
        &server,
        "/apps/app_nope/tokens",
        json!({"user_id": "x", "room_id": "r"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("APP_NOT_FOUND"))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_names_the_reason() {
    let server = TestServer::start().await;
    let good = server.token("r", "u", &ALL_GRANTS);
    let expired = server.token_at(
        "r",
        "u",
        &ALL_GRANTS,
        std::time::Duration::from_secs(60),
        unix_now() - 3600,
    );
    let stranger = weir_server::token::AppKey {
        app_id: "app_stranger".to_string(),
        secret: "s".repeat(48),
        enabled: true,
        room_permission_required: false,
    };
    let unknown = weir_server::token::mint(
        &stranger,
        "r",
        "u",
        &ALL_GRANTS,
        std::time::Duration::from_secs(60),
        unix_now(),
    )
    .expect("mint");
    // Change the signature's first character: all six of its bits are
    // signature bits (the last character's low bits are padding, and a
    // strict decoder calls a change there malformed, not a bad signature).
    let signature_at = good.rfind('.').expect("three parts") + 1;
    let first = &good[signature_at..=signature_at];
    let tampered = format!(
        "{}{}{}",
        &good[..signature_at],
        if first == "A" { "B" } else { "A" },
        &good[signature_at + 1..]
    );
    for (token, reason) in [
        (expired, "expired"),
        (unknown, "unknown_app"),
        (tampered, "bad_signature"),
        ("garbage".to_string(), "malformed"),
        ("a.b.c".to_string(), "malformed"),
        (String::new(), "malformed"),
    ] {
        let (status, body) = post(&server, "/tokens/verify", json!({ "token": token })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["valid"], false, "{token}");
        assert_eq!(body["reason"], reason, "{token}");
        assert!(body.get("claims").is_none());
    }
    let (status, body) = post(&server, "/tokens/verify", json!({"tok": "x"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_ARGUMENT"))
    );
    server.shutdown().await;
}
