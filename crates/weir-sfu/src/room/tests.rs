//! Scenario tests: str0m peers and a [`Room`] connected over a simulated
//! network in memory, driven faster than real time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use weir_protocol::{ClientMessage, Grant, LeaveReason, PublishRequest, ServerMessage, TrackKind};

use super::*;

const SERVER: &str = "10.0.0.1:7882";

/// One simulated client.
struct Peer {
    name: &'static str,
    rtc: Rtc,
    addr: SocketAddr,
    key: ParticipantKey,
    signals: Vec<ServerMessage>,
    pending: Option<SdpPendingOffer>,
    received: Vec<ReceivedRtp>,
    keyframe_requests: usize,
    next_timeout: Instant,
}

#[derive(Debug, Clone)]
struct ReceivedRtp {
    ssrc: u32,
    seq: u64,
    payload: Vec<u8>,
}

/// Decides, per (peer index, datagram), whether the link drops it.
type DropRule = Box<dyn FnMut(usize, &[u8]) -> bool>;

struct Net {
    now: Instant,
    room: Room,
    peers: Vec<Peer>,
    /// Drops room -> peer RTP when it returns true (peer index, datagram).
    drop_downstream: Option<DropRule>,
    dropped: usize,
}

fn server_addr() -> SocketAddr {
    SERVER.parse().expect("valid address")
}

impl Net {
    fn new() -> Net {
        crate::install_crypto();
        let now = Instant::now();
        Net {
            now,
            room: Room::new("test", RoomConfig::new(server_addr()), now),
            peers: Vec::new(),
            drop_downstream: None,
            dropped: 0,
        }
    }

    fn join(
        &mut self,
        name: &'static str,
        kind: SessionKind,
        offer: Option<String>,
    ) -> (usize, Joined) {
        let index = self.peers.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", index + 1).parse().expect("addr");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(self.now);
        let candidate = Candidate::host(addr, "udp").expect("candidate");
        rtc.add_local_candidate(candidate);
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
        self.peers.push(Peer {
            name,
            rtc,
            addr,
            key: joined.key,
            signals: Vec::new(),
            pending: None,
            received: Vec::new(),
            keyframe_requests: 0,
            next_timeout: self.now,
        });
        (index, joined)
    }

    /// A signalling participant with a fresh `Rtc`.
    fn join_signalling(&mut self, name: &'static str) -> usize {
        self.join(name, SessionKind::Signalling, None).0
    }

    /// Adds a sendonly video m-line and publishes it over signalling.
    fn publish_video(&mut self, peer: usize) -> Mid {
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

    /// Routes room outputs and peer outputs until both are quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(output) = self.room.poll_output() {
                progressed = true;
                match output {
                    RoomOutput::Transmit {
                        destination,
                        contents,
                    } => {
                        let Some(index) = self.peers.iter().position(|p| p.addr == destination)
                        else {
                            continue;
                        };
                        if is_rtp(&contents) {
                            if let Some(drop) = self.drop_downstream.as_mut() {
                                if drop(index, &contents) {
                                    self.dropped += 1;
                                    continue;
                                }
                            }
                        }
                        let peer = &mut self.peers[index];
                        let Ok(contents) = contents.as_slice().try_into() else {
                            continue;
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
                    RoomOutput::Signal { to, message } => {
                        if let Some(index) = self.peers.iter().position(|p| p.key == to) {
                            self.handle_signal(index, message);
                        }
                    }
                    RoomOutput::Left { .. } => {}
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

    fn handle_signal(&mut self, index: usize, message: ServerMessage) {
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

    fn poll_peer(&mut self, index: usize) -> bool {
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
                    self.room.handle_datagram(self.now, source, &contents);
                }
                Ok(Output::Event(event)) => {
                    progressed = true;
                    match event {
                        Event::RtpPacket(packet) => peer.received.push(ReceivedRtp {
                            ssrc: *packet.header.ssrc,
                            seq: *packet.seq_no,
                            payload: packet.payload.to_vec(),
                        }),
                        Event::KeyframeRequest(_) => peer.keyframe_requests += 1,
                        _ => {}
                    }
                }
                Err(e) => panic!("{} failed: {e}", peer.name),
            }
        }
    }

    /// Advances simulated time by `step`, firing due timeouts.
    fn advance(&mut self, step: Duration) {
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

    fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.advance(Duration::from_millis(5));
        }
    }

    fn connected(&self) -> bool {
        self.peers.iter().all(|p| p.rtc.is_connected())
    }

    fn wait_connected(&mut self) {
        for _ in 0..2000 {
            if self.connected() {
                return;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("peers did not connect");
    }

    /// Writes one synthetic VP8 packet from `peer` on `mid`.
    fn send_vp8(&mut self, peer: usize, mid: Mid, seq: u64, keyframe: bool, marker: bool) {
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
        payload.resize(200, 0xAB);
        let mut api = p.rtc.direct_api();
        let stream = api.stream_tx_by_mid(mid, None).expect("send stream");
        stream.write_rtp(
            RtpWrite::new(pt, seq.into(), (seq * 3000) as u32, now, payload)
                .marker(marker)
                .nackable(true),
        );
    }

    fn peer_signals(&self, index: usize) -> &[ServerMessage] {
        &self.peers[index].signals
    }
}

fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (128..=191).contains(&datagram[0]) && !(192..=223).contains(&datagram[1])
}

/// The payloads' embedded publisher sequence numbers, in arrival order.
fn embedded_seqs(received: &[ReceivedRtp]) -> Vec<u64> {
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
fn publisher_and_two_subscribers() -> (Net, Mid) {
    let mut net = Net::new();
    let publisher = net.join_signalling("alice");
    net.join_signalling("bob");
    net.join_signalling("carol");
    let mid = net.publish_video(publisher);
    net.wait_connected();
    // Let subscription offers settle.
    net.run_for(Duration::from_millis(200));
    (net, mid)
}

#[test]
fn join_lists_existing_participants_and_announces_newcomers() {
    let mut net = Net::new();
    let a = net.join_signalling("alice");
    let b = net.join_signalling("bob");
    net.pump();
    match &net.peer_signals(b)[0] {
        ServerMessage::Joined { participants, .. } => {
            assert_eq!(participants.len(), 1);
            assert_eq!(participants[0].user_id, "alice");
        }
        other => panic!("expected joined, got {other:?}"),
    }
    assert!(net.peer_signals(a).iter().any(
        |m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.user_id == "bob")
    ));
    let key = net.peers[b].key;
    net.room.leave(net.now, key, LeaveReason::ClientLeft);
    net.pump();
    assert!(net.peer_signals(a).iter().any(|m| matches!(
        m,
        ServerMessage::ParticipantLeft { user_id, reason: LeaveReason::ClientLeft, .. } if user_id == "bob"
    )));
    assert_eq!(net.room.participant_count(), 1);
}

#[test]
fn forwards_every_packet_in_order_with_continuous_rewritten_sequence() {
    let (mut net, mid) = publisher_and_two_subscribers();
    let publisher_ssrc: Vec<Ssrc> = {
        let mut api = net.peers[0].rtc.direct_api();
        api.stream_tx_by_mid(mid, None)
            .map(|s| s.ssrc())
            .into_iter()
            .collect()
    };
    for seq in 1..=300u64 {
        let keyframe = seq == 1;
        net.send_vp8(0, mid, seq, keyframe, seq % 3 == 0);
        net.advance(Duration::from_millis(11));
    }
    net.run_for(Duration::from_millis(300));
    for subscriber in [1, 2] {
        let received = &net.peers[subscriber].received;
        assert_eq!(
            embedded_seqs(received),
            (1..=300).collect::<Vec<_>>(),
            "subscriber {subscriber}"
        );
        for pair in received.windows(2) {
            assert_eq!(
                pair[1].seq,
                pair[0].seq + 1,
                "continuous rewritten sequence"
            );
        }
        assert!(received
            .iter()
            .all(|r| !publisher_ssrc.iter().any(|s| **s == r.ssrc)));
        let ssrcs: HashSet<u32> = received.iter().map(|r| r.ssrc).collect();
        assert_eq!(ssrcs.len(), 1, "one SSRC per subscribed track");
    }
    // RTCP receiver reports fed the link statistics both ways.
    net.run_for(Duration::from_secs(3));
    let snapshots = net.room.track_snapshots();
    assert_eq!(snapshots.len(), 1);
    let ingress = &snapshots[0].ingress;
    assert!(
        ingress.iter().any(|(_, s)| s.packets >= 300),
        "ingress stats: {ingress:?}"
    );
    assert_eq!(snapshots[0].subscribers.len(), 2);
    for (subscriber, egress) in &snapshots[0].subscribers {
        let egress = egress.as_ref().expect("egress stats reported");
        assert!(egress.packets >= 300, "{subscriber}: {egress:?}");
        assert!(
            egress.rtt.is_some(),
            "{subscriber}: RTT from receiver reports"
        );
    }
    // The two subscribers' streams are independent (own SSRCs).
    assert_ne!(net.peers[1].received[0].ssrc, net.peers[2].received[0].ssrc);
    assert_eq!(net.room.counters().rtp_forwarded, 600);
}

#[test]
fn video_starts_at_a_keyframe_and_asks_the_publisher_for_one() {
    let (mut net, mid) = publisher_and_two_subscribers();
    let before = net.peers[0].keyframe_requests;
    for seq in 1..=20u64 {
        net.send_vp8(0, mid, seq, seq == 10, true);
        net.advance(Duration::from_millis(33));
    }
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        embedded_seqs(&net.peers[1].received),
        (10..=20).collect::<Vec<_>>()
    );
    assert!(
        net.peers[0].keyframe_requests > before,
        "publisher was asked for a keyframe"
    );
}

#[test]
fn keyframe_requests_from_many_subscribers_are_merged() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.send_vp8(0, mid, 1, true, true);
    net.run_for(Duration::from_millis(600));
    let before = net.peers[0].keyframe_requests;
    // Both subscribers request keyframes 10 times each within 100 ms.
    for _ in 0..10 {
        for subscriber in [1, 2] {
            let ssrc = net.peers[subscriber]
                .received
                .last()
                .map(|r| r.ssrc)
                .expect("received");
            let mut api = net.peers[subscriber].rtc.direct_api();
            if let Some(stream) = api.stream_rx(&ssrc.into()) {
                stream.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(50));
    let forwarded = net.peers[0].keyframe_requests - before;
    assert!(forwarded >= 1, "at least one request reaches the publisher");
    assert!(
        forwarded <= 2,
        "20 requests within 150 ms merge into at most 2, got {forwarded}"
    );
    assert!(net.room.counters().keyframe_requests_merged >= 10);
}

#[test]
fn nack_recovers_packets_dropped_toward_one_subscriber() {
    let (mut net, mid) = publisher_and_two_subscribers();
    // Drop every 20th RTP packet (5%) toward subscriber 1 only.
    let mut counter = 0usize;
    net.drop_downstream = Some(Box::new(move |peer, _| {
        if peer != 1 {
            return false;
        }
        counter += 1;
        counter.is_multiple_of(20)
    }));
    for seq in 1..=400u64 {
        net.send_vp8(0, mid, seq, seq == 1, seq % 4 == 0);
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_secs(1));
    assert!(
        net.dropped >= 15,
        "the lossy link dropped packets ({})",
        net.dropped
    );
    let mut got: Vec<u64> = embedded_seqs(&net.peers[1].received);
    got.sort_unstable();
    got.dedup();
    let recovered = got.len() as f64 / 400.0;
    assert!(
        recovered >= 0.99,
        "NACK recovery delivered {:.1}% of packets",
        recovered * 100.0
    );
    // The lossless subscriber saw no loss at all.
    assert_eq!(embedded_seqs(&net.peers[2].received).len(), 400);
}

#[test]
fn whep_viewer_stream_stays_continuous_when_the_publisher_reconnects() {
    let mut net = Net::new();
    // First publisher session (over WHIP): offer from a str0m peer.
    let publisher_offer = |net: &mut Net| {
        let index = net.peers.len();
        let addr: SocketAddr = format!("10.0.1.{}:5000", index + 1).parse().expect("addr");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(net.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        (rtc, addr, mid, offer.to_sdp_string(), pending)
    };
    let (rtc, addr, mid, sdp, pending) = publisher_offer(&mut net);
    let whip = net
        .room
        .join(
            net.now,
            JoinRequest {
                user_id: "cam".into(),
                grants: vec![Grant::Publish],
                kind: SessionKind::Whip,
                auto_subscribe: false,
                offer: Some(sdp),
                wall_clock_ms: 0,
            },
        )
        .expect("whip join");
    let mut rtc = rtc;
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&whip.answer.clone().expect("answer")).expect("parses"),
        )
        .expect("accepted");
    net.peers.push(Peer {
        name: "cam",
        rtc,
        addr,
        key: whip.key,
        signals: vec![],
        pending: None,
        received: vec![],
        keyframe_requests: 0,
        next_timeout: net.now,
    });
    net.pump();

    // The viewer (WHEP) offers to receive video.
    let viewer_addr: SocketAddr = "10.0.1.50:5000".parse().expect("addr");
    let mut viewer = Rtc::builder().set_rtp_mode(true).build(net.now);
    viewer.add_local_candidate(Candidate::host(viewer_addr, "udp").expect("candidate"));
    let mut api = viewer.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let whep = net
        .room
        .join(
            net.now,
            JoinRequest {
                user_id: "viewer".into(),
                grants: vec![Grant::Subscribe],
                kind: SessionKind::Whep { publisher: None },
                auto_subscribe: false,
                offer: Some(offer.to_sdp_string()),
                wall_clock_ms: 0,
            },
        )
        .expect("whep join");
    viewer
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&whep.answer.clone().expect("answer")).expect("parses"),
        )
        .expect("accepted");
    net.peers.push(Peer {
        name: "viewer",
        rtc: viewer,
        addr: viewer_addr,
        key: whep.key,
        signals: vec![],
        pending: None,
        received: vec![],
        keyframe_requests: 0,
        next_timeout: net.now,
    });
    net.wait_connected();
    for seq in 1..=50u64 {
        net.send_vp8(0, mid, seq, seq == 1, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    assert_eq!(embedded_seqs(&net.peers[1].received).len(), 50);

    // The camera reconnects: a new WHIP session of the same user.
    let old_key = net.peers[0].key;
    net.room.leave(net.now, old_key, LeaveReason::Disconnected);
    net.pump();
    let (rtc, addr, mid2, sdp, pending) = publisher_offer(&mut net);
    let whip2 = net
        .room
        .join(
            net.now,
            JoinRequest {
                user_id: "cam".into(),
                grants: vec![Grant::Publish],
                kind: SessionKind::Whip,
                auto_subscribe: false,
                offer: Some(sdp),
                wall_clock_ms: 0,
            },
        )
        .expect("second whip join");
    let mut rtc = rtc;
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&whip2.answer.clone().expect("answer")).expect("parses"),
        )
        .expect("accepted");
    net.peers[0] = Peer {
        name: "cam2",
        rtc,
        addr,
        key: whip2.key,
        signals: vec![],
        pending: None,
        received: vec![],
        keyframe_requests: 0,
        next_timeout: net.now,
    };
    net.wait_connected();
    for seq in 1000..1050u64 {
        net.send_vp8(0, mid2, seq, seq == 1000, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(300));
    let received = &net.peers[1].received;
    assert_eq!(
        embedded_seqs(received).len(),
        100,
        "both sessions' packets arrive"
    );
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "continuous across the reconnect"
        );
    }
    let ssrcs: HashSet<u32> = received.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "the viewer keeps one SSRC");
}

#[test]
fn malformed_datagrams_are_counted_and_never_panic() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    let source: SocketAddr = "10.9.9.9:1234".parse().expect("addr");
    let samples: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0x80],
        vec![0x80, 0x60, 0, 1],
        vec![0x80; 12],
        vec![0x16, 0xfe, 0xfd, 0, 0],
        vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42],
        vec![0xff; 1500],
        (0..=255).collect(),
    ];
    for datagram in &samples {
        assert!(!net.room.handle_datagram(net.now, source, datagram));
    }
    // The same garbage from a connected peer's address reaches its Rtc,
    // which refuses it without failing the session.
    let peer = net.peers[1].addr;
    for datagram in &samples {
        net.room.handle_datagram(net.now, peer, datagram);
    }
    net.pump();
    assert_eq!(net.room.participant_count(), 3);
    let counters = net.room.counters();
    assert!(counters.datagrams_malformed + counters.datagrams_unmatched >= samples.len() as u64);
}

#[test]
fn subscribe_only_participant_cannot_publish() {
    let mut net = Net::new();
    let index = net.peers.len();
    let addr: SocketAddr = format!("10.0.1.{}:5000", index + 1).parse().expect("addr");
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(net.now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let joined = net
        .room
        .join(
            net.now,
            JoinRequest {
                user_id: "viewer".into(),
                grants: vec![Grant::Subscribe],
                kind: SessionKind::Signalling,
                auto_subscribe: true,
                offer: None,
                wall_clock_ms: 0,
            },
        )
        .expect("joined");
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("offer");
    net.room.handle_message(
        net.now,
        joined.key,
        ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
        },
    );
    let mut refused = false;
    while let Some(output) = net.room.poll_output() {
        if let RoomOutput::Signal {
            message: ServerMessage::Error { code, .. },
            ..
        } = output
        {
            refused |= code == weir_protocol::ErrorCode::PermissionDenied;
        }
    }
    assert!(refused, "publishing without the grant is refused");
}

#[test]
fn unsubscribed_lines_are_parked_and_reused_with_continuous_numbering() {
    let (mut net, mid) = publisher_and_two_subscribers();
    for seq in 1..=30u64 {
        net.send_vp8(0, mid, seq, seq == 1, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    let track_id = net.peer_signals(1).iter().find_map(|m| match m {
        ServerMessage::Subscribed { track_id, mid } => Some((track_id.clone(), mid.clone())),
        _ => None,
    });
    let (track_id, first_mid) = track_id.expect("subscribed");
    let key = net.peers[1].key;
    net.room.handle_message(
        net.now,
        key,
        ClientMessage::Unsubscribe {
            track_id: track_id.clone(),
        },
    );
    net.run_for(Duration::from_millis(100));
    assert!(net
        .peer_signals(1)
        .iter()
        .any(|m| matches!(m, ServerMessage::Unsubscribed { track_id: t } if *t == track_id)));
    let before = net.peers[1].received.len();
    for seq in 31..=40u64 {
        net.send_vp8(0, mid, seq, false, true);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(
        net.peers[1].received.len(),
        before,
        "nothing arrives while unsubscribed"
    );

    net.room.handle_message(
        net.now,
        key,
        ClientMessage::Subscribe {
            track_id: track_id.clone(),
        },
    );
    net.run_for(Duration::from_millis(100));
    let resubscribed_mid = net
        .peer_signals(1)
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Subscribed { mid, .. } => Some(mid.clone()),
            _ => None,
        })
        .expect("subscribed again");
    assert_eq!(resubscribed_mid, first_mid, "the parked m-line is reused");
    for seq in 41..=60u64 {
        net.send_vp8(0, mid, seq, seq == 41, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    let received = &net.peers[1].received;
    assert!(received.len() > before, "media flows again");
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "numbering continues across the pause"
        );
    }
}

#[test]
fn an_answer_without_a_bundle_group_is_accepted() {
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=inactive\r\na=rtpmap:96 VP8/90000\r\n";
    let fixed = with_bundle_group(sdp);
    assert!(
        fixed.contains("t=0 0\r\na=group:BUNDLE\r\nm=video"),
        "{fixed}"
    );
    assert_eq!(with_bundle_group(&fixed), fixed, "idempotent");
}
