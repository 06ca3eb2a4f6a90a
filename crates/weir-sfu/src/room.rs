//! The room: every participant's `Rtc`, and the forwarding between them.
//!
//! Sans-IO: the owner (one task per room in the server) feeds datagrams,
//! signalling messages and timeouts in, each with `now`, and drains
//! [`RoomOutput`]s: datagrams to send, messages for participants, and
//! departures. The room never reads the clock or touches a socket.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tracing::{debug, info, warn};
use weir_protocol::{
    ErrorCode, Grant, LeaveReason, ParticipantId, ParticipantInfo, PublishRequest, ServerMessage,
    TrackId, TrackInfo, TrackKind, TrackSource, PROTOCOL_VERSION,
};

use crate::config::RoomConfig;
use crate::counters::RoomCounters;
use crate::ids::random_id;
use crate::link_stats::LinkStats;
use crate::participant::{Participant, ParticipantKey, SessionKind};
use crate::sdp_order::order_answer_codecs;
use crate::track::{track_kind, PublishedTrack, TrackKey};

mod forwarding;
mod negotiation;
mod signalling;
#[cfg(test)]
mod tests;

/// What the room asks its owner to do.
#[derive(Debug)]
pub enum RoomOutput {
    /// Send a UDP datagram from the shared media socket.
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Send a signalling message to a participant.
    Signal {
        to: ParticipantKey,
        message: ServerMessage,
    },
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

/// One room's media core.
pub struct Room {
    name: String,
    config: RoomConfig,
    participants: HashMap<ParticipantKey, Participant>,
    /// Join order, for "the first publisher" and stable listings.
    join_order: Vec<ParticipantKey>,
    tracks: HashMap<TrackKey, PublishedTrack>,
    /// Track publication order.
    track_order: Vec<TrackKey>,
    routes: HashMap<SocketAddr, ParticipantKey>,
    outputs: VecDeque<RoomOutput>,
    next_key: u64,
    counters: RoomCounters,
    /// The `now` of the latest input, for work triggered without one.
    last_now: Instant,
}

impl Room {
    pub fn new(name: impl Into<String>, config: RoomConfig, now: Instant) -> Room {
        Room {
            name: name.into(),
            config,
            participants: HashMap::new(),
            join_order: Vec::new(),
            tracks: HashMap::new(),
            track_order: Vec::new(),
            routes: HashMap::new(),
            outputs: VecDeque::new(),
            next_key: 1,
            counters: RoomCounters::default(),
            last_now: now,
        }
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

    /// When the room next needs [`Room::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.participants
            .values()
            .filter_map(|p| p.next_timeout)
            .min()
    }

    pub fn poll_output(&mut self) -> Option<RoomOutput> {
        self.outputs.pop_front()
    }

    /// Adds a participant. For WHIP/WHEP the offer is answered at once.
    pub fn join(&mut self, now: Instant, request: JoinRequest) -> Result<Joined, JoinError> {
        self.last_now = now;
        let max = self.config.max_participants;
        if max > 0 && self.participants.len() >= max as usize {
            return Err(JoinError::RoomFull(max));
        }
        match &request.kind {
            SessionKind::Whip if !request.grants.contains(&Grant::Publish) => {
                return Err(JoinError::PermissionDenied("publish"));
            }
            SessionKind::Whep { .. } if !request.grants.contains(&Grant::Subscribe) => {
                return Err(JoinError::PermissionDenied("subscribe"));
            }
            _ => {}
        }
        let whep_publisher = match &request.kind {
            SessionKind::Whep { publisher } => Some(self.whep_publisher(publisher.as_deref())?),
            _ => None,
        };
        let offer = match &request.offer {
            Some(sdp) => Some(
                SdpOffer::from_sdp_string(sdp).map_err(|e| JoinError::SdpInvalid(e.to_string()))?,
            ),
            None => None,
        };

        // A user joining again over signalling replaces their old session.
        if request.kind == SessionKind::Signalling {
            if let Some(old) = self.participant_by_user(&request.user_id) {
                if self
                    .participants
                    .get(&old)
                    .is_some_and(|p| p.kind == SessionKind::Signalling)
                {
                    self.remove_participant(now, old, LeaveReason::Kicked);
                }
            }
        }

        let mut rtc = new_rtc(now);
        let candidate = Candidate::host(self.config.advertised_addr, "udp")
            .map_err(|e| JoinError::Internal(format!("bad advertised address: {e}")))?;
        rtc.add_local_candidate(candidate);
        let ice_ufrag = rtc.direct_api().local_ice_credentials().ufrag;

        let key = ParticipantKey(self.next_key);
        self.next_key += 1;
        let participant_id = ParticipantId::new(format!("PA_{}", random_id(12)));
        let mut participant = Participant {
            key,
            id: participant_id.clone(),
            user_id: request.user_id.clone(),
            grants: request.grants.clone(),
            kind: request.kind.clone(),
            rtc,
            joined_at_ms: request.wall_clock_ms,
            auto_subscribe: request.auto_subscribe,
            ice_ufrag: ice_ufrag.clone(),
            pending_publish: HashMap::new(),
            published: HashMap::new(),
            ssrc_routes: HashMap::new(),
            subscriptions: Vec::new(),
            parked: Vec::new(),
            whep_mids: Vec::new(),
            pending_offer: None,
            codec_reference: None,
            next_timeout: Some(now),
            needs_poll: true,
            connected: false,
            leaving: false,
        };

        let answer = match offer {
            Some(offer) => {
                let offer_text = request.offer.as_deref().unwrap_or_default();
                if participant.kind == SessionKind::Whip && offer_sends_nothing(&offer) {
                    return Err(JoinError::SdpInvalid(
                        "a WHIP offer must send audio or video".to_string(),
                    ));
                }
                let answer = participant
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| JoinError::SdpInvalid(e.to_string()))?;
                Some(order_answer_codecs(
                    &answer.to_sdp_string(),
                    offer_text,
                    &HashMap::new(),
                ))
            }
            None => None,
        };

        info!(room = %self.name, participant = %participant_id, user = %request.user_id, kind = ?request.kind, "participant joined");
        self.counters.participants_joined += 1;
        let others = self.participant_infos();
        self.participants.insert(key, participant);
        self.join_order.push(key);
        self.wake(now, key);

        if request.kind == SessionKind::Signalling {
            self.signal(
                key,
                ServerMessage::Joined {
                    protocol_version: PROTOCOL_VERSION,
                    server_version: self.config.server_version.clone(),
                    room: self.name.clone(),
                    participant_id: participant_id.clone(),
                    user_id: request.user_id.clone(),
                    participants: others,
                    ping_interval_ms: self.config.ping_interval.as_millis() as u64,
                    ping_timeout_ms: self.config.ping_timeout.as_millis() as u64,
                },
            );
        }
        if let Some(info) = self.participant_info(key) {
            self.broadcast_except(key, ServerMessage::ParticipantJoined { participant: info });
        }
        if let Some(publisher) = whep_publisher {
            self.bind_whep(key, publisher);
        } else if request.auto_subscribe && request.grants.contains(&Grant::Subscribe) {
            let existing: Vec<TrackKey> = self.track_order.clone();
            for track in existing {
                self.add_subscription(key, track);
            }
        }
        self.drive(now);
        Ok(Joined {
            key,
            participant_id,
            ice_ufrag,
            answer,
        })
    }

    /// A participant leaves (socket closed, `leave`, WHIP/WHEP DELETE, kick).
    pub fn leave(&mut self, now: Instant, key: ParticipantKey, reason: LeaveReason) {
        self.remove_participant(now, key, reason);
        self.drive(now);
    }

    /// Closes the room: everyone leaves with `reason`.
    pub fn close(&mut self, now: Instant, reason: LeaveReason) {
        let keys: Vec<ParticipantKey> = self.join_order.clone();
        for key in keys {
            self.signal(key, ServerMessage::Leave { reason });
            self.remove_participant(now, key, reason);
        }
        self.drive(now);
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
        participant.needs_poll = true;
        self.drive(now);
        true
    }

    /// Time passed: drives every participant whose timeout is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for participant in self.participants.values_mut() {
            if participant.next_timeout.is_some_and(|t| t <= now) {
                if let Err(e) = participant.rtc.handle_input(Input::Timeout(now)) {
                    warn!(participant = %participant.id, error = %e, "timeout handling failed");
                    participant.rtc.disconnect();
                }
                participant.needs_poll = true;
            }
        }
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

    fn participant_info(&self, key: ParticipantKey) -> Option<ParticipantInfo> {
        let p = self.participants.get(&key)?;
        Some(ParticipantInfo {
            participant_id: p.id.clone(),
            user_id: p.user_id.clone(),
            tracks: self.track_infos_of(key),
            joined_at_ms: p.joined_at_ms,
        })
    }

    fn track_infos_of(&self, key: ParticipantKey) -> Vec<TrackInfo> {
        let Some(p) = self.participants.get(&key) else {
            return Vec::new();
        };
        self.track_order
            .iter()
            .filter_map(|t| self.tracks.get(t))
            .filter(|t| t.owner == key)
            .map(|t| t.info(&p.id, &p.user_id))
            .collect()
    }

    fn track_info(&self, track: TrackKey) -> Option<TrackInfo> {
        let t = self.tracks.get(&track)?;
        let p = self.participants.get(&t.owner)?;
        Some(t.info(&p.id, &p.user_id))
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

    fn whep_publisher(&self, user: Option<&str>) -> Result<ParticipantKey, JoinError> {
        // A WHIP session counts before its media is up (str0m announces
        // its tracks only once DTLS is connected).
        let publishing = |k: &ParticipantKey| {
            self.tracks.values().any(|t| t.owner == *k)
                || self
                    .participants
                    .get(k)
                    .is_some_and(|p| p.kind == SessionKind::Whip)
        };
        match user {
            Some(user) => self
                .join_order
                .iter()
                .copied()
                .filter(|k| self.participants.get(k).is_some_and(|p| p.user_id == user))
                .find(publishing)
                .ok_or_else(|| {
                    JoinError::NoPublisher(format!("`{user}` publishes nothing in this room"))
                }),
            None => self
                .join_order
                .iter()
                .copied()
                .find(publishing)
                .ok_or_else(|| JoinError::NoPublisher("nobody publishes in this room".into())),
        }
    }

    fn remove_participant(&mut self, now: Instant, key: ParticipantKey, reason: LeaveReason) {
        let Some(mut participant) = self.participants.remove(&key) else {
            return;
        };
        participant.rtc.disconnect();
        self.join_order.retain(|k| *k != key);
        self.routes.retain(|_, k| *k != key);
        let owned: Vec<TrackKey> = self
            .track_order
            .iter()
            .copied()
            .filter(|t| self.tracks.get(t).is_some_and(|t| t.owner == key))
            .collect();
        for track in owned {
            self.unpublish(now, track);
        }
        info!(room = %self.name, participant = %participant.id, ?reason, "participant left");
        self.counters.participants_left += 1;
        self.broadcast_except(
            key,
            ServerMessage::ParticipantLeft {
                participant_id: participant.id.clone(),
                user_id: participant.user_id.clone(),
                reason,
            },
        );
        self.outputs.push_back(RoomOutput::Left {
            key,
            participant_id: participant.id,
            user_id: participant.user_id,
            reason,
        });
    }

    /// Polls every participant that needs it until all are idle.
    fn drive(&mut self, now: Instant) {
        self.last_now = now;
        // Forwarding marks subscribers for polling; loop until quiet.
        for _ in 0..64 {
            let due: Vec<ParticipantKey> = self
                .participants
                .values()
                .filter(|p| p.needs_poll)
                .map(|p| p.key)
                .collect();
            if due.is_empty() {
                break;
            }
            for key in due {
                self.poll_participant(now, key);
            }
        }
        let dead: Vec<ParticipantKey> = self
            .participants
            .values()
            .filter(|p| !p.rtc.is_alive() || p.leaving)
            .map(|p| p.key)
            .collect();
        for key in dead {
            self.remove_participant(now, key, LeaveReason::Disconnected);
        }
    }

    fn poll_participant(&mut self, now: Instant, key: ParticipantKey) {
        loop {
            self.negotiate_if_needed(key);
            let Some(participant) = self.participants.get_mut(&key) else {
                return;
            };
            participant.needs_poll = false;
            if !participant.rtc.is_alive() {
                participant.next_timeout = None;
                return;
            }
            let output = match participant.rtc.poll_output() {
                Ok(output) => output,
                Err(e) => {
                    warn!(participant = %participant.id, error = %e, "poll_output failed; disconnecting");
                    participant.rtc.disconnect();
                    participant.leaving = true;
                    return;
                }
            };
            match output {
                Output::Timeout(at) => {
                    participant.next_timeout = Some(at);
                    return;
                }
                Output::Transmit(transmit) => {
                    self.outputs.push_back(RoomOutput::Transmit {
                        destination: transmit.destination,
                        contents: transmit.contents.into(),
                    });
                }
                Output::Event(event) => self.handle_event(now, key, event),
            }
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
                    track.ingress.insert(layer, LinkStats::from_ingress(&stats));
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
                    s.egress = Some(LinkStats::from_egress(&stats));
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

    fn media_added(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        mid: Mid,
        kind: MediaKind,
        direction: Direction,
    ) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        match direction {
            // The peer sends on this m-line: a publication.
            Direction::RecvOnly | Direction::SendRecv => {
                if !participant.allows(Grant::Publish) {
                    return;
                }
                let request = participant.pending_publish.remove(&mid.to_string());
                self.publish(now, key, mid, track_kind(kind), request);
            }
            Direction::SendOnly => {
                // Our own offered m-lines come back here too; WHEP m-lines
                // are bound when the session is created.
                if matches!(participant.kind, SessionKind::Whep { .. }) {
                    self.whep_media_added(key, mid, kind);
                }
            }
            Direction::Inactive => {}
        }
    }

    fn media_changed(&mut self, now: Instant, key: ParticipantKey, mid: Mid, direction: Direction) {
        let Some(participant) = self.participants.get(&key) else {
            return;
        };
        let sending = matches!(direction, Direction::RecvOnly | Direction::SendRecv);
        match participant.published.get(&mid).copied() {
            Some(track) if !sending => self.unpublish(now, track),
            None if sending && participant.allows(Grant::Publish) => {
                let kind = participant.rtc.media(mid).map(|m| m.kind());
                if let Some(kind) = kind {
                    self.media_added(now, key, mid, kind, direction);
                }
            }
            _ => {}
        }
    }

    fn publish(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        mid: Mid,
        kind: TrackKind,
        request: Option<PublishRequest>,
    ) {
        let track_key = TrackKey(self.next_key);
        self.next_key += 1;
        let source = request
            .as_ref()
            .and_then(|r| r.source)
            .unwrap_or_else(|| TrackSource::default_for(kind));
        let track = PublishedTrack::new(
            track_key,
            TrackId::new(format!("TR_{}", random_id(12))),
            key,
            mid,
            kind,
            source,
            self.config.keyframe_request_interval,
        );
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        participant.published.insert(mid, track_key);
        info!(room = %self.name, participant = %participant.id, track = %track.id, ?kind, ?source, "track published");
        self.tracks.insert(track_key, track);
        self.track_order.push(track_key);
        self.counters.tracks_published += 1;
        if let Some(info) = self.track_info(track_key) {
            self.signal(
                key,
                ServerMessage::TrackPublished {
                    track: info.clone(),
                    mid: Some(mid.to_string()),
                },
            );
            self.broadcast_except(
                key,
                ServerMessage::TrackPublished {
                    track: info,
                    mid: None,
                },
            );
        }
        let subscribers: Vec<ParticipantKey> = self
            .join_order
            .iter()
            .copied()
            .filter(|k| *k != key)
            .filter(|k| {
                self.participants.get(k).is_some_and(|p| {
                    p.auto_subscribe
                        && p.allows(Grant::Subscribe)
                        && p.kind == SessionKind::Signalling
                })
            })
            .collect();
        for subscriber in subscribers {
            self.add_subscription(subscriber, track_key);
        }
        self.rebind_whep_viewers(key, track_key);
        let _ = now;
    }

    fn unpublish(&mut self, _now: Instant, track_key: TrackKey) {
        let Some(track) = self.tracks.remove(&track_key) else {
            return;
        };
        self.track_order.retain(|t| *t != track_key);
        let participant_id = self.participants.get_mut(&track.owner).map(|p| {
            p.published.remove(&track.mid);
            p.ssrc_routes.retain(|_, (t, _)| *t != track_key);
            p.id.clone()
        });
        for subscriber in self.join_order.clone() {
            self.remove_subscription(subscriber, track_key);
        }
        let participant_id = match participant_id {
            Some(id) => id,
            None => return,
        };
        info!(room = %self.name, track = %track.id, "track unpublished");
        let message = ServerMessage::TrackUnpublished {
            track_id: track.id.clone(),
            participant_id,
        };
        self.signal(track.owner, message.clone());
        self.broadcast_except(track.owner, message);
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        track_key: TrackKey,
        rid: Option<str0m::media::Rid>,
        kind: KeyframeRequestKind,
    ) {
        let Some(track) = self.tracks.get_mut(&track_key) else {
            return;
        };
        if track.kind != TrackKind::Video {
            return;
        }
        match track.keyframe_requests.request(now) {
            crate::keyframe_requests::KeyframeDecision::Merged => {
                self.counters.keyframe_requests_merged += 1;
            }
            crate::keyframe_requests::KeyframeDecision::Send => {
                let mid = track.mid;
                let owner = track.owner;
                let Some(publisher) = self.participants.get_mut(&owner) else {
                    return;
                };
                let mut api = publisher.rtc.direct_api();
                let stream = match rid {
                    Some(rid) => api.stream_rx_by_mid(mid, Some(rid)),
                    None => api.stream_rx_by_mid(mid, None),
                };
                if let Some(stream) = stream {
                    stream.request_keyframe(kind);
                    self.counters.keyframe_requests_sent += 1;
                } else {
                    // Simulcast: ask every layer.
                    let ssrcs: Vec<_> = publisher
                        .ssrc_routes
                        .iter()
                        .filter(|(_, (t, _))| *t == track_key)
                        .map(|(s, _)| *s)
                        .collect();
                    for ssrc in ssrcs {
                        if let Some(stream) = publisher.rtc.direct_api().stream_rx(&ssrc) {
                            stream.request_keyframe(kind);
                            self.counters.keyframe_requests_sent += 1;
                        }
                    }
                }
                publisher.needs_poll = true;
            }
        }
    }

    fn error(&mut self, to: ParticipantKey, code: ErrorCode, message: impl Into<String>) {
        self.counters.signalling_errors += 1;
        self.signal(to, ServerMessage::error(code, message));
    }
}

/// True when no m-line of the offer sends media.
fn offer_sends_nothing(offer: &SdpOffer) -> bool {
    !offer
        .media_lines
        .iter()
        .any(|m| !m.disabled && matches!(m.direction(), Direction::SendOnly | Direction::SendRecv))
}

pub(crate) fn sends_media(offer: &SdpOffer) -> bool {
    !offer_sends_nothing(offer)
}

fn new_rtc(now: Instant) -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .enable_vp9(true)
        .enable_av1(true)
        .set_stats_interval(Some(std::time::Duration::from_secs(1)))
        .build(now)
}

pub(crate) fn parse_answer(sdp: &str) -> Result<SdpAnswer, String> {
    SdpAnswer::from_sdp_string(&with_bundle_group(sdp)).map_err(|e| e.to_string())
}

pub(crate) fn parse_offer(sdp: &str) -> Result<SdpOffer, String> {
    SdpOffer::from_sdp_string(&with_bundle_group(sdp)).map_err(|e| e.to_string())
}

/// RFC 8843 leaves out an empty BUNDLE group (every m-line rejected), but
/// str0m requires `a=group`: add an explicit empty one so such an SDP is
/// accepted.
fn with_bundle_group(sdp: &str) -> std::borrow::Cow<'_, str> {
    if sdp.contains("\na=group:") || !sdp.contains("\nm=") {
        return std::borrow::Cow::Borrowed(sdp);
    }
    match sdp.find("\nm=") {
        Some(at) => {
            let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
            let mut fixed = String::with_capacity(sdp.len() + 20);
            fixed.push_str(&sdp[..at + 1]);
            fixed.push_str("a=group:BUNDLE");
            fixed.push_str(eol);
            fixed.push_str(&sdp[at + 1..]);
            std::borrow::Cow::Owned(fixed)
        }
        None => std::borrow::Cow::Borrowed(sdp),
    }
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
