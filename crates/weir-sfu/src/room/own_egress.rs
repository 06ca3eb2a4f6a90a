//! Weir's own egress in the room: forwarded RTP sealed by Weir for each
//! subscriber (`crate::egress`) instead of through str0m's per-subscriber
//! send path, and NACKs for it answered from the track's history.
//!
//! - A subscriber's packets are sealed into its queue as they are
//!   forwarded and leave when the drive pass flushes the queue, so a
//!   frame's packets to one subscriber stay together (one GSO send).
//! - Every ~[`SENDER_REPORT_REFRESH`] one packet of each subscription goes
//!   through str0m instead: str0m's sender reports map RTP to wall-clock
//!   time from the packets written to it, and Weir cannot send SRTCP of its
//!   own beside str0m's (the receiver's replay window would drop one of two
//!   index sequences). It is always the first packet of a pass for that
//!   subscriber, and str0m's output is taken before the queue, so the
//!   order on the wire is the sequence order.
//! - The same SSRC and sequence numbers on both paths, so the SRTP index
//!   (rollover counter) agrees.
//! - Sessions whose DTLS negotiated AES-CM-HMAC-SHA1, or that are not
//!   connected yet, stay on str0m's path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::Mid;
use str0m::rtp::rtcp::Nack;
use tracing::info;

use super::Room;
use crate::datagrams::LocalSpares;
use crate::egress::history::{
    nack_window, nacked, KeptPacket, PacketHistory, SentPacket, SentRing,
};
use crate::egress::key_tap::KeyTap;
use crate::egress::rtp_header::{
    write_header, ExtensionIds, HeaderFields, MediaExtensions, MAX_HEADER_LEN,
};
use crate::egress::srtp_keys::TAG_LEN;
use crate::egress::srtp_seal::{PacketIndex, RtpSealer};
use crate::participant::{Participant, ParticipantKey};
use crate::track::TrackKey;
use crate::Datagrams;

/// How often a subscription's packet goes through str0m for its sender
/// reports (str0m sends one per second or so per stream). str0m's report
/// carries the RTP time of the last packet written to it moved on by the
/// wall-clock time since (`StreamTx::current_rtp_time`), so a written
/// packet a few seconds old maps as well as a fresh one (a sender clock
/// 100 ppm off moves the mapping by 0.4 ms in 4 s; lip sync tolerates tens
/// of ms). Each costs a full run of that subscriber's `Rtc`, str0m's copy
/// for its RTX cache and a send of its own: 4 s instead of 1 s made 1 -> 50
/// ~4 % cheaper per packet (12 same-time pairs, median 1.041), and 500 ms
/// made `forwarding/room_to_50_subscribers` 5-9 % slower than 1 s.
pub const SENDER_REPORT_REFRESH: Duration = Duration::from_secs(4);
/// Times one packet is sent again on request, at most.
const MAX_RESENDS: u8 = 2;
/// Most publisher packets a track keeps for NACKs (the age bounds it first).
const HISTORY_PACKETS: usize = 2048;

/// One participant's side of Weir's egress.
#[derive(Debug, Default)]
pub struct ParticipantEgress {
    pub key_tap: KeyTap,
    /// Made once DTLS has completed with an AEAD profile.
    sealer: Option<RtpSealer>,
    /// Tried to make the sealer and could not (another profile).
    unsupported: bool,
    /// Where str0m last sent SRTP or SRTCP to (the selected ICE pair's
    /// remote address).
    pub destination: Option<std::net::SocketAddr>,
    /// Sealed datagrams waiting for the drive pass.
    pub queue: Datagrams,
}

impl ParticipantEgress {
    pub fn new(key_tap: KeyTap) -> Self {
        ParticipantEgress {
            key_tap,
            ..Default::default()
        }
    }

    /// Reads what sealing a packet for this session reads first (the
    /// sealer's salt and stream indexes, the queue, the destination) and
    /// returns a value made of it, for the fan-out's read-ahead
    /// (`warm_subscribers` in `room/forwarding.rs`).
    pub fn warm(&self) -> usize {
        self.sealer.as_ref().map_or(0, RtpSealer::warm)
            ^ self.queue.len()
            ^ usize::from(self.destination.is_some())
    }

    /// Datagrams wait for the next drive pass.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The session's sealer, made the first time its keys are there
    /// (`participant` names the session in the log line saying which path
    /// its forwarded RTP takes).
    fn sealer(&mut self, participant: &dyn std::fmt::Display) -> Option<&mut RtpSealer> {
        if self.sealer.is_none() && !self.unsupported {
            let keys = self.key_tap.keys()?;
            let profile = keys.profile();
            if let Some(Ok(session)) = keys
                .outbound()
                .map(|master| master.and_then(|m| m.rtp_session_key()))
            {
                self.sealer = RtpSealer::new(&session).ok();
            }
            if self.sealer.is_none() {
                self.unsupported = true;
                info!(%participant, ?profile, "forwarded RTP goes through str0m (SRTP profile)");
            } else {
                info!(%participant, ?profile, "forwarded RTP sealed by Weir");
            }
        }
        self.sealer.as_mut()
    }
}

/// One subscription's side of Weir's egress.
#[derive(Debug, Default)]
pub struct SubscriptionEgress {
    /// The subscriber's SSRC, extension ids and mid on this m-line.
    stream: Option<EgressStream>,
    /// When the next packet goes through str0m (sender reports).
    next_via_str0m: Option<Instant>,
    /// What was sent, for NACKs (video only).
    sent: Option<SentRing>,
    /// Sent by Weir (str0m's egress statistics do not count them).
    pub bytes: u64,
    pub packets: u64,
}

impl SubscriptionEgress {
    /// Reads the stream's SSRC and the sent ring's next slot (see
    /// [`ParticipantEgress::warm`]).
    pub fn warm(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.ssrc as usize)
            ^ self.sent.as_ref().map_or(0, SentRing::warm)
    }
}

/// Where a subscription's packets go, learnt from str0m at its first
/// packet sealed by Weir.
#[derive(Debug)]
struct EgressStream {
    ssrc: u32,
    ids: ExtensionIds,
    /// The mid as the header extension writes it (str0m's `Mid` trims its
    /// padding each time it is read as text).
    mid: String,
}

/// What to do with one forwarded packet for one subscriber.
pub(super) enum OwnSend {
    /// Sealed and queued.
    Sent,
    /// Write it through str0m.
    ViaStr0m,
}

/// A forwarded packet as the forwarder rewrote it for one subscription.
pub(super) struct Forwarded<'a> {
    pub mid: Mid,
    pub fields: HeaderFields,
    /// The extended sequence number (`fields.seq` is its low 16 bits): the
    /// SRTP index, as str0m seals this subscription's other packets.
    pub out_seq: u64,
    pub in_ssrc: u32,
    pub in_seq: u64,
    pub payload: &'a [u8],
    pub extensions: &'a MediaExtensions,
    pub nackable: bool,
}

/// Seals `packet` for `participant` (on its `subscription`-th
/// subscription) when its session allows, or says to write it through
/// str0m.
pub(super) fn send_own(
    participant: &mut Participant,
    subscription: usize,
    packet: &Forwarded<'_>,
    now: Instant,
    spare: &mut LocalSpares,
) -> OwnSend {
    let Participant {
        id,
        rtc,
        own_egress: egress,
        subscriptions,
        ..
    } = participant;
    if egress.destination.is_none() || egress.sealer(id).is_none() {
        return OwnSend::ViaStr0m;
    }
    let Some(subscription) = subscriptions.get_mut(subscription) else {
        return OwnSend::ViaStr0m;
    };
    let own = &mut subscription.own;
    let record = |own: &mut SubscriptionEgress, via_str0m: bool| {
        if packet.nackable {
            own.sent
                .get_or_insert_with(SentRing::default)
                .record(SentPacket {
                    out_seq: packet.out_seq,
                    out_timestamp: packet.fields.timestamp,
                    payload_type: packet.fields.payload_type,
                    marker: packet.fields.marker,
                    in_ssrc: packet.in_ssrc,
                    in_seq: packet.in_seq as u32,
                    via_str0m,
                    resent: 0,
                });
        }
    };
    // The first packet of a pass for this subscriber may go through str0m,
    // which sends it before the queue.
    if egress.queue.is_empty() && own.next_via_str0m.is_none_or(|at| now >= at) {
        own.next_via_str0m = Some(now + SENDER_REPORT_REFRESH);
        record(own, true);
        return OwnSend::ViaStr0m;
    }
    if own.stream.is_none() {
        let Some(ssrc) = rtc
            .direct_api()
            .stream_tx_by_mid(packet.mid, None)
            .map(|s| *s.ssrc())
        else {
            return OwnSend::ViaStr0m;
        };
        let ids = rtc
            .media(packet.mid)
            .map(|m| ExtensionIds::from_map(m.remote_extmap()))
            .unwrap_or_default();
        own.stream = Some(EgressStream {
            ssrc,
            ids,
            mid: packet.mid.to_string(),
        });
    }
    let Some(stream) = &own.stream else {
        return OwnSend::ViaStr0m;
    };
    let fields = HeaderFields {
        ssrc: stream.ssrc,
        ..packet.fields
    };
    if !seal_onto(
        egress,
        spare,
        fields,
        packet.out_seq,
        stream,
        packet.extensions,
        packet.payload,
    ) {
        return OwnSend::ViaStr0m;
    }
    own.bytes += packet.payload.len() as u64;
    own.packets += 1;
    record(own, false);
    OwnSend::Sent
}

/// The header and payload written straight onto the end of `queue` and
/// sealed there with `out_seq` (the extended sequence number whose low 16
/// bits are `fields.seq`) as the SRTP index; false (and nothing queued)
/// when the session cannot seal. A queue without a buffer (its last one
/// was sent) takes one of the room's spares.
fn seal_onto(
    egress: &mut ParticipantEgress,
    spare: &mut LocalSpares,
    fields: HeaderFields,
    out_seq: u64,
    stream: &EgressStream,
    extensions: &MediaExtensions,
    payload: &[u8],
) -> bool {
    let ParticipantEgress { sealer, queue, .. } = egress;
    let (Some(sealer), Some(index)) = (sealer.as_mut(), PacketIndex::from_extended(out_seq)) else {
        return false;
    };
    queue.use_spare_buffer(spare);
    queue.push_with(MAX_HEADER_LEN + payload.len() + TAG_LEN, |buffer| {
        let start = buffer.len();
        write_header(fields, &stream.ids, Some(&stream.mid), extensions, buffer);
        buffer.extend_from_slice(payload);
        sealer.seal_in_place_at(buffer, start, index).is_ok()
    })
}

impl Room {
    /// Keeps a forwarded publisher packet for NACKs from subscribers on
    /// Weir's egress.
    pub(super) fn keep_for_nacks(&mut self, now: Instant, track: TrackKey, packet: KeptPacket) {
        let configured = self.config.nack_cache_age;
        if let Some(track) = self.tracks.get_mut(&track) {
            if track.subscribers.is_empty() {
                // Sent to nobody, so nobody can ask for it again (and what
                // was kept for earlier subscribers is of no use now).
                track.history = None;
                return;
            }
            let round_trip = track.subscriber_rtt.get(now).or_else(|| {
                // No receiver report in the last periods (a subscription's
                // first seconds): the subscribers' latest known round trips,
                // kept for this period.
                let known = track
                    .subscribers
                    .iter()
                    .filter_map(|s| self.participants.get(s)?.round_trip)
                    .max()?;
                track.subscriber_rtt.observe(now, known);
                Some(known)
            });
            let age = nack_window(round_trip, configured);
            let history = track
                .history
                .get_or_insert_with(|| PacketHistory::new(age, HISTORY_PACKETS));
            history.set_max_age(age);
            history.push(now, packet);
        }
    }

    /// Packets kept for NACKs, over every track.
    #[cfg(test)]
    pub(super) fn packets_kept_for_nacks(&self) -> usize {
        self.tracks
            .values()
            .filter_map(|t| t.history.as_ref())
            .map(PacketHistory::len)
            .sum()
    }

    /// The round trip of `key`'s signalling connection (its ping, answered
    /// by the client's pong): until its receiver reports tell, it sizes the
    /// NACK history of the tracks `key` subscribes to, instead of the
    /// configured longest history.
    pub fn set_signalling_round_trip(&mut self, now: Instant, key: ParticipantKey, rtt: Duration) {
        self.last_now = now;
        let Some(participant) = self.participants.get_mut(&key) else {
            return;
        };
        if participant.round_trip.is_some() {
            // A receiver report's round trip is the media path's own.
            return;
        }
        participant.round_trip = Some(rtt);
        for subscription in &participant.subscriptions {
            if let Some(track) = self.tracks.get_mut(&subscription.track) {
                track.subscriber_rtt.observe(now, rtt);
            }
        }
    }

    /// A subscriber's NACK: packets Weir sent are sealed again from the
    /// track's history (str0m answers for the ones it sent).
    pub(super) fn answer_nack(&mut self, now: Instant, key: ParticipantKey, nack: &Nack) {
        let Room {
            participants,
            tracks,
            counters,
            spare_buffers,
            ..
        } = self;
        let Some(participant) = participants.get_mut(&key) else {
            return;
        };
        let Participant {
            own_egress: egress,
            subscriptions,
            ..
        } = &mut **participant;
        let media_ssrc = *nack.ssrc;
        let Some(subscription) = subscriptions
            .iter_mut()
            .find(|s| s.own.stream.as_ref().is_some_and(|e| e.ssrc == media_ssrc))
        else {
            return;
        };
        let Some(history) = tracks
            .get(&subscription.track)
            .and_then(|t| t.history.as_ref())
        else {
            return;
        };
        let own = &mut subscription.own;
        let (Some(stream), Some(sent)) = (&own.stream, own.sent.as_mut()) else {
            return;
        };
        for entry in nack.reports.iter() {
            for out_seq in nacked(entry.pid, entry.blp) {
                let Some(record) = sent.get(out_seq) else {
                    counters.nacks_unanswered += 1;
                    continue;
                };
                if record.via_str0m {
                    continue;
                }
                if record.resent >= MAX_RESENDS {
                    counters.nacks_unanswered += 1;
                    continue;
                }
                let Some(kept) = history.get(now, record.in_ssrc, record.in_seq) else {
                    counters.nacks_unanswered += 1;
                    continue;
                };
                let fields = HeaderFields {
                    payload_type: record.payload_type,
                    marker: record.marker,
                    seq: record.out_seq as u16,
                    timestamp: record.out_timestamp,
                    ssrc: stream.ssrc,
                };
                let payload = Arc::clone(&kept.payload);
                if !seal_onto(
                    egress,
                    spare_buffers,
                    fields,
                    record.out_seq,
                    stream,
                    &kept.extensions,
                    &payload,
                ) {
                    continue;
                }
                sent.mark_resent(out_seq);
                own.bytes += payload.len() as u64;
                own.packets += 1;
                counters.rtp_retransmitted += 1;
            }
        }
    }
}
