//! The callback configuration over the REST API: set, read back, replace,
//! and every bad input refused.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_configuration_round_trips_and_refuses_bad_input() {
    let server = TestServer::start().await;
    let path = format!("/apps/{}/callbacks", server.app.app_id);
    let key = "a1".repeat(16);

    let (status, body) = server.api(reqwest::Method::GET, &path, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("CALLBACKS_NOT_CONFIGURED"))
    );

    let (status, body) = server.api(
        reqwest::Method::PUT,
        &path,
        Some(json!({"url": "https://hooks.example.test/weir", "key": key, "events": ["ROOM_CREATED", "TRACK_PUBLISHED", "ROOM_CREATED"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], json!(["ROOM_CREATED", "TRACK_PUBLISHED"]));
    let (status, read) = server.api(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, body);

    // Without `events`, every event type is sent.
    let (status, body) = server
        .api(
            reqwest::Method::PUT,
            &path,
            Some(json!({"url": "http://127.0.0.1:9/cb", "key": key})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["events"].as_array().map(Vec::len),
        Some(weir_server::callbacks::EventType::ALL.len())
    );

    let long_url = format!("https://h/{}", "a".repeat(2100));
    for (body, why) in [
        (json!({"url": "ftp://h/x", "key": key}), "not http(s)"),
        (
            json!({"url": long_url, "key": key}),
            "url over 2083 characters",
        ),
        (json!({"url": "https://h/", "key": "short"}), "short key"),
        (
            json!({"url": "https://h/", "key": format!("{key}!")}),
            "key with punctuation",
        ),
        (
            json!({"url": "https://h/", "key": key, "events": ["ROOM_EXPLODED"]}),
            "unknown event",
        ),
        (json!({"url": "https://h/"}), "missing key"),
        (
            json!({"url": "https://h/", "key": key, "extra": true}),
            "unknown field",
        ),
    ] {
        let (status, body) = server.api(reqwest::Method::PUT, &path, Some(body)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_ARGUMENT")),
            "{why}: {body}"
        );
    }
    let (status, body) = server
        .api(
            reqwest::Method::PUT,
            "/apps/app_nope/callbacks",
            Some(json!({"url": "https://h/", "key": key})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("APP_NOT_FOUND"))
    );
    server.shutdown().await;
}
