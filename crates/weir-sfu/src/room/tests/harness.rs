//! The simulated network: str0m peers and a [`Room`] connected in
//! memory, driven faster than real time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use weir_protocol::{ClientMessage, Grant, PublishRequest, ServerMessage, TrackKind};

use super::super::*;

pub(super) const SERVER: &str = "10.0.0.1:7882";

/// One simulated client.
pub(super) struct Peer {
    pub(super) name: &'static str,
    pub(super) rtc: Rtc,
    pub(super) addr: SocketAddr,
    pub(super) key: ParticipantKey,
    pub(super) signals: Vec<ServerMessage>,
    pub(super) pending: Option<SdpPendingOffer>,
    pub(super) received: Vec<ReceivedRtp>,
    pub(super) keyframe_requests: usize,
    /// The server closed the connection (DTLS close_notify arrived).
    pub(super) closed: bool,
    pub(super) next_timeout: Instant,
}

#[derive(Debug, Clone)]
pub(super) struct ReceivedRtp {
    pub(super) ssrc: u32,
    pub(super) seq: u64,
    pub(super) payload: Vec<u8>,
    /// The packet carried a transport-wide sequence number (TWCC).
    pub(super) twcc: bool,
}

/// Decides, per (peer index, datagram), whether the link drops it.
pub(super) type DropRule = Box<dyn FnMut(usize, &[u8]) -> bool>;

pub(super) struct Net {
    pub(super) now: Instant,
    pub(super) room: Room,
    pub(super) peers: Vec<Peer>,
    /// Drops room -> peer RTP when it returns true (peer index, datagram).
    pub(super) drop_downstream: Option<DropRule>,
    /// Drops peer -> room RTP when it returns true (peer index, datagram).
    pub(super) drop_upstream: Option<DropRule>,
    pub(super) dropped: usize,
    /// Hosts handed out to WHIP/WHEP peers (addresses are never reused).
    pub(super) http_hosts: u8,
    /// The room's lifecycle outputs, in order: `+track`, `-track`, `left user`.
    pub(super) lifecycle: Vec<String>,
    /// Packets of tapped tracks, in output order.
    pub(super) tapped: Vec<crate::tap::TappedPacket>,
}

pub(super) fn server_addr() -> SocketAddr {
    SERVER.parse().expect("valid address")
}

impl Net {
    pub(super) fn new() -> Net {
        Net::with_config(RoomConfig::new(server_addr()))
    }

    pub(super) fn with_config(config: RoomConfig) -> Net {
        crate::install_crypto();
        let now = Instant::now();
        Net {
            now,
            room: Room::new("test", config, now),
            peers: Vec::new(),
            drop_downstream: None,
            drop_upstream: None,
            dropped: 0,
            http_hosts: 0,
            lifecycle: Vec::new(),
            tapped: Vec::new(),
        }
    }

    pub(super) fn join(
        &mut self,
        name: &'static str,
        kind: SessionKind,
        offer: Option<String>,
    ) -> (usize, Joined) {
        let index = self.peers.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", index + 1).parse().expect("addr");
        let rtc = self.new_peer_rtc(addr);
        let joined = self
            .room
            .join(
                self.now,
                JoinRequest {
                    user_id: name.to_string(),
                    grants: Grant::ALL.to_vec(),
                    kind,
                    auto_subscribe: true,
                    offer,
                    wall_clock_ms: 0,
                },
            )
            .expect("join accepted");
        self.add_peer(name, rtc, addr, joined.key);
        (index, joined)
    }

    /// A WHIP (publisher, `Direction::SendOnly`) or WHEP (viewer,
    /// `Direction::RecvOnly`) session: the peer offers one video m-line,
    /// the room answers at join. Returns the peer index and its mid.
    pub(super) fn join_http(
        &mut self,
        name: &'static str,
        kind: SessionKind,
        grant: Grant,
        direction: Direction,
    ) -> (usize, Mid) {
        let index = self.peers.len();
        self.http_hosts += 1;
        let addr: SocketAddr = format!("10.0.2.{}:5000", self.http_hosts)
            .parse()
            .expect("addr");
        let mut rtc = self.new_peer_rtc(addr);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, direction, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let joined = self
            .room
            .join(
                self.now,
                JoinRequest {
                    user_id: name.to_string(),
                    grants: vec![grant],
                    kind,
                    auto_subscribe: false,
                    offer: Some(offer.to_sdp_string()),
                    wall_clock_ms: 0,
                },
            )
            .expect("HTTP session joins");
        let answer = joined.answer.clone().expect("an SDP answer");
        rtc.sdp_api()
            .accept_answer(
                pending,
                SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
            )
            .expect("answer accepted");
        self.add_peer(name, rtc, addr, joined.key);
        self.pump();
        (index, mid)
    }

    /// A client `Rtc` (full ICE, RTP mode) with a host candidate at `addr`.
    fn new_peer_rtc(&self, addr: SocketAddr) -> Rtc {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        rtc
    }

    fn add_peer(&mut self, name: &'static str, rtc: Rtc, addr: SocketAddr, key: ParticipantKey) {
        self.peers.push(Peer {
            name,
            rtc,
            addr,
            key,
            signals: Vec::new(),
            pending: None,
            received: Vec::new(),
            keyframe_requests: 0,
            closed: false,
            next_timeout: self.now,
        });
    }

    /// A signalling participant with a fresh `Rtc`.
    pub(super) fn join_signalling(&mut self, name: &'static str) -> usize {
        self.join(name, SessionKind::Signalling, None).0
    }

    /// Adds a sendonly video m-line and publishes it over signalling.
    pub(super) fn publish_video(&mut self, peer: usize) -> Mid {
        let (mid, offer, pending) = {
            let p = &mut self.peers[peer];
            let mut api = p.rtc.sdp_api();
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            let (offer, pending) = api.apply().expect("offer");
            (mid, offer, pending)
        };
        self.peers[peer].pending = Some(pending);
        let key = self.peers[peer].key;
        self.room.handle_message(
            self.now,
            key,
            ClientMessage::Publish(PublishRequest {
                mid: mid.to_string(),
                kind: TrackKind::Video,
                source: None,
                codecs: vec![],
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
        mid
    }

    /// Publishes a simulcast video m-line with the given rids.
    pub(super) fn publish_simulcast_video(&mut self, peer: usize, rids: &[&str]) -> Mid {
        let (mid, offer, pending) = {
            let p = &mut self.peers[peer];
            let mut api = p.rtc.sdp_api();
            let mut simulcast = str0m::media::Simulcast::new();
            for rid in rids {
                simulcast.send.push(str0m::media::SimulcastLayer::new(rid));
            }
            let mid = api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                None,
                None,
                Some(simulcast),
            );
            let (offer, pending) = api.apply().expect("offer");
            (mid, offer, pending)
        };
        self.peers[peer].pending = Some(pending);
        let key = self.peers[peer].key;
        self.room.handle_message(
            self.now,
            key,
            ClientMessage::Offer {
                sdp: offer.to_sdp_string(),
            },
        );
        self.pump();
        mid
    }

    /// One datagram from the room to the peer at `destination` (dropped
    /// there when `drop_downstream` says so).
    pub(super) fn deliver(&mut self, destination: SocketAddr, contents: &[u8]) {
        let Some(index) = self.peers.iter().position(|p| p.addr == destination) else {
            return;
        };
        if is_rtp(contents) {
            if let Some(drop) = self.drop_downstream.as_mut() {
                if drop(index, contents) {
                    self.dropped += 1;
                    return;
                }
            }
        }
        let peer = &mut self.peers[index];
        let Ok(contents) = contents.try_into() else {
            return;
        };
        if let Err(e) = peer.rtc.handle_input(Input::Receive(
            self.now,
            Receive {
                proto: Protocol::Udp,
                source: server_addr(),
                destination,
                contents,
            },
        )) {
            panic!("{} refused input: {e}", peer.name);
        }
        // str0m wants its output drained after every input.
        self.poll_peer(index);
    }

    /// Routes room outputs and peer outputs until both are quiet.
    pub(super) fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(output) = self.room.poll_output() {
                progressed = true;
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
                    RoomOutput::TrackPublished { track, .. } => {
                        self.lifecycle.push(format!("+{}", track.track_id));
                    }
                    RoomOutput::TrackUnpublished { track, .. } => {
                        self.lifecycle.push(format!("-{}", track.track_id));
                    }
                    RoomOutput::Tapped(packet) => self.tapped.push(packet),
                    RoomOutput::Left { user_id, .. } => {
                        self.lifecycle.push(format!("left {user_id}"));
                    }
                }
            }
            for index in 0..self.peers.len() {
                progressed |= self.poll_peer(index);
            }
            if !progressed {
                return;
            }
        }
        panic!("network did not quiesce");
    }

    pub(super) fn handle_signal(&mut self, index: usize, message: ServerMessage) {
        let key = self.peers[index].key;
        match &message {
            ServerMessage::Answer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
                let pending = self.peers[index]
                    .pending
                    .take()
                    .expect("an offer is pending");
                self.peers[index]
                    .rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("answer accepted");
            }
            ServerMessage::Offer { sdp } => {
                let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
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
        self.peers[index].signals.push(message);
    }

    pub(super) fn poll_peer(&mut self, index: usize) -> bool {
        let mut progressed = false;
        loop {
            let peer = &mut self.peers[index];
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    peer.next_timeout = at;
                    return progressed;
                }
                Ok(Output::Transmit(t)) => {
                    progressed = true;
                    let source = peer.addr;
                    let contents: Vec<u8> = t.contents.into();
                    if is_rtp(&contents) {
                        if let Some(drop) = self.drop_upstream.as_mut() {
                            if drop(index, &contents) {
                                self.dropped += 1;
                                continue;
                            }
                        }
                    }
                    self.room.handle_datagram(self.now, source, &contents);
                }
                Ok(Output::Event(event)) => {
                    progressed = true;
                    match event {
                        Event::RtpPacket(packet) => peer.received.push(ReceivedRtp {
                            ssrc: *packet.header.ssrc,
                            seq: *packet.seq_no,
                            payload: packet.payload.to_vec(),
                            twcc: packet.header.ext_vals.transport_cc.is_some(),
                        }),
                        Event::KeyframeRequest(_) => peer.keyframe_requests += 1,
                        Event::Closed => peer.closed = true,
                        _ => {}
                    }
                }
                Err(e) => panic!("{} failed: {e}", peer.name),
            }
        }
    }

    /// Advances simulated time by `step`, firing due timeouts.
    pub(super) fn advance(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        self.room.handle_timeout(now);
        for peer in &mut self.peers {
            if peer.next_timeout <= now {
                let _ = peer.rtc.handle_input(Input::Timeout(now));
            }
        }
        self.pump();
    }

    pub(super) fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.advance(Duration::from_millis(5));
        }
    }

    pub(super) fn connected(&self) -> bool {
        self.peers.iter().all(|p| p.rtc.is_connected())
    }

    pub(super) fn wait_connected(&mut self) {
        for _ in 0..2000 {
            if self.connected() {
                return;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("peers did not connect");
    }

    /// `frames` one-packet VP8 frames from `peer` on `mid` (sequence
    /// numbers from 1, the first a keyframe), one every `spacing`, then
    /// 200 ms for everything to arrive.
    pub(super) fn stream_vp8_frames(
        &mut self,
        peer: usize,
        mid: Mid,
        frames: u64,
        spacing: Duration,
    ) {
        self.stream_vp8_frames_numbered(peer, mid, 1..=frames, spacing);
    }

    /// Like [`Net::stream_vp8_frames`], with the sequence numbers `seqs`
    /// (the first frame a keyframe).
    pub(super) fn stream_vp8_frames_numbered(
        &mut self,
        peer: usize,
        mid: Mid,
        seqs: std::ops::RangeInclusive<u64>,
        spacing: Duration,
    ) {
        let first = *seqs.start();
        for seq in seqs {
            self.send_vp8(peer, mid, seq, seq == first, true);
            self.advance(spacing);
        }
        self.run_for(Duration::from_millis(200));
    }

    /// One VP8 frame of `packets` packets (1000-byte payloads, sequence
    /// numbers from `first_seq`) that `peer` sends at once: its timeout
    /// input, then all its datagrams handed to the room, whose outputs
    /// are left for the caller to drain.
    pub(super) fn send_vp8_burst(&mut self, peer: usize, mid: Mid, first_seq: u64, packets: u64) {
        let last = first_seq + packets - 1;
        for seq in first_seq..=last {
            self.write_vp8(peer, mid, None, seq, false, seq == last, 1000);
        }
        let now = self.now;
        self.peers[peer]
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("timeout");
        self.poll_peer(peer);
    }

    /// Writes one synthetic VP8 packet from `peer` on `mid`.
    pub(super) fn send_vp8(
        &mut self,
        peer: usize,
        mid: Mid,
        seq: u64,
        keyframe: bool,
        marker: bool,
    ) {
        self.write_vp8(peer, mid, None, seq, keyframe, marker, 200);
    }

    /// Writes one synthetic VP8 packet: a valid payload descriptor (S bit,
    /// key or delta header), the publisher's sequence number at bytes 5..13,
    /// the layer's first letter at byte 13 (`-` without simulcast), padded
    /// to `size` bytes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_vp8(
        &mut self,
        peer: usize,
        mid: Mid,
        rid: Option<&str>,
        seq: u64,
        keyframe: bool,
        marker: bool,
        size: usize,
    ) {
        let now = self.now;
        let p = &mut self.peers[peer];
        let pt = p
            .rtc
            .codec_config()
            .find(|c| c.spec().codec == Codec::Vp8)
            .expect("vp8 negotiated")
            .pt();
        let mut payload = vec![0x10, if keyframe { 0x00 } else { 0x01 }, 0x9d, 0x01, 0x2a];
        payload.extend_from_slice(&seq.to_be_bytes());
        payload.push(rid.map_or(b'-', |r| r.as_bytes()[0]));
        payload.resize(size, 0xAB);
        let mut api = p.rtc.direct_api();
        let stream = api
            .stream_tx_by_mid(mid, rid.map(Into::into))
            .expect("send stream");
        stream.write_rtp(
            RtpWrite::new(pt, seq.into(), (seq * 3000) as u32, now, payload)
                .marker(marker)
                .nackable(true),
        );
    }

    pub(super) fn peer_signals(&self, index: usize) -> &[ServerMessage] {
        &self.peers[index].signals
    }
}

/// The encoding name of the first payload type of `sdp`'s video m-line.
pub(super) fn first_video_codec(sdp: &str) -> String {
    let m_line = sdp
        .lines()
        .find(|l| l.starts_with("m=video"))
        .expect("video m-line");
    let pt = m_line
        .split(' ')
        .nth(3)
        .expect("a payload type")
        .to_string();
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("a=rtpmap:{pt} ")))
        .and_then(|e| e.split('/').next())
        .expect("rtpmap")
        .to_string()
}

pub(super) fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (128..=191).contains(&datagram[0]) && !(192..=223).contains(&datagram[1])
}

/// The payloads' embedded publisher sequence numbers, in arrival order.
pub(super) fn embedded_seqs(received: &[ReceivedRtp]) -> Vec<u64> {
    received
        .iter()
        .filter(|r| r.payload.len() >= 13)
        .map(|r| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&r.payload[5..13]);
            u64::from_be_bytes(bytes)
        })
        .collect()
}

/// A publisher and two subscribers, connected, with the publisher's mid.
pub(super) fn publisher_and_two_subscribers() -> (Net, Mid) {
    publisher_and_two_subscribers_with(RoomConfig::new(server_addr()))
}

/// The same in a room with `config`.
pub(super) fn publisher_and_two_subscribers_with(config: RoomConfig) -> (Net, Mid) {
    let mut net = Net::with_config(config);
    let publisher = net.join_signalling("alice");
    net.join_signalling("bob");
    net.join_signalling("carol");
    let mid = net.publish_video(publisher);
    net.wait_connected();
    // Let subscription offers settle.
    net.run_for(Duration::from_millis(200));
    (net, mid)
}
