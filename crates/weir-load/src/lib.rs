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
//!
//! Media peers bind 127.0.0.1 (against Janus: `--janus-bind-ip`, 127.0.0.2,
//! see [`target::janus::JanusTarget::new`]). Pin the harness and the server
//! to different cores (`taskset -c 1 weir-load ...`, server on core 0) so
//! that the harness never competes with what it measures.

use std::sync::Arc;

use anyhow::Context;

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
            let run_seconds = (scenario.ramp + scenario.duration + scenario.drain).as_secs();
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
    let report = runner::run(target, &plan.run).await?;
    if let Some(path) = &plan.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(report)
}
