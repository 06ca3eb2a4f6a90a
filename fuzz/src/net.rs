//! A room and str0m client peers over a simulated network in memory (like
//! `weir-sfu`'s scenario tests), for the `room` target: the peers do real
//! ICE and DTLS-SRTP with the room, so that fuzzed RTP reaches the media
//! path decrypted. Also the UDP reader's routing (`serve/udp.rs`): a
//! datagram from a new address reaches the room only when it is a STUN
//! Binding request for one of the room's ICE ufrags.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use weir_protocol::Grant;
use weir_sfu::stun::binding_request_server_ufrag;
use weir_sfu::{JoinRequest, ParticipantKey, Room, RoomConfig, RoomOutput, SessionKind};

pub const SERVER: &str = "10.0.0.1:7882";

pub fn server_addr() -> SocketAddr {
    SERVER.parse().expect("valid address")
}

/// The server's configuration, with one DTLS certificate made once.
pub fn room_config() -> RoomConfig {
    static CONFIG: OnceLock<RoomConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            weir_sfu::install_crypto();
            RoomConfig::new(server_addr()).with_generated_dtls_cert()
        })
        .clone()
}

fn client_cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        weir_sfu::install_crypto();
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("a certificate")
    })
    .clone()
}

/// A client `Rtc` (full ICE, RTP mode) with a host candidate at `addr`.
pub fn client_rtc(now: Instant, addr: SocketAddr) -> Rtc {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .set_dtls_cert(client_cert())
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .enable_vp9(true)
        .enable_av1(true)
        .build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    rtc
}

pub struct Peer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub key: ParticipantKey,
    pub user: String,
    /// Sending m-lines (publishers): mid, kind, payload types of the answer.
    pub send: Vec<(Mid, MediaKind, Vec<u8>)>,
    /// Receiving m-lines (viewers).
    pub recv: Vec<Mid>,
    pub received: Vec<Vec<u8>>,
    pub next_timeout: Instant,
    pub gone: bool,
}

pub struct Net {
    pub now: Instant,
    pub room: Room,
    pub peers: Vec<Peer>,
    /// Every address that sent the room a datagram: the room may send only
    /// to these.
    pub sources: HashSet<SocketAddr>,
    /// The UDP reader's routes (address -> admitted).
    pub routes: HashSet<SocketAddr>,
    /// ICE ufrags of the room's participants (the registry's view).
    pub ufrags: HashMap<String, ParticipantKey>,
    /// Every RTP payload a publisher wrote.
    pub written: HashSet<Vec<u8>>,
    /// Track ids announced by the room, in order.
    pub tracks: Vec<String>,
    pub tapped: usize,
    pub users: Vec<String>,
}

/// The payload types of each m-line of `sdp`, by mid.
pub fn payload_types(sdp: &str) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut pts: Vec<u8> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            pts = rest
                .split(' ')
                .skip(3)
                .filter_map(|p| p.parse().ok())
                .collect();
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            out.insert(mid.to_string(), pts.clone());
        }
    }
    out
}

impl Net {
    pub fn new() -> Net {
        let config = room_config();
        let now = Instant::now();
        Net {
            now,
            room: Room::new("fuzz", config, now),
            peers: Vec::new(),
            sources: HashSet::new(),
            routes: HashSet::new(),
            ufrags: HashMap::new(),
            written: HashSet::new(),
            tracks: Vec::new(),
            tapped: 0,
            users: Vec::new(),
        }
    }

    fn join(
        &mut self,
        user: &str,
        kind: SessionKind,
        offer: Option<String>,
    ) -> Option<weir_sfu::Joined> {
        let joined = self
            .room
            .join(
                self.now,
                JoinRequest {
                    user_id: user.to_string(),
                    grants: Grant::ALL.to_vec(),
                    kind,
                    auto_subscribe: true,
                    offer,
                    wall_clock_ms: 0,
                },
            )
            .ok()?;
        self.ufrags.insert(joined.ice_ufrag.clone(), joined.key);
        self.users.push(user.to_string());
        Some(joined)
    }

    /// A signalling participant without a peer (it gets the room's
    /// messages; its own messages come from the fuzz input).
    pub fn join_signalling(&mut self, user: &str) -> Option<ParticipantKey> {
        self.join(user, SessionKind::Signalling, None)
            .map(|j| j.key)
    }

    /// A WHIP publisher (audio and video) or WHEP viewer with a peer.
    pub fn join_http(&mut self, user: &str, publisher: bool) -> Option<usize> {
        let addr: SocketAddr = format!("10.0.2.{}:5000", self.peers.len() + 1)
            .parse()
            .expect("addr");
        let mut rtc = client_rtc(self.now, addr);
        let direction = if publisher {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, direction, None, None, None);
        let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, pending): (_, SdpPendingOffer) = api.apply().expect("an offer");
        let kind = if publisher {
            SessionKind::Whip
        } else {
            SessionKind::Whep { publisher: None }
        };
        let joined = self.join(user, kind, Some(offer.to_sdp_string()))?;
        let answer = joined.answer.expect("an SDP answer");
        rtc.sdp_api()
            .accept_answer(
                pending,
                SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
            )
            .expect("answer accepted");
        let pts = payload_types(&answer);
        let pts_of = |mid: Mid| pts.get(&mid.to_string()).cloned().unwrap_or_default();
        let (send, recv) = if publisher {
            (
                vec![
                    (video, MediaKind::Video, pts_of(video)),
                    (audio, MediaKind::Audio, pts_of(audio)),
                ],
                vec![],
            )
        } else {
            (vec![], vec![video, audio])
        };
        self.peers.push(Peer {
            rtc,
            addr,
            key: joined.key,
            user: user.to_string(),
            send,
            recv,
            received: Vec::new(),
            next_timeout: self.now,
            gone: false,
        });
        self.pump();
        Some(self.peers.len() - 1)
    }

    /// A datagram arrives on the media socket from `source`: routed as the
    /// UDP reader routes it, then handed to the room.
    pub fn datagram(&mut self, source: SocketAddr, contents: &[u8]) {
        if !self.routes.contains(&source) {
            let Some(ufrag) = binding_request_server_ufrag(contents) else {
                return;
            };
            if !self.ufrags.contains_key(ufrag) {
                return;
            }
            self.routes.insert(source);
        }
        self.sources.insert(source);
        self.room.handle_datagram(self.now, source, contents);
    }

    /// Routes room and peer outputs until both are quiet.
    pub fn pump(&mut self) {
        for _ in 0..2_000 {
            let mut progressed = false;
            while let Some(output) = self.room.poll_output() {
                progressed = true;
                match output {
                    RoomOutput::Transmit {
                        destination,
                        datagrams,
                    } => {
                        assert!(
                            self.sources.contains(&destination),
                            "the room sent to {destination}, which never sent it anything"
                        );
                        let Some(index) = self.peers.iter().position(|p| p.addr == destination)
                        else {
                            continue;
                        };
                        let now = self.now;
                        for datagram in datagrams.iter() {
                            let Ok(contents) = datagram.try_into() else {
                                continue;
                            };
                            let _ = self.peers[index].rtc.handle_input(Input::Receive(
                                now,
                                Receive {
                                    proto: Protocol::Udp,
                                    source: server_addr(),
                                    destination,
                                    contents,
                                },
                            ));
                            // str0m wants its output drained after every input.
                            self.poll_peer(index);
                        }
                    }
                    RoomOutput::TrackPublished { track, .. } => {
                        self.tracks.push(track.track_id.to_string());
                    }
                    RoomOutput::Tapped(packet) => {
                        assert!(
                            self.written.contains(packet.payload.as_ref()),
                            "a tapped payload was never published"
                        );
                        self.tapped += 1;
                    }
                    RoomOutput::Left { key, .. } => {
                        for peer in self.peers.iter_mut().filter(|p| p.key == key) {
                            peer.gone = true;
                        }
                        self.ufrags.retain(|_, k| *k != key);
                    }
                    RoomOutput::Signal { .. } | RoomOutput::TrackUnpublished { .. } => {}
                }
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

    fn poll_peer(&mut self, index: usize) -> bool {
        let mut progressed = false;
        for _ in 0..10_000 {
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
                    self.datagram(source, &contents);
                }
                Ok(Output::Event(event)) => {
                    progressed = true;
                    if let Event::RtpPacket(packet) = event {
                        assert!(
                            packet.payload.is_empty()
                                || self.written.contains(packet.payload.as_ref()),
                            "a viewer received a payload no publisher sent"
                        );
                        self.peers[index].received.push(packet.payload.to_vec());
                    }
                }
                Err(_) => {
                    peer.gone = true;
                    return progressed;
                }
            }
        }
        progressed
    }

    /// Advances simulated time by `step`, firing due timeouts.
    pub fn advance(&mut self, step: Duration) {
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

    pub fn connected(&self) -> bool {
        self.peers.iter().all(|p| p.rtc.is_connected())
    }

    pub fn wait_connected(&mut self) -> bool {
        for _ in 0..400 {
            if self.connected() {
                return true;
            }
            self.advance(Duration::from_millis(5));
        }
        false
    }

    /// Writes one RTP packet from publisher `index` on its `line`-th
    /// m-line with its `pt_index`-th payload type.
    #[allow(clippy::too_many_arguments)]
    pub fn write_rtp(
        &mut self,
        index: usize,
        line: usize,
        pt_index: usize,
        seq: u64,
        timestamp: u32,
        marker: bool,
        payload: Vec<u8>,
    ) {
        let now = self.now;
        let peer = &mut self.peers[index];
        if peer.send.is_empty() || peer.gone {
            return;
        }
        let (mid, _, pts) = &peer.send[line % peer.send.len()];
        let Some(&pt) = pts.get(pt_index % pts.len().max(1)) else {
            return;
        };
        self.written.insert(payload.clone());
        let mut api = peer.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(*mid, None) else {
            return;
        };
        stream.write_rtp(
            str0m::rtp::RtpWrite::new(pt.into(), seq.into(), timestamp, now, payload)
                .marker(marker)
                .nackable(true),
        );
        self.poll_peer(index);
        self.pump();
    }

    /// A viewer asks for a keyframe on its `line`-th m-line (PLI or FIR).
    pub fn request_keyframe(&mut self, index: usize, line: usize, fir: bool) {
        let peer = &mut self.peers[index];
        if peer.recv.is_empty() {
            return;
        }
        let mid = peer.recv[line % peer.recv.len()];
        let mut api = peer.rtc.direct_api();
        if let Some(stream) = api.stream_rx_by_mid(mid, None) {
            stream.request_keyframe(if fir {
                str0m::media::KeyframeRequestKind::Fir
            } else {
                str0m::media::KeyframeRequestKind::Pli
            });
        }
        self.poll_peer(index);
        self.pump();
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}
