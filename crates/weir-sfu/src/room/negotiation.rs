//! Server-side SDP negotiation: subscriptions become m-lines in server
//! offers; client offers (publications) are answered. The server is the
//! polite peer: a client offer rolls back a pending server offer, which is
//! made again afterwards.

use std::collections::HashMap;

use str0m::media::{Direction, MediaKind, Mid};
use tracing::{debug, warn};
use weir_protocol::{ErrorCode, ServerMessage, TrackKind};

use super::sdp::{
    parse_answer, parse_offer, sends_media, without_downlink_twcc, without_panic, SdpAuthor,
};
use super::Room;
use crate::forwarder::Forwarder;
use crate::ids::random_u32;
use crate::participant::{OutState, ParkedLine, ParticipantKey, SessionKind, Subscription};
use crate::sdp_order::order_answer_codecs;
use crate::track::{media_kind, TrackKey};

/// What a server offer announces for one track: msid stream id
/// (publisher), msid track id, kind.
type OfferedTrack = (String, String, MediaKind);

impl Room {
    /// Subscribes `subscriber` to `track` (negotiated in the next offer).
    pub(super) fn add_subscription(&mut self, subscriber: ParticipantKey, track: TrackKey) {
        let Some(published) = self.tracks.get_mut(&track) else {
            return;
        };
        if published.owner == subscriber {
            return;
        }
        let is_video = published.kind == TrackKind::Video;
        let Some(participant) = self.participants.get_mut(&subscriber) else {
            return;
        };
        if participant.is_subscribed(track) {
            return;
        }
        let kind = published.kind;
        let (forwarder, recycled_line) =
            match participant.parked.iter().position(|l| l.kind == kind) {
                Some(index) => {
                    let mut line = participant.parked.remove(index);
                    line.forwarder.restart_source();
                    (line.forwarder, Some(line.mid))
                }
                None => {
                    let clock_rate = if is_video { 90_000 } else { 48_000 };
                    (
                        Forwarder::new(is_video, clock_rate, initial_out_seq(), random_u32()),
                        None,
                    )
                }
            };
        participant.subscriptions.push(Subscription {
            track,
            state: OutState::ToOpen,
            forwarder,
            pt_map: Vec::new(),
            egress: None,
            recycled_line,
            own: Default::default(),
        });
        participant.offer_may_be_due = true;
        participant.needs_poll = true;
        if !published.subscribers.contains(&subscriber) {
            published.subscribers.push(subscriber);
        }
        if let Some(rtt) = participant.round_trip {
            // Known before this subscription's own reports.
            published.subscriber_rtt.observe(self.last_now, rtt);
        }
    }

    /// Ends `subscriber`'s subscription to `track` (stopped in the next offer).
    pub(super) fn remove_subscription(&mut self, subscriber: ParticipantKey, track: TrackKey) {
        if let Some(published) = self.tracks.get_mut(&track) {
            published.subscribers.retain(|s| *s != subscriber);
        }
        let Some(participant) = self.participants.get_mut(&subscriber) else {
            return;
        };
        if matches!(participant.kind, SessionKind::Whep { .. }) {
            // The m-line stays; a republished track of the same publisher
            // takes it over (see `attach_whep_track`).
            return;
        }
        let mut freed = Vec::new();
        participant.subscriptions.retain_mut(|s| {
            if s.track != track {
                return true;
            }
            match s.state {
                OutState::ToOpen => {
                    if let Some(mid) = s.recycled_line {
                        freed.push((mid, s.forwarder.clone()));
                    }
                    false
                }
                OutState::Negotiating(mid) | OutState::Open(mid) => {
                    s.state = OutState::ToPark(mid);
                    true
                }
                OutState::ToPark(_) | OutState::NegotiatingPark(_) => true,
            }
        });
        participant.offer_may_be_due = true;
        for (mid, forwarder) in freed {
            participant.parked.push(ParkedLine {
                mid,
                kind: forwarder_kind(&forwarder),
                forwarder,
            });
        }
        participant.needs_poll = true;
    }

    /// Makes a server offer when subscriptions changed and no exchange is
    /// in flight. Only for signalling sessions.
    pub(super) fn negotiate_if_needed(&mut self, key: ParticipantKey) {
        let Some(participant) = self.participants.get(&key) else {
            return;
        };
        if participant.kind != SessionKind::Signalling
            || participant.pending_offer.is_some()
            || !participant.offer_may_be_due
        {
            return;
        }
        let wanted = participant
            .subscriptions
            .iter()
            .any(|s| matches!(s.state, OutState::ToOpen | OutState::ToPark(_)));
        if !wanted {
            if let Some(participant) = self.participants.get_mut(&key) {
                participant.offer_may_be_due = false;
            }
            return;
        }
        let stream_ids: Vec<(TrackKey, Option<Mid>, Option<OfferedTrack>)> = participant
            .subscriptions
            .iter()
            .filter(|s| s.state == OutState::ToOpen)
            .map(|s| {
                let info = self.tracks.get(&s.track).map(|t| {
                    let owner = self
                        .participants
                        .get(&t.owner)
                        .map(|p| p.id.to_string())
                        .unwrap_or_default();
                    (owner, t.id.to_string(), media_kind(t.kind))
                });
                (s.track, s.recycled_line, info)
            })
            .collect();
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let mut api = participant.rtc.sdp_api();
        let mut opened: Vec<(TrackKey, Mid)> = Vec::new();
        let mut parked: Vec<Mid> = Vec::new();
        for (track, recycled, info) in stream_ids {
            let Some((stream_id, track_id, kind)) = info else {
                continue;
            };
            let mid = match recycled {
                Some(mid) => {
                    api.set_direction(mid, Direction::SendOnly);
                    mid
                }
                None => api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(stream_id),
                    Some(track_id),
                    None,
                ),
            };
            opened.push((track, mid));
        }
        for s in participant.subscriptions.iter() {
            if let OutState::ToPark(mid) = s.state {
                api.set_direction(mid, Direction::Inactive);
                parked.push(mid);
            }
        }
        if !api.has_changes() {
            return;
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        participant.pending_offer = Some(pending);
        for s in participant.subscriptions.iter_mut() {
            match s.state {
                OutState::ToOpen => {
                    if let Some((_, mid)) = opened.iter().find(|(t, _)| *t == s.track) {
                        s.state = OutState::Negotiating(*mid);
                    }
                }
                OutState::ToPark(mid) if parked.contains(&mid) => {
                    s.state = OutState::NegotiatingPark(mid);
                }
                _ => {}
            }
        }
        let mut sdp = without_downlink_twcc(&offer.to_sdp_string(), SdpAuthor::Server).into_owned();
        if let Some((reference, preferences)) = &participant.codec_reference {
            sdp = order_answer_codecs(&sdp, reference, preferences);
        }
        debug!(participant = %participant.id, opened = opened.len(), parked = parked.len(), "server offer");
        for (track, mid) in opened {
            if let Some(t) = self.tracks.get(&track) {
                let message = ServerMessage::Subscribed {
                    track_id: t.id.clone(),
                    mid: mid.to_string(),
                };
                self.signal(key, message);
            }
        }
        self.signal(key, ServerMessage::Offer { sdp });
    }

    /// The client's answer to our offer.
    pub(super) fn accept_answer(&mut self, key: ParticipantKey, sdp: &str) {
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(pending) = participant.pending_offer.take() else {
            self.error(
                key,
                ErrorCode::SdpInvalid,
                "no server offer is waiting for an answer",
            );
            return;
        };
        let answer = match parse_answer(sdp) {
            Ok(answer) => answer,
            Err(e) => {
                // Keep waiting for a valid answer.
                participant.pending_offer = Some(pending);
                self.error(
                    key,
                    ErrorCode::SdpInvalid,
                    format!("cannot parse answer: {e}"),
                );
                return;
            }
        };
        let accepted =
            match without_panic(|| participant.rtc.sdp_api().accept_answer(pending, answer)) {
                Ok(accepted) => accepted,
                Err(panic) => {
                    self.end_session_after_panic(key, panic);
                    return;
                }
            };
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        if let Err(e) = accepted {
            warn!(participant = %participant.id, error = %e, "answer refused");
            // The offer is spent; return its changes to the queue.
            rollback_offered(participant);
            participant.needs_poll = true;
            self.error(key, ErrorCode::SdpInvalid, format!("answer refused: {e}"));
            return;
        }
        let now = self.last_now;
        self.wake(now, key);
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        let mut newly_open = Vec::new();
        for s in participant.subscriptions.iter_mut() {
            if let OutState::Negotiating(mid) = s.state {
                s.state = OutState::Open(mid);
                newly_open.push(s.track);
            }
        }
        let mut gone = Vec::new();
        let mut newly_parked = Vec::new();
        participant.subscriptions.retain(|s| {
            let OutState::NegotiatingPark(mid) = s.state else {
                return true;
            };
            gone.push(s.track);
            newly_parked.push(ParkedLine {
                mid,
                kind: forwarder_kind(&s.forwarder),
                forwarder: s.forwarder.clone(),
            });
            false
        });
        participant.parked.extend(newly_parked);
        participant.needs_poll = true;
        for track in gone {
            if let Some(t) = self.tracks.get(&track) {
                let message = ServerMessage::Unsubscribed {
                    track_id: t.id.clone(),
                };
                self.signal(key, message);
            }
        }
        // New video subscribers need a keyframe to start.
        for track in newly_open {
            self.request_keyframe(now, track, None, str0m::media::KeyframeRequestKind::Pli);
        }
    }

    /// The client's offer (its publications). Rolls back our pending offer.
    pub(super) fn accept_client_offer(&mut self, key: ParticipantKey, sdp: &str) {
        let offer = match parse_offer(sdp) {
            Ok(offer) => offer,
            Err(e) => {
                self.error(
                    key,
                    ErrorCode::SdpInvalid,
                    format!("cannot parse offer: {e}"),
                );
                return;
            }
        };
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        if sends_media(&offer) && !participant.allows(weir_protocol::Grant::Publish) {
            self.error(
                key,
                ErrorCode::PermissionDenied,
                "the token does not grant `publish`",
            );
            return;
        }
        participant.pending_offer = None;
        rollback_offered(participant);
        let mut preferences: HashMap<String, Vec<String>> = participant
            .codec_reference
            .take()
            .map(|(_, p)| p)
            .unwrap_or_default();
        preferences.extend(
            participant
                .pending_publish
                .iter()
                .filter(|(_, request)| !request.codecs.is_empty())
                .map(|(mid, request)| (mid.clone(), request.codecs.clone())),
        );
        let published: Vec<String> = participant
            .published
            .keys()
            .map(|m| m.to_string())
            .collect();
        self.prefer_video_codec(sdp, &published, &mut preferences);
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        match without_panic(|| participant.rtc.sdp_api().accept_offer(offer)) {
            Err(panic) => self.end_session_after_panic(key, panic),
            Ok(Ok(answer)) => {
                let answer_sdp = order_answer_codecs(&answer.to_sdp_string(), sdp, &preferences);
                participant.codec_reference = Some((sdp.to_string(), preferences));
                let sdp = answer_sdp;
                self.signal(key, ServerMessage::Answer { sdp });
                let now = self.last_now;
                self.wake(now, key);
            }
            Ok(Err(e)) => {
                warn!(participant = %participant.id, error = %e, "offer refused");
                participant.needs_poll = true;
                self.error(key, ErrorCode::SdpInvalid, format!("offer refused: {e}"));
            }
        }
    }

    /// str0m panicked applying a participant's SDP: its `Rtc` is unusable,
    /// so the session ends with an error.
    fn end_session_after_panic(&mut self, key: ParticipantKey, reason: String) {
        warn!(room = %self.name, error = %reason, "SDP refused, session ended");
        self.error(key, ErrorCode::SdpInvalid, reason);
        let now = self.last_now;
        self.remove_participant(now, key, weir_protocol::LeaveReason::Error);
    }

    /// WHEP: attach the chosen publisher's tracks to the viewer's m-lines.
    pub(super) fn bind_whep(&mut self, viewer: ParticipantKey, publisher: ParticipantKey) {
        let publisher_user = self.participants.get(&publisher).map(|p| p.user_id.clone());
        let Some(participant) = self.participants.get_mut(&viewer) else {
            return;
        };
        participant.kind = SessionKind::Whep {
            publisher: publisher_user,
        };
        let tracks: Vec<TrackKey> = self
            .track_order
            .iter()
            .copied()
            .filter(|t| self.tracks.get(t).is_some_and(|t| t.owner == publisher))
            .collect();
        for track in tracks {
            self.attach_whep_track(viewer, track);
        }
    }

    /// A WHEP viewer's m-line appeared (after its offer was accepted).
    pub(super) fn whep_media_added(&mut self, viewer: ParticipantKey, mid: Mid, kind: MediaKind) {
        if let Some(p) = self.participants.get_mut(&viewer) {
            if !p.whep_mids.contains(&(mid, kind)) {
                p.whep_mids.push((mid, kind));
            }
        }
        let publisher_user = match self.participants.get(&viewer).map(|p| &p.kind) {
            Some(SessionKind::Whep { publisher }) => publisher.clone(),
            _ => return,
        };
        let Some(user) = publisher_user else {
            return;
        };
        let tracks: Vec<TrackKey> = self
            .track_order
            .iter()
            .copied()
            .filter(|t| {
                self.tracks.get(t).is_some_and(|t| {
                    self.participants
                        .get(&t.owner)
                        .is_some_and(|p| p.user_id == user)
                })
            })
            .collect();
        for track in tracks {
            self.attach_whep_track(viewer, track);
        }
    }

    /// The publisher a WHEP viewer follows published `track`: bind it to a
    /// free m-line of the same kind (continuity across republish).
    pub(super) fn rebind_whep_viewers(&mut self, publisher: ParticipantKey, track: TrackKey) {
        let Some(user) = self.participants.get(&publisher).map(|p| p.user_id.clone()) else {
            return;
        };
        let viewers: Vec<ParticipantKey> = self
            .participants
            .values()
            .filter(|p| matches!(&p.kind, SessionKind::Whep { publisher: Some(u) } if *u == user))
            .map(|p| p.key)
            .collect();
        for viewer in viewers {
            self.attach_whep_track(viewer, track);
        }
    }

    fn attach_whep_track(&mut self, viewer: ParticipantKey, track: TrackKey) {
        let Some(published) = self.tracks.get(&track) else {
            return;
        };
        let kind = media_kind(published.kind);
        let is_video = published.kind == TrackKind::Video;
        let gone: Vec<TrackKey> = self
            .participants
            .get(&viewer)
            .map(|p| {
                p.subscriptions
                    .iter()
                    .map(|s| s.track)
                    .filter(|t| !self.tracks.contains_key(t))
                    .collect()
            })
            .unwrap_or_default();
        let Some(participant) = self.participants.get_mut(&viewer) else {
            return;
        };
        if participant.is_subscribed(track) {
            return;
        }
        // A sending m-line of this kind not carrying a live track.
        let live: Vec<Mid> = participant
            .subscriptions
            .iter()
            .filter_map(|s| s.state.mid())
            .collect();
        let free_mid = participant
            .whep_mids
            .iter()
            .find(|(m, k)| *k == kind && !live.contains(m))
            .map(|(m, _)| *m);
        let taken_by_gone: Vec<usize> = participant
            .subscriptions
            .iter()
            .enumerate()
            .filter(|(_, s)| gone.contains(&s.track))
            .map(|(i, _)| i)
            .collect();
        // Reuse the m-line of a track that went away (publisher reconnected):
        // the forwarder keeps numbering continuous.
        let whep_mids = &participant.whep_mids;
        if let Some(index) = taken_by_gone.into_iter().find(|i| {
            participant.subscriptions[*i]
                .state
                .mid()
                .is_some_and(|m| whep_mids.iter().any(|(wm, k)| *wm == m && *k == kind))
        }) {
            let s = &mut participant.subscriptions[index];
            s.track = track;
            s.forwarder.restart_source();
            s.pt_map.clear();
        } else if let Some(mid) = free_mid {
            let clock_rate = if is_video { 90_000 } else { 48_000 };
            participant.subscriptions.push(Subscription {
                track,
                state: OutState::Open(mid),
                forwarder: Forwarder::new(is_video, clock_rate, initial_out_seq(), random_u32()),
                pt_map: Vec::new(),
                egress: None,
                recycled_line: None,
                own: Default::default(),
            });
        } else {
            return;
        }
        participant.needs_poll = true;
        let round_trip = participant.round_trip;
        if let Some(published) = self.tracks.get_mut(&track) {
            published.subscribers.push(viewer);
            if let Some(rtt) = round_trip {
                published.subscriber_rtt.observe(self.last_now, rtt);
            }
        }
        let now = self.last_now;
        self.request_keyframe(now, track, None, str0m::media::KeyframeRequestKind::Pli);
    }
}

fn forwarder_kind(forwarder: &Forwarder) -> TrackKind {
    if forwarder.is_video() {
        TrackKind::Video
    } else {
        TrackKind::Audio
    }
}

/// Returns subscriptions whose offer was rolled back to their "to do" state.
fn rollback_offered(participant: &mut crate::participant::Participant) {
    participant.offer_may_be_due = true;
    for s in participant.subscriptions.iter_mut() {
        match s.state {
            OutState::Negotiating(_) => s.state = OutState::ToOpen,
            OutState::NegotiatingPark(mid) => s.state = OutState::ToPark(mid),
            _ => {}
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Pins the first sequence number of new subscriptions in this thread
    /// (a test's room), e.g. just below the 16-bit wrap.
    pub(super) static PINNED_INITIAL_SEQ: std::cell::Cell<Option<u16>> =
        const { std::cell::Cell::new(None) };
}

/// The first sequence number of a new subscription's stream: random, as
/// RFC 3550 asks.
fn initial_out_seq() -> u16 {
    #[cfg(test)]
    if let Some(seq) = PINNED_INITIAL_SEQ.with(|pinned| pinned.get()) {
        return seq;
    }
    random_u32() as u16
}
