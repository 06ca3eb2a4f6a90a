//! A participant: one `str0m::Rtc` (one peer connection) and what it
//! publishes and subscribes to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::media::{Mid, Rid};
use str0m::rtp::Ssrc;
use str0m::Rtc;
use weir_protocol::{Grant, ParticipantId, PublishRequest};

use crate::forwarder::Forwarder;
use crate::track::TrackKey;

/// Room-local handle of a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey(pub u64);

/// How the participant talks to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    /// WebSocket signalling: offers and answers both ways.
    Signalling,
    /// WHIP ingest: one offer, publishes what it sends.
    Whip,
    /// WHEP egress: one offer, receives the tracks of one publisher
    /// (`user_id`), or of the room's first publisher.
    Whep { publisher: Option<String> },
}

/// Negotiation state of one outgoing (subscribed) m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Needs an m-line in the next server offer.
    ToOpen,
    /// Offered on `mid`, waiting for the answer.
    Negotiating(Mid),
    /// Negotiated: media flows on `mid`.
    Open(Mid),
    /// Must be parked (made inactive) in the next server offer.
    ToPark(Mid),
    /// Parking offered, waiting for the answer.
    NegotiatingPark(Mid),
}

impl OutState {
    pub fn mid(self) -> Option<Mid> {
        match self {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToPark(m)
            | OutState::NegotiatingPark(m) => Some(m),
        }
    }
}

/// One subscribed track on this participant's connection.
#[derive(Debug)]
pub struct Subscription {
    pub track: TrackKey,
    pub state: OutState,
    pub forwarder: Forwarder,
    /// The publisher's payload type -> our payload type on this m-line.
    pub pt_map: Vec<(u8, Option<u8>)>,
    /// What the subscriber reports about receiving this m-line.
    pub egress: Option<crate::link_stats::LinkStats>,
    /// A parked m-line reserved for this subscription (re-enabled by the
    /// next offer instead of adding a new one).
    pub recycled_line: Option<Mid>,
    /// Weir's own egress on this m-line.
    pub own: crate::room::own_egress::SubscriptionEgress,
}

/// An m-line no longer carrying a subscription, kept inactive for reuse.
///
/// m-lines are never stopped: a session whose every m-line is stopped
/// has no BUNDLE group, which str0m refuses, and recycling keeps the
/// number of transceivers bounded by the largest number of simultaneous
/// subscriptions. The forwarder is kept so a reused line continues its
/// SSRC's numbering.
#[derive(Debug)]
pub struct ParkedLine {
    pub mid: Mid,
    pub kind: weir_protocol::TrackKind,
    pub forwarder: Forwarder,
}

#[derive(Debug)]
pub struct Participant {
    pub key: ParticipantKey,
    pub id: ParticipantId,
    pub user_id: String,
    pub grants: Vec<Grant>,
    pub kind: SessionKind,
    /// Boxed: an `Rtc` is ~10 KiB, and the room's scans and fan-out read
    /// the fields around it once per pass for every participant; apart,
    /// those fields share a few cache lines and one page.
    pub rtc: Box<Rtc>,
    pub joined_at_ms: u64,
    pub auto_subscribe: bool,
    /// Local ICE ufrag, for routing a first STUN packet.
    pub ice_ufrag: String,
    /// Announced with `publish`, waiting for the offer carrying the mid.
    pub pending_publish: HashMap<String, PublishRequest>,
    /// The publisher's mid -> published track.
    pub published: HashMap<Mid, TrackKey>,
    /// Incoming SSRC -> (track, simulcast rid).
    pub ssrc_routes: HashMap<Ssrc, (TrackKey, Option<Rid>)>,
    pub subscriptions: Vec<Subscription>,
    pub parked: Vec<ParkedLine>,
    /// WHEP: the m-lines the viewer offered to receive on.
    pub whep_mids: Vec<(Mid, str0m::media::MediaKind)>,
    pub pending_offer: Option<SdpPendingOffer>,
    /// A subscription may be waiting for a server offer (to open or to
    /// park an m-line): set wherever one enters that state, cleared when
    /// the room finds none waiting, so the room's check before each drive
    /// does not scan the subscriptions of every participant on every pass.
    pub offer_may_be_due: bool,
    /// The client's latest offer and per-mid codec preferences: server
    /// offers keep the client's codec order for its own m-lines (a re-offer
    /// listing another codec first would switch the publisher's encoder).
    pub codec_reference: Option<(String, std::collections::HashMap<String, Vec<String>>)>,
    pub next_timeout: Option<Instant>,
    /// `next_timeout` may be served late, on the room's coarse timer grid
    /// (a report or stats timer; see `room/timers.rs`).
    pub timer_is_lazy: bool,
    pub needs_poll: bool,
    /// Something was written through str0m's direct API (forwarded RTP, a
    /// keyframe request) that str0m only sends on its next timeout input;
    /// the room gives it one before polling (see `Room::drive`).
    pub needs_timeout: bool,
    pub connected: bool,
    pub leaving: bool,
    /// Weir's own egress for this session (its queue, when not empty,
    /// needs the next drive pass).
    pub own_egress: crate::room::own_egress::ParticipantEgress,
    /// The latest round trip known to this session: from a subscription's
    /// receiver reports, or before any, from the signalling connection's
    /// ping. The NACK history of the tracks it subscribes to is sized by it
    /// until their receiver reports tell (see `Room::keep_for_nacks`).
    pub round_trip: Option<Duration>,
}

impl Participant {
    pub fn allows(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }

    pub fn subscription_by_track(&mut self, track: TrackKey) -> Option<&mut Subscription> {
        self.subscriptions.iter_mut().find(|s| s.track == track)
    }

    pub fn subscription_by_mid(&self, mid: Mid) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|s| s.state.mid() == Some(mid))
    }

    pub fn is_subscribed(&self, track: TrackKey) -> bool {
        self.subscriptions.iter().any(|s| {
            s.track == track
                && !matches!(s.state, OutState::ToPark(_) | OutState::NegotiatingPark(_))
        })
    }
}
