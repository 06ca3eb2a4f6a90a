//! The `weir` binary end to end: token create / verify through the built
//! executable, in a throwaway data dir, with a clean environment.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weir_protocol::Grant;

fn weir(args: &[&str]) -> Output {
    weir_with_env(args, &[])
}

/// Runs the binary with only `env` (plus PATH) in its environment.
fn weir_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command.args(args).env_clear().stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the weir binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn create_token(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "token",
        "create",
        "--data-dir",
        path_str(dir),
        "--room",
        "lobby",
        "--user",
        "alice",
    ];
    args.extend_from_slice(extra);
    weir(&args)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[test]
fn token_create_then_verify_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let created = create_token(
        dir.path(),
        &["--grants", "publish,subscribe", "--ttl", "1h"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).trim().to_string();
    assert_eq!(
        token.split('.').count(),
        3,
        "stdout is the JWT alone: {token:?}"
    );
    assert!(
        stderr(&created).contains("app_id=app_"),
        "the created app is announced on stderr: {}",
        stderr(&created)
    );

    let verified = weir(&[
        "token",
        "verify",
        "--data-dir",
        path_str(dir.path()),
        "--room",
        "lobby",
        &token,
    ]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let claims: serde_json::Value =
        serde_json::from_str(&stdout(&verified)).expect("verify prints JSON");
    assert_eq!(claims["user_id"], "alice");
    assert_eq!(claims["room"], "lobby");
    assert_eq!(
        claims["grants"],
        serde_json::json!(["publish", "subscribe"])
    );
    assert!(claims["app_id"]
        .as_str()
        .expect("app_id")
        .starts_with("app_"));
    let expires_at = claims["expires_at"].as_u64().expect("expires_at");
    let now = unix_now();
    assert!(
        expires_at > now + 3500 && expires_at <= now + 3600,
        "{expires_at}"
    );

    // A second create reuses the app and says nothing on stderr.
    let again = create_token(dir.path(), &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).is_empty(), "{}", stderr(&again));

    // The wrong room is refused with the code.
    let wrong = weir(&[
        "token",
        "verify",
        "--data-dir",
        path_str(dir.path()),
        "--room",
        "elsewhere",
        &token,
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("TOKEN_WRONG_ROOM"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn the_data_dir_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = path_str(dir.path());
    let created = weir_with_env(
        &["token", "create", "--room", "r", "--user", "u"],
        &[("WEIR_DATA_DIR", data)],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(dir.path().join(weir_store::SQLITE_FILE).is_file());
}

#[test]
fn bad_ttls_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for ttl in ["0", "1w", "181d", "abc"] {
        let output = create_token(dir.path(), &["--ttl", ttl]);
        assert!(!output.status.success(), "--ttl {ttl} was accepted");
        assert!(stdout(&output).is_empty());
        assert!(stderr(&output).contains("--ttl"), "{}", stderr(&output));
    }
}

#[test]
fn unknown_app_ids_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = create_token(dir.path(), &["--app", "app_0000000000000000"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).contains("unknown application \"app_0000000000000000\""),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = weir_store::Store::sqlite_in(dir.path())
        .await
        .expect("the database opens");
    let (app, secret) = store
        .ensure_default_app()
        .await
        .expect("ensure")
        .expect("created");
    store.close().await;
    let key = weir_server::token::AppKey {
        app_id: app.app_id,
        secret,
        enabled: true,
        room_permission_required: false,
    };
    let issued = unix_now() - 7200;
    let token = weir_server::token::mint(
        &key,
        "lobby",
        "alice",
        &Grant::ALL,
        Duration::from_secs(3600),
        issued,
    )
    .expect("mints");
    let output = weir(&[
        "token",
        "verify",
        "--data-dir",
        path_str(dir.path()),
        &token,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty());
    assert!(
        stderr(&output).starts_with("TOKEN_EXPIRED:"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn garbage_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = weir(&[
        "token",
        "verify",
        "--data-dir",
        path_str(dir.path()),
        "x.y.z",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("TOKEN_INVALID:"),
        "{}",
        stderr(&output)
    );
    assert!(
        !dir.path().join("apps.json").exists(),
        "verify never creates an application"
    );
}

#[test]
fn a_corrupt_store_is_reported_not_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("apps.json");
    std::fs::write(&path, "{oops").expect("write");
    let output = create_token(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("corrupt"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "{oops");
}

#[test]
fn serve_refuses_a_bad_configuration_before_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = weir_with_env(
        &["serve", "--data-dir", path_str(dir.path())],
        &[("WEIR_HTTP_LISTEN", "not-an-address")],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("WEIR_HTTP_LISTEN"), "{err}");

    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "[http]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").expect("write");
    let output = weir(&["serve", "--config", path_str(&config)]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("bogus") && err.contains("weir.toml"), "{err}");
}

#[test]
fn the_sample_config_is_accepted_by_the_binary() {
    // `token create` loads (and validates) the configuration like `serve`.
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/weir.toml");
    let output = weir_with_env(
        &[
            "token",
            "create",
            "--config",
            sample,
            "--data-dir",
            path_str(dir.path()),
            "--room",
            "r",
            "--user",
            "u",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn version_prints_the_version() {
    let output = weir(&["version"]);
    assert!(output.status.success());
    assert!(
        stdout(&output).starts_with(&format!("weir {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&output)
    );
}
