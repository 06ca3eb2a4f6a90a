//! `weir serve`: binds the HTTP listener and the shared media UDP socket,
//! and runs until SIGINT/SIGTERM.
//!
//! Layering: `http` (axum edge) -> `ws`/`whip` (sessions) -> `rooms`
//! (registry) -> `room_task` (one task owning each `weir_sfu::Room`) <-
//! `udp` (the socket reader routing datagrams into pooled buffers,
//! `receive_buffers`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;
use weir_protocol::LeaveReason;
use weir_sfu::RoomConfig;

use crate::app_keys::AppKeys;
use crate::config::Config;

mod api;
mod http;
mod media_socket;
pub mod metrics;
mod receive_buffers;
pub mod recorder;
mod room_task;
mod rooms;
mod send_batch;
mod udp;
mod whip;
mod ws;

#[doc(hidden)]
pub use api::fuzz_support;

use metrics::ServerMetrics;
use rooms::{RoomFactory, RoomRegistry};

/// Where recordings are written while they run (inside the data dir).
pub const RECORDING_SPOOL_DIR: &str = "recordings-spool";

/// Shared by every HTTP handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Application keys for token checks (cached reads of `store`).
    pub app_keys: Arc<AppKeys>,
    pub rooms: RoomRegistry,
    pub room_factory: RoomFactory,
    pub metrics: Arc<ServerMetrics>,
    pub started: Instant,
    /// The control plane's database.
    pub store: weir_store::Store,
    /// Where events for the applications' callbacks are emitted.
    pub events: crate::callbacks::Dispatcher,
    /// The REST API's OpenAPI document, rendered once at start.
    pub openapi_json: Arc<String>,
}

impl AppState {
    /// Whether a graceful shutdown began (the room registry is closed).
    pub fn shutting_down(&self) -> bool {
        self.rooms.is_closed()
    }
}

/// A started server (for tests and `run`).
pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub udp_addr: SocketAddr,
    pub metrics: Arc<ServerMetrics>,
    /// The application created on this start, if the database had none.
    pub created_app: Option<weir_store::App>,
    /// The admin key generated on this start (printed once, never stored).
    pub generated_admin_key: Option<String>,
    state: AppState,
    stop_http: watch::Sender<bool>,
    http_task: JoinHandle<()>,
    udp_task: JoinHandle<()>,
    finisher_task: JoinHandle<()>,
}

/// Binds the sockets and starts serving in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    config.validate().context("invalid configuration")?;
    weir_sfu::install_crypto();
    let store = crate::database::open(&config).await?;
    let created_app = store
        .ensure_default_app()
        .await
        .context("creating the default application")?
        .map(|(app, _secret)| app);
    let generated_admin_key = store
        .ensure_admin_key(config.admin.key.as_deref())
        .await
        .context("setting up the admin key")?;
    let (api_router, openapi) = api::routes();
    let openapi_json = openapi
        .to_pretty_json()
        .context("rendering the OpenAPI document")?;

    let udp = UdpSocket::bind(config.media.udp_listen)
        .await
        .with_context(|| format!("binding the media UDP socket {}", config.media.udp_listen))?;
    let udp_addr = udp.local_addr()?;
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;

    let advertised = SocketAddr::new(config.advertised_ip(), udp_addr.port());
    let mut room_config = RoomConfig::new(advertised).with_generated_dtls_cert();
    room_config.max_participants = config.rooms.max_participants;
    room_config.nack_cache_age = Duration::from_millis(config.media.nack_history_ms);
    room_config.own_egress = config.media.own_egress;
    room_config.ping_interval = Duration::from_secs(config.signalling.ping_interval_seconds);
    room_config.ping_timeout = Duration::from_secs(config.signalling.ping_timeout_seconds);

    let socket =
        Arc::new(media_socket::MediaSocket::new(udp).context("setting up the media UDP socket")?);
    let metrics = Arc::new(ServerMetrics::default());
    let default_room_settings = room_task::RoomSettings {
        max_participants: config.rooms.max_participants,
        empty_timeout: Duration::from_secs(config.rooms.empty_timeout_seconds),
        metadata: None,
    };
    let events = crate::callbacks::Dispatcher::start(
        store.clone(),
        crate::callbacks::DeliverySettings::from_config(&config.callbacks),
        metrics.clone(),
    )
    .await
    .context("starting the event callback dispatcher")?;
    let (recorders, stream_events) =
        recorder::Recorders::new(config.data_dir.join(RECORDING_SPOOL_DIR), metrics.clone());
    let finisher = recorder::finisher::Finisher {
        store: store.clone(),
        recorders: recorders.clone(),
        events: events.clone(),
        data_dir: config.data_dir.clone(),
        metrics: metrics.clone(),
        started_at_ms: ws::unix_now_ms_i64(),
    };
    let finisher_task = tokio::spawn(finisher.run(stream_events));
    let rooms = RoomRegistry::new();
    let receive_buffers = receive_buffers::ReceiveBuffers::new();
    let state = AppState {
        room_factory: RoomFactory {
            config: room_config,
            socket: socket.clone(),
            senders: media_socket::SenderPool::start(socket.clone(), metrics.clone()),
            spare_buffers: weir_sfu::SpareBuffers::new(),
            receive_buffers: receive_buffers.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            store: store.clone(),
            recorders: recorders.clone(),
            prefer_h264_while_recording: config.recording.prefer_h264,
            default_settings: default_room_settings,
        },
        config: Arc::new(config),
        app_keys: Arc::new(AppKeys::new(store.clone())),
        rooms: rooms.clone(),
        metrics: metrics.clone(),
        started: Instant::now(),
        store: store.clone(),
        events,
        openapi_json: Arc::new(openapi_json),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let udp_task = tokio::spawn(udp::run_reader(
        socket,
        rooms,
        receive_buffers,
        metrics.clone(),
        stop_rx.clone(),
    ));
    let router = http::router(state.clone(), api_router);
    let mut http_stop = stop_rx;
    let http_task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = http_stop.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    info!(%http_addr, %udp_addr, %advertised, "weir started");
    Ok(RunningServer {
        http_addr,
        udp_addr,
        metrics,
        created_app,
        generated_admin_key,
        state,
        stop_http: stop_tx,
        http_task,
        udp_task,
        finisher_task,
    })
}

impl RunningServer {
    /// The control-plane database.
    pub fn store(&self) -> &weir_store::Store {
        &self.state.store
    }

    /// Graceful shutdown: refuse new sessions, tell every participant,
    /// close every room, stop the listeners.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let rooms = self.state.rooms.close_all(LeaveReason::ServerShutdown);
        info!(rooms, "shutting down");
        // Give rooms a moment to deliver `leave`, close their peers and
        // dissolve (their last events then reach the outbox below), and
        // the signalling connections to send it and finish their closing
        // handshakes.
        let deadline = Instant::now() + Duration::from_secs(3);
        let m = &self.metrics;
        while (m.participants.get() > 0 || m.rooms.get() > 0 || m.signalling_connections.get() > 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop_http.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http_task).await;
        self.udp_task.abort();
        // Finalize and store the recordings in progress (their callbacks
        // are emitted before the dispatcher stops below).
        let recorders = &self.state.room_factory.recorders;
        recorders.stop_all();
        let deadline = Instant::now() + Duration::from_secs(30);
        while recorders.active() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if recorders.active() > 0 {
            tracing::warn!(
                streams = recorders.active(),
                "recordings still finishing at shutdown; the next start recovers them"
            );
        }
        self.finisher_task.abort();
        // Store every event emitted so far; the next start sends what is left.
        let events = self.state.events.shutdown();
        if tokio::time::timeout(Duration::from_secs(10), events)
            .await
            .is_err()
        {
            tracing::warn!("event callbacks: the outbox writer did not finish within 10 s");
        }
        self.state.store.close().await;
        info!(
            udp_received = m.udp_datagrams_received.get(),
            udp_receive_syscalls = m.udp_receive_syscalls.get(),
            udp_sent = m.udp_datagrams_sent.get(),
            udp_send_syscalls = m.udp_send_syscalls.get(),
            udp_send_messages = m.udp_send_messages.get(),
            udp_send_errors = m.udp_send_errors.get(),
            udp_dropped = m.udp_datagrams_dropped.get(),
            "stopped"
        );
        Ok(())
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = start(config).await?;
    if let Some(app) = &server.created_app {
        println!("created application \"{}\" app_id={}", app.name, app.app_id);
    }
    if let Some(key) = &server.generated_admin_key {
        println!("generated admin key (shown once; only its hash is stored): {key}");
    }
    println!(
        "weir ready http={} udp={}",
        server.http_addr, server.udp_addr
    );
    wait_for_signal().await?;
    server.shutdown().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
