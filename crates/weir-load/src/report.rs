//! The result of a run: the JSON report (`--json`, a contract: fields are
//! only ever added) and the human summary.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::proc_stats::RssSummary;
use crate::scenario::Media;
use crate::target::RecordingOutcome;

/// What the server's memory grew by at its peak, per subscribed video
/// track (every other stream and session of the scenario included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryPerTrack {
    pub video_tracks: u64,
    pub rss_bytes: u64,
    pub anon_bytes: u64,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    pub fn from_histogram_us(h: &Histogram<u64>) -> LatencyMs {
        if h.is_empty() {
            return LatencyMs {
                p50: 0.0,
                p95: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        let ms = |us: u64| round2(us as f64 / 1000.0);
        LatencyMs {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Time to join, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct JoinMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl JoinMs {
    pub fn from_samples(samples: &[f64]) -> JoinMs {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        JoinMs {
            p50: round2(nearest_rank(&sorted, 0.50)),
            p99: round2(nearest_rank(&sorted, 0.99)),
            max: round2(sorted.last().copied().unwrap_or(0.0)),
        }
    }
}

/// The nearest-rank percentile of sorted samples (0 when empty).
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: &'static str,
    pub scenario: String,
    pub url: String,
    /// How long publishers sent, measured.
    pub duration_s: f64,
    pub rooms: u32,
    /// Per room.
    pub publishers: u32,
    /// Per room.
    pub subscribers: u32,
    pub media: Media,
    /// `--video-kbps` (`null` without video).
    pub video_kbps: Option<u32>,
    /// The synthetic stream's average payload bitrate.
    pub video_payload_kbps: Option<f64>,
    pub fps: Option<u32>,
    pub keyframe_interval: Option<u32>,
    pub ramp_s: f64,
    /// `--warmup`: the call the server carried before the start readings
    /// (0: none, the readings are of a server fresh from its start).
    pub warmup_s: f64,
    pub clients_joined: u64,
    pub join_failures: u64,
    pub packets_sent: u64,
    /// For every subscriber, what its room's publishers sent while it
    /// was subscribed.
    pub packets_expected: u64,
    /// Distinct synthetic packets the subscribers received.
    pub packets_received: u64,
    pub packets_duplicate: u64,
    pub loss_ratio: f64,
    pub sent_pps: f64,
    pub forwarded_pps: f64,
    pub server_pid: Option<u32>,
    /// Server user + system CPU over the sending phase.
    pub server_cpu_seconds: Option<f64>,
    /// `server_cpu_seconds / duration_s`, in % of one core.
    pub server_cpu_percent: Option<f64>,
    pub forwarded_packets_per_cpu_second: Option<f64>,
    /// The harness's own CPU over the sending phase.
    pub client_cpu_seconds: f64,
    /// The harness's own CPU over the whole run (joins and leaves too).
    pub client_cpu_seconds_total: f64,
    /// Send (stamp) to receive, over every received packet.
    pub latency_ms: LatencyMs,
    /// Publishers: until published and connected; subscribers: until
    /// subscribed to every track of the room and connected.
    pub join_ms: JoinMs,
    pub server_rss_bytes: Option<RssSummary>,
    /// The anonymous part of the server's RSS (what it allocated: heap,
    /// stacks), without its code pages.
    pub server_anon_rss_bytes: Option<RssSummary>,
    /// Peak minus start, per subscribed video track.
    pub server_memory_per_video_track: Option<MemoryPerTrack>,
    pub recording: bool,
    pub recordings: Vec<RecordingOutcome>,
    /// The first errors met (joins, sends, recordings).
    pub errors: Vec<String>,
}

impl Report {
    /// A table for people.
    pub fn summary(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("target", format!("{} {}", self.target, self.url)),
            ("scenario", self.scenario.clone()),
            ("sending", format!("{:.2} s", self.duration_s)),
            (
                "clients",
                format!(
                    "{} joined, {} failed",
                    self.clients_joined, self.join_failures
                ),
            ),
            (
                "packets",
                format!(
                    "{} sent, {} expected, {} received ({} duplicates)",
                    self.packets_sent,
                    self.packets_expected,
                    self.packets_received,
                    self.packets_duplicate
                ),
            ),
            ("loss", format!("{:.3} %", self.loss_ratio * 100.0)),
            (
                "rates",
                format!(
                    "{:.0} pkt/s sent, {:.0} pkt/s forwarded",
                    self.sent_pps, self.forwarded_pps
                ),
            ),
            (
                "latency",
                format!(
                    "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    self.latency_ms.p50,
                    self.latency_ms.p95,
                    self.latency_ms.p99,
                    self.latency_ms.max
                ),
            ),
            (
                "join",
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                    self.join_ms.p50, self.join_ms.p99, self.join_ms.max
                ),
            ),
        ];
        match (self.server_cpu_seconds, self.server_cpu_percent) {
            (Some(cpu), Some(percent)) => rows.push((
                "server cpu",
                format!(
                    "{cpu:.2} s ({percent:.1} % of a core), {} forwarded pkt per cpu-second",
                    self.forwarded_packets_per_cpu_second
                        .map(|v| format!("{v:.0}"))
                        .unwrap_or_else(|| "-".to_string())
                ),
            )),
            _ => rows.push(("server cpu", "not measured (no --server-pid)".to_string())),
        }
        if self.warmup_s > 0.0 && self.server_rss_bytes.is_some() {
            rows.push((
                "warm-up",
                format!(
                    "the server carried a {:.0} s call before the start readings",
                    self.warmup_s
                ),
            ));
        }
        if let Some(rss) = self.server_rss_bytes {
            rows.push((
                "server rss",
                format!(
                    "start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
                    mib(rss.start),
                    mib(rss.peak),
                    mib(rss.end)
                ),
            ));
        }
        if let Some(anon) = self.server_anon_rss_bytes {
            rows.push((
                "server anon",
                format!(
                    "start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB (allocated memory, without code pages)",
                    mib(anon.start),
                    mib(anon.peak),
                    mib(anon.end)
                ),
            ));
        }
        if let Some(per) = self.server_memory_per_video_track {
            rows.push((
                "memory/track",
                format!(
                    "{:.0} KiB of RSS ({:.0} KiB anonymous) per subscribed video track, {} tracks",
                    per.rss_bytes as f64 / 1024.0,
                    per.anon_bytes as f64 / 1024.0,
                    per.video_tracks
                ),
            ));
        }
        rows.push((
            "client cpu",
            format!(
                "{:.2} s while sending ({:.1} % of a core), {:.2} s in all",
                self.client_cpu_seconds,
                percent_of(self.client_cpu_seconds, self.duration_s),
                self.client_cpu_seconds_total
            ),
        ));
        if self.recording {
            let files: usize = self.recordings.iter().map(|r| r.files.len()).sum();
            let complete: usize = self
                .recordings
                .iter()
                .flat_map(|r| &r.files)
                .filter(|f| f.status == "complete")
                .count();
            rows.push((
                "recording",
                format!(
                    "{} job(s), {files} file(s), {complete} complete",
                    self.recordings.len()
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn percent_of(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_percentiles_use_the_nearest_rank() {
        let j = JoinMs::from_samples(&[30.0, 10.0, 20.0, 40.0]);
        assert_eq!((j.p50, j.p99, j.max), (20.0, 40.0, 40.0));
        let empty = JoinMs::from_samples(&[]);
        assert_eq!((empty.p50, empty.p99, empty.max), (0.0, 0.0, 0.0));
    }

    #[test]
    fn latency_comes_out_in_milliseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).expect("histogram");
        for us in [1000, 2000, 3000, 4000] {
            h.record(us).expect("in range");
        }
        let l = LatencyMs::from_histogram_us(&h);
        assert_eq!(l.p50, 2.0);
        assert_eq!(l.max, 4.0);
    }
}
