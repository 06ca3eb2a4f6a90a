//! CPU time and memory of a process, from Linux's `/proc`: `utime + stime`
//! of `/proc/PID/stat` (all threads), and `VmRSS` and `RssAnon` of
//! `/proc/PID/status`, sampled every [`RSS_SAMPLE_INTERVAL`] for the peak.
//!
//! `RssAnon` is the memory the process allocated (heap, stacks); the rest
//! of `VmRSS` is mostly its own code, paged in as it is first run and never
//! given back, so it is what says whether memory returns after a load.

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

    /// Resident memory now: all of it, and the anonymous part.
    pub fn memory(self) -> anyhow::Result<Memory> {
        let text = self.read("status")?;
        let field = |name: &str| {
            parse_status_kib(&text, name)
                .ok_or_else(|| anyhow!("no {name} in {}/status", self.dir().display()))
        };
        Ok(Memory {
            rss: field("VmRSS")?,
            anon: field("RssAnon")?,
        })
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

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: everything resident.
    pub rss: u64,
    /// `RssAnon`: the allocated part (heap, stacks), without code and
    /// other file pages.
    pub anon: u64,
}

/// A `/proc/PID/status` field such as `VmRSS` (a size), in bytes.
pub fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let mut parts = line[name.len() + 1..].split_ascii_whitespace();
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

impl RssSummary {
    /// What a load added at its peak, per unit of load (e.g. per
    /// subscribed video track); `None` for no units.
    pub fn growth_per(&self, units: u64) -> Option<u64> {
        (units > 0).then(|| self.peak.saturating_sub(self.start) / units)
    }
}

/// Start, peak and end of both resident measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySummary {
    pub rss: RssSummary,
    pub anon: RssSummary,
}

/// Samples a process's memory in the background for its peaks.
pub struct RssSampler {
    process: Process,
    start: Memory,
    peak_rss: Arc<AtomicU64>,
    peak_anon: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// Reads the memory once (failing if the process is not there), then
    /// samples it every [`RSS_SAMPLE_INTERVAL`].
    pub fn start(process: Process) -> anyhow::Result<RssSampler> {
        let start = process.memory()?;
        let peak_rss = Arc::new(AtomicU64::new(start.rss));
        let peak_anon = Arc::new(AtomicU64::new(start.anon));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn({
            let peak_rss = Arc::clone(&peak_rss);
            let peak_anon = Arc::clone(&peak_anon);
            async move {
                let mut tick = tokio::time::interval(RSS_SAMPLE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Ok(now) = process.memory() {
                                peak_rss.fetch_max(now.rss, Ordering::Relaxed);
                                peak_anon.fetch_max(now.anon, Ordering::Relaxed);
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
            peak_rss,
            peak_anon,
            stop,
            task,
        })
    }

    /// Stops sampling peaks; then gives the server up to [`RSS_SETTLE`]
    /// to release what the ended sessions held (leaves are processed
    /// asynchronously, allocators return pages with a delay) and reads the
    /// end: once the anonymous memory is within 10 % of its start or has
    /// not moved for a second, or when time is up.
    pub async fn finish(self) -> anyhow::Result<MemorySummary> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let settle_until = tokio::time::Instant::now() + RSS_SETTLE;
        let steady_samples =
            (Duration::from_secs(1).as_millis() / RSS_SAMPLE_INTERVAL.as_millis()).max(1);
        let mut end = self.process.memory()?;
        let mut unchanged = 0;
        while end.anon > self.start.anon + self.start.anon / 10
            && unchanged < steady_samples
            && tokio::time::Instant::now() < settle_until
        {
            tokio::time::sleep(RSS_SAMPLE_INTERVAL).await;
            let now = self.process.memory()?;
            unchanged = if now.anon == end.anon {
                unchanged + 1
            } else {
                0
            };
            end = now;
        }
        Ok(MemorySummary {
            rss: RssSummary {
                start: self.start.rss,
                peak: self.peak_rss.load(Ordering::Relaxed).max(end.rss),
                end: end.rss,
            },
            anon: RssSummary {
                start: self.start.anon,
                peak: self.peak_anon.load(Ordering::Relaxed).max(end.anon),
                end: end.anon,
            },
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
        let status = "Name:\tweir\nVmPeak:\t  900 kB\nVmRSS:\t   51200 kB\n\
                      RssAnon:\t    7460 kB\nRssAnonX:\t1 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(51200 * 1024));
        assert_eq!(parse_status_kib(status, "RssAnon"), Some(7460 * 1024));
        assert_eq!(parse_status_kib(status, "RssFile"), None);
        assert_eq!(parse_status_kib("Name:\tkthreadd\n", "VmRSS"), None);
        assert_eq!(parse_status_kib("VmRSS:\t12 parsecs\n", "VmRSS"), None);
    }

    #[test]
    fn growth_is_shared_out_per_unit() {
        let rss = RssSummary {
            start: 1000,
            peak: 3000,
            end: 1200,
        };
        assert_eq!(rss.growth_per(4), Some(500));
        assert_eq!(rss.growth_per(0), None);
        let shrunk = RssSummary { peak: 900, ..rss };
        assert_eq!(shrunk.growth_per(4), Some(0));
    }

    #[test]
    fn the_current_process_can_be_read() {
        let cpu = Process::Current.cpu_seconds().expect("own CPU time");
        assert!(cpu >= 0.0);
        let own = Process::Current.memory().expect("own memory");
        assert!(own.rss >= own.anon && own.anon > 0, "{own:?}");
        assert!(Process::Pid(u32::MAX).cpu_seconds().is_err());
    }
}
