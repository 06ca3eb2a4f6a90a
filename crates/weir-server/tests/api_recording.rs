//! The recording rule and the storage check over the REST API, and the
//! storage targets themselves: a local directory, and S3 against a real
//! `s3s-fs` on 127.0.0.1 (skipped, saying so, when it is not installed:
//! `scripts/test.sh` installs it into `~/.cache/weir/bin`).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, TestServer};
use weir_server::recording::{RecordingStorage, StorageOptions, StorageTarget};

fn rule_path(server: &TestServer) -> String {
    format!("/apps/{}/recording-rule", server.app.app_id)
}

fn storage_test_path(server: &TestServer) -> String {
    format!("/apps/{}/storage/test", server.app.app_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_round_trips_with_defaults() {
    let server = TestServer::start().await;
    let path = rule_path(&server);

    let (status, body) = server.api(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "RECORDING_RULE_NOT_CONFIGURED");

    let (status, body) = server
        .api(Method::PUT, &path, Some(json!({"formats": ["MP4"]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "formats": ["MP4"],
            "content": "audio_video",
            "hls": {"naming": "{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}",
                    "cycle_minutes": 0, "slice_seconds": 10,
                    "gap_merge": {"mode": "seconds", "seconds": 5}},
            "mp4": {"naming": "{app_id}/{record_format}/{stream}_{file_start_time}/{stream}_{file_start_time}",
                    "cycle_minutes": 180,
                    "gap_merge": {"mode": "seconds", "seconds": 5}},
            "storage": {"kind": "local"},
            "auto_record": false,
        })
    );
    let (status, read) = server.api(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, body);

    let full = json!({
        "formats": ["HLS", "MP4"],
        "content": "video",
        "hls": {"naming": "{app_id}/{room_id}/{user_id}_{file_start_time}", "cycle_minutes": 720,
                "slice_seconds": 2, "gap_merge": {"mode": "never_split"}},
        "mp4": {"naming": "mp4/{stream}-{file_start_time}", "cycle_minutes": 1,
                "gap_merge": {"mode": "new_file"}},
        "storage": {"kind": "local", "path": "/var/lib/weir/recordings"},
        "auto_record": true,
    });
    let (status, body) = server.api(Method::PUT, &path, Some(full.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, full);
    let (_, read) = server.api(Method::GET, &path, None).await;
    assert_eq!(read, full);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_secret_is_write_only() {
    let server = TestServer::start().await;
    let path = rule_path(&server);
    let storage = json!({"kind": "s3", "endpoint": "https://s3.example.test", "region": "eu-west-1",
                         "bucket": "weir-rec", "prefix": "tenant-1", "access_key": "AKIAEXAMPLE",
                         "secret_key": "wJalrXUtnFEMI/K7MDENG"});
    let (status, body) = server
        .api(
            Method::PUT,
            &path,
            Some(json!({"formats": ["HLS"], "storage": storage})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["storage"]["secret_key"], "********");
    assert_eq!(body["storage"]["access_key"], "AKIAEXAMPLE");
    let (_, read) = server.api(Method::GET, &path, None).await;
    assert_eq!(read["storage"]["secret_key"], "********");
    assert!(!read.to_string().contains("wJalrXUtnFEMI"));

    // Sending the mask back keeps the stored secret.
    let (status, body) = server
        .api(
            Method::PUT,
            &path,
            Some(json!({"formats": ["MP4"], "storage": read["storage"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = server
        .store()
        .recording_rule(&server.app.app_id)
        .await
        .expect("read")
        .expect("a rule");
    let stored: Value = serde_json::from_str(&stored.rule).expect("JSON");
    assert_eq!(stored["storage"]["secret_key"], "wJalrXUtnFEMI/K7MDENG");
    assert_eq!(stored["formats"], json!(["MP4"]));

    // ... but not for another access key.
    let mut other = read["storage"].clone();
    other["access_key"] = json!("AKIAOTHER");
    let (status, body) = server
        .api(
            Method::PUT,
            &path,
            Some(json!({"formats": ["MP4"], "storage": other})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("storage.secret_key")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_apps_are_not_found() {
    let server = TestServer::start().await;
    for (method, path, body) in [
        (Method::GET, "/apps/app_nope/recording-rule", None),
        (
            Method::PUT,
            "/apps/app_nope/recording-rule",
            Some(json!({"formats": ["MP4"]})),
        ),
        (Method::POST, "/apps/app_nope/storage/test", None),
        (
            Method::POST,
            "/apps/app_nope/storage/test",
            Some(json!({"kind": "local"})),
        ),
    ] {
        let (status, answer) = server.api(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(error_code(&answer), "APP_NOT_FOUND");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_rule_is_refused() {
    let server = TestServer::start().await;
    let path = rule_path(&server);
    let s3 = json!({"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "rec",
                    "access_key": "AK", "secret_key": "SK"});
    let with_storage = |field: &str, value: Value| {
        let mut storage = s3.clone();
        storage[field] = value;
        json!({"formats": ["MP4"], "storage": storage})
    };
    let cases = [
        (
            json!({"formats": ["MP4"], "mp4": {"naming": "{app_id}/{nope}"}}),
            "mp4.naming",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"naming": "a/../{stream}"}}),
            "hls.naming",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"naming": "/abs/{stream}"}}),
            "hls.naming",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"naming": "{stream"}}),
            "hls.naming",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"cycle_minutes": 721}}),
            "hls.cycle_minutes",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"slice_seconds": 1}}),
            "hls.slice_seconds",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"slice_seconds": 61}}),
            "hls.slice_seconds",
        ),
        (
            json!({"formats": ["HLS"], "hls": {"gap_merge": {"mode": "seconds", "seconds": 86401}}}),
            "hls.gap_merge.seconds",
        ),
        (
            json!({"formats": ["MP4"], "mp4": {"cycle_minutes": 0}}),
            "mp4.cycle_minutes",
        ),
        (
            json!({"formats": ["MP4"], "mp4": {"cycle_minutes": 181}}),
            "mp4.cycle_minutes",
        ),
        (
            json!({"formats": ["MP4"], "mp4": {"gap_merge": {"mode": "seconds", "seconds": 0}}}),
            "mp4.gap_merge.seconds",
        ),
        (
            json!({"formats": ["MP4"], "mp4": {"gap_merge": {"mode": "never_split"}}}),
            "never_split",
        ),
        (
            json!({"formats": ["MP4"], "mp4": {"gap_merge": {"mode": "seconds"}}}),
            "seconds",
        ),
        (json!({"formats": []}), "formats"),
        (json!({"content": "audio"}), "formats"),
        (json!({"formats": ["FLV"]}), "FLV"),
        (
            json!({"formats": ["MP4"], "content": "everything"}),
            "everything",
        ),
        (json!({"formats": ["MP4"], "extra": true}), "extra"),
        (json!({"formats": ["MP4"], "hls": {"extra": true}}), "extra"),
        (
            json!({"formats": ["MP4"], "storage": {"kind": "ftp"}}),
            "ftp",
        ),
        (
            json!({"formats": ["MP4"], "storage": {"kind": "local", "path": ""}}),
            "storage.path",
        ),
        (
            json!({"formats": ["MP4"], "storage": {"kind": "local", "path": "a\u{0}b"}}),
            "storage.path",
        ),
        (
            with_storage("endpoint", json!("s3.example.test")),
            "storage.endpoint",
        ),
        (
            with_storage("bucket", json!("Bad_Bucket")),
            "storage.bucket",
        ),
        (with_storage("prefix", json!("a/../b")), "storage.prefix"),
        (with_storage("region", json!("eu west")), "storage.region"),
        (with_storage("access_key", json!("")), "storage.access_key"),
        (
            with_storage("secret_key", json!("has space")),
            "storage.secret_key",
        ),
        (
            with_storage("secret_key", json!("********")),
            "storage.secret_key",
        ),
        (with_storage("session_token", json!("x")), "session_token"),
    ];
    for (body, field) in cases {
        let (status, answer) = server.api(Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_code(&answer), "INVALID_ARGUMENT", "{body}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{body}: {message:?} should name {field}"
        );
        assert!(!message.contains("has space"), "{message}");
    }
    // Nothing was stored.
    let (status, _) = server.api(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Not JSON, or not a JSON content type.
    let response = reqwest::Client::new()
        .put(format!("{}/api/v1{path}", server.http_base()))
        .bearer_auth(&server.admin_key)
        .header("content-type", "text/plain")
        .body(r#"{"formats": ["MP4"]}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_check_writes_reads_and_deletes() {
    let server = TestServer::start().await;
    let path = storage_test_path(&server);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("recordings");

    // No body and no rule: nothing to check.
    let (status, body) = server.api(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "RECORDING_RULE_NOT_CONFIGURED");

    let local = json!({"kind": "local", "path": root.display().to_string()});
    let (status, body) = server.api(Method::POST, &path, Some(local.clone())).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    assert!(!root.exists(), "the directory the check created is removed");

    // Without a body, the rule's storage is checked (the default: the data
    // dir's `recordings`).
    let (status, _) = server
        .api(
            Method::PUT,
            &rule_path(&server),
            Some(json!({"formats": ["MP4"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.api(Method::POST, &path, None).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));

    // A directory under a regular file cannot be created.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("file");
    let blocked = json!({"kind": "local", "path": file.join("sub").display().to_string()});
    let (status, body) = server.api(Method::POST, &path, Some(blocked)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], false);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );

    // Malformed sections are 4xx.
    for bad in [
        json!({"kind": "nfs"}),
        json!({"kind": "local", "path": ""}),
        json!({"kind": "local", "extra": 1}),
        json!({"kind": "s3", "endpoint": "http://h", "bucket": "b"}),
        json!([]),
    ] {
        let (status, body) = server.api(Method::POST, &path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), "INVALID_ARGUMENT");
    }
    // A mask with no stored secret.
    let masked = json!({"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "rec",
                        "access_key": "AK", "secret_key": "********"});
    let (status, body) = server.api(Method::POST, &path, Some(masked)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.shutdown().await;
}

// ------------------------------------------------------------------------
// S3 against a real s3s-fs.

/// A running `s3s-fs` on 127.0.0.1, stopped on drop.
struct S3sFs {
    child: Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

const ACCESS_KEY: &str = "weirtestaccess";
const SECRET_KEY: &str = "weir-test-secret-key-0123456789";
const BUCKET: &str = "weir-rec";

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `scripts/test.sh` installs s3s-fs, or `WEIR_S3S_FS`.
fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEIR_S3S_FS") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/weir")))?;
    let path = cache.join("bin/s3s-fs");
    path.is_file().then_some(path)
}

async fn start_s3s_fs() -> Option<S3sFs> {
    let Some(binary) = s3s_fs_binary() else {
        eprintln!(
            "skipped: s3s-fs is not installed (scripts/test.sh installs it into \
             ~/.cache/weir/bin; or set WEIR_S3S_FS)"
        );
        return None;
    };
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let server = S3sFs {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _root: root,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "s3s-fs did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(server)
}

fn s3_section(endpoint: &str, secret: &str) -> Value {
    json!({"kind": "s3", "endpoint": endpoint, "bucket": BUCKET, "prefix": "tenant-1",
           "access_key": ACCESS_KEY, "secret_key": secret})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_uploads_multipart_and_checks_against_s3s_fs() {
    let Some(s3) = start_s3s_fs().await else {
        return;
    };
    let target: StorageTarget =
        serde_json::from_value(s3_section(&s3.endpoint, SECRET_KEY)).expect("target");
    // Parts of 5 MiB, the smallest S3 (and s3s-fs) accepts.
    let options = StorageOptions {
        multipart_threshold: 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..StorageOptions::quick()
    };
    let storage =
        RecordingStorage::open_with(&target, Path::new("/unused"), options).expect("open");

    // A multi-MB file, uploaded in three parts.
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("spool.mp4");
    let content: Vec<u8> = (0..(11 * 1024 * 1024 + 12345))
        .map(|i: usize| (i % 253) as u8)
        .collect();
    std::fs::write(&spool, &content).expect("spool");
    let key = "app/mp4/room_alice_2026-01-01-00-00-00.mp4";
    let size = storage.put_file(&spool, key).await.expect("upload");
    assert_eq!(size, content.len() as u64);
    assert_eq!(storage.head(key).await.expect("head"), size);
    assert_eq!(storage.get_bytes(key).await.expect("get"), content);
    assert_eq!(
        storage.url(key),
        format!("{}/{BUCKET}/tenant-1/{key}", s3.endpoint)
    );
    // A small one goes in one request.
    std::fs::write(&spool, b"#EXTM3U\n").expect("spool");
    storage
        .put_file(&spool, "app/hls/x.m3u8")
        .await
        .expect("upload");
    assert_eq!(storage.head("app/hls/x.m3u8").await.expect("head"), 8);
    storage.delete(key).await.expect("delete");
    assert!(storage.head(key).await.is_err());

    // The API's storage check against it, and with a wrong secret.
    let server = TestServer::start().await;
    let path = storage_test_path(&server);
    let (status, body) = server
        .api(
            Method::POST,
            &path,
            Some(s3_section(&s3.endpoint, SECRET_KEY)),
        )
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    let wrong = "not-the-secret-key";
    let (status, body) = server
        .api(Method::POST, &path, Some(s3_section(&s3.endpoint, wrong)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert!(!body.to_string().contains(wrong), "{body}");

    // The rule's storage, its secret kept through the mask.
    let (status, _) = server
        .api(
            Method::PUT,
            &rule_path(&server),
            Some(json!({"formats": ["HLS"], "storage": s3_section(&s3.endpoint, SECRET_KEY)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.api(Method::POST, &path, None).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    let (status, body) = server
        .api(
            Method::POST,
            &path,
            Some(s3_section(&s3.endpoint, "********")),
        )
        .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"ok": true})));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_stats_give_the_success_rate_of_a_window() {
    use weir_store::{
        NewRecordingFile, NewRecordingJob, RecordFormat, RecordingFilePatch, RecordingFileStatus,
        RecordingJobOrigin,
    };
    let server = TestServer::start().await;
    let app_id = server.app.app_id.clone();
    let store = server.store();
    let t0: i64 = 1_800_000_000_000;
    let job = store
        .create_recording_job(NewRecordingJob {
            app_id: app_id.clone(),
            room_id: "room".into(),
            user_ids: Vec::new(),
            formats: vec![RecordFormat::Hls, RecordFormat::Mp4],
            origin: RecordingJobOrigin::Manual,
            rule: "{}".into(),
            created_at_ms: t0,
        })
        .await
        .expect("job");
    // Three MP4 files complete (one recovered after a crash), one failed;
    // one HLS file still recording.
    let outcomes = [
        (
            RecordFormat::Mp4,
            Some((RecordingFileStatus::Complete, false)),
        ),
        (
            RecordFormat::Mp4,
            Some((RecordingFileStatus::Complete, true)),
        ),
        (
            RecordFormat::Mp4,
            Some((RecordingFileStatus::Complete, false)),
        ),
        (
            RecordFormat::Mp4,
            Some((RecordingFileStatus::Failed, false)),
        ),
        (RecordFormat::Hls, None),
    ];
    for (index, (format, outcome)) in outcomes.into_iter().enumerate() {
        let file = store
            .insert_recording_file(NewRecordingFile {
                app_id: app_id.clone(),
                job_id: job.job_id.clone(),
                room_id: "room".into(),
                user_id: "alice".into(),
                stream: "room_alice".into(),
                format,
                file_index: index as u32,
                object_key: format!("{app_id}/{index}"),
                spool_path: None,
                started_at_ms: t0 + index as i64 * 1000,
            })
            .await
            .expect("file");
        if let Some((status, recovered)) = outcome {
            let stored = status == RecordingFileStatus::Complete;
            store
                .update_recording_file(
                    &file.file_id,
                    RecordingFilePatch {
                        status: Some(status),
                        size_bytes: stored.then_some(1_000_000),
                        duration_ms: stored.then_some(60_000),
                        recovered: Some(recovered),
                        ..RecordingFilePatch::default()
                    },
                )
                .await
                .expect("update");
        }
    }
    let path = |query: &str| format!("/apps/{app_id}/recording-stats{query}");
    let (status, body) = server
        .api(
            Method::GET,
            &path(&format!("?from={t0}&to={}", t0 + 60_000)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["total"],
        json!({"files_started": 5, "files_complete": 3, "files_failed": 1,
               "files_recording": 1, "files_recovered": 1, "success_rate": 0.75,
               "stored_bytes": 3_000_000, "recorded_seconds": 180.0})
    );
    assert_eq!(body["hls"]["files_recording"], 1);
    assert_eq!(body["hls"]["success_rate"], Value::Null);
    assert_eq!(body["mp4"]["files_started"], 4);
    // The window is [from, to): the file at t0 + 4 s is left out here.
    let (_, body) = server
        .api(
            Method::GET,
            &path(&format!("?from={t0}&to={}", t0 + 4_000)),
            None,
        )
        .await;
    assert_eq!(body["total"]["files_started"], 4);
    // The default window is the last day: these files are from 2027.
    let (status, body) = server.api(Method::GET, &path(""), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"]["files_started"], 0);
    assert!(body["to"].as_i64().unwrap_or(0) - body["from"].as_i64().unwrap_or(0) == 86_400_000);

    for bad in [
        "?from=10&to=5",
        "?from=-1",
        "?to=abc",
        "?to=9007199254740992",
    ] {
        let (status, body) = server.api(Method::GET, &path(bad), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), "INVALID_ARGUMENT", "{bad}");
    }
    let (status, body) = server
        .api(Method::GET, "/apps/app_unknown/recording-stats", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "APP_NOT_FOUND");
    server.shutdown().await;
}
