//! The minimal forwarder: one thread, `poll` and a non-blocking
//! `recvmmsg` on one socket (GRO on), an open per publisher packet, and
//! per subscriber a rewritten header, the payload copied and sealed, each
//! subscriber's packets of a receive batch as one UDP GSO message (a
//! shorter datagram may end it), messages of one segment size together in
//! one `sendmmsg`.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};

use super::key::{write_header, Key, HEADER_LEN};
use super::{thread_cpu, AUDIO_PAYLOAD_TYPE, STUN_LEN, VIDEO_PAYLOAD_TYPE};

/// Messages one `sendmmsg` carries at most (as Weir's media socket).
const MESSAGES_PER_CALL: usize = 64;
/// Receive buffers of one `recvmmsg`, each large enough for a GRO batch.
const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// Longest sleep in `poll` before `stop` is looked at again.
const POLL_MS: u16 = 50;

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

/// Forwards until `stop` is set; `socket` must have been made by
/// `UdpSocketState::new` (non-blocking, GRO on).
pub fn run(
    socket: &UdpSocket,
    state: &UdpSocketState,
    publisher: (SocketAddr, Key),
    mut downlinks: Vec<Downlink>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<ForwarderStats> {
    let (publisher, publisher_key) = publisher;
    let by_address: HashMap<SocketAddr, usize> = downlinks
        .iter()
        .enumerate()
        .map(|(i, d)| (d.address, i))
        .collect();
    let mut stats = ForwarderStats::default();
    let mut storage = vec![[0u8; RECV_BUFFER_BYTES]; BATCH_SIZE];
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    let mut inbound: Vec<Inbound> = Vec::new();
    let mut bytes: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut messages: Vec<Message> = Vec::new();
    let stun_answer = [1u8; STUN_LEN];
    let start_cpu = thread_cpu()?;
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(POLL_MS)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let received = {
            let mut bufs: Vec<IoSliceMut<'_>> = storage
                .iter_mut()
                .map(|b| IoSliceMut::new(&mut b[..]))
                .collect();
            match state.recv(socket.into(), &mut bufs, &mut meta) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        };
        inbound.clear();
        for (buffer, m) in meta.iter().take(received).enumerate() {
            let stride = m.stride.max(1);
            let mut offset = 0;
            while offset < m.len {
                let len = stride.min(m.len - offset);
                let datagram = &mut storage[buffer][offset..offset + len];
                if m.addr == publisher {
                    match publisher_key.open(datagram) {
                        Some(payload_len) => inbound.push(Inbound {
                            buffer,
                            offset,
                            payload_len,
                            video: datagram[1] & 0x7f == VIDEO_PAYLOAD_TYPE,
                        }),
                        None => stats.rejected += 1,
                    }
                } else if let Some(&index) = by_address.get(&m.addr) {
                    stats.feedback += 1;
                    if datagram.first() == Some(&0) {
                        socket.send_to(&stun_answer, m.addr)?;
                        stats.stun_answers += 1;
                    } else {
                        let _ = downlinks[index].key.open(datagram);
                    }
                }
                offset += len;
            }
        }
        if inbound.is_empty() {
            continue;
        }
        stats.passes += 1;
        bytes.clear();
        messages.clear();
        for downlink in &mut downlinks {
            fan_out_to(downlink, &inbound, &storage, &mut bytes, &mut messages)?;
        }
        // Messages of one segment size share a call (each subscriber's
        // keep their order: a stable sort).
        messages.sort_by_key(|m| m.2);
        send_messages(socket, &bytes, &messages, &mut stats)?;
    }
    stats.cpu = thread_cpu()?.saturating_sub(start_cpu);
    Ok(stats)
}

/// Appends one subscriber's copies of the batch's packets to `bytes`,
/// sealed, and its messages: a run of equal sizes, ended by a shorter one.
fn fan_out_to(
    downlink: &mut Downlink,
    inbound: &[Inbound],
    storage: &[[u8; RECV_BUFFER_BYTES]],
    bytes: &mut Vec<u8>,
    messages: &mut Vec<Message>,
) -> anyhow::Result<()> {
    let mut run_start = bytes.len();
    let mut run_segment = 0;
    let mut run_closed = false;
    for packet in inbound {
        let source = &storage[packet.buffer][packet.offset..];
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

/// Sends the messages: runs of one segment size, at most
/// [`MESSAGES_PER_CALL`] per `sendmmsg`.
fn send_messages(
    socket: &UdpSocket,
    bytes: &[u8],
    messages: &[Message],
    stats: &mut ForwarderStats,
) -> anyhow::Result<()> {
    let mut rest = messages;
    while let Some(&(_, _, segment)) = rest.first() {
        let run = rest
            .iter()
            .take(MESSAGES_PER_CALL)
            .take_while(|m| m.2 == segment)
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

    #[test]
    fn a_frame_is_one_message_and_a_shorter_packet_ends_it() {
        let mut storage = vec![[0u8; RECV_BUFFER_BYTES]; 1];
        let mut inbound: Vec<Inbound> = (0..4)
            .map(|i| packet(&mut storage, i * 2000, 1000, true))
            .collect();
        inbound.push(packet(&mut storage, 8000, 100, false));
        inbound.push(packet(&mut storage, 9000, 1000, true));
        let address: SocketAddr = "127.0.0.1:9".parse().expect("address");
        let mut downlink = Downlink::new(address, Key::new(5).expect("key"));
        let (mut bytes, mut messages) = (Vec::new(), Vec::new());
        fan_out_to(&mut downlink, &inbound, &storage, &mut bytes, &mut messages).expect("fans out");
        let video = HEADER_LEN + 1000 + crate::ceiling::key::TAG_LEN;
        let audio = HEADER_LEN + 100 + crate::ceiling::key::TAG_LEN;
        assert_eq!(bytes.len(), 5 * video + audio);
        // Four video packets and the audio one as the shorter last
        // segment; the next video packet starts a new message.
        assert_eq!(
            messages,
            vec![
                (address, 0..4 * video + audio, video),
                (address, 4 * video + audio..5 * video + audio, video),
            ]
        );
        // Each copy opens with the subscriber's key, sequence numbers
        // counted per stream.
        let key = Key::new(5).expect("key");
        let mut first = bytes[..video].to_vec();
        assert_eq!(key.open(&mut first), Some(1000));
        assert_eq!(u16::from_be_bytes([first[2], first[3]]), 1);
        let mut last = bytes[4 * video + audio..].to_vec();
        assert_eq!(key.open(&mut last), Some(1000));
        assert_eq!(u16::from_be_bytes([last[2], last[3]]), 5);
    }
}
