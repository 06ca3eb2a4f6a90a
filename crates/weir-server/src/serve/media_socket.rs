//! The shared media UDP socket, with batched I/O: `recvmmsg` (and UDP GRO)
//! on the way in, UDP GSO on the way out, through `quinn-udp`.
//!
//! Rooms send whole [`SendBatch`]es. A large batch (a video frame to many
//! subscribers) is split by destination: one half is sent by the room's
//! own task, the other by a sender thread, so a big room's kernel work
//! uses a second core. A destination always lands in the same half, so
//! its datagrams keep their order within a flush; see [`SenderPool`].

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::metrics::ServerMetrics;
use super::send_batch::{Group, SendBatch};

/// Socket buffers we ask for (the kernel caps them at `wmem_max` /
/// `rmem_max`).
const SOCKET_BUFFER_BYTES: usize = 8 << 20;
/// Batches with at least this many datagrams are split with a sender
/// thread.
pub const OFFLOAD_MIN_DATAGRAMS: usize = 64;
/// Batches a sender thread may have waiting; beyond it the room sends
/// the half itself.
const OFFLOAD_QUEUE_BATCHES: usize = 32;
/// How long a sender thread waits for room in a full send buffer, in
/// steps, before it drops a group.
const BLOCKED_RETRY: Duration = Duration::from_micros(200);
const BLOCKED_RETRIES: u32 = 250;

/// The shared media socket.
#[derive(Debug)]
pub struct MediaSocket {
    io: UdpSocket,
    state: UdpSocketState,
}

/// What one send of a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    pub datagrams_sent: u64,
    pub datagrams_failed: u64,
    pub syscalls: u64,
}

impl SendOutcome {
    fn add(&mut self, group: &Group<'_>, result: io::Result<()>) {
        self.syscalls += 1;
        match result {
            Ok(()) => self.datagrams_sent += group.datagrams as u64,
            Err(e) => {
                debug!(destination = %group.destination, error = %e, "send failed");
                self.datagrams_failed += group.datagrams as u64;
            }
        }
    }

    /// Counts the send of `batch`, and the forwarding latency of its
    /// datagrams when it answers received media.
    pub fn record(&self, metrics: &ServerMetrics, batch: &SendBatch) {
        metrics.udp_datagrams_sent.add(self.datagrams_sent);
        metrics.udp_send_errors.add(self.datagrams_failed);
        metrics.udp_send_syscalls.add(self.syscalls);
        if let Some(oldest) = batch.oldest_input {
            metrics
                .forwarding_latency
                .record_n(oldest.elapsed(), batch.len() as u64);
        }
    }
}

fn transmit<'a>(group: &Group<'a>) -> Transmit<'a> {
    Transmit {
        destination: group.destination,
        ecn: None,
        contents: group.contents,
        segment_size: group.segment_size,
        src_ip: None,
    }
}

impl MediaSocket {
    pub fn new(io: UdpSocket) -> io::Result<MediaSocket> {
        let state = UdpSocketState::new((&io).into())?;
        if let Err(e) = state.set_send_buffer_size((&io).into(), SOCKET_BUFFER_BYTES) {
            debug!(error = %e, "could not grow the media socket's send buffer");
        }
        if let Err(e) = state.set_recv_buffer_size((&io).into(), SOCKET_BUFFER_BYTES) {
            debug!(error = %e, "could not grow the media socket's receive buffer");
        }
        Ok(MediaSocket { io, state })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Datagrams one GSO send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Datagrams the kernel may coalesce into one received buffer (GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Receives up to `bufs.len()` buffers in one `recvmmsg`; waits for
    /// the first. With GRO a buffer may hold several datagrams of
    /// `meta.stride` bytes from one source.
    pub async fn recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.io
            .async_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            })
            .await
    }

    /// Sends an arranged batch from an async task (waits while the send
    /// buffer is full).
    pub async fn send(&self, batch: &SendBatch) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        for group in batch.groups() {
            let transmit = transmit(&group);
            let result = self
                .io
                .async_io(Interest::WRITABLE, || {
                    self.state.try_send((&self.io).into(), &transmit)
                })
                .await;
            outcome.add(&group, result);
        }
        outcome
    }

    /// Sends an arranged batch from a plain thread (retries briefly while
    /// the send buffer is full, then drops and counts).
    fn send_blocking(&self, batch: &SendBatch) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        for group in batch.groups() {
            let transmit = transmit(&group);
            let mut result = self.state.try_send((&self.io).into(), &transmit);
            let mut retries = 0;
            while matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                && retries < BLOCKED_RETRIES
            {
                std::thread::sleep(BLOCKED_RETRY);
                retries += 1;
                result = self.state.try_send((&self.io).into(), &transmit);
            }
            outcome.add(&group, result);
        }
        outcome
    }
}

/// Sender threads that take halves of large batches (one per core beyond
/// the first; none on a single core).
#[derive(Debug, Clone)]
pub struct SenderPool {
    queues: Arc<[mpsc::SyncSender<SendBatch>]>,
}

impl SenderPool {
    pub fn start(socket: Arc<MediaSocket>, metrics: Arc<ServerMetrics>) -> SenderPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut queues = Vec::new();
        for index in 0..cores.saturating_sub(1) {
            let (tx, rx) = mpsc::sync_channel::<SendBatch>(OFFLOAD_QUEUE_BATCHES);
            let socket = socket.clone();
            let metrics = metrics.clone();
            let started = std::thread::Builder::new()
                .name(format!("weir-send-{index}"))
                .spawn(move || {
                    // Ends when every room and the pool are dropped.
                    while let Ok(batch) = rx.recv() {
                        socket.send_blocking(&batch).record(&metrics, &batch);
                    }
                });
            match started {
                Ok(_) => queues.push(tx),
                Err(e) => warn!(error = %e, "could not start a sender thread"),
            }
        }
        SenderPool {
            queues: queues.into(),
        }
    }

    /// A pool with no threads (everything is sent by the rooms).
    pub fn none() -> SenderPool {
        SenderPool {
            queues: Arc::new([]),
        }
    }

    /// The queue a room with this id hands its offloaded halves to.
    pub fn queue_for(&self, room_id: u64) -> Option<mpsc::SyncSender<SendBatch>> {
        if self.queues.is_empty() {
            return None;
        }
        let index = (room_id % self.queues.len() as u64) as usize;
        self.queues.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn media_socket() -> MediaSocket {
        let io = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        MediaSocket::new(io).expect("socket state")
    }

    /// What a peer socket receives, as (first byte, length) per datagram.
    fn drain(peer: &std::net::UdpSocket, expected: usize) -> Vec<(u8, usize)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < expected {
            match peer.recv(&mut buf) {
                Ok(len) => got.push((buf[0], len)),
                Err(e) => panic!("only {} of {expected} datagrams arrived: {e}", got.len()),
            }
        }
        got
    }

    #[tokio::test]
    async fn a_batch_arrives_as_separate_datagrams_in_order() {
        let socket = media_socket().await;
        let peers: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| {
                let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                peer.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                peer
            })
            .collect();
        let mut batch = SendBatch::new();
        let mut expected: Vec<Vec<(u8, usize)>> = vec![Vec::new(), Vec::new()];
        for (index, peer) in peers.iter().enumerate() {
            let destination = peer.local_addr().expect("addr");
            // A frame of five packets, its short tail, and an audio packet.
            for tag in 0..7u8 {
                let len = match tag {
                    5 => 700,
                    6 => 90,
                    _ => 1200,
                };
                batch.push(destination, &vec![tag; len]);
                expected[index].push((tag, len));
            }
        }
        batch.arrange(socket.max_gso_segments());
        let outcome = socket.send(&batch).await;
        assert_eq!(outcome.datagrams_sent, 14);
        assert_eq!(outcome.datagrams_failed, 0);
        if socket.max_gso_segments() > 1 {
            // The frame with its tail in one send, the audio packet (after
            // a short segment) in another, per destination.
            assert_eq!(outcome.syscalls, 4);
        }
        for (peer, expected) in peers.iter().zip(&expected) {
            assert_eq!(&drain(peer, expected.len()), expected);
        }
    }

    #[tokio::test]
    async fn received_datagrams_are_split_by_their_stride() {
        let socket = media_socket().await;
        let address = socket.local_addr().expect("addr");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for tag in 0..4u8 {
            peer.send_to(&[tag; 500], address).expect("send");
        }
        let mut storage = vec![0u8; 64 * 1024 * 4];
        let mut meta = vec![RecvMeta::default(); 4];
        let mut received = Vec::new();
        while received.len() < 4 {
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.chunks_mut(64 * 1024).map(IoSliceMut::new).collect();
            let count =
                tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut bufs, &mut meta))
                    .await
                    .expect("in time")
                    .expect("received");
            for (buf, meta) in bufs.iter().zip(&meta).take(count) {
                assert_eq!(meta.addr, peer.local_addr().expect("addr"));
                for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                    received.push((datagram[0], datagram.len()));
                }
            }
        }
        assert_eq!(received, vec![(0, 500), (1, 500), (2, 500), (3, 500)]);
    }
}
