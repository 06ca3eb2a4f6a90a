//! Counters a room keeps about its traffic and its refusals.

/// Monotonic counters, read through `Room::counters` (by the room's
/// tests and benchmarks today; the server's metrics export, with the
/// monitoring work, is to take them from there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomCounters {
    pub participants_joined: u64,
    pub participants_left: u64,
    pub tracks_published: u64,
    /// Datagrams str0m could not classify (not STUN/DTLS/RTP/RTCP).
    pub datagrams_malformed: u64,
    /// Datagrams no participant of the room accepted.
    pub datagrams_unmatched: u64,
    /// Datagrams a participant's `Rtc` refused.
    pub datagrams_refused: u64,
    pub rtp_received: u64,
    pub rtp_forwarded: u64,
    /// Of `rtp_forwarded`, sealed by Weir's own egress (not str0m).
    pub rtp_sealed_by_weir: u64,
    /// Packets sent again on a subscriber's NACK by Weir's own egress.
    pub rtp_retransmitted: u64,
    /// NACKed packets Weir's egress no longer had (too old, or resent
    /// enough already).
    pub nacks_unanswered: u64,
    /// Dropped by a forwarder (keyframe wait, other layer, too old).
    pub rtp_not_forwarded: u64,
    pub rtp_unrouted: u64,
    pub rtp_unknown_payload_type: u64,
    pub rtp_codec_mismatch: u64,
    pub rtp_no_send_stream: u64,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_merged: u64,
    pub signalling_errors: u64,
}
