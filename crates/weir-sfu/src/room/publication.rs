//! Publications: tracks appearing and going away, and keyframe requests
//! toward their publishers.

use std::time::Instant;

use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use tracing::info;
use weir_protocol::{Grant, PublishRequest, ServerMessage, TrackId, TrackKind, TrackSource};

use super::{Room, RoomOutput};
use crate::ids::random_id;
use crate::participant::{ParticipantKey, SessionKind};
use crate::track::{track_kind, PublishedTrack, TrackKey};

impl Room {
    pub(super) fn media_added(
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

    pub(super) fn media_changed(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        mid: Mid,
        direction: Direction,
    ) {
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

    pub(super) fn publish(
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
            self.outputs.push_back(RoomOutput::TrackPublished {
                owner: key,
                track: info.clone(),
            });
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

    pub(super) fn unpublish(&mut self, _now: Instant, track_key: TrackKey) {
        let info = self.track_info(track_key);
        let Some(track) = self.tracks.remove(&track_key) else {
            return;
        };
        if let Some(info) = info {
            self.outputs.push_back(RoomOutput::TrackUnpublished {
                owner: track.owner,
                track: info,
            });
        }
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

    pub(super) fn request_keyframe(
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
                publisher.needs_timeout = true;
            }
        }
    }

    /// Unpublishes every track `owner` publishes (leave, revoked grant).
    pub(super) fn unpublish_all_of(&mut self, now: Instant, owner: ParticipantKey) {
        let owned: Vec<TrackKey> = self
            .track_order
            .iter()
            .copied()
            .filter(|t| self.tracks.get(t).is_some_and(|t| t.owner == owner))
            .collect();
        for track in owned {
            self.unpublish(now, track);
        }
    }
}
