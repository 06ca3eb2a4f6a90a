//! The minimal forwarder: one thread and one socket (GRO on); an open per
//! publisher packet, and per subscriber a rewritten header, the payload
//! copied and sealed, each subscriber's packets of a receive batch as one
//! UDP GSO message (a shorter datagram may end it), messages of one
//! segment size together in one `sendmmsg`. Without GSO
//! ([`Segmentation::OnePerMessage`]) every datagram is a message of its own,
//! still many per `sendmmsg`: the bare path that
//! `shared/notes/performance.md` prices at 250-300 k packets per
//! core-second.
//!
//! How it is woken ([`Wakeups`]): by `poll` on the socket, reading with a
//! non-blocking `recvmmsg` (the least a process can do), or as Weir's
//! server is: a tokio runtime, a reader task that copies each received
//! batch into a channel, and a forwarding task that takes everything
//! waiting and sends (the runtime's epoll, two task wake-ups and a
//! channel hop per burst).

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};
use tokio::sync::{mpsc, watch};

use super::key::{write_header, Key, HEADER_LEN};
use super::{thread_cpu, RecvBatch, AUDIO_PAYLOAD_TYPE, STUN_LEN, VIDEO_PAYLOAD_TYPE};

/// Messages one `sendmmsg` carries at most (as Weir's media socket).
const MESSAGES_PER_CALL: usize = 64;
/// Longest sleep in `poll` before the stop signal is looked at again.
const POLL_MS: u16 = 50;
/// Received batches the reader task may have waiting (tokio wake-ups).
const CHANNEL_BATCHES: usize = 256;

/// How the forwarder waits for datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeups {
    /// `poll` on the socket, then `recvmmsg`.
    Poll,
    /// A current-thread tokio runtime: a reader task and a forwarding
    /// task with a channel between them (as Weir's UDP reader and room
    /// task).
    Tokio,
}

/// What the forwarder did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwarderStats {
    /// Datagrams the subscribers were sent.
    pub forwarded: u64,
    /// Messages the kernel took (a GSO message carries several datagrams).
    pub messages: u64,
    pub send_calls: u64,
    /// Receive batches with media in them, each one fan-out.
    pub passes: u64,
    /// Publisher packets that failed to open (none expected).
    pub rejected: u64,
    /// Subscribers' datagrams (feedback and STUN checks).
    pub feedback: u64,
    pub stun_answers: u64,
    /// This thread's CPU time (user and system) while it ran.
    pub cpu: Duration,
}

/// One subscriber: where it is, its key, its streams' sequence numbers.
#[derive(Debug)]
pub struct Downlink {
    pub address: SocketAddr,
    pub key: Key,
    video_seq: u64,
    audio_seq: u64,
}

impl Downlink {
    pub fn new(address: SocketAddr, key: Key) -> Downlink {
        Downlink {
            address,
            key,
            video_seq: 0,
            audio_seq: 0,
        }
    }
}

/// A publisher packet opened in the receive buffers.
struct Inbound {
    buffer: usize,
    offset: usize,
    payload_len: usize,
    video: bool,
}

/// A message to send: destination, bytes, segment size.
type Message = (SocketAddr, Range<usize>, usize);

/// How a subscriber's packets of one receive batch become messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segmentation {
    /// UDP GSO: a run of equal sizes (ended by a shorter one) per message.
    Gso,
    /// One datagram per message.
    OnePerMessage,
}

/// The forwarding state, whichever way it is woken.
struct Forwarder<'a> {
    socket: &'a UdpSocket,
    segmentation: Segmentation,
    publisher: SocketAddr,
    publisher_key: Key,
    downlinks: Vec<Downlink>,
    by_address: HashMap<SocketAddr, usize>,
    stats: ForwarderStats,
    inbound: Vec<Inbound>,
    bytes: Vec<u8>,
    messages: Vec<Message>,
}

impl<'a> Forwarder<'a> {
    fn new(
        socket: &'a UdpSocket,
        segmentation: Segmentation,
        publisher: (SocketAddr, Key),
        downlinks: Vec<Downlink>,
    ) -> Forwarder<'a> {
        let by_address = downlinks
            .iter()
            .enumerate()
            .map(|(i, d)| (d.address, i))
            .collect();
        Forwarder {
            socket,
            segmentation,
            publisher: publisher.0,
            publisher_key: publisher.1,
            downlinks,
            by_address,
            stats: ForwarderStats::default(),
            inbound: Vec::new(),
            bytes: Vec::with_capacity(1 << 20),
            messages: Vec::new(),
        }
    }

    /// Handles one received batch: `meta[i]` describes `storage[i]` (with
    /// GRO, several datagrams of `stride` bytes from one source); then
    /// forwards the media in it.
    fn handle_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        meta: &[RecvMeta],
        storage: &mut [B],
    ) -> anyhow::Result<()> {
        self.inbound.clear();
        for (buffer, m) in meta.iter().enumerate() {
            let stride = m.stride.max(1);
            let mut offset = 0;
            while offset < m.len {
                let len = stride.min(m.len - offset);
                let datagram = &mut storage[buffer].as_mut()[offset..offset + len];
                self.take_datagram(m.addr, datagram, buffer, offset)?;
                offset += len;
            }
        }
        if self.inbound.is_empty() {
            return Ok(());
        }
        self.stats.passes += 1;
        self.bytes.clear();
        self.messages.clear();
        for downlink in &mut self.downlinks {
            fan_out_to(
                downlink,
                self.segmentation,
                &self.inbound,
                storage,
                &mut self.bytes,
                &mut self.messages,
            )?;
        }
        if self.segmentation == Segmentation::Gso {
            // Messages of one segment size share a call (each subscriber's
            // keep their order: a stable sort).
            self.messages.sort_by_key(|m| m.2);
        }
        send_messages(
            self.socket,
            self.segmentation,
            &self.bytes,
            &self.messages,
            &mut self.stats,
        )
    }

    fn take_datagram(
        &mut self,
        source: SocketAddr,
        datagram: &mut [u8],
        buffer: usize,
        offset: usize,
    ) -> anyhow::Result<()> {
        if source == self.publisher {
            match self.publisher_key.open(datagram) {
                Some(payload_len) => self.inbound.push(Inbound {
                    buffer,
                    offset,
                    payload_len,
                    video: datagram[1] & 0x7f == VIDEO_PAYLOAD_TYPE,
                }),
                None => self.stats.rejected += 1,
            }
        } else if let Some(&index) = self.by_address.get(&source) {
            self.stats.feedback += 1;
            if datagram.first() == Some(&0) {
                self.socket.send_to(&[1u8; STUN_LEN], source)?;
                self.stats.stun_answers += 1;
            } else {
                let _ = self.downlinks[index].key.open(datagram);
            }
        }
        Ok(())
    }
}

/// Forwards until `stop` turns true; `socket` must have been made by
/// `UdpSocketState::new` (non-blocking, GRO on).
pub fn run(
    wakeups: Wakeups,
    segmentation: Segmentation,
    socket: &UdpSocket,
    state: &UdpSocketState,
    publisher: (SocketAddr, Key),
    downlinks: Vec<Downlink>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<ForwarderStats> {
    let mut forwarder = Forwarder::new(socket, segmentation, publisher, downlinks);
    let start_cpu = thread_cpu()?;
    match wakeups {
        Wakeups::Poll => run_polling(&mut forwarder, state, &stop)?,
        Wakeups::Tokio => run_on_tokio(&mut forwarder, stop)?,
    }
    forwarder.stats.cpu = thread_cpu()?.saturating_sub(start_cpu);
    Ok(forwarder.stats)
}

fn run_polling(
    forwarder: &mut Forwarder<'_>,
    state: &UdpSocketState,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let socket = forwarder.socket;
    let mut batch = RecvBatch::new(BATCH_SIZE);
    while !*stop.borrow() {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(POLL_MS)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let received = match batch.recv(state, socket.into()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        };
        forwarder.handle_batch(&batch.meta[..received], &mut batch.storage)?;
    }
    Ok(())
}

/// A received batch handed from the reader task to the forwarding task:
/// each buffer's received bytes, copied.
struct Batch {
    meta: Vec<RecvMeta>,
    buffers: Vec<Vec<u8>>,
}

fn run_on_tokio(
    forwarder: &mut Forwarder<'_>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let reader_socket = forwarder.socket.try_clone()?;
    local.block_on(&runtime, async move {
        let reader_state = UdpSocketState::new((&reader_socket).into())?;
        let reader_socket = tokio::net::UdpSocket::from_std(reader_socket)?;
        let (batches, mut waiting) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
        // The reader: what one `recvmmsg` got, copied out, into the
        // channel (Weir's reader copies each datagram to its room's queue).
        let reader = tokio::task::spawn_local(async move {
            let mut received_batch = RecvBatch::new(BATCH_SIZE);
            loop {
                let received = reader_socket
                    .async_io(tokio::io::Interest::READABLE, || {
                        received_batch.recv(&reader_state, (&reader_socket).into())
                    })
                    .await?;
                let RecvBatch { storage, meta } = &received_batch;
                let batch = Batch {
                    meta: meta[..received].to_vec(),
                    buffers: meta[..received]
                        .iter()
                        .zip(storage)
                        .map(|(m, buffer)| buffer[..m.len].to_vec())
                        .collect(),
                };
                if batches.send(batch).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        });
        while !*stop.borrow() {
            tokio::select! {
                _ = stop.changed() => break,
                batch = waiting.recv() => {
                    // None: the reader ended, with the error it returns.
                    let Some(mut batch) = batch else { return reader.await? };
                    forwarder.handle_batch(&batch.meta, &mut batch.buffers)?;
                    while let Ok(mut batch) = waiting.try_recv() {
                        forwarder.handle_batch(&batch.meta, &mut batch.buffers)?;
                    }
                }
            }
        }
        reader.abort();
        anyhow::Ok(())
    })
}

/// Appends one subscriber's copies of the batch's packets to `bytes`,
/// sealed, and its messages: with GSO a run of equal sizes, ended by a
/// shorter one; without, a message per packet.
fn fan_out_to<B: AsRef<[u8]>>(
    downlink: &mut Downlink,
    segmentation: Segmentation,
    inbound: &[Inbound],
    storage: &[B],
    bytes: &mut Vec<u8>,
    messages: &mut Vec<Message>,
) -> anyhow::Result<()> {
    let mut run_start = bytes.len();
    let mut run_segment = 0;
    let mut run_closed = false;
    for packet in inbound {
        let source = &storage[packet.buffer].as_ref()[packet.offset..];
        let timestamp = u32::from_be_bytes([source[4], source[5], source[6], source[7]]);
        let (seq, ssrc, payload_type) = if packet.video {
            downlink.video_seq += 1;
            (downlink.video_seq, 0x1111_0000, VIDEO_PAYLOAD_TYPE)
        } else {
            downlink.audio_seq += 1;
            (downlink.audio_seq, 0x2222_0000, AUDIO_PAYLOAD_TYPE)
        };
        let start = bytes.len();
        write_header(bytes, seq as u16, timestamp, ssrc, payload_type);
        bytes.extend_from_slice(&source[HEADER_LEN..HEADER_LEN + packet.payload_len]);
        downlink.key.seal(bytes, start, ssrc, seq)?;
        let size = bytes.len() - start;
        if segmentation == Segmentation::OnePerMessage {
            messages.push((downlink.address, start..bytes.len(), size));
            continue;
        }
        if run_segment == 0 {
            run_segment = size;
        } else if run_closed || size > run_segment {
            messages.push((downlink.address, run_start..start, run_segment));
            run_start = start;
            run_segment = size;
            run_closed = false;
        } else if size < run_segment {
            run_closed = true;
        }
    }
    if run_segment > 0 {
        messages.push((downlink.address, run_start..bytes.len(), run_segment));
    }
    Ok(())
}

/// Sends the messages, at most [`MESSAGES_PER_CALL`] per `sendmmsg`:
/// with GSO in runs of one segment size (the call's control message
/// gives it), without in the order given.
fn send_messages(
    socket: &UdpSocket,
    segmentation: Segmentation,
    bytes: &[u8],
    messages: &[Message],
    stats: &mut ForwarderStats,
) -> anyhow::Result<()> {
    let mut rest = messages;
    while let Some(&(_, _, segment)) = rest.first() {
        let run = rest
            .iter()
            .take(MESSAGES_PER_CALL)
            .take_while(|m| segmentation == Segmentation::OnePerMessage || m.2 == segment)
            .count();
        let now = &rest[..run];
        let slices: Vec<[IoSlice<'_>; 1]> = now
            .iter()
            .map(|(_, range, _)| [IoSlice::new(&bytes[range.clone()])])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = now
            .iter()
            .map(|(address, _, _)| Some(SockaddrStorage::from(*address)))
            .collect();
        let size = u16::try_from(segment)?;
        let gso = [ControlMessage::UdpGsoSegments(&size)];
        let several = now.iter().any(|(_, range, segment)| range.len() > *segment);
        let control: &[ControlMessage<'_>] = if several { &gso } else { &[] };
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
            now.len(),
            several.then(|| nix::cmsg_space!(u16)),
        );
        let sent = match sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addresses,
            control,
            MsgFlags::empty(),
        ) {
            Ok(sent) => sent.count(),
            // The send buffer is full: wait a moment and go on.
            Err(nix::errno::Errno::EAGAIN) => {
                std::thread::sleep(Duration::from_micros(200));
                0
            }
            Err(e) => return Err(e.into()),
        };
        stats.send_calls += 1;
        stats.messages += sent as u64;
        stats.forwarded += now[..sent]
            .iter()
            .map(|(_, range, segment)| range.len().div_ceil(*segment) as u64)
            .sum::<u64>();
        rest = &rest[sent..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceiling::RECV_BUFFER_BYTES;

    /// A publisher packet of `payload` bytes at `offset` of buffer 0.
    fn packet(
        storage: &mut [[u8; RECV_BUFFER_BYTES]],
        offset: usize,
        payload: usize,
        video: bool,
    ) -> Inbound {
        let mut bytes = Vec::new();
        let payload_type = if video {
            VIDEO_PAYLOAD_TYPE
        } else {
            AUDIO_PAYLOAD_TYPE
        };
        write_header(&mut bytes, 1, 2, 3, payload_type);
        bytes.resize(HEADER_LEN + payload, 9);
        storage[0][offset..offset + bytes.len()].copy_from_slice(&bytes);
        Inbound {
            buffer: 0,
            offset,
            payload_len: payload,
            video,
        }
    }

    /// Sealed sizes of the test's video (1000-byte) and audio (100-byte)
    /// payloads.
    const VIDEO: usize = HEADER_LEN + 1000 + crate::ceiling::key::TAG_LEN;
    const AUDIO: usize = HEADER_LEN + 100 + crate::ceiling::key::TAG_LEN;

    /// One subscriber's (key 5) copies of `inbound`: its address, the
    /// sealed bytes and the messages.
    fn fan_out_one(
        segmentation: Segmentation,
        inbound: &[Inbound],
        storage: &[[u8; RECV_BUFFER_BYTES]],
    ) -> (SocketAddr, Vec<u8>, Vec<Message>) {
        let address: SocketAddr = "127.0.0.1:9".parse().expect("address");
        let mut downlink = Downlink::new(address, Key::new(5).expect("key"));
        let (mut bytes, mut messages) = (Vec::new(), Vec::new());
        fan_out_to(
            &mut downlink,
            segmentation,
            inbound,
            storage,
            &mut bytes,
            &mut messages,
        )
        .expect("fans out");
        (address, bytes, messages)
    }

    #[test]
    fn a_frame_is_one_message_and_a_shorter_packet_ends_it() {
        let mut storage = vec![[0u8; RECV_BUFFER_BYTES]; 1];
        let mut inbound: Vec<Inbound> = (0..4)
            .map(|i| packet(&mut storage, i * 2000, 1000, true))
            .collect();
        inbound.push(packet(&mut storage, 8000, 100, false));
        inbound.push(packet(&mut storage, 9000, 1000, true));
        let (address, bytes, messages) = fan_out_one(Segmentation::Gso, &inbound, &storage);
        assert_eq!(bytes.len(), 5 * VIDEO + AUDIO);
        // Four video packets and the audio one as the shorter last
        // segment; the next video packet starts a new message.
        assert_eq!(
            messages,
            vec![
                (address, 0..4 * VIDEO + AUDIO, VIDEO),
                (address, 4 * VIDEO + AUDIO..5 * VIDEO + AUDIO, VIDEO),
            ]
        );
        // Each copy opens with the subscriber's key, sequence numbers
        // counted per stream.
        let key = Key::new(5).expect("key");
        let mut first = bytes[..VIDEO].to_vec();
        assert_eq!(key.open(&mut first), Some(1000));
        assert_eq!(u16::from_be_bytes([first[2], first[3]]), 1);
        let mut last = bytes[4 * VIDEO + AUDIO..].to_vec();
        assert_eq!(key.open(&mut last), Some(1000));
        assert_eq!(u16::from_be_bytes([last[2], last[3]]), 5);
    }

    #[test]
    fn without_gso_every_packet_is_a_message_of_its_own() {
        let mut storage = vec![[0u8; RECV_BUFFER_BYTES]; 1];
        let inbound = vec![
            packet(&mut storage, 0, 1000, true),
            packet(&mut storage, 2000, 1000, true),
            packet(&mut storage, 4000, 100, false),
        ];
        let (address, _, messages) = fan_out_one(Segmentation::OnePerMessage, &inbound, &storage);
        assert_eq!(
            messages,
            vec![
                (address, 0..VIDEO, VIDEO),
                (address, VIDEO..2 * VIDEO, VIDEO),
                (address, 2 * VIDEO..2 * VIDEO + AUDIO, AUDIO),
            ]
        );
    }
}
