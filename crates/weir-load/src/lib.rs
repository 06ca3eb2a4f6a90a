//! `weir-load`, the load-test harness: rooms of synthetic publishers and
//! subscribers against a running server, measuring what the subscribers
//! receive (loss, latency) and what it costs the server (CPU time over the
//! sending phase, memory).
//!
//! - [`cli`]: the flags and the [`cli::Plan`] they make.
//! - [`scenario`]: rooms, clients, media and the synthetic video profile
//!   (frame and packet sizes from a bitrate).
//! - [`target`]: the system under test behind traits; [`target::weir`]
//!   is the Weir implementation (tokens, `weir-client`, recordings API),
//!   [`target::janus`] the Janus VideoRoom one (HTTP API, no recordings).
//! - [`runner`]: the phases of a run: join (ramped), subscribe, record,
//!   send, drain, stop, leave.
//! - [`traffic`]: the real-time senders and the receivers (stamps,
//!   duplicates, latency).
//! - [`proc_stats`]: CPU time and RSS from `/proc`.
//! - [`report`]: the JSON report (a contract) and the human summary.
//! - [`ceiling`]: a minimal forwarder fed the same 1 -> N traffic, for
//!   what the machine allows now (the `forwarding-ceiling` binary).
//!
//! Media peers bind 127.0.0.1 (against Janus: `--janus-bind-ip`, 127.0.0.2,
//! see [`target::janus::JanusTarget::new`]). Pin the harness and the server
//! to different cores (`taskset -c 1 weir-load ...`, server on core 0) so
//! that the harness never competes with what it measures.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

pub mod ceiling;
pub mod cli;
pub mod proc_stats;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod target;
pub mod traffic;

pub use cli::{Args, Plan};
pub use report::Report;

use cli::TargetPlan;
use target::janus::JanusTarget;
use target::weir::{WeirSettings, WeirTarget};
use target::Target;

/// Spare lifetime of join tokens beyond the run's own length.
const TOKEN_MARGIN_SECONDS: u64 = 600;
/// After the warm-up call, before the run: the server's allocator gives
/// freed pages back after about a second, and a room left empty closes
/// after the server's empty-room timeout if that is as short.
const WARMUP_SETTLE: Duration = Duration::from_secs(2);

/// Builds the target of a plan (reads the application's key).
pub async fn target_of(plan: &Plan) -> anyhow::Result<Arc<dyn Target>> {
    match &plan.target {
        TargetPlan::Weir {
            endpoints,
            credentials,
            admin_key,
        } => {
            let app = credentials.app_key().await?;
            let scenario = &plan.run.scenario;
            let warmup = plan.warmup.map_or(Duration::ZERO, |w| w + WARMUP_SETTLE);
            let run_seconds =
                (warmup + scenario.ramp + scenario.duration + scenario.drain).as_secs();
            let settings = WeirSettings {
                endpoints: endpoints.clone(),
                app,
                admin_key: admin_key.clone(),
                token_ttl: std::time::Duration::from_secs(run_seconds + TOKEN_MARGIN_SECONDS),
            };
            Ok(Arc::new(WeirTarget::new(settings)?))
        }
        TargetPlan::Janus { url, bind_ip } => Ok(Arc::new(JanusTarget::new(url, *bind_ip)?)),
    }
}

/// Runs what the flags say and writes the JSON report if asked.
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let plan = args.plan()?;
    let target = target_of(&plan).await?;
    if let Some(length) = plan.warmup {
        warm_up(Arc::clone(&target), &plan.run, length).await?;
    }
    let mut report = runner::run(target, &plan.run).await?;
    report.warmup_s = plan.warmup.map_or(0.0, |w| w.as_secs_f64());
    if let Some(path) = &plan.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(report)
}

/// The warm-up call of `--warmup`: one publisher and one subscriber with
/// the run's media, in a room of their own (`{prefix}-warmup-1`), for
/// `length`; then a pause for the server to settle. Its numbers are not
/// reported; it must work, or the run would measure a broken server.
async fn warm_up(
    target: Arc<dyn Target>,
    run: &runner::RunOptions,
    length: Duration,
) -> anyhow::Result<()> {
    let warm = runner::run(target, &warmup_options(run, length))
        .await
        .context("the warm-up call")?;
    if warm.join_failures > 0 || warm.packets_received == 0 {
        bail!(
            "the warm-up call failed ({} joins failed, {} packets received): {}",
            warm.join_failures,
            warm.packets_received,
            warm.errors.join("; ")
        );
    }
    tokio::time::sleep(WARMUP_SETTLE).await;
    Ok(())
}

/// The warm-up call's run: the run's target and media, one room of one
/// publisher and one subscriber, no ramp, no recording, no server readings.
pub fn warmup_options(run: &runner::RunOptions, length: Duration) -> runner::RunOptions {
    let mut scenario = run.scenario.clone();
    scenario.rooms = 1;
    scenario.publishers = 1;
    scenario.subscribers = 1;
    scenario.duration = length;
    scenario.ramp = Duration::ZERO;
    scenario.record = false;
    scenario.room_prefix = format!("{}-warmup", scenario.room_prefix);
    runner::RunOptions {
        scenario,
        server_pid: None,
        progress: false,
        ..run.clone()
    }
}
