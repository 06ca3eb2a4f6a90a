//! The server's one typed configuration.
//!
//! Layers, lowest first: built-in defaults < the TOML file (`--config FILE`
//! or `WEIR_CONFIG`) < `WEIR_*` environment variables < command-line flags.
//! [`Config::load`] is pure: it takes the environment as a map, so tests and
//! the binary share one code path. `deploy/weir.toml` is a sample with every
//! key at its default; a test keeps it true.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod env;
#[cfg(test)]
mod tests;

/// Largest accepted `rooms.empty_timeout_seconds`: one day.
pub const MAX_EMPTY_TIMEOUT_SECONDS: u64 = 24 * 3600;
/// Largest accepted `signalling.ping_interval_seconds` / `ping_timeout_seconds`: one hour.
pub const MAX_PING_SECONDS: u64 = 3600;

/// `media.nack_history_ms` by default (see `weir_sfu::RoomConfig`).
pub const DEFAULT_NACK_HISTORY_MS: u64 = 500;
const NACK_HISTORY_MS_RANGE: std::ops::RangeInclusive<u64> = 50..=10_000;

/// The whole server configuration. Every field has a default, so an empty
/// TOML file is a valid configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the server keeps its state (the SQLite database, recordings).
    /// Relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// Development mode: enables the dev token endpoint of the join page.
    pub dev: bool,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub rooms: RoomsConfig,
    pub signalling: SignallingConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub callbacks: CallbacksConfig,
    pub recording: RecordingConfig,
}

/// Server-wide recording settings (the rules themselves are per
/// application, in the database).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// While a room is recorded, new video publications are asked to send
    /// H.264 when they offer it, so that recordings play in browsers.
    pub prefer_h264: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig { prefer_h264: true }
    }
}

/// The REST API's administrator credential.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `Authorization: Bearer <key>` for `/api/v1`. When unset, the first
    /// start generates one, prints it once and stores only its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Where the control plane keeps its data.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://...`; unset means SQLite in the data dir (`weir.db`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// How event callbacks are retried and kept.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Delay before the first retry, in milliseconds; doubles per failure.
    pub retry_initial_ms: u64,
    /// Longest delay between two attempts, in seconds.
    pub retry_max_delay_seconds: u64,
    /// An event still undelivered this long after its first attempt is
    /// recorded as failed.
    pub give_up_after_seconds: u64,
    /// Days delivered events stay in the database (listed by the API); 0
    /// keeps them forever. Failed events are always kept.
    pub retention_days: u64,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        CallbacksConfig {
            retry_initial_ms: 1000,
            retry_max_delay_seconds: 300,
            give_up_after_seconds: 3600,
            retention_days: 7,
        }
    }
}

/// Largest accepted `callbacks.give_up_after_seconds`: 30 days.
pub const MAX_CALLBACK_GIVE_UP_SECONDS: u64 = 30 * 24 * 3600;
/// Largest accepted `callbacks.retention_days`: ten years.
pub const MAX_CALLBACK_RETENTION_DAYS: u64 = 3650;

/// Shortest accepted admin key.
pub const MIN_ADMIN_KEY_LEN: usize = 32;

/// Parses a `tracing` filter (`log.filter`, `RUST_LOG`) with each
/// comma-separated directive trimmed: tracing-subscriber 0.3 reads an
/// untrimmed directive at the trimmed one's offsets, which misreads
/// `info, weir=debug` and panics on non-ASCII text after the space
/// (tokio-rs/tracing#3297).
pub fn tracing_filter(
    directives: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    let trimmed: Vec<&str> = directives.split(',').map(str::trim).collect();
    tracing_subscriber::EnvFilter::try_new(trimmed.join(","))
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The HTTP listener (join page, WebSocket signalling, WHIP/WHEP).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The one UDP socket all media flows through.
    pub udp_listen: SocketAddr,
    /// The IP put in ICE candidates. `None`: the `udp_listen` IP, or the
    /// loopback address if that is unspecified (`0.0.0.0` / `::`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_ip: Option<IpAddr>,
    /// How long sent packets are kept to answer NACKs at most (one history
    /// per track on Weir's own egress, whose window follows the
    /// subscribers' longest round trip up to this, and is this long only
    /// while no round trip is known, not even the signalling socket's;
    /// per subscriber on str0m's, always this long).
    pub nack_history_ms: u64,
    /// Forwarded RTP sealed by Weir per subscriber (fast path) instead of
    /// str0m's per-subscriber send path. `false` puts every packet through
    /// str0m.
    pub own_egress: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// How long a room lives on after its last participant left.
    pub empty_timeout_seconds: u64,
    /// Participants per room; 0 means unlimited.
    pub max_participants: u32,
    /// Whether participants subscribe to every track unless their `join`
    /// says otherwise.
    pub auto_subscribe: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignallingConfig {
    /// How often clients are asked to ping.
    pub ping_interval_seconds: u64,
    /// A session without a ping for this long is closed.
    pub ping_timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` `EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
    /// One JSON object per line instead of human-readable text.
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./weir-data"),
            dev: false,
            http: HttpConfig::default(),
            media: MediaConfig::default(),
            rooms: RoomsConfig::default(),
            signalling: SignallingConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            database: DatabaseConfig::default(),
            callbacks: CallbacksConfig::default(),
            recording: RecordingConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7880),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            udp_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7882),
            advertise_ip: None,
            nack_history_ms: DEFAULT_NACK_HISTORY_MS,
            own_egress: true,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            empty_timeout_seconds: 30,
            max_participants: 100,
            auto_subscribe: true,
        }
    }
}

impl Default for SignallingConfig {
    fn default() -> Self {
        SignallingConfig {
            ping_interval_seconds: 10,
            ping_timeout_seconds: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info,str0m=warn".to_string(),
            json: false,
        }
    }
}

/// The command-line flags that override the configuration (the top layer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliOverrides {
    pub data_dir: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub udp_listen: Option<SocketAddr>,
    pub advertise_ip: Option<IpAddr>,
    /// `--dev`: turns development mode on (it cannot turn it off).
    pub dev: bool,
}

/// Why the configuration could not be loaded. Every variant names the file,
/// variable or key at fault; `Read` and `Parse` carry the cause as their
/// `source()` (print the chain, e.g. anyhow's `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {} is invalid", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {key}={value:?} is invalid: {reason}")]
    Env {
        key: String,
        value: String,
        reason: String,
    },
    #[error("invalid configuration: `{key}` {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The environment variable or dotted config key at fault, if one is.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Env { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Parse { .. } => None,
        }
    }
}

impl Config {
    /// Builds the configuration from its layers and validates it.
    ///
    /// `file` is the `--config` flag; without it `WEIR_CONFIG` (from `env`)
    /// names the file; without either there is no file layer. A named file
    /// that does not exist is an error. Empty environment values count as
    /// unset.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env::value(env, env::CONFIG_FILE).map(PathBuf::from));
        let mut config = match file {
            Some(path) => Config::from_file(&path)?,
            None => Config::default(),
        };
        env::apply(&mut config, env)?;
        config.apply_overrides(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file (missing keys take their defaults). Does not
    /// validate.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text (missing keys take their defaults). Does not validate.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn apply_overrides(&mut self, overrides: &CliOverrides) {
        if let Some(dir) = &overrides.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(listen) = overrides.http_listen {
            self.http.listen = listen;
        }
        if let Some(listen) = overrides.udp_listen {
            self.media.udp_listen = listen;
        }
        if let Some(ip) = overrides.advertise_ip {
            self.media.advertise_ip = Some(ip);
        }
        if overrides.dev {
            self.dev = true;
        }
    }

    /// The IP put in ICE candidates: `media.advertise_ip`, else the
    /// `udp_listen` IP, with an unspecified address replaced by loopback.
    pub fn advertised_ip(&self) -> IpAddr {
        match self.media.advertise_ip {
            Some(ip) => ip,
            None => match self.media.udp_listen.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            },
        }
    }

    /// Checks the values that parse but make no sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &str, reason: String) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if let Some(ip) = self.media.advertise_ip {
            if ip.is_unspecified() || ip.is_multicast() {
                return invalid(
                    "media.advertise_ip",
                    format!(
                        "({ip}) must be an address peers can send to, not unspecified or multicast"
                    ),
                );
            }
        }
        if !NACK_HISTORY_MS_RANGE.contains(&self.media.nack_history_ms) {
            return invalid(
                "media.nack_history_ms",
                format!(
                    "({}) must be between {} and {}",
                    self.media.nack_history_ms,
                    NACK_HISTORY_MS_RANGE.start(),
                    NACK_HISTORY_MS_RANGE.end()
                ),
            );
        }
        if let Some(key) = &self.admin.key {
            if key.len() < MIN_ADMIN_KEY_LEN || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return invalid(
                    "admin.key",
                    format!("must be at least {MIN_ADMIN_KEY_LEN} letters and digits"),
                );
            }
        }
        if let Some(url) = &self.database.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return invalid(
                    "database.url",
                    "must be a postgres:// URL (leave it unset for SQLite in the data dir)".into(),
                );
            }
        }
        let rooms = &self.rooms;
        if rooms.empty_timeout_seconds > MAX_EMPTY_TIMEOUT_SECONDS {
            return invalid(
                "rooms.empty_timeout_seconds",
                format!(
                    "({}) must be at most {MAX_EMPTY_TIMEOUT_SECONDS} (one day)",
                    rooms.empty_timeout_seconds
                ),
            );
        }
        let ping = &self.signalling;
        if ping.ping_interval_seconds == 0 || ping.ping_interval_seconds > MAX_PING_SECONDS {
            return invalid(
                "signalling.ping_interval_seconds",
                format!(
                    "({}) must be between 1 and {MAX_PING_SECONDS}",
                    ping.ping_interval_seconds
                ),
            );
        }
        if ping.ping_timeout_seconds > MAX_PING_SECONDS {
            return invalid(
                "signalling.ping_timeout_seconds",
                format!(
                    "({}) must be at most {MAX_PING_SECONDS}",
                    ping.ping_timeout_seconds
                ),
            );
        }
        if ping.ping_timeout_seconds <= ping.ping_interval_seconds {
            return invalid(
                "signalling.ping_timeout_seconds",
                format!(
                    "({}) must be greater than signalling.ping_interval_seconds ({})",
                    ping.ping_timeout_seconds, ping.ping_interval_seconds
                ),
            );
        }
        self.validate_callbacks()?;
        if let Err(e) = tracing_filter(&self.log.filter) {
            return invalid(
                "log.filter",
                format!("({:?}) is not a valid tracing filter: {e}", self.log.filter),
            );
        }
        Ok(())
    }

    fn validate_callbacks(&self) -> Result<(), ConfigError> {
        let callbacks = &self.callbacks;
        let invalid = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: format!("callbacks.{key}"),
                reason,
            })
        };
        if callbacks.give_up_after_seconds == 0
            || callbacks.give_up_after_seconds > MAX_CALLBACK_GIVE_UP_SECONDS
        {
            return invalid(
                "give_up_after_seconds",
                format!(
                    "({}) must be between 1 and {MAX_CALLBACK_GIVE_UP_SECONDS} (30 days)",
                    callbacks.give_up_after_seconds
                ),
            );
        }
        if callbacks.retry_max_delay_seconds == 0
            || callbacks.retry_max_delay_seconds > callbacks.give_up_after_seconds
        {
            return invalid(
                "retry_max_delay_seconds",
                format!(
                    "({}) must be between 1 and callbacks.give_up_after_seconds ({})",
                    callbacks.retry_max_delay_seconds, callbacks.give_up_after_seconds
                ),
            );
        }
        if callbacks.retry_initial_ms == 0
            || callbacks.retry_initial_ms > callbacks.retry_max_delay_seconds.saturating_mul(1000)
        {
            return invalid(
                "retry_initial_ms",
                format!(
                    "({}) must be between 1 and callbacks.retry_max_delay_seconds in milliseconds ({})",
                    callbacks.retry_initial_ms,
                    callbacks.retry_max_delay_seconds.saturating_mul(1000)
                ),
            );
        }
        if callbacks.retention_days > MAX_CALLBACK_RETENTION_DAYS {
            return invalid(
                "retention_days",
                format!(
                    "({}) must be at most {MAX_CALLBACK_RETENTION_DAYS}",
                    callbacks.retention_days
                ),
            );
        }
        Ok(())
    }
}
