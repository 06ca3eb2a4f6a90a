//! CPU time and memory of a process, from Linux's `/proc`: `utime + stime`
//! of `/proc/PID/stat` (all threads) and `VmRSS` of `/proc/PID/status`,
//! sampled every [`RSS_SAMPLE_INTERVAL`] for the peak.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the RSS is sampled for its peak.
pub const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// How long the end RSS may take to settle after the clients left.
pub const RSS_SETTLE: Duration = Duration::from_secs(8);

/// The process to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The harness itself.
    Current,
    Pid(u32),
}

impl Process {
    fn dir(self) -> PathBuf {
        match self {
            Process::Current => PathBuf::from("/proc/self"),
            Process::Pid(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }

    fn read(self, file: &str) -> anyhow::Result<String> {
        let path = self.dir().join(file);
        std::fs::read_to_string(&path).with_context(|| match self {
            Process::Current => format!("reading {}", path.display()),
            Process::Pid(pid) => {
                format!("reading {} (is process {pid} running?)", path.display())
            }
        })
    }

    /// User plus system CPU time so far, all threads together.
    pub fn cpu_seconds(self) -> anyhow::Result<f64> {
        let text = self.read("stat")?;
        let ticks = parse_stat_cpu_ticks(&text)
            .ok_or_else(|| anyhow!("unexpected format of {}/stat", self.dir().display()))?;
        Ok(ticks as f64 / clock_ticks_per_second() as f64)
    }

    /// Resident memory now, in bytes.
    pub fn rss_bytes(self) -> anyhow::Result<u64> {
        let text = self.read("status")?;
        parse_status_rss(&text)
            .ok_or_else(|| anyhow!("no VmRSS in {}/status", self.dir().display()))
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line, in clock
/// ticks. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        None | Some("B") => 1,
        Some("kB") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// `USER_HZ`, the unit of `/proc/PID/stat`'s times: `getconf CLK_TCK`,
/// else 100 (its value on every common Linux architecture).
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// Start, peak and end resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RssSummary {
    pub start: u64,
    pub peak: u64,
    pub end: u64,
}

/// Samples a process's RSS in the background for its peak.
pub struct RssSampler {
    process: Process,
    start: u64,
    peak: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// Reads the RSS once (failing if the process is not there), then
    /// samples it every [`RSS_SAMPLE_INTERVAL`].
    pub fn start(process: Process) -> anyhow::Result<RssSampler> {
        let start = process.rss_bytes()?;
        let peak = Arc::new(AtomicU64::new(start));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn({
            let peak = Arc::clone(&peak);
            async move {
                let mut tick = tokio::time::interval(RSS_SAMPLE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Ok(rss) = process.rss_bytes() {
                                peak.fetch_max(rss, Ordering::Relaxed);
                            }
                        }
                        _ = stopped.changed() => return,
                    }
                }
            }
        });
        Ok(RssSampler {
            process,
            start,
            peak,
            stop,
            task,
        })
    }

    /// Stops sampling peaks; then gives the server up to [`RSS_SETTLE`]
    /// to release what the ended sessions held (leaves are processed
    /// asynchronously, allocators return pages with a delay) and reads the
    /// end RSS: once it is within 10 % of the start, or when time is up.
    pub async fn finish(self) -> anyhow::Result<RssSummary> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let settle_until = tokio::time::Instant::now() + RSS_SETTLE;
        let mut end = self.process.rss_bytes()?;
        while end > self.start + self.start / 10 && tokio::time::Instant::now() < settle_until {
            tokio::time::sleep(RSS_SAMPLE_INTERVAL).await;
            end = self.process.rss_bytes()?;
        }
        Ok(RssSummary {
            start: self.start,
            peak: self.peak.load(Ordering::Relaxed).max(end),
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (weir (a) b) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_stat_cpu_ticks("4242 (weir) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tweir\nVmPeak:\t  900 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss(status), Some(51200 * 1024));
        assert_eq!(parse_status_rss("Name:\tkthreadd\n"), None);
        assert_eq!(parse_status_rss("VmRSS:\t12 parsecs\n"), None);
    }

    #[test]
    fn the_current_process_can_be_read() {
        let cpu = Process::Current.cpu_seconds().expect("own CPU time");
        assert!(cpu >= 0.0);
        assert!(Process::Current.rss_bytes().expect("own RSS") > 0);
        assert!(Process::Pid(u32::MAX).cpu_seconds().is_err());
    }
}
