//! Joining and leaving: participants, their sessions and what the room
//! tells the others.

use std::collections::HashMap;
use std::time::Instant;

use str0m::Candidate;
use tracing::info;
use weir_protocol::{
    Grant, LeaveReason, ParticipantId, ParticipantInfo, ServerMessage, TrackInfo, PROTOCOL_VERSION,
};

use super::sdp::{offer_sends_nothing, parse_offer, without_panic};
use super::{new_rtc, JoinError, JoinRequest, Joined, Room, RoomOutput};
use crate::ids::random_id;
use crate::participant::{Participant, ParticipantKey, SessionKind};
use crate::sdp_order::order_answer_codecs;
use crate::track::TrackKey;

impl Room {
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
            Some(sdp) => Some(parse_offer(sdp).map_err(JoinError::SdpInvalid)?),
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

        let (mut rtc, key_tap) = new_rtc(now, &self.config);
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
            rtc: Box::new(rtc),
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
            offer_may_be_due: false,
            codec_reference: None,
            next_timeout: Some(now),
            timer_is_lazy: false,
            needs_poll: true,
            needs_timeout: false,
            connected: false,
            leaving: false,
            own_egress: super::own_egress::ParticipantEgress::new(key_tap),
            round_trip: None,
        };

        let answer = match offer {
            Some(offer) => {
                let offer_text = request.offer.as_deref().unwrap_or_default();
                if participant.kind == SessionKind::Whip && offer_sends_nothing(&offer) {
                    return Err(JoinError::SdpInvalid(
                        "a WHIP offer must send audio or video".to_string(),
                    ));
                }
                let answer = without_panic(|| participant.rtc.sdp_api().accept_offer(offer))
                    .map_err(JoinError::SdpInvalid)?
                    .map_err(|e| JoinError::SdpInvalid(e.to_string()))?;
                // A WHEP viewer's answer lists the publisher's codecs first:
                // players that look only at the first codec get the right one.
                let mut preferences = whep_publisher
                    .map(|publisher| self.codec_preferences_for(publisher, offer_text))
                    .unwrap_or_default();
                // A WHIP publisher of a room that prefers a video codec
                // (while it is recorded) sends that codec if it offered it.
                if participant.kind == SessionKind::Whip {
                    self.prefer_video_codec(offer_text, &[], &mut preferences);
                }
                Some(order_answer_codecs(
                    &answer.to_sdp_string(),
                    offer_text,
                    &preferences,
                ))
            }
            None => None,
        };

        info!(room = %self.name, participant = %participant_id, user = %request.user_id, kind = ?request.kind, "participant joined");
        self.counters.participants_joined += 1;
        let others = self.participant_infos();
        self.participants.insert(key, Box::new(participant));
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

    pub(super) fn whep_publisher(&self, user: Option<&str>) -> Result<ParticipantKey, JoinError> {
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

    pub(super) fn remove_participant(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        reason: LeaveReason,
    ) {
        if !self.participants.contains_key(&key) {
            return;
        }
        // While the participant is still known, so that its tracks are
        // announced as unpublished (to the others and to the owner of the
        // room) before it leaves.
        self.unpublish_all_of(now, key);
        let Some(mut participant) = self.participants.remove(&key) else {
            return;
        };
        self.say_goodbye(now, &mut participant.rtc);
        self.join_order.retain(|k| *k != key);
        self.routes.retain(|_, k| *k != key);
        // Its subscriptions end with it (the tracks it was sent stay).
        for track in self.tracks.values_mut() {
            track.subscribers.retain(|s| *s != key);
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

    pub(super) fn participant_info(&self, key: ParticipantKey) -> Option<ParticipantInfo> {
        let p = self.participants.get(&key)?;
        Some(ParticipantInfo {
            participant_id: p.id.clone(),
            user_id: p.user_id.clone(),
            tracks: self.track_infos_of(key),
            joined_at_ms: p.joined_at_ms,
        })
    }

    pub(super) fn track_infos_of(&self, key: ParticipantKey) -> Vec<TrackInfo> {
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

    pub(super) fn track_info(&self, track: TrackKey) -> Option<TrackInfo> {
        let t = self.tracks.get(&track)?;
        let p = self.participants.get(&t.owner)?;
        Some(t.info(&p.id, &p.user_id))
    }

    /// Closes a departing peer's connection politely: RTCP BYE and a DTLS
    /// close_notify go out (best effort) before the `Rtc` is dropped, so
    /// the peer learns at once instead of timing out.
    fn say_goodbye(&mut self, now: Instant, rtc: &mut str0m::Rtc) {
        if !rtc.is_alive() || rtc.close().is_err() {
            rtc.disconnect();
            return;
        }
        let _ = rtc.handle_input(str0m::Input::Timeout(now));
        // Bounded: the close output is a handful of datagrams.
        for _ in 0..64 {
            match rtc.poll_output() {
                Ok(str0m::Output::Transmit(transmit)) => {
                    self.outputs.push_back(RoomOutput::Transmit {
                        destination: transmit.destination,
                        datagrams: crate::Datagrams::one(transmit.contents.into()),
                    });
                }
                Ok(str0m::Output::Event(_)) => {}
                Ok(str0m::Output::Timeout(_)) | Err(_) => break,
            }
        }
        rtc.disconnect();
    }

    /// Per mid of `offer`: the codec `publisher` sends for that kind, when
    /// its media has started (so the codec is known).
    /// Adds the room's preferred video codec ([`Room::set_preferred_video_codec`])
    /// to the preferences of `offer`'s video m-lines that carry no
    /// publication yet (`published`) and have no preference of their own:
    /// new video publications send it (a running one never switches codec).
    pub(super) fn prefer_video_codec(
        &self,
        offer: &str,
        published: &[String],
        preferences: &mut HashMap<String, Vec<String>>,
    ) {
        let Some(codec) = &self.preferred_video_codec else {
            return;
        };
        for mid in crate::sdp_order::mids_of_kind(offer, "video") {
            if published.contains(&mid) {
                continue;
            }
            preferences
                .entry(mid)
                .or_insert_with(|| vec![codec.clone()]);
        }
    }

    fn codec_preferences_for(
        &self,
        publisher: ParticipantKey,
        offer: &str,
    ) -> HashMap<String, Vec<String>> {
        let mut preferences = HashMap::new();
        for track in self.tracks.values().filter(|t| t.owner == publisher) {
            let Some(codec) = track.codec.as_deref().and_then(|c| c.split('/').nth(1)) else {
                continue;
            };
            let kind = match track.kind {
                weir_protocol::TrackKind::Audio => "audio",
                weir_protocol::TrackKind::Video => "video",
            };
            for mid in crate::sdp_order::mids_of_kind(offer, kind) {
                preferences
                    .entry(mid)
                    .or_insert_with(|| vec![codec.to_string()]);
            }
        }
        preferences
    }
}
