//! Room administration (the control plane's room API): kick, live grant
//! changes, server-side mute.

use std::time::Instant;

use weir_protocol::{Grant, LeaveReason, ServerMessage, TrackId};

use super::Room;
use crate::participant::ParticipantKey;
use crate::track::TrackKey;

/// Why an administrative action did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no participant `{0}` in this room")]
    NoSuchParticipant(String),
    #[error("no track `{0}` in this room")]
    NoSuchTrack(String),
}

impl Room {
    /// Removes every session of `user_id` (told with `leave {reason: kicked}`).
    pub fn kick(&mut self, now: Instant, user_id: &str) -> Result<usize, AdminError> {
        self.last_now = now;
        let keys = self.sessions_of(user_id);
        if keys.is_empty() {
            return Err(AdminError::NoSuchParticipant(user_id.to_string()));
        }
        for key in &keys {
            self.signal(
                *key,
                ServerMessage::Leave {
                    reason: LeaveReason::Kicked,
                },
            );
            self.remove_participant(now, *key, LeaveReason::Kicked);
        }
        self.drive(now);
        Ok(keys.len())
    }

    /// Replaces the grants of every session of `user_id`, effective at
    /// once: without `publish` its tracks are unpublished (forwarding stops
    /// now), without `subscribe` its subscriptions are removed.
    pub fn update_grants(
        &mut self,
        now: Instant,
        user_id: &str,
        grants: &[Grant],
    ) -> Result<(), AdminError> {
        self.last_now = now;
        let keys = self.sessions_of(user_id);
        if keys.is_empty() {
            return Err(AdminError::NoSuchParticipant(user_id.to_string()));
        }
        let mut grants: Vec<Grant> = grants.to_vec();
        grants.sort_by_key(|g| g.as_str());
        grants.dedup();
        for key in keys {
            let Some(participant) = self.participants.get_mut(&key) else {
                continue;
            };
            participant.grants = grants.clone();
            if !grants.contains(&Grant::Publish) {
                participant.pending_publish.clear();
                self.unpublish_all_of(now, key);
            }
            if !grants.contains(&Grant::Subscribe) {
                let subscribed: Vec<TrackKey> = self
                    .participants
                    .get(&key)
                    .map(|p| p.subscriptions.iter().map(|s| s.track).collect())
                    .unwrap_or_default();
                for track in subscribed {
                    self.remove_subscription(key, track);
                }
            }
            self.signal(
                key,
                ServerMessage::PermissionsChanged {
                    grants: grants.clone(),
                },
            );
        }
        self.drive(now);
        Ok(())
    }

    /// Turns the recorder tap of a track on or off: while on, every packet
    /// of the track (its best layer, if simulcast) is also output as
    /// [`crate::RoomOutput::Tapped`]. When turned on for video, the
    /// publisher is asked for a keyframe so that recording can start at
    /// once.
    pub fn set_tap(&mut self, now: Instant, track_id: &str, on: bool) -> Result<(), AdminError> {
        self.last_now = now;
        let id = TrackId::new(track_id);
        let Some(track) = self.tracks.values_mut().find(|t| t.id == id) else {
            return Err(AdminError::NoSuchTrack(track_id.to_string()));
        };
        let was_on = std::mem::replace(&mut track.tapped, on);
        let key = track.key;
        if on && !was_on {
            self.request_keyframe(now, key, None, str0m::media::KeyframeRequestKind::Pli);
        }
        Ok(())
    }

    /// Asks the publisher of a video track for a keyframe (merged with other
    /// requests like a subscriber's PLI).
    pub fn request_track_keyframe(
        &mut self,
        now: Instant,
        track_id: &str,
    ) -> Result<(), AdminError> {
        self.last_now = now;
        let id = TrackId::new(track_id);
        let Some(key) = self.tracks.values().find(|t| t.id == id).map(|t| t.key) else {
            return Err(AdminError::NoSuchTrack(track_id.to_string()));
        };
        self.request_keyframe(now, key, None, str0m::media::KeyframeRequestKind::Pli);
        Ok(())
    }

    /// Mutes (or unmutes) a track from the server side: forwarding to every
    /// subscriber pauses (resuming at a keyframe), and everyone, the
    /// publisher included, gets `track_muted`.
    pub fn mute_track(
        &mut self,
        now: Instant,
        track_id: &str,
        muted: bool,
    ) -> Result<(), AdminError> {
        self.last_now = now;
        let id = TrackId::new(track_id);
        let Some(track) = self.tracks.values().find(|t| t.id == id).map(|t| t.key) else {
            return Err(AdminError::NoSuchTrack(track_id.to_string()));
        };
        let Some(owner) = self.tracks.get(&track).map(|t| t.owner) else {
            return Err(AdminError::NoSuchTrack(track_id.to_string()));
        };
        let subscribers = self
            .tracks
            .get(&track)
            .map(|t| t.subscribers.clone())
            .unwrap_or_default();
        for subscriber in subscribers {
            if let Some(s) = self
                .participants
                .get_mut(&subscriber)
                .and_then(|p| p.subscription_by_track(track))
            {
                s.forwarder.set_paused(muted);
            }
        }
        self.set_muted(owner, track, muted);
        if !muted {
            // Subscribers resume at a keyframe: ask for one now.
            self.request_keyframe(now, track, None, str0m::media::KeyframeRequestKind::Pli);
        }
        self.drive(now);
        Ok(())
    }

    fn sessions_of(&self, user_id: &str) -> Vec<ParticipantKey> {
        self.join_order
            .iter()
            .copied()
            .filter(|k| {
                self.participants
                    .get(k)
                    .is_some_and(|p| p.user_id == user_id)
            })
            .collect()
    }
}
