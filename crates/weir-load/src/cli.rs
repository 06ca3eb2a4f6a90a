//! The command line: flags, their bounds, and the plan they make.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

use crate::runner::RunOptions;
use crate::scenario::{Media, Scenario, VideoProfile};
use crate::target::janus;
use crate::target::weir::{Credentials, Endpoints};
use crate::target::TargetKind;

/// Most clients (publishers + subscribers, all rooms) in one run.
pub const MAX_CLIENTS: u64 = 5000;
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_RAMP: Duration = Duration::from_secs(600);
const MAX_DRAIN: Duration = Duration::from_secs(30);
const MAX_WARMUP: Duration = Duration::from_secs(60);

const AFTER_HELP: &str = "\
Example: one room, 4 publishers (audio + 1500 kbps video) and 4 subscribers
for 30 s, the server on core 0 and the harness on core 1:

  taskset -c 0 weir serve --data-dir /tmp/weir &
  taskset -c 1 weir-load --data-dir /tmp/weir --server-pid $! \\
      --rooms 1 --publishers 4 --subscribers 4 --media av --duration 30 --json out.json

Durations take s, ms, m or h (plain numbers are seconds). Every subscriber
subscribes to every publisher track of its room; publishers send only once
all subscriptions are established, and the server's CPU is measured over
that sending phase. Recording (--record) starts a job per room through the
REST API before sending and stops it at the end.

Against Janus Gateway's VideoRoom (same scenario, no tokens, no --record):

  taskset -c 1 weir-load --target janus --janus-url http://127.0.0.1:8088/janus \\
      --server-pid $JANUS_PID --publishers 1 --subscribers 50 --json janus.json

Janus gathers no ICE candidate on a loopback interface: in a loopback-only
namespace give it a veth holding 127.0.0.2 (the default --janus-bind-ip, the
address the harness's media sockets bind, since Janus answers only through
the interface of its own candidate).

benches/compare-janus.sh runs one scenario against both and prints the ratio.";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "weir-load",
    version,
    about = "Load-test a Weir server (or Janus VideoRoom) with synthetic publishers and subscribers",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The system under test.
    #[arg(long, value_enum, default_value = "weir")]
    pub target: TargetKind,
    /// Janus's HTTP API (with --target janus).
    #[arg(long, value_name = "URL", default_value = janus::DEFAULT_URL)]
    pub janus_url: String,
    /// With --target janus, the address the media sockets bind: one on the interface of Janus's own ICE candidate (Janus answers only through it).
    #[arg(long, value_name = "IP", default_value_t = janus::DEFAULT_BIND_IP)]
    pub janus_bind_ip: std::net::IpAddr,
    /// The server's signalling URL (ws://HOST:PORT/rtc/v1; http://HOST:PORT works too).
    #[arg(long, default_value = "ws://127.0.0.1:7880/rtc/v1")]
    pub url: String,
    /// The REST API base (default: the --url host over HTTP).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// The application's secret, to mint join tokens (with --app-id).
    #[arg(
        long,
        env = "WEIR_LOAD_TOKEN_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub token_secret: Option<String>,
    /// The application (with --token-secret; with --data-dir, instead of the default one).
    #[arg(long, value_name = "APP_ID")]
    pub app_id: Option<String>,
    /// The server's data dir: its default application's id and secret are read from the database there.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Rooms.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rooms: u32,
    /// Publishers per room.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub publishers: u32,
    /// Subscribers per room (each receives every publisher track of its room).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub subscribers: u32,
    /// What each publisher sends.
    #[arg(long, value_enum, default_value = "av")]
    pub media: Media,
    /// Average video bitrate (payload), kbit/s.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(8..=50_000))]
    pub video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// A keyframe every this many frames.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub keyframe_interval: u32,
    /// How long publishers send (at most 1 h).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Clients join spread over this time (at most 10 min).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// How long to keep receiving after sending stops (at most 30 s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Before the run, a call of this long in a room of its own (one
    /// publisher, one subscriber, the same media), so that the server's
    /// start readings are of a server that has already carried a call:
    /// its code for the media path paged in, as on a server in service
    /// (at most 1 min; 0 for none).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The server's process id: its CPU time and memory go into the report.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Record every room during the run (needs --admin-key).
    #[arg(long)]
    pub record: bool,
    /// The REST API's admin key (for --record).
    #[arg(
        long,
        env = "WEIR_ADMIN_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub admin_key: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Room names are PREFIX-1, PREFIX-2, ... (default: `load-<random>`).
    #[arg(long, value_name = "PREFIX")]
    pub room_prefix: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// What the flags ask for, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run: RunOptions,
    /// `--warmup`: the warm-up call's length, if any.
    pub warmup: Option<Duration>,
    pub target: TargetPlan,
    pub json: Option<PathBuf>,
}

/// How to reach the system under test.
#[derive(Debug, Clone)]
pub enum TargetPlan {
    Weir {
        endpoints: Endpoints,
        credentials: Credentials,
        admin_key: Option<String>,
    },
    Janus {
        /// `--janus-url`, checked.
        url: String,
        /// `--janus-bind-ip`.
        bind_ip: std::net::IpAddr,
    },
}

impl Args {
    /// Checks the flags together; every refusal says which flag to fix.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let target = match self.target {
            TargetKind::Weir => self.weir_plan()?,
            TargetKind::Janus => {
                if self.record {
                    bail!("--record is not supported with --target janus");
                }
                if self.janus_bind_ip.is_unspecified() {
                    bail!("--janus-bind-ip must be an address, not a wildcard");
                }
                TargetPlan::Janus {
                    url: janus::parse_url(&self.janus_url)?,
                    bind_ip: self.janus_bind_ip,
                }
            }
        };
        let url = match &target {
            TargetPlan::Weir { endpoints, .. } => endpoints.signalling.clone(),
            TargetPlan::Janus { url, .. } => url.clone(),
        };
        if self.duration < Duration::from_secs(1) || self.duration > MAX_DURATION {
            bail!("--duration must be between 1s and 1h");
        }
        if self.ramp > MAX_RAMP {
            bail!("--ramp must be at most 10m");
        }
        if self.drain > MAX_DRAIN {
            bail!("--drain must be at most 30s");
        }
        if self.warmup > MAX_WARMUP {
            bail!("--warmup must be at most 1m");
        }
        let per_room = u64::from(self.publishers) + u64::from(self.subscribers);
        let clients = u64::from(self.rooms) * per_room;
        if clients > MAX_CLIENTS {
            bail!("{clients} clients is more than this harness runs at once ({MAX_CLIENTS})");
        }
        let room_prefix = match &self.room_prefix {
            Some(prefix) => prefix.clone(),
            None => format!("load-{:06x}", rand::random::<u32>() & 0xff_ffff),
        };
        let longest_room = if self.warmup.is_zero() {
            format!("{room_prefix}-{}", self.rooms)
        } else {
            // Covers the warm-up call's room, `{prefix}-warmup-1`, too.
            format!("{room_prefix}-warmup-{}", self.rooms)
        };
        if !weir_server::token::is_valid_name(&longest_room) {
            bail!("--room-prefix {room_prefix:?}: room names are 1-128 letters, digits or -_.@");
        }
        let scenario = Scenario {
            rooms: self.rooms,
            publishers: self.publishers,
            subscribers: self.subscribers,
            media: self.media,
            video_kbps: self.video_kbps,
            video: VideoProfile::from_bitrate(self.video_kbps, self.fps, self.keyframe_interval),
            duration: self.duration,
            ramp: self.ramp,
            drain: self.drain,
            record: self.record,
            room_prefix,
        };
        Ok(Plan {
            warmup: (!self.warmup.is_zero()).then_some(self.warmup),
            run: RunOptions {
                scenario,
                target: self.target,
                url,
                server_pid: self.server_pid,
                progress: !self.no_progress,
            },
            target,
            json: self.json.clone(),
        })
    }

    /// The Weir target's flags: URL, credentials, admin key.
    fn weir_plan(&self) -> anyhow::Result<TargetPlan> {
        let endpoints = Endpoints::parse(&self.url, self.api_url.as_deref())?;
        let credentials = match (&self.token_secret, &self.data_dir) {
            (Some(_), Some(_)) => bail!("give either --token-secret or --data-dir, not both"),
            (Some(secret), None) => match &self.app_id {
                Some(app_id) => Credentials::Secret {
                    app_id: app_id.clone(),
                    secret: secret.clone(),
                },
                None => bail!("--token-secret needs --app-id"),
            },
            (None, Some(dir)) => Credentials::DataDir {
                dir: dir.clone(),
                app_id: self.app_id.clone(),
            },
            (None, None) => bail!(
                "tokens need the application's secret: give --data-dir (the server's data dir) \
                 or --token-secret with --app-id"
            ),
        };
        if self.record && self.admin_key.is_none() {
            bail!("--record needs --admin-key (or WEIR_ADMIN_KEY)");
        }
        Ok(TargetPlan::Weir {
            endpoints,
            credentials,
            admin_key: self.admin_key.clone(),
        })
    }
}

/// `30`, `30s`, `1.5s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let usage = || format!("{text:?} is not a duration like 30, 30s, 500ms or 2m");
    let value: f64 = number.parse().map_err(|_| usage())?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(usage()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| usage())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec!["weir-load"];
        all.extend_from_slice(extra);
        Args::try_parse_from(all)
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "-1", "1d", "1e400", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_command_line_makes_a_plan() {
        let parsed = args(&[
            "--data-dir",
            "/tmp/weir",
            "--rooms",
            "2",
            "--publishers",
            "4",
            "--subscribers",
            "4",
            "--media",
            "av",
            "--duration",
            "30",
            "--record",
            "--admin-key",
            "k",
            "--room-prefix",
            "bench",
        ])
        .expect("valid flags");
        let plan = parsed.plan().expect("a plan");
        let scenario = &plan.run.scenario;
        assert_eq!(
            (scenario.rooms, scenario.publishers, scenario.subscribers),
            (2, 4, 4)
        );
        assert!(scenario.record);
        assert_eq!(scenario.room_name(1), "bench-2");
        let TargetPlan::Weir {
            endpoints,
            admin_key,
            ..
        } = &plan.target
        else {
            panic!("a Weir plan");
        };
        assert_eq!(endpoints.api, "http://127.0.0.1:7880");
        assert_eq!(admin_key.as_deref(), Some("k"));
    }

    #[test]
    fn a_warmup_is_one_small_call_in_a_room_of_its_own() {
        let flags = [
            "--data-dir",
            "d",
            "--rooms",
            "3",
            "--subscribers",
            "50",
            "--media",
            "video",
            "--ramp",
            "5s",
            "--record",
            "--admin-key",
            "k",
            "--room-prefix",
            "bench",
        ];
        let plan = args(&flags).expect("valid flags").plan().expect("a plan");
        assert_eq!(plan.warmup, None);
        let mut with_warmup = flags.to_vec();
        with_warmup.extend(["--warmup", "3s", "--server-pid", "7"]);
        let plan = args(&with_warmup)
            .expect("valid flags")
            .plan()
            .expect("a plan");
        assert_eq!(plan.warmup, Some(Duration::from_secs(3)));
        let warm = crate::warmup_options(&plan.run, Duration::from_secs(3));
        let scenario = &warm.scenario;
        assert_eq!(
            (scenario.rooms, scenario.publishers, scenario.subscribers),
            (1, 1, 1)
        );
        assert_eq!(scenario.media, Media::Video);
        assert_eq!(scenario.duration, Duration::from_secs(3));
        assert_eq!(scenario.ramp, Duration::ZERO);
        assert!(!scenario.record);
        assert_eq!(scenario.room_name(0), "bench-warmup-1");
        assert_eq!(warm.server_pid, None, "the warm-up takes no readings");
        assert_eq!(plan.run.server_pid, Some(7));
    }

    #[test]
    fn a_janus_plan_needs_no_credentials() {
        let plan = args(&["--target", "janus", "--publishers", "2"])
            .expect("valid flags")
            .plan()
            .expect("a plan");
        assert_eq!(plan.run.target, TargetKind::Janus);
        assert_eq!(plan.run.url, janus::DEFAULT_URL);
        assert!(matches!(
            &plan.target,
            TargetPlan::Janus { url, bind_ip } if url == janus::DEFAULT_URL && *bind_ip == janus::DEFAULT_BIND_IP
        ));
        let plan = args(&["--target", "janus", "--janus-url", "http://127.0.0.1:9/j/"])
            .expect("valid flags")
            .plan()
            .expect("a plan");
        assert_eq!(plan.run.url, "http://127.0.0.1:9/j");
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        assert!(args(&["--rooms", "0"]).is_err());
        assert!(args(&["--media", "smell"]).is_err());
        assert!(args(&["--duration", "soon"]).is_err());
        assert!(args(&["--target", "mediasoup"]).is_err());
        let refused = |extra: &[&str], reason: &str| {
            let e = args(extra).expect("parses").plan().expect_err("refused");
            assert!(e.to_string().contains(reason), "{e} (wanted {reason})");
        };
        refused(&[], "--data-dir");
        refused(&["--token-secret", "s"], "--app-id");
        refused(
            &["--token-secret", "s", "--app-id", "a", "--data-dir", "d"],
            "not both",
        );
        refused(&["--data-dir", "d", "--record"], "--admin-key");
        refused(&["--data-dir", "d", "--duration", "2h"], "--duration");
        refused(&["--data-dir", "d", "--warmup", "2m"], "--warmup");
        refused(
            &["--data-dir", "d", "--rooms", "1000", "--subscribers", "10"],
            "clients",
        );
        refused(
            &["--data-dir", "d", "--room-prefix", "a b"],
            "--room-prefix",
        );
        refused(&["--data-dir", "d", "--url", "nowhere"], "--url");
        refused(&["--target", "janus", "--record"], "not supported");
        refused(
            &["--target", "janus", "--janus-url", "ws://h/"],
            "--janus-url",
        );
        refused(
            &["--target", "janus", "--janus-bind-ip", "0.0.0.0"],
            "--janus-bind-ip",
        );
    }
}
