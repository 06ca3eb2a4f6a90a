//! The Weir target: clients of `weir-client` over `/rtc/v1`, tokens minted
//! with the application's secret, recordings through the REST API
//! (`/api/v1/apps/{app_id}/recordings`, admin key).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use tokio::sync::watch;
use weir_client::synthetic::{OpusSource, SyntheticPacket, Vp8Source};
use weir_client::{Client, Event, JoinOptions};
use weir_protocol::{Grant, ServerMessage, TrackKind, TrackSource};
use weir_server::token::AppKey;

use super::tracks::{wait_for_tracks, PacketStream, SendTracks};
use super::{
    MediaStream, Publisher, RecordedFile, RecordingJob, RecordingOutcome, Subscriber, Target,
};
use crate::scenario::Media;

/// Bound on each wait for the server while joining and publishing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on ICE + DTLS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Received packets buffered per subscriber before they are dropped (and
/// counted as lost): the reader keeps up unless the harness is saturated.
const MEDIA_BUFFER: usize = 16_384;
/// Bound on a REST call.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the application's signing secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `--app-id` and `--token-secret`.
    Secret { app_id: String, secret: String },
    /// The server's data dir: the application (default: the server's
    /// default one) is read from its SQLite database, as `weir token
    /// create` does.
    DataDir {
        dir: PathBuf,
        app_id: Option<String>,
    },
}

impl Credentials {
    /// The signing key of the application.
    pub async fn app_key(&self) -> anyhow::Result<AppKey> {
        match self {
            Credentials::Secret { app_id, secret } => Ok(AppKey {
                app_id: app_id.clone(),
                secret: secret.clone(),
                enabled: true,
                room_permission_required: false,
            }),
            Credentials::DataDir { dir, app_id } => app_key_in(dir, app_id.as_deref()).await,
        }
    }
}

async fn app_key_in(dir: &Path, app_id: Option<&str>) -> anyhow::Result<AppKey> {
    let database = dir.join(weir_store::SQLITE_FILE);
    // Opening would create an empty database: refuse a wrong dir instead.
    if !database.is_file() {
        bail!(
            "no Weir database at {} (is --data-dir the server's data dir?)",
            database.display()
        );
    }
    let store = weir_store::Store::sqlite_in(dir)
        .await
        .with_context(|| format!("opening {}", database.display()))?;
    let key = async {
        let app_id = match app_id {
            Some(id) => id.to_string(),
            None => {
                store
                    .default_app()
                    .await?
                    .ok_or_else(|| anyhow!("{} has no application", database.display()))?
                    .app_id
            }
        };
        let secret = store
            .app_secret(&app_id)
            .await
            .with_context(|| format!("reading application {app_id:?}"))?;
        if !secret.status.is_enabled() {
            bail!("application {app_id:?} is disabled");
        }
        Ok(AppKey {
            app_id,
            secret: secret.secret,
            enabled: true,
            room_permission_required: secret.room_permission_required,
        })
    }
    .await;
    store.close().await;
    key
}

/// The signalling URL and the REST base of a server, from `--url` (and
/// `--api-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `ws://HOST:PORT/rtc/v1`
    pub signalling: String,
    /// `http://HOST:PORT`
    pub api: String,
}

impl Endpoints {
    /// `url` is `ws(s)://HOST[:PORT][/PATH]` or `http(s)://...`; without a
    /// path, the signalling path `/rtc/v1` is added. The REST base is the
    /// same host over HTTP(S), unless `api_url` says otherwise.
    pub fn parse(url: &str, api_url: Option<&str>) -> anyhow::Result<Endpoints> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| anyhow!("--url {url:?} is not like ws://127.0.0.1:7880/rtc/v1"))?;
        let (ws_scheme, http_scheme) = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => ("ws", "http"),
            "wss" | "https" => ("wss", "https"),
            other => bail!("--url: unsupported scheme {other:?} (ws, wss, http or https)"),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            bail!("--url {url:?} has no host");
        }
        let path = if path.is_empty() || path == "/" {
            "/rtc/v1"
        } else {
            path
        };
        let api = match api_url {
            Some(api) => {
                let api = api.trim().trim_end_matches('/');
                if !(api.starts_with("http://") || api.starts_with("https://")) {
                    bail!("--api-url {api:?} is not like http://127.0.0.1:7880");
                }
                api.to_string()
            }
            None => format!("{http_scheme}://{authority}"),
        };
        Ok(Endpoints {
            signalling: format!("{ws_scheme}://{authority}{path}"),
            api,
        })
    }
}

/// Everything the Weir target needs.
#[derive(Debug, Clone)]
pub struct WeirSettings {
    pub endpoints: Endpoints,
    pub app: AppKey,
    /// For recordings.
    pub admin_key: Option<String>,
    /// Lifetime of the minted tokens (longer than the run).
    pub token_ttl: Duration,
}

/// A Weir server under load.
pub struct WeirTarget {
    settings: WeirSettings,
    http: reqwest::Client,
}

impl WeirTarget {
    pub fn new(settings: WeirSettings) -> anyhow::Result<WeirTarget> {
        let http = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(WeirTarget { settings, http })
    }

    fn token(&self, room: &str, user: &str, grants: &[Grant]) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        weir_server::token::mint(
            &self.settings.app,
            room,
            user,
            grants,
            self.settings.token_ttl,
            now,
        )
        .with_context(|| format!("minting a token for {user} in {room}"))
    }

    fn recordings_url(&self) -> String {
        format!(
            "{}/api/v1/apps/{}/recordings",
            self.settings.endpoints.api, self.settings.app.app_id
        )
    }

    fn admin_key(&self) -> anyhow::Result<&str> {
        self.settings
            .admin_key
            .as_deref()
            .ok_or_else(|| anyhow!("recording needs --admin-key (or WEIR_ADMIN_KEY)"))
    }

    /// Sends an API request; answers the JSON body of a `want` status.
    async fn api(
        &self,
        request: reqwest::RequestBuilder,
        want: reqwest::StatusCode,
        what: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let response = request
            .bearer_auth(self.admin_key()?)
            .send()
            .await
            .with_context(|| format!("{what}: the API did not answer"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status != want {
            bail!("{what}: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text:?}"))
    }

    async fn get_job(&self, job_id: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/{job_id}", self.recordings_url());
        self.api(
            self.http.get(url),
            reqwest::StatusCode::OK,
            "reading the recording job",
        )
        .await
    }
}

#[async_trait]
impl Target for WeirTarget {
    async fn join_publisher(
        &self,
        room: &str,
        user: &str,
        media: Media,
    ) -> anyhow::Result<Arc<dyn Publisher>> {
        let token = self.token(room, user, &[Grant::Publish])?;
        let options = JoinOptions {
            auto_subscribe: false,
            media_buffer: 0,
            request_timeout: REQUEST_TIMEOUT,
            ..JoinOptions::default()
        };
        let mut client = Client::connect(&self.settings.endpoints.signalling, &token, options)
            .await
            .with_context(|| format!("{user} joining {room}"))?;
        let closed = Arc::new(AtomicBool::new(false));
        watch_events(&mut client, Arc::clone(&closed), None);
        let mut kinds = Vec::new();
        if media.has_video() {
            kinds.push((TrackKind::Video, TrackSource::Camera));
        }
        if media.has_audio() {
            kinds.push((TrackKind::Audio, TrackSource::Microphone));
        }
        let tracks = client
            .publish_tracks(&kinds)
            .await
            .with_context(|| format!("{user} publishing in {room}"))?;
        client
            .wait_connected(CONNECT_TIMEOUT)
            .await
            .with_context(|| format!("{user} connecting media in {room}"))?;
        let track_ids = tracks
            .iter()
            .map(|t| {
                t.track_id()
                    .map(|id| id.as_str().to_string())
                    .ok_or_else(|| anyhow!("{user}: the server announced no track id"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let find = |kind| tracks.iter().find(|t| t.kind() == kind).cloned();
        Ok(Arc::new(WeirPublisher {
            tracks: SendTracks {
                video: find(TrackKind::Video),
                audio: find(TrackKind::Audio),
            },
            track_ids,
            closed,
            client: tokio::sync::Mutex::new(Some(client)),
        }))
    }

    async fn join_subscriber(&self, room: &str, user: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        let token = self.token(room, user, &[Grant::Subscribe])?;
        let options = JoinOptions {
            auto_subscribe: true,
            media_buffer: MEDIA_BUFFER,
            request_timeout: REQUEST_TIMEOUT,
            ..JoinOptions::default()
        };
        let mut client = Client::connect(&self.settings.endpoints.signalling, &token, options)
            .await
            .with_context(|| format!("{user} joining {room}"))?;
        let closed = Arc::new(AtomicBool::new(false));
        let (subscribed_tx, subscribed) = watch::channel(HashSet::new());
        watch_events(&mut client, Arc::clone(&closed), Some(subscribed_tx));
        let media = client
            .take_media()
            .map(|rx| Box::new(PacketStream(rx)) as Box<dyn MediaStream>);
        Ok(Box::new(WeirSubscriber {
            user: user.to_string(),
            subscribed,
            closed,
            media: Mutex::new(media),
            client: tokio::sync::Mutex::new(Some(client)),
        }))
    }

    async fn start_recording(&self, room: &str) -> anyhow::Result<RecordingJob> {
        let body = serde_json::json!({ "room_id": room });
        let job = self
            .api(
                self.http.post(self.recordings_url()).json(&body),
                reqwest::StatusCode::CREATED,
                &format!("starting a recording of {room}"),
            )
            .await?;
        let job_id = job["job_id"]
            .as_str()
            .ok_or_else(|| anyhow!("starting a recording of {room}: no job_id in {job}"))?;
        Ok(RecordingJob {
            room: room.to_string(),
            job_id: job_id.to_string(),
        })
    }

    async fn stop_recording(
        &self,
        job: &RecordingJob,
        timeout: Duration,
    ) -> anyhow::Result<RecordingOutcome> {
        let url = format!("{}/{}", self.recordings_url(), job.job_id);
        let mut view = self
            .api(
                self.http.delete(url),
                reqwest::StatusCode::OK,
                &format!("stopping the recording of {}", job.room),
            )
            .await?;
        // Files are finalized and stored after the stop: wait for them.
        let deadline = tokio::time::Instant::now() + timeout;
        while !files_settled(&view) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            view = self.get_job(&job.job_id).await?;
        }
        Ok(outcome_of(job, &view))
    }
}

/// True when the job lists files and none is still being written.
fn files_settled(view: &serde_json::Value) -> bool {
    view["files"].as_array().is_some_and(|files| {
        !files.is_empty()
            && files
                .iter()
                .all(|f| f["status"].as_str() != Some("recording"))
    })
}

fn outcome_of(job: &RecordingJob, view: &serde_json::Value) -> RecordingOutcome {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let files = view["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| RecordedFile {
                    user_id: text(&f["user_id"]),
                    format: text(&f["record_format"]),
                    object: text(&f["object"]),
                    status: text(&f["status"]),
                    size_bytes: f["size_bytes"].as_u64(),
                    duration_ms: f["duration_ms"].as_u64(),
                })
                .collect()
        })
        .unwrap_or_default();
    RecordingOutcome {
        room: job.room.clone(),
        job_id: job.job_id.clone(),
        status: text(&view["status"]),
        files,
    }
}

/// Reads a client's events in the background: notes the end of the
/// session and, for subscribers, which tracks are subscribed.
fn watch_events(
    client: &mut Client,
    closed: Arc<AtomicBool>,
    subscribed: Option<watch::Sender<HashSet<String>>>,
) {
    let Some(mut events) = client.take_events() else {
        return;
    };
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Closed { .. } => break,
                Event::Message(ServerMessage::Subscribed { track_id, .. }) => {
                    if let Some(tx) = &subscribed {
                        tx.send_modify(|set| {
                            set.insert(track_id.as_str().to_string());
                        });
                    }
                }
                Event::Message(ServerMessage::Unsubscribed { track_id }) => {
                    if let Some(tx) = &subscribed {
                        tx.send_modify(|set| {
                            set.remove(track_id.as_str());
                        });
                    }
                }
                _ => {}
            }
        }
        closed.store(true, Ordering::Release);
    });
}

/// Leaves with a bounded wait.
async fn leave(client: &tokio::sync::Mutex<Option<Client>>) {
    let taken = client.lock().await.take();
    if let Some(client) = taken {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, client.leave()).await;
    }
}

struct WeirPublisher {
    tracks: SendTracks,
    track_ids: Vec<String>,
    closed: Arc<AtomicBool>,
    client: tokio::sync::Mutex<Option<Client>>,
}

#[async_trait]
impl Publisher for WeirPublisher {
    fn track_ids(&self) -> Vec<String> {
        self.track_ids.clone()
    }

    async fn send_video_frame(
        &self,
        source: &mut Vp8Source,
        frame: &mut Vec<SyntheticPacket>,
    ) -> anyhow::Result<usize> {
        self.tracks.send_video_frame(source, frame).await
    }

    async fn send_audio_packet(&self, source: &mut OpusSource) -> anyhow::Result<()> {
        self.tracks.send_audio_packet(source).await
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    async fn leave(&self) {
        leave(&self.client).await;
    }
}

struct WeirSubscriber {
    user: String,
    subscribed: watch::Receiver<HashSet<String>>,
    closed: Arc<AtomicBool>,
    media: Mutex<Option<Box<dyn MediaStream>>>,
    client: tokio::sync::Mutex<Option<Client>>,
}

#[async_trait]
impl Subscriber for WeirSubscriber {
    async fn wait_subscribed(&self, track_ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        wait_for_tracks(&self.user, &self.subscribed, track_ids, timeout).await?;
        let client = self.client.lock().await;
        let client = client
            .as_ref()
            .ok_or_else(|| anyhow!("{}: already left", self.user))?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        client
            .wait_connected(left.max(Duration::from_secs(1)))
            .await
            .with_context(|| format!("{}: connecting media", self.user))
    }

    fn take_media(&self) -> Option<Box<dyn MediaStream>> {
        self.media.lock().ok()?.take()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    async fn leave(&self) {
        leave(&self.client).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_url() {
        let e = Endpoints::parse("ws://127.0.0.1:7880/rtc/v1", None).expect("valid");
        assert_eq!(e.signalling, "ws://127.0.0.1:7880/rtc/v1");
        assert_eq!(e.api, "http://127.0.0.1:7880");
        let e = Endpoints::parse("http://127.0.0.1:9000", None).expect("valid");
        assert_eq!(e.signalling, "ws://127.0.0.1:9000/rtc/v1");
        assert_eq!(e.api, "http://127.0.0.1:9000");
        let e = Endpoints::parse("wss://sfu.example:443/", Some("https://api.example/"))
            .expect("valid");
        assert_eq!(e.signalling, "wss://sfu.example:443/rtc/v1");
        assert_eq!(e.api, "https://api.example");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, api) in [
            ("127.0.0.1:7880", None),
            ("ftp://h/x", None),
            ("ws:///rtc/v1", None),
            ("ws://h", Some("h:1")),
        ] {
            let e = Endpoints::parse(url, api).expect_err(url);
            assert!(e.to_string().contains("url"), "{e}");
        }
    }

    #[test]
    fn recording_files_settle_when_none_is_being_written() {
        let job = RecordingJob {
            room: "r".into(),
            job_id: "J".into(),
        };
        let writing = serde_json::json!({"status": "stopped", "files": [
            {"user_id": "u", "record_format": "MP4", "object": "a.mp4", "status": "recording"}
        ]});
        assert!(!files_settled(&writing));
        assert!(!files_settled(&serde_json::json!({"files": []})));
        let done = serde_json::json!({"status": "stopped", "files": [
            {"user_id": "u", "record_format": "MP4", "object": "a.mp4", "status": "complete",
             "size_bytes": 10, "duration_ms": 2000}
        ]});
        assert!(files_settled(&done));
        let outcome = outcome_of(&job, &done);
        assert_eq!(outcome.status, "stopped");
        assert_eq!(outcome.files[0].object, "a.mp4");
        assert_eq!(outcome.files[0].size_bytes, Some(10));
    }

    #[tokio::test]
    async fn a_missing_data_dir_is_refused_without_creating_a_database() {
        let dir = std::env::temp_dir().join(format!("weir-load-none-{}", rand::random::<u64>()));
        let credentials = Credentials::DataDir {
            dir: dir.clone(),
            app_id: None,
        };
        let e = credentials.app_key().await.expect_err("no database");
        assert!(e.to_string().contains("no Weir database"), "{e}");
        assert!(!dir.exists());
    }
}
