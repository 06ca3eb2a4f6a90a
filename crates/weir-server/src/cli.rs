//! The `weir` command line: `serve`, `token create`, `token verify`,
//! `version`.
//!
//! This is the binary's shell: it reads the process environment (passed in
//! as a map), the clock and stdin, and prints. The work itself is in
//! [`crate::config`], [`crate::apps`], [`crate::token`] and [`crate::serve`].

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use weir_protocol::Grant;

use crate::app_keys::AppKeys;
use crate::config::{CliOverrides, Config, LogConfig};
use crate::token::{self, TokenError, VerifiedToken, MAX_TTL};

#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "Weir: a self-hosted WebRTC SFU")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Create or check join tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the version.
    Version,
}

/// Where the configuration comes from (shared by every subcommand that
/// needs it).
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// The TOML config file (default: $WEIR_CONFIG, else none).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data dir holding the SQLite database (overrides the config and
    /// $WEIR_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// HTTP listen address, e.g. 0.0.0.0:7880.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Media UDP listen address, e.g. 0.0.0.0:7882.
    #[arg(long, value_name = "ADDR")]
    pub udp_listen: Option<SocketAddr>,
    /// The IP put in ICE candidates (the public IP behind NAT).
    #[arg(long, value_name = "IP")]
    pub advertise_ip: Option<IpAddr>,
    /// Development mode: the join page may mint tokens.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new join token on stdout.
    Create(TokenCreateArgs),
    /// Check a token; print its claims as JSON, or exit 1 with the error.
    Verify(TokenVerifyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The room, or * for any room.
    #[arg(long)]
    pub room: String,
    /// The user id.
    #[arg(long)]
    pub user: String,
    /// The application (default: the one named "default").
    #[arg(long, value_name = "APP_ID")]
    pub app: Option<String>,
    /// Comma-separated grants.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_grant,
        default_value = "publish,subscribe,data"
    )]
    pub grants: Vec<Grant>,
    /// Lifetime: 30s, 15m, 1h, 7d or plain seconds; at most 180d.
    #[arg(long, value_parser = parse_ttl, default_value = "24h")]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct TokenVerifyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also check that the token admits this room.
    #[arg(long)]
    pub room: Option<String>,
    /// The token, or - to read it from stdin.
    pub token: String,
}

impl ServeArgs {
    pub fn overrides(&self) -> CliOverrides {
        CliOverrides {
            data_dir: self.config.data_dir.clone(),
            http_listen: self.http_listen,
            udp_listen: self.udp_listen,
            advertise_ip: self.advertise_ip,
            dev: self.dev,
        }
    }
}

impl ConfigArgs {
    /// Loads the configuration with only `--data-dir` as a flag override.
    pub fn load(&self, env: &HashMap<String, String>) -> anyhow::Result<Config> {
        let overrides = CliOverrides {
            data_dir: self.data_dir.clone(),
            ..CliOverrides::default()
        };
        Config::load(self.config.as_deref(), env, &overrides).context("loading the configuration")
    }
}

/// The process environment, skipping variables that are not UTF-8.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Runs a parsed command line. `Err` and `ExitCode::FAILURE` both mean
/// exit status 1; `Err` still has to be printed.
pub fn run(cli: Cli, env: &HashMap<String, String>) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            serve(&args, env)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Create(args),
        } => {
            let created = token_create(&args, env, unix_now())?;
            if let Some(app) = &created.created_app {
                eprintln!(
                    "created application \"{}\" app_id={} in {}",
                    app.name, app.app_id, created.store_location
                );
            }
            println!("{}", created.token);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Verify(mut args),
        } => {
            if args.token == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the token from stdin")?;
                args.token = text;
            }
            match token_verify(&args, env, unix_now())? {
                Ok(verified) => {
                    println!("{}", serde_json::to_string_pretty(&verified)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", e.code().as_str());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Version => {
            println!("{}", version());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `weir version`'s line.
pub fn version() -> String {
    format!(
        "weir {} (signalling protocol v{})",
        env!("CARGO_PKG_VERSION"),
        weir_protocol::PROTOCOL_VERSION
    )
}

/// `weir serve`: config, logging, then the server on a multi-thread runtime.
pub fn serve(args: &ServeArgs, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let config = Config::load(args.config.config.as_deref(), env, &args.overrides())
        .context("loading the configuration")?;
    init_tracing(&config.log, env.get("RUST_LOG").map(String::as_str))?;
    // The pool rooms drive large fan-outs on (weir_sfu::Room) with their
    // own thread: one thread per further core, named so that per-thread
    // CPU shows it.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(cores.saturating_sub(1).max(1))
        .thread_name(|i| format!("weir-fanout-{i}"))
        .build_global()
    {
        tracing::debug!(error = %e, "the fan-out pool was already set up");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(crate::serve::run(config))
}

/// Logs to stderr (coloured on a terminal) with `log.filter`, or `RUST_LOG`
/// when that is set.
fn init_tracing(log: &LogConfig, rust_log: Option<&str>) -> anyhow::Result<()> {
    let (directives, source) = match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => (v, "RUST_LOG"),
        None => (log.filter.as_str(), "log.filter"),
    };
    let filter = crate::config::tracing_filter(directives)
        .with_context(|| format!("{source}={directives:?} is not a valid tracing filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = if log.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// What `token create` made.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: String,
    /// The application created because the database had none.
    pub created_app: Option<weir_store::App>,
    /// The database used (file path, or URL without password).
    pub store_location: String,
}

/// `weir token create`, minus the printing: signs offline with the
/// application's secret from the control-plane database.
pub fn token_create(
    args: &TokenCreateArgs,
    env: &HashMap<String, String>,
    now_unix: u64,
) -> anyhow::Result<CreatedToken> {
    if args.grants.is_empty() {
        bail!("--grants needs at least one of publish, subscribe, data");
    }
    let config = args.config.load(env)?;
    block_on(async {
        let store = crate::database::open(&config).await?;
        let location = crate::database::location(&config);
        let created_app = store
            .ensure_default_app()
            .await
            .context("creating the default application")?
            .map(|(app, _)| app);
        let app_id = match &args.app {
            Some(app_id) => app_id.clone(),
            None => {
                store
                    .default_app()
                    .await?
                    .context("the database has no application")?
                    .app_id
            }
        };
        let key = match AppKeys::new(store.clone()).get(&app_id).await? {
            Some(key) => key,
            None => {
                let known = store.list_apps(None, 1, 100).await?;
                let known: Vec<&str> = known.items.iter().map(|a| a.app_id.as_str()).collect();
                bail!(
                    "unknown application {app_id:?} in {location} (known: {})",
                    known.join(", ")
                );
            }
        };
        let token = token::mint(
            &key,
            &args.room,
            &args.user,
            &args.grants,
            args.ttl,
            now_unix,
        )
        .context("creating the token")?;
        store.close().await;
        Ok(CreatedToken {
            token,
            created_app,
            store_location: location,
        })
    })
}

/// `weir token verify`, minus the printing: `Err` if the database cannot be
/// read, `Ok(Err)` if the token is refused. Never creates an application.
pub fn token_verify(
    args: &TokenVerifyArgs,
    env: &HashMap<String, String>,
    now_unix: u64,
) -> anyhow::Result<Result<VerifiedToken, TokenError>> {
    let config = args.config.load(env)?;
    block_on(async {
        let store = crate::database::open(&config).await?;
        let verdict = AppKeys::new(store.clone())
            .verify(&args.token, args.room.as_deref(), now_unix)
            .await;
        store.close().await;
        if let Err(TokenError::Unavailable(reason)) = verdict {
            bail!("reading the application: {reason}");
        }
        Ok(verdict)
    })
}

/// Runs an offline command's database work on a small runtime.
fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(work)
}

/// Parses `30s`, `15m`, `1h`, `7d` or plain seconds; 1 s to 180 days.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let usage = || format!("{text:?} is not a lifetime like 30s, 15m, 1h, 7d or 3600");
    let count: u64 = number.parse().map_err(|_| usage())?;
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(usage()),
    };
    let too_long = || format!("{text:?} is longer than the maximum, 180d");
    let seconds = count.checked_mul(unit_seconds).ok_or_else(too_long)?;
    if seconds == 0 {
        return Err("the lifetime must be at least 1s".to_string());
    }
    let ttl = Duration::from_secs(seconds);
    if ttl > MAX_TTL {
        return Err(too_long());
    }
    Ok(ttl)
}

fn parse_grant(text: &str) -> Result<Grant, String> {
    Grant::parse(text)
        .ok_or_else(|| format!("{text:?} is not a grant (publish, subscribe or data)"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
