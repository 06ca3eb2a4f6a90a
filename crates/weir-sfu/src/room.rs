//! The room: every participant's `Rtc`, and the forwarding between them.
//!
//! Sans-IO: the owner (one task per room in the server) feeds datagrams,
//! signalling messages and timeouts in, each with `now`, and drains
//! [`RoomOutput`]s: datagrams to send, messages for participants, and
//! departures. The room never reads the clock or touches a socket.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Rtc};
use tracing::{debug, info, warn};
use weir_protocol::{
    ErrorCode, Grant, LeaveReason, ParticipantId, ParticipantInfo, ServerMessage, TrackInfo,
};

use crate::config::RoomConfig;
use crate::counters::RoomCounters;
use crate::datagrams::{LocalSpares, SpareBuffers};
use crate::link_stats::LinkStats;
use crate::participant::{Participant, ParticipantKey, SessionKind};
use crate::track::{PublishedTrack, TrackKey};
use crate::Datagrams;

pub mod admin;
mod drive;
mod forwarding;
mod membership;
mod negotiation;
pub mod own_egress;
mod publication;
mod sdp;
mod signalling;
#[cfg(test)]
mod tests;
mod timers;

/// What the room asks its owner to do.
#[derive(Debug)]
pub enum RoomOutput {
    /// Send UDP datagrams, in order, from the shared media socket (one
    /// str0m output, or a subscriber's packets of one pass sealed by Weir).
    /// Once sent, the buffer may go back to the room
    /// ([`Room::give_back_buffer`]).
    Transmit {
        destination: SocketAddr,
        datagrams: Datagrams,
    },
    /// Send a signalling message to a participant.
    Signal {
        to: ParticipantKey,
        message: ServerMessage,
    },
    /// A track was published (for the owner's bookkeeping: event
    /// callbacks, the recorder).
    TrackPublished {
        owner: ParticipantKey,
        track: TrackInfo,
    },
    /// A track was unpublished (by its owner, a revoked grant, or the
    /// owner leaving: then before [`RoomOutput::Left`]).
    TrackUnpublished {
        owner: ParticipantKey,
        track: TrackInfo,
    },
    /// A packet of a track whose recorder tap is on ([`Room::set_tap`]).
    Tapped(crate::tap::TappedPacket),
    /// A participant has left (or was removed); close its session.
    Left {
        key: ParticipantKey,
        participant_id: ParticipantId,
        user_id: String,
        reason: LeaveReason,
    },
}

/// A published track and how its media flows (see [`Room::track_snapshots`]).
#[derive(Debug, Clone)]
pub struct TrackSnapshot {
    pub info: TrackInfo,
    /// Per simulcast layer (`None` for a single-layer stream).
    pub ingress: Vec<(Option<String>, LinkStats)>,
    /// Each subscriber and what it last reported receiving.
    pub subscribers: Vec<(ParticipantId, Option<LinkStats>)>,
}

/// A request to join the room, after the token was verified.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub user_id: String,
    pub grants: Vec<Grant>,
    pub kind: SessionKind,
    pub auto_subscribe: bool,
    /// For WHIP/WHEP: the client's SDP offer.
    pub offer: Option<String>,
    /// Milliseconds since the Unix epoch (for `joined_at_ms`).
    pub wall_clock_ms: u64,
}

/// A participant accepted into the room.
#[derive(Debug, Clone)]
pub struct Joined {
    pub key: ParticipantKey,
    pub participant_id: ParticipantId,
    pub ice_ufrag: String,
    /// For WHIP/WHEP: the SDP answer.
    pub answer: Option<String>,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the room is full ({0} participants)")]
    RoomFull(u32),
    #[error("invalid SDP offer: {0}")]
    SdpInvalid(String),
    #[error("the token does not grant `{0}`")]
    PermissionDenied(&'static str),
    #[error("no publisher to subscribe to: {0}")]
    NoPublisher(String),
    #[error("could not set up the connection: {0}")]
    Internal(String),
}

impl JoinError {
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::RoomFull(_) => ErrorCode::RoomFull,
            JoinError::SdpInvalid(_) => ErrorCode::SdpInvalid,
            JoinError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            JoinError::NoPublisher(_) => ErrorCode::NotFound,
            JoinError::Internal(_) => ErrorCode::Internal,
        }
    }
}

pub use timers::{LAZY_TIMER_GRID, TIMER_GRID};

/// One room's media core.
pub struct Room {
    name: String,
    config: RoomConfig,
    /// Boxed (and a participant's `Rtc`, ~10 KiB, boxed inside it): the
    /// table holds pointers, not its spare capacity of participants (nor
    /// moves them when it grows). Keyed by room-local ids the room assigns (no untrusted input), so
    /// hashed with rustc-hash's Fx, not SipHash: a lookup per subscriber
    /// per forwarded packet.
    participants: FxHashMap<ParticipantKey, Box<Participant>>,
    /// Join order, for "the first publisher" and stable listings.
    join_order: Vec<ParticipantKey>,
    tracks: FxHashMap<TrackKey, PublishedTrack>,
    /// Track publication order.
    track_order: Vec<TrackKey>,
    routes: HashMap<SocketAddr, ParticipantKey>,
    outputs: VecDeque<RoomOutput>,
    /// Publishers' packets waiting for the fan-out (`room/forwarding.rs`).
    routed: Vec<forwarding::RoutedPacket>,
    /// Buffers of sent [`RoomOutput::Transmit`]s the owner gave back
    /// ([`Room::give_back_buffer`]), for subscribers' next sealed packets.
    spare_buffers: LocalSpares,
    /// Where the grid of [`TIMER_GRID`] starts.
    timer_epoch: Instant,
    next_key: u64,
    counters: RoomCounters,
    /// The `now` of the latest input, for work triggered without one.
    last_now: Instant,
    /// Inputs were handled but the participants they affected were not
    /// driven yet: that happens once, when the owner next drains outputs
    /// (so a burst of datagrams costs each subscriber one pass).
    drive_pending: bool,
    /// Where a drive in progress is (see `room/drive.rs`).
    drive: drive::DriveProgress,
    /// A video codec new publications are asked to send (e.g. `H264` while
    /// the room is recorded, so recordings play in browsers).
    preferred_video_codec: Option<String>,
}

impl Room {
    pub fn new(name: impl Into<String>, config: RoomConfig, now: Instant) -> Room {
        Room {
            name: name.into(),
            config,
            participants: FxHashMap::default(),
            join_order: Vec::new(),
            tracks: FxHashMap::default(),
            track_order: Vec::new(),
            routes: HashMap::new(),
            outputs: VecDeque::new(),
            routed: Vec::new(),
            spare_buffers: LocalSpares::default(),
            timer_epoch: now,
            next_key: 1,
            counters: RoomCounters::default(),
            last_now: now,
            drive_pending: false,
            drive: drive::DriveProgress::default(),
            preferred_video_codec: None,
        }
    }

    /// Asks new video publications to send `codec` (an encoding name such
    /// as `H264`) when they offer it, ahead of their own order; `None`
    /// returns to the publishers' order. Running publications keep their
    /// codec.
    pub fn set_preferred_video_codec(&mut self, codec: Option<&str>) {
        self.preferred_video_codec = codec.map(|c| c.to_ascii_uppercase());
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn counters(&self) -> &RoomCounters {
        &self.counters
    }

    pub fn participant_id(&self, key: ParticipantKey) -> Option<&ParticipantId> {
        self.participants.get(&key).map(|p| &p.id)
    }

    pub fn participant_by_user(&self, user_id: &str) -> Option<ParticipantKey> {
        self.join_order.iter().copied().find(|k| {
            self.participants
                .get(k)
                .is_some_and(|p| p.user_id == user_id)
        })
    }

    /// Everyone in the room, in join order.
    pub fn participant_infos(&self) -> Vec<ParticipantInfo> {
        self.join_order
            .iter()
            .filter_map(|k| self.participant_info(*k))
            .collect()
    }

    /// Every published track with its ingress and per-subscriber egress
    /// statistics (for monitoring).
    pub fn track_snapshots(&self) -> Vec<TrackSnapshot> {
        self.track_order
            .iter()
            .filter_map(|key| self.tracks.get(key))
            .filter_map(|track| {
                let owner = self.participants.get(&track.owner)?;
                let mut ingress: Vec<(Option<String>, LinkStats)> = track
                    .ingress
                    .iter()
                    .map(|(layer, stats)| (layer.clone(), stats.clone()))
                    .collect();
                ingress.sort_by(|a, b| a.0.cmp(&b.0));
                let subscribers = track
                    .subscribers
                    .iter()
                    .filter_map(|s| self.participants.get(s))
                    .map(|p| {
                        let egress = p
                            .subscriptions
                            .iter()
                            .find(|s| s.track == track.key)
                            .and_then(|s| s.egress.clone());
                        (p.id.clone(), egress)
                    })
                    .collect();
                Some(TrackSnapshot {
                    info: track.info(&owner.id, &owner.user_id),
                    ingress,
                    subscribers,
                })
            })
            .collect()
    }

    /// When the room next needs [`Room::handle_timeout`] (at once while
    /// handled inputs wait for [`Room::poll_output`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.drive_pending {
            return Some(self.last_now);
        }
        self.next_timer_wake()
    }

    /// The next thing to do. Datagrams handled since the last call are
    /// carried through to the participants they affect a few at a time, as
    /// the outputs are taken: the owner can send the first subscribers'
    /// datagrams before the last ones are made.
    pub fn poll_output(&mut self) -> Option<RoomOutput> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            if !self.drive_step() {
                return None;
            }
        }
    }

    /// The buffer of a [`RoomOutput::Transmit`]'s datagrams once they are
    /// sent ([`Datagrams::into_parts`]): the room seals subscribers' next
    /// packets into it instead of a new allocation (a few are kept; the
    /// rest, and small or large ones, are freed).
    pub fn give_back_buffer(&mut self, buffer: Vec<u8>) {
        self.spare_buffers.give(buffer);
    }

    /// Hands the buffers given back since the last call to the shared set
    /// (the owner calls it after each send, so an idle room holds none).
    pub fn settle_spare_buffers(&mut self) {
        self.spare_buffers.settle();
    }

    /// Shares `spare` (with other rooms) for the buffers given back,
    /// instead of a set of the room's own.
    pub fn share_spare_buffers(&mut self, spare: SpareBuffers) {
        self.spare_buffers = LocalSpares::new(spare);
    }

    /// A datagram arrived on the media socket. Returns false when no
    /// participant of this room accepts it (counted).
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) -> bool {
        let Ok(datagram) = contents.try_into() else {
            self.counters.datagrams_malformed += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.config.advertised_addr,
                contents: datagram,
            },
        );
        let key = match self.routes.get(&source) {
            Some(key) if self.participants.contains_key(key) => *key,
            _ => {
                let Some(key) = self
                    .participants
                    .values()
                    .find(|p| p.rtc.accepts(&input))
                    .map(|p| p.key)
                else {
                    self.counters.datagrams_unmatched += 1;
                    return false;
                };
                self.routes.insert(source, key);
                key
            }
        };
        let Some(participant) = self.participants.get_mut(&key) else {
            return false;
        };
        if let Err(e) = participant.rtc.handle_input(input) {
            debug!(room = %self.name, participant = %participant.id, error = %e, "input refused");
            self.counters.datagrams_refused += 1;
        }
        // The sender's own events (RTP to forward, RTCP) are taken now; the
        // participants they reach are driven on the next `poll_output`.
        self.last_now = now;
        self.drive_participant(now, key);
        self.drive_pending = true;
        true
    }

    /// Time passed: drives every participant whose timeout is due (any
    /// drive does: see `room/timers.rs`).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.drive(now);
    }

    /// Lets a participant's `Rtc` process what an API call changed (str0m
    /// emits the resulting events on its next input).
    fn wake(&mut self, now: Instant, key: ParticipantKey) {
        if let Some(participant) = self.participants.get_mut(&key) {
            if let Err(e) = participant.rtc.handle_input(Input::Timeout(now)) {
                warn!(participant = %participant.id, error = %e, "timeout handling failed");
                participant.rtc.disconnect();
            }
            participant.needs_poll = true;
        }
    }

    /// The addresses routed to a participant (so the owner can forget them).
    pub fn addresses_of(&self, key: ParticipantKey) -> Vec<SocketAddr> {
        self.routes
            .iter()
            .filter(|(_, k)| **k == key)
            .map(|(a, _)| *a)
            .collect()
    }

    fn signal(&mut self, to: ParticipantKey, message: ServerMessage) {
        if self
            .participants
            .get(&to)
            .is_some_and(|p| p.kind == SessionKind::Signalling)
        {
            self.outputs.push_back(RoomOutput::Signal { to, message });
        }
    }

    fn broadcast_except(&mut self, except: ParticipantKey, message: ServerMessage) {
        let keys: Vec<ParticipantKey> = self
            .join_order
            .iter()
            .copied()
            .filter(|k| *k != except)
            .collect();
        for key in keys {
            self.signal(key, message.clone());
        }
    }

    fn handle_event(&mut self, now: Instant, key: ParticipantKey, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.forward_rtp(now, key, packet),
            Event::KeyframeRequest(request) => {
                self.handle_subscriber_keyframe_request(now, key, request.mid, request.kind)
            }
            Event::MediaAdded(added) => {
                self.media_added(now, key, added.mid, added.kind, added.direction)
            }
            Event::MediaChanged(changed) => {
                self.media_changed(now, key, changed.mid, changed.direction)
            }
            Event::MediaIngressStats(stats) => {
                let Some(participant) = self.participants.get(&key) else {
                    return;
                };
                let Some(track) = participant.published.get(&stats.mid).copied() else {
                    return;
                };
                if let Some(track) = self.tracks.get_mut(&track) {
                    let layer = stats.rid.map(|r| r.to_string());
                    let fresh =
                        LinkStats::from_ingress(&stats).keeping_rtt_of(track.ingress.get(&layer));
                    track.ingress.insert(layer, fresh);
                }
            }
            Event::MediaEgressStats(stats) => {
                let Some(participant) = self.participants.get_mut(&key) else {
                    return;
                };
                if let Some(s) = participant
                    .subscriptions
                    .iter_mut()
                    .find(|s| s.state.mid() == Some(stats.mid))
                {
                    let mut link = LinkStats::from_egress(&stats).keeping_rtt_of(s.egress.as_ref());
                    // What Weir's own egress sent is not in str0m's counts.
                    link.bytes += s.own.bytes;
                    link.packets += s.own.packets;
                    let reported_rtt = stats.rtt.map(|rtt| (rtt, s.track));
                    s.egress = Some(link);
                    if let Some((rtt, track)) = reported_rtt {
                        participant.round_trip = Some(rtt);
                        if let Some(track) = self.tracks.get_mut(&track) {
                            track.subscriber_rtt.observe(now, rtt);
                        }
                    }
                }
            }
            Event::RawPacket(raw) => {
                if let str0m::rtp::RawPacket::RtcpRx(str0m::rtp::rtcp::Rtcp::Nack(nack)) = &*raw {
                    self.answer_nack(self.last_now, key, nack);
                }
            }
            Event::Connected => {
                if let Some(p) = self.participants.get_mut(&key) {
                    p.connected = true;
                    info!(participant = %p.id, "media connected");
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(p) = self.participants.get_mut(&key) {
                    info!(participant = %p.id, "ICE disconnected");
                    p.leaving = true;
                }
            }
            Event::Closed => {
                if let Some(p) = self.participants.get_mut(&key) {
                    p.leaving = true;
                }
            }
            _ => {}
        }
    }

    fn error(&mut self, to: ParticipantKey, code: ErrorCode, message: impl Into<String>) {
        self.counters.signalling_errors += 1;
        self.signal(to, ServerMessage::error(code, message));
    }
}

/// A participant's `Rtc`, with its SRTP keys tapped for Weir's own egress.
fn new_rtc(now: Instant, config: &RoomConfig) -> (Rtc, crate::egress::key_tap::KeyTap) {
    let mut builder = Rtc::builder();
    if let Some(cert) = &config.dtls_cert {
        builder = builder.set_dtls_cert(cert.clone());
    }
    let builder = builder
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .enable_vp9(true)
        .enable_av1(true)
        .set_stats_interval(Some(std::time::Duration::from_secs(1)))
        // Incoming RTCP as events: NACKs for what Weir's egress sent.
        .enable_raw_packets(config.own_egress);
    crate::egress::key_tap::tapped_rtc(builder, now)
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .field("participants", &self.participants.len())
            .field("tracks", &self.tracks.len())
            .finish()
    }
}
