//! The shared media UDP socket, with batched I/O: `recvmmsg` (and UDP GRO)
//! on the way in through `quinn-udp`; on the way out UDP GSO messages (a
//! frame's packets to one subscriber) sent many per `sendmmsg` (nix), so
//! a fan-out of audio packets is one syscall, not one per subscriber. A
//! message the kernel refuses goes again through `quinn-udp`'s single
//! send, which turns GSO off on a device without it.
//!
//! Rooms send whole [`SendBatch`]es. A large batch (a video frame to many
//! subscribers) is split by destination: one half is sent by the room's
//! own task, the other by a sender thread, so a big room's kernel work
//! uses a second core. A destination always lands in the same half, so
//! its datagrams keep their order within a flush; see [`SenderPool`].

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use smallvec::SmallVec;
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
/// Messages (GSO groups or single datagrams) one `sendmmsg` carries at
/// most: a fan-out's audio packets to 64 subscribers are one syscall.
const MESSAGES_PER_CALL: usize = 64;
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
    /// Messages the kernel took (one per GSO group).
    pub messages: u64,
}

impl SendOutcome {
    /// One `sendmmsg` of `groups` that the kernel took `sent` messages of;
    /// how many groups are done.
    fn took(&mut self, groups: &[Group<'_>], sent: usize) -> usize {
        self.syscalls += 1;
        let sent = sent.min(groups.len());
        self.messages += sent as u64;
        self.datagrams_sent += groups[..sent]
            .iter()
            .map(|g| g.datagrams as u64)
            .sum::<u64>();
        sent
    }

    fn add(&mut self, group: &Group<'_>, result: io::Result<()>) {
        self.syscalls += 1;
        match result {
            Ok(()) => {
                self.messages += 1;
                self.datagrams_sent += group.datagrams as u64;
            }
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
        metrics.udp_send_messages.add(self.messages);
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
    /// buffer is full): each run of groups in one `sendmmsg`.
    pub async fn send(&self, batch: &SendBatch) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        for run in batch.runs(MESSAGES_PER_CALL) {
            // On the stack: a run has at most MESSAGES_PER_CALL groups.
            let run_groups: SmallVec<[Group<'_>; MESSAGES_PER_CALL]> =
                batch.groups_in(run.groups.clone()).collect();
            let mut next = 0;
            while next < run_groups.len() {
                let rest = &run_groups[next..];
                let result = self
                    .io
                    .async_io(Interest::WRITABLE, || {
                        self.send_many(rest, run.segment_size)
                    })
                    .await;
                next += self.account(rest, result, &mut outcome).await;
            }
        }
        outcome
    }

    /// Counts what one `sendmmsg` of `groups` did; a first message the
    /// kernel refused goes through quinn-udp's single send, which knows
    /// what to make of the error (a device without GSO turns it off).
    /// Returns how many groups are done.
    async fn account(
        &self,
        groups: &[Group<'_>],
        result: io::Result<usize>,
        outcome: &mut SendOutcome,
    ) -> usize {
        match result {
            Ok(sent) if sent > 0 => outcome.took(groups, sent),
            _ => {
                // The refused call, then the single send.
                outcome.syscalls += 1;
                let Some(first) = groups.first() else {
                    return 1;
                };
                let transmit = transmit(first);
                let result = self
                    .io
                    .async_io(Interest::WRITABLE, || {
                        self.state.try_send((&self.io).into(), &transmit)
                    })
                    .await;
                outcome.add(first, result);
                1
            }
        }
    }

    /// Sends an arranged batch from a plain thread (retries briefly while
    /// the send buffer is full, then drops and counts).
    fn send_blocking(&self, batch: &SendBatch) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        for run in batch.runs(MESSAGES_PER_CALL) {
            // On the stack: a run has at most MESSAGES_PER_CALL groups.
            let run_groups: SmallVec<[Group<'_>; MESSAGES_PER_CALL]> =
                batch.groups_in(run.groups.clone()).collect();
            let mut next = 0;
            let mut retries = 0;
            while next < run_groups.len() {
                let rest = &run_groups[next..];
                match self.send_many(rest, run.segment_size) {
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock && retries < BLOCKED_RETRIES =>
                    {
                        std::thread::sleep(BLOCKED_RETRY);
                        retries += 1;
                    }
                    Ok(sent) if sent > 0 => {
                        next += outcome.took(rest, sent);
                        retries = 0;
                    }
                    _ => {
                        // Refused (or still blocked): quinn-udp's single
                        // send says why and adapts, then the next.
                        outcome.syscalls += 1;
                        let result = self.state.try_send((&self.io).into(), &transmit(&rest[0]));
                        outcome.add(&rest[0], result);
                        next += 1;
                        retries = 0;
                    }
                }
            }
        }
        outcome
    }

    /// One `sendmmsg` of `groups` (all with `segment_size` when given);
    /// how many went, or the error of the first.
    fn send_many(&self, groups: &[Group<'_>], segment_size: Option<usize>) -> io::Result<usize> {
        let groups = &groups[..groups.len().min(MESSAGES_PER_CALL)];
        // The segment size for every message, where there is one.
        let segment_size = match segment_size.map(u16::try_from).transpose() {
            Ok(size) => size,
            Err(_) => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        SEND_HEADERS.with_borrow_mut(|headers| {
            // An array, not a vector: the messages borrow it for as long as
            // it borrows the datagrams.
            let mut slices = [[IoSlice::new(&[])]; MESSAGES_PER_CALL];
            for (slice, group) in slices.iter_mut().zip(groups) {
                *slice = [IoSlice::new(group.contents)];
            }
            let addresses: SmallVec<[Option<SockaddrStorage>; MESSAGES_PER_CALL]> = groups
                .iter()
                .map(|group| Some(SockaddrStorage::from(group.destination)))
                .collect();
            let gso;
            let control: &[ControlMessage<'_>] = match &segment_size {
                Some(size) => {
                    gso = [ControlMessage::UdpGsoSegments(size)];
                    &gso
                }
                None => &[],
            };
            // Every message's header and control message are written
            // afresh by each call; the ones without a control message
            // have no room for one (so none is left over from a GSO send).
            let headers = headers[usize::from(segment_size.is_some())].get_or_insert_with(|| {
                MultiHeaders::preallocate(
                    MESSAGES_PER_CALL,
                    segment_size.map(|_| nix::cmsg_space!(u16)),
                )
            });
            let sent = sendmmsg(
                self.io.as_raw_fd(),
                headers,
                &slices[..groups.len()],
                &addresses,
                control,
                MsgFlags::empty(),
            )?;
            Ok(sent.count())
        })
    }
}

thread_local! {
    /// This thread's `sendmmsg` message headers for [`MESSAGES_PER_CALL`]
    /// messages, made once: without and with a GSO control message.
    static SEND_HEADERS: RefCell<[Option<MultiHeaders<SockaddrStorage>>; 2]> =
        const { RefCell::new([None, None]) };
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

    /// A receiving socket on loopback that gives up after 2 s.
    fn peer() -> std::net::UdpSocket {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        peer.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        peer
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
        let peers: Vec<std::net::UdpSocket> = (0..2).map(|_| peer()).collect();
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
        // The frame with its tail in one message, the audio packet (after
        // a short segment) in another, per destination: four messages, all
        // in one `sendmmsg` (the audio packets are shorter than the
        // frame's segment size).
        assert_eq!((outcome.syscalls, outcome.messages), (1, 4));
        for (peer, expected) in peers.iter().zip(&expected) {
            assert_eq!(&drain(peer, expected.len()), expected);
        }
    }

    #[tokio::test]
    async fn a_fan_out_goes_out_in_few_syscalls_and_every_peer_gets_its_datagram() {
        let socket = media_socket().await;
        let peers: Vec<std::net::UdpSocket> = (0..100).map(|_| peer()).collect();
        let mut batch = SendBatch::new();
        for (index, peer) in peers.iter().enumerate() {
            let tag = index as u8;
            batch.push(peer.local_addr().expect("addr"), &[tag; 120]);
        }
        batch.arrange(socket.max_gso_segments());
        let outcome = socket.send(&batch).await;
        assert_eq!(outcome.datagrams_sent, 100);
        assert_eq!(outcome.datagrams_failed, 0);
        // 64 messages per call at most.
        assert_eq!((outcome.syscalls, outcome.messages), (2, 100));
        for (index, peer) in peers.iter().enumerate() {
            assert_eq!(drain(peer, 1), vec![(index as u8, 120)]);
        }
        // The blocking path (a sender thread's) sends the same way.
        let outcome = socket.send_blocking(&batch);
        assert_eq!((outcome.datagrams_sent, outcome.syscalls), (100, 2));
        for (index, peer) in peers.iter().enumerate() {
            assert_eq!(drain(peer, 1), vec![(index as u8, 120)]);
        }
    }

    #[tokio::test]
    async fn an_ipv6_socket_reaches_ipv4_peers_in_one_call() {
        // Where the host has no IPv6 there is nothing to test.
        let Ok(io) = UdpSocket::bind("[::]:0").await else {
            return;
        };
        let socket = MediaSocket::new(io).expect("socket state");
        let peer = peer();
        let mut batch = SendBatch::new();
        for tag in 0..3u8 {
            batch.push(peer.local_addr().expect("addr"), &[tag; 800]);
        }
        batch.arrange(socket.max_gso_segments());
        let outcome = socket.send(&batch).await;
        // One `sendmmsg` took it: Linux sends to an IPv4 address from a
        // dual-stack socket as it is (a refusal would show as the
        // fallback's second syscall).
        assert_eq!(
            (outcome.datagrams_sent, outcome.syscalls, outcome.messages),
            (3, 1, 1)
        );
        assert_eq!(drain(&peer, 3), vec![(0, 800), (1, 800), (2, 800)]);
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
