//! One run, in phases: join every client (spread over the ramp; publishers
//! first), wait until every subscriber has every track of its room, start
//! the recordings, send for the duration (the server's CPU is measured over
//! this phase only), drain, stop the recordings, leave.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::proc_stats::{Process, RssSampler};
use crate::progress::Progress;
use crate::report::{round2, round4, JoinMs, LatencyMs, MemoryPerTrack, Report};
use crate::scenario::Scenario;
use crate::target::{Publisher, RecordingJob, RecordingOutcome, Subscriber, Target, TargetKind};
use crate::traffic::{self, latency_histogram, PublishOutcome, ReceiveCounters, ReceiveOutcome};

/// Joins in flight at once, whatever the ramp.
const MAX_CONCURRENT_JOINS: usize = 32;
/// Bound on one publisher's join (connect, publish, ICE and DTLS).
const JOIN_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound on one subscriber's join and subscriptions.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(45);
/// After the last subscription, time for the last renegotiations to finish
/// before anything is sent.
const SETTLE: Duration = Duration::from_secs(1);
/// Publishers start this long after their tasks are spawned, together.
const SEND_LEAD: Duration = Duration::from_millis(100);
/// Progress refresh and subscriber liveness checks.
const TICK: Duration = Duration::from_millis(250);
/// Bound on waiting for a stopped recording's files.
const RECORDING_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on everyone leaving.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Errors kept for the report (the rest are only counted).
const MAX_ERRORS_KEPT: usize = 20;

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    pub target: TargetKind,
    /// The server's address, for the report.
    pub url: String,
    /// The server process, for its CPU time and memory.
    pub server_pid: Option<u32>,
    /// Draw the progress bar on stderr.
    pub progress: bool,
}

/// Errors met along the way: the first few are kept.
#[derive(Default)]
struct Errors {
    kept: Vec<String>,
    count: u64,
}

impl Errors {
    fn push(&mut self, progress: &Progress, error: String) {
        self.count += 1;
        if self.kept.len() < MAX_ERRORS_KEPT {
            progress.println(&format!("error: {error}"));
            self.kept.push(error);
        }
    }
}

struct Room {
    name: String,
    publishers: Vec<Arc<dyn Publisher>>,
    track_ids: Vec<String>,
    /// Packets its publishers sent.
    sent: Arc<AtomicU64>,
}

struct SubscriberSlot {
    room: usize,
    session: Box<dyn Subscriber>,
    counters: Arc<ReceiveCounters>,
    receiver: Option<JoinHandle<ReceiveOutcome>>,
    /// Its room's sent count when the session was seen closed.
    sent_when_closed: Option<u64>,
}

/// The clients of a run.
struct Clients {
    rooms: Vec<Room>,
    subscribers: Vec<SubscriberSlot>,
    join_ms: Vec<f64>,
    failures: u64,
}

impl Clients {
    async fn leave_all(self) {
        let mut leaving = JoinSet::new();
        for publisher in self.rooms.into_iter().flat_map(|r| r.publishers) {
            leaving.spawn(async move { publisher.leave().await });
        }
        for slot in self.subscribers {
            if let Some(receiver) = slot.receiver {
                receiver.abort();
            }
            leaving.spawn(async move { slot.session.leave().await });
        }
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, leaving.join_all()).await;
    }
}

/// Runs the scenario against `target`.
pub async fn run(target: Arc<dyn Target>, options: &RunOptions) -> anyhow::Result<Report> {
    let scenario = &options.scenario;
    let server = options.server_pid.map(Process::Pid);
    let client_cpu_start = Process::Current.cpu_seconds()?;
    let rss = match server {
        Some(process) => Some(RssSampler::start(process).context("--server-pid")?),
        None => None,
    };
    let progress = Progress::new(options.progress);
    let mut errors = Errors::default();

    let mut clients = join(&target, scenario, &progress, &mut errors).await?;
    let measured = measure(
        &target,
        options,
        server,
        &mut clients,
        &progress,
        &mut errors,
    )
    .await;
    progress.step("leaving");
    let join_ms = std::mem::take(&mut clients.join_ms);
    let failures = clients.failures;
    let joined = clients
        .rooms
        .iter()
        .map(|r| r.publishers.len())
        .sum::<usize>()
        + clients.subscribers.len();
    clients.leave_all().await;
    progress.finish();
    let mut report = measured?;
    let memory = match rss {
        Some(sampler) => Some(sampler.finish().await.context("--server-pid")?),
        None => None,
    };
    let client_cpu_total = Process::Current.cpu_seconds()? - client_cpu_start;
    report.join_ms = JoinMs::from_samples(&join_ms);
    report.join_failures = failures;
    report.clients_joined = joined as u64;
    report.server_rss_bytes = memory.map(|m| m.rss);
    report.server_anon_rss_bytes = memory.map(|m| m.anon);
    let video_tracks = scenario.subscribed_video_tracks();
    report.server_memory_per_video_track = memory.and_then(|m| {
        Some(MemoryPerTrack {
            video_tracks,
            rss_bytes: m.rss.growth_per(video_tracks)?,
            anon_bytes: m.anon.growth_per(video_tracks)?,
        })
    });
    report.client_cpu_seconds_total = round2(client_cpu_total);
    report.errors = errors.kept;
    if errors.count > MAX_ERRORS_KEPT as u64 {
        report.errors.push(format!(
            "... and {} more errors",
            errors.count - MAX_ERRORS_KEPT as u64
        ));
    }
    Ok(report)
}

/// Joins publishers, then subscribers, on the ramp's schedule.
async fn join(
    target: &Arc<dyn Target>,
    scenario: &Scenario,
    progress: &Progress,
    errors: &mut Errors,
) -> anyhow::Result<Clients> {
    let total = scenario.clients().max(1);
    progress.joining(total);
    let join_start = Instant::now();
    let ramp = scenario.ramp;
    let slot = move |index: u64| join_start + ramp.mul_f64(index as f64 / total as f64);
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_JOINS));
    let mut rooms: Vec<Room> = (0..scenario.rooms)
        .map(|r| Room {
            name: scenario.room_name(r),
            publishers: Vec::new(),
            track_ids: Vec::new(),
            sent: Arc::new(AtomicU64::new(0)),
        })
        .collect();
    let mut join_ms = Vec::new();
    let mut failures = 0;
    let mut index = 0;

    let mut joining = JoinSet::new();
    for p in 0..scenario.publishers {
        for (r, room) in rooms.iter().enumerate() {
            let (target, permits) = (Arc::clone(target), Arc::clone(&permits));
            let (room_name, user) = (room.name.clone(), format!("pub-{}-{}", r + 1, p + 1));
            let (at, media) = (slot(index), scenario.media);
            index += 1;
            joining.spawn(async move {
                tokio::time::sleep_until(at).await;
                let _permit = permits.acquire_owned().await;
                let started = Instant::now();
                let joined = tokio::time::timeout(
                    JOIN_TIMEOUT,
                    target.join_publisher(&room_name, &user, media),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow!("{user} joining {room_name}: timed out")));
                (r, joined, started.elapsed())
            });
        }
    }
    while let Some(result) = joining.join_next().await {
        progress.joined_one();
        match result {
            Ok((r, Ok(publisher), took)) => {
                join_ms.push(took.as_secs_f64() * 1000.0);
                rooms[r].track_ids.extend(publisher.track_ids());
                rooms[r].publishers.push(publisher);
            }
            Ok((_, Err(e), _)) => {
                failures += 1;
                errors.push(progress, describe(&e));
            }
            Err(e) => {
                failures += 1;
                errors.push(progress, format!("a publisher's join task failed: {e}"));
            }
        }
    }
    if rooms.iter().all(|r| r.publishers.is_empty()) {
        let clients = Clients {
            rooms,
            subscribers: Vec::new(),
            join_ms,
            failures,
        };
        clients.leave_all().await;
        progress.finish();
        let first = errors.kept.first().cloned().unwrap_or_default();
        bail!("no publisher could join: {first}");
    }

    let mut joining = JoinSet::new();
    for s in 0..scenario.subscribers {
        for (r, room) in rooms.iter().enumerate() {
            let at = slot(index);
            index += 1;
            if room.track_ids.is_empty() {
                failures += 1;
                progress.joined_one();
                errors.push(
                    progress,
                    format!(
                        "{}: no publisher joined, its subscribers are skipped",
                        room.name
                    ),
                );
                continue;
            }
            let (target, permits) = (Arc::clone(target), Arc::clone(&permits));
            let (room_name, user) = (room.name.clone(), format!("sub-{}-{}", r + 1, s + 1));
            let track_ids = room.track_ids.clone();
            joining.spawn(async move {
                tokio::time::sleep_until(at).await;
                let _permit = permits.acquire_owned().await;
                let started = Instant::now();
                let joined = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
                    let subscriber = target.join_subscriber(&room_name, &user).await?;
                    let left = SUBSCRIBE_TIMEOUT.saturating_sub(started.elapsed());
                    match subscriber.wait_subscribed(&track_ids, left).await {
                        Ok(()) => Ok(subscriber),
                        Err(e) => {
                            subscriber.leave().await;
                            Err(e)
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| Err(anyhow!("{user} subscribing in {room_name}: timed out")));
                (r, joined, started.elapsed())
            });
        }
    }
    let mut subscribers = Vec::new();
    while let Some(result) = joining.join_next().await {
        progress.joined_one();
        match result {
            Ok((room, Ok(session), took)) => {
                join_ms.push(took.as_secs_f64() * 1000.0);
                subscribers.push(SubscriberSlot {
                    room,
                    session,
                    counters: Arc::new(ReceiveCounters::default()),
                    receiver: None,
                    sent_when_closed: None,
                });
            }
            Ok((_, Err(e), _)) => {
                failures += 1;
                errors.push(progress, describe(&e));
            }
            Err(e) => {
                failures += 1;
                errors.push(progress, format!("a subscriber's join task failed: {e}"));
            }
        }
    }
    Ok(Clients {
        rooms,
        subscribers,
        join_ms,
        failures,
    })
}

/// Receive, record, send, drain, stop recording.
async fn measure(
    target: &Arc<dyn Target>,
    options: &RunOptions,
    server: Option<Process>,
    clients: &mut Clients,
    progress: &Progress,
    errors: &mut Errors,
) -> anyhow::Result<Report> {
    let scenario = &options.scenario;
    if scenario.subscribers > 0 && clients.subscribers.is_empty() {
        let first = errors.kept.last().cloned().unwrap_or_default();
        bail!("no subscriber could join: {first}");
    }
    progress.step("settling");
    tokio::time::sleep(SETTLE).await;

    let (stop_receiving, stop) = watch::channel(false);
    for slot in &mut clients.subscribers {
        let media = slot
            .session
            .take_media()
            .ok_or_else(|| anyhow!("a subscriber's media was already taken"))?;
        slot.receiver = Some(tokio::spawn(traffic::receive(
            media,
            Arc::clone(&slot.counters),
            stop.clone(),
            latency_histogram()?,
        )));
    }

    let mut jobs: Vec<RecordingJob> = Vec::new();
    if scenario.record {
        progress.step("starting recordings");
        for room in clients.rooms.iter().filter(|r| !r.publishers.is_empty()) {
            match target.start_recording(&room.name).await {
                Ok(job) => jobs.push(job),
                Err(e) => {
                    stop_recordings(target, &jobs, progress, errors).await;
                    return Err(e);
                }
            }
        }
    }

    // Sending: every publisher from `start` to `end`.
    progress.sending(scenario.duration);
    let start = Instant::now() + SEND_LEAD;
    let end = start + scenario.duration;
    let mut sending = JoinSet::new();
    for room in &clients.rooms {
        for publisher in &room.publishers {
            sending.spawn(traffic::publish(
                Arc::clone(publisher),
                scenario.media,
                scenario.video,
                start,
                end,
                Arc::clone(&room.sent),
            ));
        }
    }
    tokio::time::sleep_until(start).await;
    let server_cpu_start = server.map(Process::cpu_seconds).transpose()?;
    let client_cpu_start = Process::Current.cpu_seconds()?;

    let mut window: VecDeque<(Instant, u64, u64)> = VecDeque::new();
    let mut tick = tokio::time::interval(TICK);
    let finished = tokio::time::sleep_until(end);
    tokio::pin!(finished);
    loop {
        tokio::select! {
            biased;
            _ = &mut finished => break,
            _ = tick.tick() => {
                note_closed(clients);
                let now = Instant::now();
                let sent = total_sent(clients);
                let received = total_received(clients);
                window.push_back((now, sent, received));
                while window.len() > 5 {
                    window.pop_front();
                }
                if let (Some(first), Some(last)) = (window.front(), window.back()) {
                    let seconds = last.0.duration_since(first.0).as_secs_f64();
                    let rate = |a: u64, b: u64| if seconds > 0.0 { (b - a) as f64 / seconds } else { 0.0 };
                    let expected = total_expected(clients);
                    progress.sending_update(
                        now.saturating_duration_since(start),
                        rate(first.1, last.1),
                        rate(first.2, last.2),
                        loss_ratio(expected, received),
                    );
                }
            }
        }
    }
    let server_cpu_end = server.map(Process::cpu_seconds).transpose()?;
    let client_cpu_end = Process::Current.cpu_seconds()?;
    let sent_for = Instant::now().saturating_duration_since(start);
    let mut published = PublishOutcome::default();
    while let Some(outcome) = sending.join_next().await {
        match outcome {
            Ok(outcome) => {
                published.packets += outcome.packets;
                published.errors += outcome.errors;
            }
            Err(e) => errors.push(progress, format!("a publisher's send task failed: {e}")),
        }
    }
    if published.errors > 0 {
        errors.push(
            progress,
            format!("{} frames or packets could not be sent", published.errors),
        );
    }

    progress.step("draining");
    tokio::time::sleep(scenario.drain).await;
    note_closed(clients);
    let _ = stop_receiving.send(true);
    let mut latency: Histogram<u64> = latency_histogram()?;
    let (mut received, mut duplicates) = (0, 0);
    for slot in &mut clients.subscribers {
        let Some(receiver) = slot.receiver.take() else {
            continue;
        };
        match receiver.await {
            Ok(outcome) => {
                received += outcome.received;
                duplicates += outcome.duplicates;
                let _ = latency.add(&outcome.latency_us);
            }
            Err(e) => errors.push(progress, format!("a subscriber's receive task failed: {e}")),
        }
    }
    let expected = total_expected(clients);

    let mut recordings = Vec::new();
    if !jobs.is_empty() {
        progress.step("stopping recordings");
        recordings = stop_recordings(target, &jobs, progress, errors).await;
    }

    let duration_s = sent_for.as_secs_f64();
    let server_cpu = match (server_cpu_start, server_cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let per_second = |count: u64| {
        if duration_s > 0.0 {
            round2(count as f64 / duration_s)
        } else {
            0.0
        }
    };
    let video = scenario.media.has_video();
    let report = Report {
        target: options.target.as_str(),
        scenario: scenario.to_string(),
        url: options.url.clone(),
        duration_s: round2(duration_s),
        rooms: scenario.rooms,
        publishers: scenario.publishers,
        subscribers: scenario.subscribers,
        media: scenario.media,
        video_kbps: video.then_some(scenario.video_kbps),
        video_payload_kbps: video.then(|| round2(scenario.video.payload_kbps())),
        fps: video.then_some(scenario.video.fps),
        keyframe_interval: video.then_some(scenario.video.keyframe_interval),
        ramp_s: round2(scenario.ramp.as_secs_f64()),
        warmup_s: 0.0,
        clients_joined: 0,
        join_failures: 0,
        packets_sent: total_sent(clients),
        packets_expected: expected,
        packets_received: received,
        packets_duplicate: duplicates,
        loss_ratio: round4(loss_ratio(expected, received)),
        sent_pps: per_second(total_sent(clients)),
        forwarded_pps: per_second(received),
        server_pid: options.server_pid,
        server_cpu_seconds: server_cpu.map(round2),
        server_cpu_percent: server_cpu
            .filter(|_| duration_s > 0.0)
            .map(|cpu| round2(cpu / duration_s * 100.0)),
        forwarded_packets_per_cpu_second: server_cpu
            .filter(|cpu| *cpu > 0.0)
            .map(|cpu| (received as f64 / cpu).round()),
        client_cpu_seconds: round2(client_cpu_end - client_cpu_start),
        client_cpu_seconds_total: 0.0,
        latency_ms: LatencyMs::from_histogram_us(&latency),
        join_ms: JoinMs::from_samples(&[]),
        server_rss_bytes: None,
        server_anon_rss_bytes: None,
        server_memory_per_video_track: None,
        recording: scenario.record,
        recordings,
        errors: Vec::new(),
    };
    Ok(report)
}

async fn stop_recordings(
    target: &Arc<dyn Target>,
    jobs: &[RecordingJob],
    progress: &Progress,
    errors: &mut Errors,
) -> Vec<RecordingOutcome> {
    let mut stopping = JoinSet::new();
    for job in jobs {
        let (target, job) = (Arc::clone(target), job.clone());
        stopping.spawn(async move { target.stop_recording(&job, RECORDING_STOP_TIMEOUT).await });
    }
    let mut outcomes = Vec::new();
    while let Some(stopped) = stopping.join_next().await {
        match stopped {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) => errors.push(progress, describe(&e)),
            Err(e) => errors.push(progress, format!("stopping a recording failed: {e}")),
        }
    }
    outcomes.sort_by(|a, b| a.room.cmp(&b.room));
    outcomes
}

/// Freezes the expected count of subscribers whose session ended.
fn note_closed(clients: &mut Clients) {
    for slot in &mut clients.subscribers {
        if slot.sent_when_closed.is_none() && slot.session.is_closed() {
            slot.sent_when_closed = Some(clients.rooms[slot.room].sent.load(Ordering::Relaxed));
        }
    }
}

fn total_sent(clients: &Clients) -> u64 {
    clients
        .rooms
        .iter()
        .map(|r| r.sent.load(Ordering::Relaxed))
        .sum()
}

fn total_received(clients: &Clients) -> u64 {
    clients
        .subscribers
        .iter()
        .map(|s| s.counters.received.load(Ordering::Relaxed))
        .sum()
}

/// For every subscriber, what its room's publishers sent while it was
/// there (all of them subscribed before anything was sent).
fn total_expected(clients: &Clients) -> u64 {
    clients
        .subscribers
        .iter()
        .map(|s| {
            s.sent_when_closed
                .unwrap_or_else(|| clients.rooms[s.room].sent.load(Ordering::Relaxed))
        })
        .sum()
}

/// An error and its causes on one line, leaving out causes that the
/// message before already quotes.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// The share of expected packets that did not arrive (0 when none were
/// expected).
pub fn loss_ratio(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        expected.saturating_sub(received) as f64 / expected as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_never_negative_nor_undefined() {
        assert_eq!(loss_ratio(0, 0), 0.0);
        assert_eq!(loss_ratio(100, 95), 0.05);
        assert_eq!(loss_ratio(100, 120), 0.0);
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let e = anyhow!("IO error: refused").context("joining");
        assert_eq!(describe(&e), "joining: IO error: refused");
        let quoted = anyhow::Error::from(std::io::Error::other("refused"))
            .context("websocket: refused")
            .context("pub-1 joining r");
        assert_eq!(describe(&quoted), "pub-1 joining r: websocket: refused");
    }
}
