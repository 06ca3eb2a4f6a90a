//! `forwarding-ceiling`: what a minimal forwarder reaches on this machine
//! now, for the traffic of a `weir-load` 1 -> N run; see
//! `weir_load::ceiling`.
//!
//! ```text
//! unshare -n sh -c 'ip link set lo up; forwarding-ceiling --subscribers 50 --duration 20'
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_load::ceiling::{self, CeilingConfig, Segmentation, Wakeups};

/// A minimal forwarder on loopback, fed the traffic of a 1 -> N run;
/// prints its packets per CPU-second. Loopback only; stops by itself.
#[derive(Debug, Parser)]
#[command(name = "forwarding-ceiling")]
struct Args {
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 1500)]
    video_kbps: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, default_value_t = 60)]
    keyframe_interval: u32,
    /// Leave out the subscribers' feedback and STUN checks.
    #[arg(long)]
    no_feedback: bool,
    /// Wake the forwarder with a tokio runtime, a reader task and a
    /// channel to a forwarding task (as Weir's server), not `poll`.
    #[arg(long)]
    tokio: bool,
    /// Send every datagram as a message of its own (many per `sendmmsg`,
    /// no UDP GSO): the bare path of `shared/notes/performance.md`.
    #[arg(long)]
    no_gso: bool,
    /// Core of the forwarder thread (as the server's in `measure.sh`).
    #[arg(long, default_value_t = 0)]
    forwarder_cpu: usize,
    /// Core of the publisher and subscribers.
    #[arg(long, default_value_t = 1)]
    harness_cpu: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(1..=3600).contains(&args.duration) || !(1..=5000).contains(&args.subscribers) {
        eprintln!("error: --duration must be 1..=3600 s and --subscribers 1..=5000");
        return ExitCode::FAILURE;
    }
    let config = CeilingConfig {
        subscribers: args.subscribers,
        duration: Duration::from_secs(args.duration),
        video_kbps: args.video_kbps,
        fps: args.fps,
        keyframe_interval: args.keyframe_interval,
        feedback: !args.no_feedback,
        wakeups: if args.tokio {
            Wakeups::Tokio
        } else {
            Wakeups::Poll
        },
        segmentation: if args.no_gso {
            Segmentation::OnePerMessage
        } else {
            Segmentation::Gso
        },
        forwarder_cpu: Some(args.forwarder_cpu),
        harness_cpu: Some(args.harness_cpu),
    };
    let report = match ceiling::run(&config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.summary());
    if let Some(path) = args.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|json| std::fs::write(&path, json).map_err(anyhow::Error::from));
        if let Err(e) = written {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
