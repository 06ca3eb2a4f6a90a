//! Signalling messages from a participant (after `join`, which the server
//! shell handles together with the token).

use std::time::Instant;

use weir_protocol::{ClientMessage, ErrorCode, Grant, ServerMessage, TrackId};

use super::Room;
use crate::participant::ParticipantKey;
use crate::track::TrackKey;

impl Room {
    /// Handles one parsed message from a signalling participant.
    pub fn handle_message(&mut self, now: Instant, key: ParticipantKey, message: ClientMessage) {
        self.last_now = now;
        if !self.participants.contains_key(&key) {
            return;
        }
        match message {
            ClientMessage::Join { .. } => {
                self.error(
                    key,
                    ErrorCode::AlreadyJoined,
                    "this session has already joined",
                );
            }
            ClientMessage::Offer { sdp } => self.accept_client_offer(key, &sdp),
            ClientMessage::Answer { sdp } => self.accept_answer(key, &sdp),
            ClientMessage::Publish(request) => {
                let Some(participant) = self.participants.get_mut(&key) else {
                    return;
                };
                if !participant.allows(Grant::Publish) {
                    self.error(
                        key,
                        ErrorCode::PermissionDenied,
                        "the token does not grant `publish`",
                    );
                    return;
                }
                if participant.pending_publish.len() >= 32 {
                    self.error(key, ErrorCode::BadRequest, "too many pending publications");
                    return;
                }
                participant
                    .pending_publish
                    .insert(request.mid.clone(), request);
            }
            ClientMessage::Unpublish { track_id } => {
                if let Some(track) = self.own_track(key, &track_id) {
                    self.unpublish(now, track);
                }
            }
            ClientMessage::Mute { track_id, muted } => {
                if let Some(track) = self.own_track(key, &track_id) {
                    self.set_muted(key, track, muted);
                }
            }
            ClientMessage::Subscribe { track_id } => {
                if !self
                    .participants
                    .get(&key)
                    .is_some_and(|p| p.allows(Grant::Subscribe))
                {
                    self.error(
                        key,
                        ErrorCode::PermissionDenied,
                        "the token does not grant `subscribe`",
                    );
                    return;
                }
                match self.track_by_id(&track_id) {
                    Some(track) if self.tracks.get(&track).is_some_and(|t| t.owner != key) => {
                        self.add_subscription(key, track);
                    }
                    _ => self.error(
                        key,
                        ErrorCode::TrackNotFound,
                        format!("no track `{track_id}` to subscribe to"),
                    ),
                }
            }
            ClientMessage::Unsubscribe { track_id } => match self.track_by_id(&track_id) {
                Some(track) => self.remove_subscription(key, track),
                None => self.error(
                    key,
                    ErrorCode::TrackNotFound,
                    format!("no track `{track_id}`"),
                ),
            },
            ClientMessage::Ping { ts } => self.signal(key, ServerMessage::Pong { ts }),
            ClientMessage::Leave => {
                self.remove_participant(now, key, weir_protocol::LeaveReason::ClientLeft);
            }
        }
        self.drive(now);
    }

    /// Reports a message the shell could not parse (counted, answered).
    pub fn reject_message(&mut self, key: ParticipantKey, code: ErrorCode, message: String) {
        self.error(key, code, message);
    }

    fn own_track(&mut self, key: ParticipantKey, track_id: &TrackId) -> Option<TrackKey> {
        match self.track_by_id(track_id) {
            Some(track) if self.tracks.get(&track).is_some_and(|t| t.owner == key) => Some(track),
            _ => {
                self.error(
                    key,
                    ErrorCode::TrackNotFound,
                    format!("you publish no track `{track_id}`"),
                );
                None
            }
        }
    }

    fn track_by_id(&self, track_id: &TrackId) -> Option<TrackKey> {
        self.tracks
            .values()
            .find(|t| t.id == *track_id)
            .map(|t| t.key)
    }

    pub(super) fn set_muted(&mut self, key: ParticipantKey, track: TrackKey, muted: bool) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if t.muted == muted {
            return;
        }
        t.muted = muted;
        let Some(participant_id) = self.participants.get(&key).map(|p| p.id.clone()) else {
            return;
        };
        let message = ServerMessage::TrackMuted {
            track_id: t.id.clone(),
            participant_id,
            muted,
        };
        self.signal(key, message.clone());
        self.broadcast_except(key, message);
    }
}
