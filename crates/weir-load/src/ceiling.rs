//! The machine's forwarding ceiling for a 1 -> N scenario, measured now.
//!
//! A forwarder that does only what no SFU can skip, fed on loopback the
//! traffic of `weir-load`'s 1 -> N run: one publisher's video frames (the
//! packet sizes and counts of `--video-kbps`, `--fps`,
//! `--keyframe-interval`, [`crate::scenario::VideoProfile`]) and audio (50
//! packets a second), N subscribers receiving with UDP GRO on a tokio
//! runtime (as webrtc-rs does) and sending feedback.
//!
//! - [`forwarder`]: one thread, woken by `poll` (or, to price Weir's
//!   design, by a tokio runtime with a reader task and a channel to a
//!   forwarding task); `recvmmsg`, an AES-256-GCM open per publisher
//!   packet, per subscriber a rewritten header, the payload copied and
//!   sealed with its own key, one UDP GSO message per subscriber and
//!   receive batch, `sendmmsg`. Feedback is opened and dropped; a STUN
//!   check gets a 100-byte answer. No ICE, DTLS, RTCP of its own, NACK
//!   history, statistics or timers.
//! - [`harness`]: the publisher and the subscribers on one tokio thread.
//! - [`key`]: the SRTP-GCM-like sealing.
//!
//! The result is the forwarder thread's CPU time (`getrusage` of the
//! thread; on loopback it includes the kernel's delivery to the receivers,
//! as the server's CPU time in a `weir-load` run does) per forwarded
//! packet: what `forwarded_packets_per_cpu_second` could reach on this
//! machine at this moment. The VM's speed moves from minute to minute, so
//! compare with a `weir-load` run made at the same time (each in its own
//! loopback namespace). The `forwarding-ceiling` binary runs it.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::Pid;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use serde::Serialize;

pub mod forwarder;
pub mod harness;
pub mod key;

pub use forwarder::{Segmentation, Wakeups};

use forwarder::Downlink;
use key::Key;

/// Payload types of the forwarded streams.
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
pub const AUDIO_PAYLOAD_TYPE: u8 = 111;
/// Size of a STUN check and of its answer.
pub const STUN_LEN: usize = 100;
/// Socket buffers asked for (as Weir's media socket).
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CeilingConfig {
    pub subscribers: usize,
    pub duration: Duration,
    pub video_kbps: u32,
    pub fps: u32,
    pub keyframe_interval: u32,
    /// The subscribers' feedback and STUN checks.
    pub feedback: bool,
    /// How the forwarder is woken.
    pub wakeups: Wakeups,
    /// GSO messages, or one datagram per message.
    pub segmentation: Segmentation,
    /// Cores to pin the forwarder thread and the harness thread to.
    pub forwarder_cpu: Option<usize>,
    pub harness_cpu: Option<usize>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    pub subscribers: usize,
    /// `poll` or `tokio`.
    pub wakeups: &'static str,
    /// Whether a subscriber's packets of a batch went as GSO messages
    /// (else one datagram per message).
    pub gso: bool,
    pub duration_s: f64,
    pub publisher_packets: u64,
    pub packets_expected: u64,
    pub forwarded: u64,
    pub received_by_subscribers: u64,
    pub loss_ratio: f64,
    /// Messages the kernel took (a GSO message carries several datagrams).
    pub messages: u64,
    pub send_calls: u64,
    pub media_passes: u64,
    pub feedback_received: u64,
    pub forwarder_cpu_seconds: f64,
    pub forwarded_packets_per_cpu_second: f64,
}

impl CeilingReport {
    pub fn summary(&self) -> String {
        format!(
            "forwarding ceiling ({} wake-ups, {}), 1 -> {} for {:.0} s\n\
             forwarded     {} packets ({} expected), loss {:.3} %\n\
             messages      {} in {} sendmmsg calls over {} passes\n\
             forwarder cpu {:.3} s: {:.0} forwarded pkt per cpu-second\n",
            self.wakeups,
            if self.gso {
                "GSO"
            } else {
                "a datagram per message"
            },
            self.subscribers,
            self.duration_s,
            self.forwarded,
            self.packets_expected,
            self.loss_ratio * 100.0,
            self.messages,
            self.send_calls,
            self.media_passes,
            self.forwarder_cpu_seconds,
            self.forwarded_packets_per_cpu_second,
        )
    }
}

/// Bytes of one receive buffer: room for a GRO batch.
const RECV_BUFFER_BYTES: usize = 64 * 1024;

/// Buffers for one `recvmmsg` through quinn-udp (GRO on): after
/// [`RecvBatch::recv`] returned `n`, `meta[i]` describes `storage[i]` for
/// `i < n`, a buffer holding one or more datagrams of `meta[i].stride`
/// bytes from one source.
struct RecvBatch {
    storage: Vec<[u8; RECV_BUFFER_BYTES]>,
    meta: Vec<RecvMeta>,
}

impl RecvBatch {
    fn new(buffers: usize) -> RecvBatch {
        RecvBatch {
            storage: vec![[0u8; RECV_BUFFER_BYTES]; buffers],
            meta: vec![RecvMeta::default(); buffers],
        }
    }

    /// One non-blocking receive: how many buffers were filled.
    fn recv(&mut self, state: &UdpSocketState, socket: UdpSockRef<'_>) -> io::Result<usize> {
        let mut bufs: Vec<IoSliceMut<'_>> = self
            .storage
            .iter_mut()
            .map(|b| IoSliceMut::new(&mut b[..]))
            .collect();
        state.recv(socket, &mut bufs, &mut self.meta)
    }
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: Option<usize>) -> anyhow::Result<()> {
    let Some(cpu) = cpu else {
        return Ok(());
    };
    let mut set = CpuSet::new();
    set.set(cpu).context("no such CPU")?;
    sched_setaffinity(Pid::from_raw(0), &set).context("sched_setaffinity")
}

/// The calling thread's CPU time so far.
fn thread_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD)?;
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(time(usage.user_time()) + time(usage.system_time()))
}

fn loopback_socket() -> anyhow::Result<UdpSocket> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?)
}

/// Runs the forwarder (a thread of its own) and the harness (on this
/// thread, which `harness_cpu` pins) for the configured duration; loopback
/// only, stops by itself.
pub fn run(config: &CeilingConfig) -> anyhow::Result<CeilingReport> {
    let socket = loopback_socket()?;
    let state = UdpSocketState::new((&socket).into())?;
    state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES)?;
    state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES)?;
    let forwarder_address = socket.local_addr()?;
    let publisher = loopback_socket()?;
    let publisher_address: SocketAddr = publisher.local_addr()?;
    let mut subscribers = Vec::new();
    let mut downlinks = Vec::new();
    for index in 0..config.subscribers {
        let seed = u8::try_from(index % 255 + 1)?;
        let subscriber = loopback_socket()?;
        downlinks.push(Downlink::new(subscriber.local_addr()?, Key::new(seed)?));
        subscribers.push((subscriber, Key::new(seed)?));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let forwarder = {
        let cpu = config.forwarder_cpu;
        let wakeups = config.wakeups;
        let segmentation = config.segmentation;
        let publisher = (publisher_address, Key::new(0)?);
        std::thread::Builder::new()
            .name("ceiling-forwarder".into())
            .spawn(move || {
                pin(cpu)?;
                forwarder::run(
                    wakeups,
                    segmentation,
                    &socket,
                    &state,
                    publisher,
                    downlinks,
                    stopped,
                )
            })?
    };
    let harness_outcome = (|| {
        pin(config.harness_cpu)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let received = Arc::new(harness::Received::default());
        let started = Instant::now();
        let sent = runtime.block_on(harness::run(
            config,
            forwarder_address,
            (publisher, Key::new(0)?),
            subscribers,
            Arc::clone(&received),
        ))?;
        anyhow::Ok((sent, received.total(), started.elapsed()))
    })();
    // The forwarder may be gone already (an error): its own result says.
    let _ = stop.send(true);
    let stats = forwarder
        .join()
        .map_err(|_| anyhow!("the forwarder thread panicked"))??;
    let (sent, received, elapsed) = harness_outcome?;
    let expected = sent * config.subscribers as u64;
    // The subscribers count the STUN answers too.
    let received = received.saturating_sub(stats.stun_answers);
    if stats.rejected > 0 {
        return Err(anyhow!("{} publisher packets did not open", stats.rejected));
    }
    let cpu = stats.cpu.as_secs_f64();
    Ok(CeilingReport {
        subscribers: config.subscribers,
        wakeups: match config.wakeups {
            Wakeups::Poll => "poll",
            Wakeups::Tokio => "tokio",
        },
        gso: config.segmentation == Segmentation::Gso,
        duration_s: elapsed.as_secs_f64(),
        publisher_packets: sent,
        packets_expected: expected,
        forwarded: stats.forwarded,
        received_by_subscribers: received,
        loss_ratio: 1.0 - received as f64 / expected.max(1) as f64,
        messages: stats.messages,
        send_calls: stats.send_calls,
        media_passes: stats.passes,
        feedback_received: stats.feedback,
        forwarder_cpu_seconds: cpu,
        forwarded_packets_per_cpu_second: if cpu > 0.0 {
            (stats.forwarded as f64 / cpu).round()
        } else {
            0.0
        },
    })
}
