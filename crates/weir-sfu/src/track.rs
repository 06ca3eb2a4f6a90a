//! Published tracks: what a publisher sends into the room.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use weir_protocol::{TrackId, TrackInfo, TrackKind, TrackSource};

use crate::keyframe_requests::KeyframeRequestThrottle;
use crate::participant::ParticipantKey;

/// Room-local handle of a published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey(pub u64);

/// A track published into the room by one participant.
#[derive(Debug)]
pub struct PublishedTrack {
    pub key: TrackKey,
    pub id: TrackId,
    pub owner: ParticipantKey,
    /// The publisher's mid carrying this track.
    pub mid: Mid,
    pub kind: TrackKind,
    pub source: TrackSource,
    pub muted: bool,
    /// Codec mime type once the first packet arrived (`video/VP8`).
    pub codec: Option<String>,
    pub simulcast_layers: Vec<String>,
    /// The publisher's payload types, resolved to codec parameters.
    pub params_by_pt: HashMap<Pt, PayloadParams>,
    pub keyframe_requests: KeyframeRequestThrottle,
    /// How the server receives this track, per simulcast layer.
    pub ingress: HashMap<Option<String>, crate::link_stats::LinkStats>,
    /// Participants subscribed to this track (any negotiation state).
    pub subscribers: Vec<ParticipantKey>,
    /// The recorder tap is on: packets are copied out as
    /// [`crate::RoomOutput::Tapped`].
    pub tapped: bool,
    /// Recent packets, for NACKs from subscribers on Weir's own egress.
    pub history: Option<crate::egress::history::PacketHistory>,
    /// The longest round trip its subscribers reported lately: how long
    /// `history` keeps packets follows it.
    pub subscriber_rtt: crate::egress::history::RecentMax,
    /// Bytes per simulcast layer in the current measurement window.
    layer_bytes: HashMap<Option<String>, u64>,
    /// Bitrate per layer measured over the last full window (bits/s).
    layer_bitrates: HashMap<Option<String>, u64>,
    window_start: Option<Instant>,
}

const LAYER_WINDOW: Duration = Duration::from_secs(1);

impl PublishedTrack {
    pub fn new(
        key: TrackKey,
        id: TrackId,
        owner: ParticipantKey,
        mid: Mid,
        kind: TrackKind,
        source: TrackSource,
        keyframe_interval: Duration,
    ) -> Self {
        PublishedTrack {
            key,
            id,
            owner,
            mid,
            kind,
            source,
            muted: false,
            codec: None,
            simulcast_layers: Vec::new(),
            params_by_pt: HashMap::new(),
            keyframe_requests: KeyframeRequestThrottle::new(keyframe_interval),
            subscribers: Vec::new(),
            tapped: false,
            history: None,
            subscriber_rtt: Default::default(),
            ingress: HashMap::new(),
            layer_bytes: HashMap::new(),
            layer_bitrates: HashMap::new(),
            window_start: None,
        }
    }

    pub fn info(&self, participant_id: &weir_protocol::ParticipantId, user_id: &str) -> TrackInfo {
        TrackInfo {
            track_id: self.id.clone(),
            participant_id: participant_id.clone(),
            user_id: user_id.to_string(),
            kind: self.kind,
            source: self.source,
            muted: self.muted,
            codec: self.codec.clone(),
            simulcast: !self.simulcast_layers.is_empty(),
        }
    }

    /// Accounts an incoming packet for layer bitrate measurement.
    pub fn account(&mut self, layer: Option<&str>, bytes: usize, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= LAYER_WINDOW {
            let secs = now
                .saturating_duration_since(start)
                .as_secs_f64()
                .max(0.001);
            self.layer_bitrates = self
                .layer_bytes
                .drain()
                .map(|(layer, bytes)| (layer, (bytes as f64 * 8.0 / secs) as u64))
                .collect();
            self.window_start = Some(now);
        }
        *self
            .layer_bytes
            .entry(layer.map(str::to_string))
            .or_default() += bytes as u64;
    }

    /// The layer a subscriber without constraints should get: the one with
    /// the highest measured bitrate (the best quality being sent).
    pub fn best_layer(&self) -> Option<Option<String>> {
        self.layer_bitrates
            .iter()
            .filter(|(_, &rate)| rate > 0)
            .max_by_key(|(_, &rate)| rate)
            .map(|(layer, _)| layer.clone())
    }
}

pub fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

pub fn media_kind(kind: TrackKind) -> MediaKind {
    match kind {
        TrackKind::Audio => MediaKind::Audio,
        TrackKind::Video => MediaKind::Video,
    }
}
