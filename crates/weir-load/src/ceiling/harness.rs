//! The ceiling's traffic on one tokio thread: the publisher's frames and
//! audio packets on their own clocks, and each subscriber a socket read
//! with GRO as webrtc-rs reads (woken by the runtime), sending its
//! feedback: a few SRTCP-sized datagrams a second, a STUN check every two
//! seconds.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn_udp::UdpSocketState;
use tokio::time::Instant;

use super::key::{write_header, Key, HEADER_LEN, TAG_LEN};
use super::{CeilingConfig, RecvBatch, AUDIO_PAYLOAD_TYPE, STUN_LEN, VIDEO_PAYLOAD_TYPE};
use crate::scenario::{opus_config, VideoProfile};

/// Feedback datagrams a subscriber sends each second (receiver reports
/// and transport feedback), and their size.
const FEEDBACK_PER_SECOND: usize = 3;
const FEEDBACK_LEN: usize = 80;
/// A STUN consent check (its first byte 0) this often.
const STUN_INTERVAL: Duration = Duration::from_secs(2);
/// How long the last packets are given to arrive.
const DRAIN: Duration = Duration::from_millis(300);
const RECV_BATCH: usize = 4;
const PUBLISHER_VIDEO_SSRC: u32 = 0x0101_0000;
const PUBLISHER_AUDIO_SSRC: u32 = 0x0202_0000;
const FEEDBACK_SSRC: u32 = 0x3333_0000;
/// The feedback's second byte: an RTCP receiver report's packet type.
const RECEIVER_REPORT: u8 = 201;

/// Datagrams the subscribers received, in all.
#[derive(Debug, Default)]
pub struct Received(AtomicU64);

impl Received {
    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sends the scenario's media to `forwarder` for `config.duration` while
/// the subscribers' sockets receive; returns the publisher's packets.
pub async fn run(
    config: &CeilingConfig,
    forwarder: SocketAddr,
    publisher: (UdpSocket, Key),
    subscribers: Vec<(UdpSocket, Key)>,
    received: Arc<Received>,
) -> anyhow::Result<u64> {
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (index, (socket, key)) in subscribers.into_iter().enumerate() {
        let state = UdpSocketState::new((&socket).into())?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        // Spread the subscribers' feedback over the second.
        let phase = Duration::from_millis((index as u64 * 977) % 1000);
        let feedback = config.feedback.then_some(phase);
        tasks.push(tokio::spawn(subscriber(
            socket,
            state,
            key,
            forwarder,
            feedback,
            Arc::clone(&received),
            Arc::clone(&done),
        )));
    }
    let (socket, key) = publisher;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    let sent = publish(config, &socket, &key, forwarder).await;
    tokio::time::sleep(DRAIN).await;
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    sent
}

/// The publisher: frames as `weir-load`'s synthetic VP8 source cuts them,
/// audio every 20 ms, until the duration is over.
async fn publish(
    config: &CeilingConfig,
    socket: &tokio::net::UdpSocket,
    key: &Key,
    forwarder: SocketAddr,
) -> anyhow::Result<u64> {
    let video = VideoProfile::from_bitrate(config.video_kbps, config.fps, config.keyframe_interval);
    let opus = opus_config();
    let start = Instant::now();
    let end = start + config.duration;
    let frame_interval = Duration::from_micros(1_000_000 / u64::from(video.fps));
    let audio_interval = Duration::from_millis(u64::from(opus.ptime_ms));
    let mut next_frame = start;
    let mut next_audio = start + audio_interval / 3;
    let mut video_stream = PublishedStream::new(PUBLISHER_VIDEO_SSRC, VIDEO_PAYLOAD_TYPE);
    let mut audio_stream = PublishedStream::new(PUBLISHER_AUDIO_SSRC, AUDIO_PAYLOAD_TYPE);
    let (mut frame, mut sent) = (0u32, 0u64);
    loop {
        let due = next_frame.min(next_audio);
        if due >= end {
            return Ok(sent);
        }
        tokio::time::sleep_until(due).await;
        let (stream, count, timestamp, payload) = if next_frame <= due {
            let keyframe = frame.is_multiple_of(video.keyframe_interval);
            let count = if keyframe {
                video.keyframe_packets
            } else {
                video.delta_packets
            };
            let timestamp = frame.wrapping_mul(90_000 / video.fps.max(1));
            frame += 1;
            next_frame += frame_interval;
            (&mut video_stream, count, timestamp, video.packet_size)
        } else {
            let timestamp = (audio_stream.seq as u32).wrapping_mul(48 * opus.ptime_ms);
            next_audio += audio_interval;
            (&mut audio_stream, 1, timestamp, opus.packet_size)
        };
        for _ in 0..count {
            let packet = stream.next_packet(key, timestamp, payload)?;
            socket.send_to(packet, forwarder).await?;
            sent += 1;
        }
    }
}

/// One stream of the publisher: its SSRC, payload type and sequence.
struct PublishedStream {
    ssrc: u32,
    payload_type: u8,
    seq: u64,
    packet: Vec<u8>,
}

impl PublishedStream {
    fn new(ssrc: u32, payload_type: u8) -> PublishedStream {
        PublishedStream {
            ssrc,
            payload_type,
            seq: 0,
            packet: Vec::with_capacity(2048),
        }
    }

    /// The stream's next packet, `payload` bytes, sealed.
    fn next_packet(&mut self, key: &Key, timestamp: u32, payload: usize) -> anyhow::Result<&[u8]> {
        self.seq += 1;
        self.packet.clear();
        write_header(
            &mut self.packet,
            self.seq as u16,
            timestamp,
            self.ssrc,
            self.payload_type,
        );
        self.packet.resize(HEADER_LEN + payload, 0x5a);
        key.seal(&mut self.packet, 0, self.ssrc, self.seq)?;
        Ok(&self.packet)
    }
}

/// One subscriber: counts what arrives (a GRO buffer holds `len / stride`
/// datagrams) and, with `feedback` (its phase), sends feedback and STUN
/// checks.
async fn subscriber(
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    key: Key,
    forwarder: SocketAddr,
    feedback: Option<Duration>,
    received: Arc<Received>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut batch = RecvBatch::new(RECV_BATCH);
    let far = Instant::now() + Duration::from_secs(86_400);
    let mut next_feedback = feedback.map_or(far, |phase| Instant::now() + phase);
    let mut next_stun = feedback.map_or(far, |_| next_feedback + STUN_INTERVAL / 2);
    let mut sequence = 0u64;
    while !done.load(Ordering::Relaxed) {
        let due = next_feedback.min(next_stun);
        tokio::select! {
            ready = socket.readable() => {
                ready?;
                while let Ok(n) = socket.try_io(tokio::io::Interest::READABLE, || {
                    batch.recv(&state, (&socket).into())
                }) {
                    let datagrams: usize = batch.meta[..n]
                        .iter()
                        .map(|m| m.len.div_ceil(m.stride.max(1)))
                        .sum();
                    received.0.fetch_add(datagrams as u64, Ordering::Relaxed);
                }
            }
            _ = tokio::time::sleep_until(due) => {
                if next_feedback <= due {
                    for _ in 0..FEEDBACK_PER_SECOND {
                        sequence += 1;
                        let mut packet = Vec::with_capacity(FEEDBACK_LEN + TAG_LEN);
                        let seq = sequence as u16;
                        write_header(&mut packet, seq, 0, FEEDBACK_SSRC, RECEIVER_REPORT);
                        packet.resize(FEEDBACK_LEN, 0);
                        key.seal(&mut packet, 0, FEEDBACK_SSRC, sequence)?;
                        socket.send_to(&packet, forwarder).await?;
                    }
                    next_feedback += Duration::from_secs(1);
                } else {
                    socket.send_to(&[0u8; STUN_LEN], forwarder).await?;
                    next_stun += STUN_INTERVAL;
                }
            }
        }
    }
    Ok(())
}
