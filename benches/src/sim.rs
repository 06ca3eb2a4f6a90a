//! A [`Room`] with one publisher and N subscribers, all str0m peers (RTP
//! mode, full ICE, DTLS-SRTP) on a zero-latency network in memory, driven by
//! a simulated clock. The same shape as `weir-sfu`'s scenario tests (their
//! harness is private to that crate), with what the benchmarks need: the
//! publisher's packets made ahead of time, so that only the room's work is
//! timed.
//!
//! What the benchmarks time is what the server's room task
//! (`serve/room_task.rs`) does for one input datagram:
//! [`Room::handle_datagram`] with its output drained, then the
//! [`Room::handle_timeout`] pass that the input made due (str0m sends a
//! written packet on the `Rtc`'s next timeout input, and the room asks for
//! one at once), with its output drained; forwarded datagrams are dropped
//! as the task drops them after `send_to`. Not timed: everything the peers
//! do (encrypting the publisher's packets, answering STUN, making NACKs),
//! the room's timers that were due before the input, and the routing of
//! signalling.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use weir_protocol::{ClientMessage, Grant, PublishRequest, ServerMessage, TrackKind};
use weir_sfu::{JoinRequest, ParticipantKey, Room, RoomConfig, RoomOutput, SessionKind};

/// VP8 payload bytes per packet: with the RTP header, str0m's header
/// extensions and the SRTP tag, a forwarded datagram is ~1.2 kB, the packet
/// size of the measurements in the project's performance notes.
pub const PAYLOAD_BYTES: usize = 1150;
/// Packets per video frame (30 fps): 150 packets/s, ~1.4 Mbit/s.
pub const PACKETS_PER_FRAME: u64 = 5;
/// Time between two packets of the publisher.
pub const PACKET_SPACING: Duration = Duration::from_micros(6_667);

const SERVER: &str = "10.0.0.1:7882";
const PUBLISHER: usize = 0;

fn server_addr() -> SocketAddr {
    SERVER.parse().expect("valid address")
}

/// What happens to the RTP the room sends to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downlink {
    /// Every datagram reaches its subscriber.
    Deliver,
    /// Forwarded RTP is dropped right after the room emits it (the
    /// subscribers' receive side is not simulated; RTCP and STUN still
    /// flow): for timing the forwarding alone.
    Discard,
    /// Forwarded packets whose rewritten sequence number is 7 modulo `n`
    /// are lost; the rest (and every retransmission) arrive. The
    /// subscribers NACK what they miss.
    LoseOneIn(u16),
}

/// Subscriber datagrams whose handling made the room retransmit.
#[derive(Debug, Default, Clone, Copy)]
pub struct NackStats {
    /// Time in [`Room::handle_datagram`] and the timeout pass it made due
    /// (outputs drained), for these datagrams only.
    pub elapsed: Duration,
    /// Datagrams (SRTCP, a NACK possibly compounded with a receiver report).
    pub datagrams: u64,
    /// Retransmitted packets (RTX) they caused.
    pub retransmitted: u64,
}

struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    key: ParticipantKey,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    /// RTP packets the peer's str0m handed up (originals and recovered).
    rtp_received: u64,
    /// The SSRC the room forwards on to this peer (learned from the first
    /// forwarded packet); with str0m's egress anything else from the room
    /// is a retransmission (RTX).
    forward_ssrc: Option<u32>,
    /// Sequence numbers the lossy downlink dropped once (a retransmission
    /// on the same SSRC, as Weir's own egress sends it, gets through).
    lost_once: VecDeque<u16>,
}

/// A room with one VP8 publisher and `subscribers` subscribers to it.
pub struct SimRoom {
    now: Instant,
    room: Room,
    peers: Vec<Peer>,
    mid: Mid,
    pt: Pt,
    next_seq: u64,
    downlink: Downlink,
    /// Room outputs waiting to be routed (outside the timed calls).
    backlog: VecDeque<RoomOutput>,
    /// The publisher's non-RTP datagrams (RTCP, STUN) made while it sent
    /// a batch, delivered at the next [`SimRoom::settle`].
    publisher_backlog: Vec<Vec<u8>>,
    lost_downlink: u64,
    time_nacks: bool,
    nacks: NackStats,
    forwarded_datagram_len: usize,
    own_egress: bool,
}

impl SimRoom {
    /// Joins a publisher and `subscribers` subscribers (auto-subscribe),
    /// publishes one VP8 track, connects everyone (ICE, DTLS) and checks
    /// that a keyframe and two more frames reach every subscriber. Then
    /// the downlink becomes `downlink`.
    pub fn new(subscribers: usize, downlink: Downlink) -> SimRoom {
        SimRoom::with_egress(subscribers, downlink, true)
    }

    /// As [`SimRoom::new`], with Weir's own egress (`own_egress`, the
    /// server's default) or str0m's send path for every forwarded packet.
    pub fn with_egress(subscribers: usize, downlink: Downlink, own_egress: bool) -> SimRoom {
        weir_sfu::install_crypto();
        let now = Instant::now();
        // One DTLS certificate for the room, as the server configures it.
        let mut config = RoomConfig::new(server_addr()).with_generated_dtls_cert();
        config.own_egress = own_egress;
        let mut sim = SimRoom {
            now,
            room: Room::new("bench", config, now),
            peers: Vec::new(),
            mid: Mid::from("0"),
            pt: Pt::from(0),
            next_seq: 1,
            downlink: Downlink::Deliver,
            backlog: VecDeque::new(),
            publisher_backlog: Vec::new(),
            lost_downlink: 0,
            time_nacks: false,
            nacks: NackStats::default(),
            forwarded_datagram_len: 0,
            own_egress,
        };
        sim.join("publisher", false);
        for n in 0..subscribers {
            sim.join(&format!("subscriber-{n}"), true);
        }
        sim.publish_video();
        sim.wait_connected();
        sim.run_for(Duration::from_millis(200));
        sim.pt = sim.peers[PUBLISHER]
            .rtc
            .codec_config()
            .find(|c| c.spec().codec == Codec::Vp8)
            .expect("VP8 negotiated")
            .pt();

        // A keyframe and two delta frames, delivered: forwarding is open
        // toward every subscriber.
        let first = 3 * PACKETS_PER_FRAME;
        let batch = sim.publisher_packets(first as usize);
        for (at, datagram) in &batch {
            sim.prepare(*at);
            sim.room
                .handle_datagram(*at, sim.peers[PUBLISHER].addr, datagram);
            sim.drain_room();
        }
        sim.settle();
        sim.run_for(Duration::from_millis(100));
        for peer in &sim.peers[1..] {
            assert!(
                peer.rtp_received >= first,
                "every subscriber receives the first frames ({} of {first})",
                peer.rtp_received
            );
        }
        sim.downlink = downlink;
        sim
    }

    /// Subscribers in the room.
    pub fn subscribers(&self) -> usize {
        self.peers.len() - 1
    }

    /// The size of one forwarded datagram (bytes on the wire, SRTP).
    pub fn forwarded_datagram_len(&self) -> usize {
        self.forwarded_datagram_len
    }

    /// The publisher's next `n` RTP datagrams (SRTP, as on the wire), one
    /// every [`PACKET_SPACING`] of simulated time from now, with the time
    /// each arrives. The publisher's other output waits for
    /// [`SimRoom::settle`].
    pub fn publisher_packets(&mut self, n: usize) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            self.now += PACKET_SPACING;
            let now = self.now;
            let seq = self.next_seq;
            self.next_seq += 1;
            let index_in_frame = (seq - 1) % PACKETS_PER_FRAME;
            let frame = (seq - 1) / PACKETS_PER_FRAME;
            let publisher = &mut self.peers[PUBLISHER];
            let mut payload = Vec::with_capacity(PAYLOAD_BYTES);
            if index_in_frame == 0 {
                // VP8 payload descriptor with S=1, then the payload header:
                // P=0 (key frame) for the very first frame only.
                let keyframe = frame == 0;
                payload.extend_from_slice(&[0x10, if keyframe { 0x00 } else { 0x01 }]);
                payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            } else {
                payload.push(0x00);
            }
            payload.resize(PAYLOAD_BYTES, 0xAB);
            {
                let mut api = publisher.rtc.direct_api();
                let stream = api
                    .stream_tx_by_mid(self.mid, None)
                    .expect("publisher send stream");
                stream.write_rtp(
                    RtpWrite::new(self.pt, seq.into(), (frame * 3000) as u32, now, payload)
                        .marker(index_in_frame + 1 == PACKETS_PER_FRAME)
                        .nackable(true),
                );
            }
            // str0m sends a written packet on its next timeout input.
            publisher
                .rtc
                .handle_input(Input::Timeout(now))
                .expect("publisher timeout");
            loop {
                match publisher.rtc.poll_output().expect("publisher output") {
                    Output::Timeout(at) => {
                        publisher.next_timeout = at;
                        break;
                    }
                    Output::Transmit(t) => {
                        let contents: Vec<u8> = t.contents.into();
                        if is_rtp(&contents) {
                            out.push((now, contents));
                        } else {
                            self.publisher_backlog.push(contents);
                        }
                    }
                    Output::Event(_) => {}
                }
            }
        }
        assert_eq!(out.len(), n, "the publisher sent every packet at once");
        out
    }

    /// Runs the room's timers due at `at` (before an input at `at`, as the
    /// room task does). Not part of the per-packet cost.
    pub fn prepare(&mut self, at: Instant) {
        if self.room.poll_timeout().is_some_and(|t| t <= at) {
            self.room.handle_timeout(at);
            self.drain_room();
        }
    }

    /// The timed part: what the server's room task does for one publisher
    /// datagram: [`Room::handle_datagram`] (the publisher's SRTP open and
    /// the forwarding into every subscriber's `Rtc`) and the outputs
    /// drained (each subscriber's timeout input, poll and SRTP seal happen
    /// there, see `weir_sfu::room::drive`); then any room timer due at the
    /// same instant. Returns the RTP datagrams the room sent to
    /// subscribers. With [`Downlink::Discard`] they are dropped here (as
    /// the room task drops them after sending); otherwise they wait to be
    /// routed at the next [`SimRoom::settle`].
    pub fn forward(&mut self, at: Instant, datagram: &[u8]) -> usize {
        self.forward_in_one_pass(at, std::iter::once(datagram))
    }

    /// The timed part for a burst of publisher datagrams that the room
    /// task takes in one pass (a video frame's packets arriving together):
    /// each into [`Room::handle_datagram`] at the time of the last, then the
    /// outputs drained once, as [`SimRoom::forward`] does for one. Returns
    /// the RTP datagrams the room sent to subscribers.
    pub fn forward_burst(&mut self, burst: &[(Instant, Vec<u8>)]) -> usize {
        let Some((at, _)) = burst.last() else {
            return 0;
        };
        self.forward_in_one_pass(*at, burst.iter().map(|(_, d)| d.as_slice()))
    }

    /// `datagrams` from the publisher into [`Room::handle_datagram`] at
    /// `at`, then the outputs drained once and any room timer due at `at`
    /// run: what the room task does for one pass. Returns the RTP
    /// datagrams the room sent to subscribers.
    fn forward_in_one_pass<'a>(
        &mut self,
        at: Instant,
        datagrams: impl IntoIterator<Item = &'a [u8]>,
    ) -> usize {
        let publisher = self.peers[PUBLISHER].addr;
        for datagram in datagrams {
            assert!(
                self.room.handle_datagram(at, publisher, datagram),
                "the room accepts the publisher's datagram"
            );
        }
        let mut sent = self.drain_forwarded(publisher);
        if self.room.poll_timeout().is_some_and(|t| t <= at) {
            self.room.handle_timeout(at);
            sent += self.drain_forwarded(publisher);
        }
        sent
    }

    /// Drains the room's output, counting (and with [`Downlink::Discard`]
    /// dropping) the RTP datagrams to subscribers.
    fn drain_forwarded(&mut self, publisher: SocketAddr) -> usize {
        let mut sent = 0;
        while let Some(output) = self.room.poll_output() {
            if let RoomOutput::Transmit {
                destination,
                datagrams,
            } = &output
            {
                let rtp = if *destination == publisher {
                    0
                } else {
                    datagrams.iter().filter(|d| is_rtp(d)).count()
                };
                sent += rtp;
                if rtp > 0 && self.downlink == Downlink::Discard {
                    continue;
                }
            }
            self.backlog.push_back(output);
        }
        sent
    }

    /// Drains the room's output, counting the RTP datagrams to `subscriber`
    /// on another SSRC than the forwarded one (retransmissions).
    fn drain_retransmissions(&mut self, subscriber: SocketAddr, forward_ssrc: Option<u32>) -> u64 {
        let mut retransmitted = 0;
        while let Some(output) = self.room.poll_output() {
            if let RoomOutput::Transmit {
                destination,
                datagrams,
            } = &output
            {
                if *destination == subscriber {
                    retransmitted += datagrams
                        .iter()
                        .filter(|d| is_rtp(d) && Some(rtp_ssrc_and_seq(d).0) != forward_ssrc)
                        .count() as u64;
                }
            }
            self.backlog.push_back(output);
        }
        retransmitted
    }

    /// Catches up with everything outside the timed calls: the publisher's
    /// RTCP, the room's other output, every peer's timers (STUN consent,
    /// RTCP, NACKs), until the network is quiet.
    pub fn settle(&mut self) {
        let publisher = self.peers[PUBLISHER].addr;
        for datagram in std::mem::take(&mut self.publisher_backlog) {
            self.room.handle_datagram(self.now, publisher, &datagram);
            self.drain_room();
        }
        self.advance_to(self.now);
    }

    /// Sends `packets` publisher packets through the room (untimed), routing
    /// everything as it happens, and times the subscribers' datagrams that
    /// make the room retransmit. Use with [`Downlink::LoseOneIn`].
    pub fn stream_with_losses(&mut self, packets: usize) -> NackStats {
        self.nacks = NackStats::default();
        self.time_nacks = true;
        for _ in 0..packets {
            // One at a time: the subscriber's clock must not run ahead.
            let (at, datagram) = self.publisher_packets(1).remove(0);
            self.prepare(at);
            self.forward(at, &datagram);
            // Deliver at once, and let due timers (the subscriber's NACK
            // timer among them) run.
            self.advance_to(at);
        }
        self.settle();
        self.time_nacks = false;
        self.nacks
    }

    /// Forwarded packets the lossy downlink dropped so far.
    pub fn lost_downlink(&self) -> u64 {
        self.lost_downlink
    }

    /// RTP packets (originals and retransmissions) subscriber `n` received.
    pub fn subscriber_received(&self, n: usize) -> u64 {
        self.peers[n + 1].rtp_received
    }

    /// The room's counters (e.g. `rtp_forwarded`).
    pub fn room(&self) -> &Room {
        &self.room
    }

    fn join(&mut self, name: &str, auto_subscribe: bool) {
        let index = self.peers.len();
        let addr: SocketAddr = format!("10.0.{}.{}:5000", 1 + index / 250, 1 + index % 250)
            .parse()
            .expect("addr");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let joined = self
            .room
            .join(
                self.now,
                JoinRequest {
                    user_id: name.to_string(),
                    grants: Grant::ALL.to_vec(),
                    kind: SessionKind::Signalling,
                    auto_subscribe,
                    offer: None,
                    wall_clock_ms: 0,
                },
            )
            .expect("join accepted");
        self.peers.push(Peer {
            rtc,
            addr,
            key: joined.key,
            pending: None,
            next_timeout: self.now,
            rtp_received: 0,
            forward_ssrc: None,
            lost_once: VecDeque::new(),
        });
        self.pump();
    }

    fn publish_video(&mut self) {
        let peer = &mut self.peers[PUBLISHER];
        let mut api = peer.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        peer.pending = Some(pending);
        let key = peer.key;
        self.mid = mid;
        self.room.handle_message(
            self.now,
            key,
            ClientMessage::Publish(PublishRequest {
                mid: mid.to_string(),
                kind: TrackKind::Video,
                source: None,
                codecs: vec!["VP8".to_string()],
            }),
        );
        self.room.handle_message(
            self.now,
            key,
            ClientMessage::Offer {
                sdp: offer.to_sdp_string(),
            },
        );
        self.pump();
    }

    fn wait_connected(&mut self) {
        for _ in 0..4000 {
            if self.peers.iter().all(|p| p.rtc.is_connected()) {
                return;
            }
            self.advance_to(self.now + Duration::from_millis(5));
        }
        panic!("peers did not connect");
    }

    /// Lets `duration` pass, delivering what everyone sends.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.advance_to(self.now + Duration::from_millis(5));
        }
    }

    /// Moves the clock to `at`, fires due timeouts and routes everything.
    fn advance_to(&mut self, at: Instant) {
        self.now = self.now.max(at);
        let now = self.now;
        if self.room.poll_timeout().is_some_and(|t| t <= now) {
            self.room.handle_timeout(now);
            self.drain_room();
        }
        for index in 0..self.peers.len() {
            if self.peers[index].next_timeout <= now {
                self.peers[index]
                    .rtc
                    .handle_input(Input::Timeout(now))
                    .expect("peer timeout");
                self.poll_peer(index);
            }
        }
        self.pump();
    }

    fn drain_room(&mut self) {
        while let Some(output) = self.room.poll_output() {
            self.backlog.push_back(output);
        }
    }

    /// Routes room output and peer output until both are quiet.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut progressed = false;
            while let Some(output) = self.backlog.pop_front() {
                progressed = true;
                self.route(output);
            }
            for index in 0..self.peers.len() {
                progressed |= self.poll_peer(index);
            }
            if !progressed {
                return;
            }
        }
        panic!("the network did not quiesce");
    }

    /// One datagram from the room to the peer at `destination` (lost on
    /// the downlink when the scenario says so).
    fn deliver(&mut self, destination: SocketAddr, contents: &[u8]) {
        let Some(index) = self.peers.iter().position(|p| p.addr == destination) else {
            return;
        };
        if index != PUBLISHER && is_rtp(contents) && !self.passes_downlink(index, contents) {
            self.lost_downlink += 1;
            return;
        }
        let now = self.now;
        let peer = &mut self.peers[index];
        let Ok(datagram) = contents.try_into() else {
            return;
        };
        peer.rtc
            .handle_input(Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: server_addr(),
                    destination,
                    contents: datagram,
                },
            ))
            .expect("the peer accepts the room's datagram");
        // str0m wants its output drained after every input.
        self.poll_peer(index);
    }

    fn route(&mut self, output: RoomOutput) {
        match output {
            RoomOutput::Transmit {
                destination,
                datagrams,
            } => {
                for datagram in datagrams.iter() {
                    self.deliver(destination, datagram);
                }
            }
            RoomOutput::Signal { to, message } => {
                if let Some(index) = self.peers.iter().position(|p| p.key == to) {
                    self.handle_signal(index, message);
                }
            }
            _ => {}
        }
    }

    /// Whether a room -> subscriber RTP datagram survives the downlink
    /// (learning the subscriber's forwarding SSRC on the way).
    fn passes_downlink(&mut self, index: usize, contents: &[u8]) -> bool {
        let (ssrc, seq) = rtp_ssrc_and_seq(contents);
        let peer = &mut self.peers[index];
        if peer.forward_ssrc.is_none() {
            peer.forward_ssrc = Some(ssrc);
            self.forwarded_datagram_len = contents.len();
        }
        match self.downlink {
            Downlink::Deliver => true,
            Downlink::Discard => false,
            Downlink::LoseOneIn(n) => {
                if peer.forward_ssrc != Some(ssrc)
                    || seq % n != 7 % n
                    || peer.lost_once.contains(&seq)
                {
                    return true;
                }
                if peer.lost_once.len() >= 64 {
                    peer.lost_once.pop_front();
                }
                peer.lost_once.push_back(seq);
                false
            }
        }
    }

    fn handle_signal(&mut self, index: usize, message: ServerMessage) {
        let key = self.peers[index].key;
        match message {
            ServerMessage::Answer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer parses");
                let pending = self.peers[index].pending.take().expect("a pending offer");
                self.peers[index]
                    .rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("answer accepted");
            }
            ServerMessage::Offer { sdp } => {
                let offer = SdpOffer::from_sdp_string(&sdp).expect("offer parses");
                let answer = self.peers[index]
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("offer accepted");
                self.room.handle_message(
                    self.now,
                    key,
                    ClientMessage::Answer {
                        sdp: answer.to_sdp_string(),
                    },
                );
            }
            _ => {}
        }
    }

    fn poll_peer(&mut self, index: usize) -> bool {
        let mut progressed = false;
        loop {
            let peer = &mut self.peers[index];
            match peer.rtc.poll_output().expect("peer output") {
                Output::Timeout(at) => {
                    peer.next_timeout = at;
                    return progressed;
                }
                Output::Transmit(t) => {
                    progressed = true;
                    let contents: Vec<u8> = t.contents.into();
                    self.datagram_from_peer(index, &contents);
                }
                Output::Event(event) => {
                    progressed = true;
                    if let Event::RtpPacket(_) = event {
                        peer.rtp_received += 1;
                    }
                }
            }
        }
    }

    /// A peer's datagram into the room; a subscriber's is timed when it
    /// makes the room retransmit (while [`SimRoom::stream_with_losses`]
    /// runs).
    fn datagram_from_peer(&mut self, index: usize, contents: &[u8]) {
        let source = self.peers[index].addr;
        if !(self.time_nacks && index != PUBLISHER) {
            self.room.handle_datagram(self.now, source, contents);
            self.drain_room();
            return;
        }
        // Weir's own egress retransmits on the forwarding SSRC: every RTP
        // datagram a NACK brings is a retransmission.
        let forward_ssrc = if self.own_egress {
            None
        } else {
            self.peers[index].forward_ssrc
        };
        // Timers already due are not this datagram's cost.
        self.prepare(self.now);
        let start = Instant::now();
        self.room.handle_datagram(self.now, source, contents);
        let mut retransmitted = self.drain_retransmissions(source, forward_ssrc);
        // As in `forward`: what the datagram queued goes out on the room
        // task's next turn.
        if self.room.poll_timeout().is_some_and(|t| t <= self.now) {
            self.room.handle_timeout(self.now);
            retransmitted += self.drain_retransmissions(source, forward_ssrc);
        }
        let elapsed = start.elapsed();
        if retransmitted > 0 {
            self.nacks.elapsed += elapsed;
            self.nacks.datagrams += 1;
            self.nacks.retransmitted += retransmitted;
        }
    }
}

/// RTP (not RTCP, STUN or DTLS): version 2 and not an RTCP packet type.
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

/// SSRC and sequence number from the (clear) RTP header of an SRTP packet.
fn rtp_ssrc_and_seq(datagram: &[u8]) -> (u32, u16) {
    let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
    let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
    (ssrc, seq)
}
