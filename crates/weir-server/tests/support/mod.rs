//! Shared helpers of the server's integration tests: an in-process server
//! on 127.0.0.1 with a throwaway data dir, and tokens from its default app.
//!
//! Media tests start real WebRTC peers: run them in a loopback-only network
//! namespace, `unshare -n bash -c 'ip link set lo up; exec cargo test ...'`.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod fixtures;
pub mod media;

use weir_protocol::Grant;
use weir_server::config::Config;
use weir_server::serve::{self, RunningServer};
use weir_server::token::AppKey;

/// Upper bound of any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

pub const ALL_GRANTS: [Grant; 3] = [Grant::Publish, Grant::Subscribe, Grant::Data];

/// The `error.code` of an API error body.
pub fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

pub struct TestServer {
    server: Option<RunningServer>,
    pub http_addr: SocketAddr,
    pub udp_addr: SocketAddr,
    /// The default application's key (created at start: the data dir is fresh).
    pub app: AppKey,
    /// The admin key generated at start (the data dir is fresh).
    pub admin_key: String,
    /// The PostgreSQL database in use (`None`: SQLite in the data dir).
    pub database_url: Option<String>,
    data_dir: tempfile::TempDir,
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An application's signing key, read from the database.
pub async fn app_key(store: &weir_store::Store, app_id: Option<&str>) -> AppKey {
    let app_id = match app_id {
        Some(id) => id.to_string(),
        None => {
            store
                .default_app()
                .await
                .expect("the database answers")
                .expect("a default application")
                .app_id
        }
    };
    let secret = store.app_secret(&app_id).await.expect("the application");
    AppKey {
        app_id,
        secret: secret.secret,
        enabled: secret.status.is_enabled(),
        room_permission_required: secret.room_permission_required,
    }
}

/// Ephemeral ports on 127.0.0.1, advertising 127.0.0.1 only.
fn listen_on_loopback(config: &mut Config) {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.http.listen = SocketAddr::new(localhost, 0);
    config.media.udp_listen = SocketAddr::new(localhost, 0);
    config.media.advertise_ip = Some(localhost);
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a config adjusted by `adjust` (listen addresses are set
    /// to 127.0.0.1:0 afterwards).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        init_tracing();
        let data_dir = tempfile::tempdir().expect("a temporary data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        // The control-plane suites run on PostgreSQL too: with a test
        // server configured, each server gets a scratch database there.
        if let Some(server_url) = weir_store::test_support::postgres_server_url() {
            let (_, url) = weir_store::test_support::create_scratch_database(&server_url)
                .await
                .expect("a scratch PostgreSQL database");
            eprintln!("test server database: {}", weir_store::redact_url(&url));
            config.database.url = Some(url);
        }
        adjust(&mut config);
        let database_url = config.database.url.clone();
        listen_on_loopback(&mut config);
        let server = serve::start(config).await.expect("the server starts");
        let app = app_key(server.store(), None).await;
        let admin_key = server
            .generated_admin_key
            .clone()
            .expect("a fresh data dir generates an admin key");
        TestServer {
            database_url,
            admin_key,
            http_addr: server.http_addr,
            udp_addr: server.udp_addr,
            server: Some(server),
            app,
            data_dir,
        }
    }

    /// `ws://HOST/rtc/v1`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/rtc/v1", self.http_addr)
    }

    /// `http://HOST`
    pub fn http_base(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn token(&self, room: &str, user: &str, grants: &[Grant]) -> String {
        self.token_at(room, user, grants, Duration::from_secs(3600), unix_now())
    }

    pub fn token_at(
        &self,
        room: &str,
        user: &str,
        grants: &[Grant],
        ttl: Duration,
        now_unix: u64,
    ) -> String {
        weir_server::token::mint(&self.app, room, user, grants, ttl, now_unix)
            .expect("mint a token")
    }

    /// Joins `room` as `user` with default options.
    pub async fn join(
        &self,
        room: &str,
        user: &str,
        grants: &[Grant],
    ) -> weir_client::Result<weir_client::Client> {
        weir_client::Client::connect(
            &self.ws_url(),
            &self.token(room, user, grants),
            weir_client::JoinOptions::default(),
        )
        .await
    }

    /// Joins `room` as `user` with every grant and publishes a VP8 camera
    /// track (returned once the server announced its track id).
    pub async fn camera_publisher(
        &self,
        room: &str,
        user: &str,
    ) -> (weir_client::Client, weir_client::LocalTrack) {
        let client = self
            .join(room, user, &ALL_GRANTS)
            .await
            .unwrap_or_else(|e| panic!("{user} joins {room}: {e}"));
        let track = client
            .publish_video_vp8(weir_protocol::TrackSource::Camera)
            .await
            .unwrap_or_else(|e| panic!("{user} publishes a camera: {e}"));
        (client, track)
    }

    /// The control-plane database.
    pub fn store(&self) -> &weir_store::Store {
        self.server.as_ref().expect("the server is running").store()
    }

    /// The key of `app_id` (the default application when `None`).
    pub async fn app_key(&self, app_id: Option<&str>) -> AppKey {
        app_key(self.store(), app_id).await
    }

    /// Calls the REST API at `/api/v1{path}` with the admin key; the body
    /// is sent as JSON. Answers the status and the JSON body (`Null` when
    /// empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.http_base()))
            .bearer_auth(&self.admin_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("a JSON body from {path}, got {text:?}"))
        };
        (status, value)
    }

    /// The server's counters.
    pub fn metrics(&self) -> std::sync::Arc<weir_server::serve::metrics::ServerMetrics> {
        self.server
            .as_ref()
            .map(|s| s.metrics.clone())
            .expect("the server is running")
    }

    /// Graceful shutdown; the data dir is removed when `self` drops.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
        }
    }

    /// Starts a graceful shutdown in another task (the data dir stays until
    /// `self` drops): the caller can talk to the server while it stops.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let server = self.server.take().expect("the server is running");
        tokio::spawn(server.shutdown())
    }
}

// ------------------------------------------------------------------------
// Restarts on the same data dir (the callback delivery tests).

impl TestServer {
    /// Shuts the server down gracefully and starts it again on the same data
    /// dir, with a default config adjusted by `adjust` (then listen
    /// addresses set to 127.0.0.1:0, so both addresses change). The
    /// application and the admin key stay.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
        }
        let mut config = Config {
            data_dir: self.data_dir.path().to_path_buf(),
            ..Config::default()
        };
        // The same database as before the restart.
        config.database.url = self.database_url.clone();
        adjust(&mut config);
        listen_on_loopback(&mut config);
        let server = serve::start(config).await.expect("the server restarts");
        self.http_addr = server.http_addr;
        self.udp_addr = server.udp_addr;
        self.server = Some(server);
    }
}
