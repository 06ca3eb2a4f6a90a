//! The media path: a publisher's RTP packet to every subscriber's `Rtc`,
//! and keyframe requests back the other way.
//!
//! A publisher's packet is routed to its track when str0m hands it over
//! and waits in the room; the next drive step forwards everything routed
//! since the last one ([`Room::fan_out`]) subscriber by subscriber: each
//! subscriber takes all of a track's waiting packets at once, so its state
//! (forwarder, keys, queue) is brought into the cache once per pass rather
//! than once per packet, as a packet-by-packet fan-out to a large room
//! did. Before that, every subscriber's state is read once in a row
//! ([`warm_subscribers`]), so the cache misses of a pass overlap.

use std::time::Instant;

use str0m::format::{Codec, PayloadParams};
use str0m::media::{KeyframeRequestKind, Mid, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};

use super::own_egress::{send_own, Forwarded, OwnSend};
use super::Room;
use crate::config::RoomConfig;
use crate::counters::RoomCounters;
use crate::datagrams::LocalSpares;
use crate::egress::history::KeptPacket;
use crate::egress::rtp_header::{HeaderFields, MediaExtensions};
use crate::forwarder::{ForwardDecision, IncomingPacket};
use crate::keyframe::VideoCodec;
use crate::participant::{OutState, Participant, ParticipantKey};
use crate::sequence::{ExtendedSeq, RtpTimestamp};
use crate::track::TrackKey;

/// A publisher's packet routed to its track, waiting for [`Room::fan_out`].
pub(super) struct RoutedPacket {
    track: TrackKey,
    rid: Option<Rid>,
    /// The simulcast layer it belongs to (`None`: a single-layer stream).
    layer: Option<String>,
    /// The layer subscribers are switched to, when the track has several.
    best_layer: Option<Option<String>>,
    params: PayloadParams,
    video: Option<VideoCodec>,
    is_video: bool,
    packet: RtpPacket,
    /// The header extensions forwarded with it (when str0m sends it).
    extensions: ExtensionValues,
    /// The same, in the wire form Weir's egress writes and keeps.
    media_extensions: MediaExtensions,
    arrival: Instant,
    /// A subscriber's forwarder dropped it and asked for a keyframe.
    wants_keyframe: bool,
}

impl Room {
    /// Routes a publisher's packet to its track (statistics, the recorder
    /// tap) and leaves it for the next [`Room::fan_out`].
    pub(super) fn forward_rtp(&mut self, now: Instant, from: ParticipantKey, packet: RtpPacket) {
        let Some((track_key, rid)) = self.route_packet(from, &packet) else {
            self.counters.rtp_unrouted += 1;
            return;
        };
        let pt = packet.header.payload_type;
        let Some(params) = self.params_for(from, track_key, pt) else {
            self.counters.rtp_unknown_payload_type += 1;
            return;
        };
        let Some(track) = self.tracks.get_mut(&track_key) else {
            return;
        };
        let layer = rid.map(|r| r.to_string());
        track.account(layer.as_deref(), packet.payload.len(), now);
        let best_layer = if track.simulcast_layers.len() > 1 || layer.is_some() {
            track.best_layer()
        } else {
            None
        };
        self.counters.rtp_received += 1;
        // The recorder gets the layer subscribers are sent (or the only one).
        if track.tapped && (layer.is_none() || best_layer.as_ref() == Some(&layer)) {
            let tapped = tapped_packet(track, from, &packet, params, now);
            self.outputs.push_back(super::RoomOutput::Tapped(tapped));
        }
        let is_video = track.kind == weir_protocol::TrackKind::Video;
        let extensions = forwardable_extensions(&packet.header.ext_vals);
        let media_extensions = MediaExtensions::from_values(&extensions);
        self.routed.push(RoutedPacket {
            track: track_key,
            rid,
            layer,
            best_layer,
            params,
            video: video_codec(params.spec().codec),
            is_video,
            packet,
            extensions,
            media_extensions,
            arrival: now,
            wants_keyframe: false,
        });
    }

    /// Forwards the packets routed since the last fan-out to the
    /// subscribers of their tracks, track by track in the order they
    /// came, each subscriber taking all of a track's packets in a row;
    /// then asks publishers for the keyframes forwarders wanted and keeps
    /// the video packets for NACKs.
    pub(super) fn fan_out(&mut self) {
        if self.routed.is_empty() {
            return;
        }
        let mut routed = std::mem::take(&mut self.routed);
        for first in 0..routed.len() {
            let track = routed[first].track;
            if routed[..first].iter().any(|p| p.track == track) {
                continue;
            }
            self.fan_out_track(track, &mut routed[first..]);
        }
        let own_egress = self.config.own_egress;
        for routed_packet in routed.drain(..) {
            let RoutedPacket {
                track,
                rid,
                video,
                is_video,
                packet,
                media_extensions,
                arrival,
                wants_keyframe,
                ..
            } = routed_packet;
            if wants_keyframe && video.is_some() {
                self.request_keyframe(arrival, track, rid, KeyframeRequestKind::Pli);
            }
            if own_egress && is_video {
                let kept = KeptPacket {
                    ssrc: *packet.header.ssrc,
                    seq: *packet.seq_no,
                    payload: packet.payload,
                    extensions: media_extensions,
                };
                self.keep_for_nacks(arrival, track, kept);
            }
        }
        // The emptied list keeps its capacity for the next pass.
        self.routed = routed;
    }

    /// Every subscriber of `track_key` gets the packets of `packets` that
    /// belong to it, in order.
    fn fan_out_track(&mut self, track_key: TrackKey, packets: &mut [RoutedPacket]) {
        // Disjoint field borrows: the track's subscriber list is read while
        // subscribers are written to, with no copy of the list.
        let Room {
            tracks,
            participants,
            counters,
            config,
            spare_buffers,
            ..
        } = self;
        let Some(track) = tracks.get(&track_key) else {
            return;
        };
        warm_subscribers(participants, &track.subscribers, track_key);
        for subscriber in &track.subscribers {
            let Some(participant) = participants.get_mut(subscriber) else {
                continue;
            };
            let Some(subscription) = participant
                .subscriptions
                .iter()
                .position(|s| s.track == track_key)
            else {
                continue;
            };
            for packet in packets.iter_mut().filter(|p| p.track == track_key) {
                forward_to(
                    participant,
                    subscription,
                    packet,
                    counters,
                    config,
                    spare_buffers,
                );
            }
        }
    }

    /// A subscriber asked for a keyframe on one of its m-lines.
    pub(super) fn handle_subscriber_keyframe_request(
        &mut self,
        now: Instant,
        subscriber: ParticipantKey,
        mid: Mid,
        kind: KeyframeRequestKind,
    ) {
        let Some(participant) = self.participants.get(&subscriber) else {
            return;
        };
        let Some(subscription) = participant.subscription_by_mid(mid) else {
            return;
        };
        let track = subscription.track;
        let layer: Option<Rid> = subscription
            .forwarder
            .current_layer()
            .and_then(|l| l.as_deref().map(Rid::from));
        self.request_keyframe(now, track, layer, kind);
    }

    fn route_packet(
        &mut self,
        from: ParticipantKey,
        packet: &RtpPacket,
    ) -> Option<(TrackKey, Option<Rid>)> {
        let participant = self.participants.get_mut(&from)?;
        let ssrc = packet.header.ssrc;
        if let Some(route) = participant.ssrc_routes.get(&ssrc) {
            return Some(*route);
        }
        let (mid, rid) = {
            let mut api = participant.rtc.direct_api();
            let stream = api.stream_rx(&ssrc)?;
            (stream.mid(), stream.rid())
        };
        let track = *participant.published.get(&mid)?;
        participant.ssrc_routes.insert(ssrc, (track, rid));
        if let (Some(rid), Some(t)) = (rid, self.tracks.get_mut(&track)) {
            let rid = rid.to_string();
            if !t.simulcast_layers.contains(&rid) {
                t.simulcast_layers.push(rid);
            }
        }
        Some((track, rid))
    }

    fn params_for(
        &mut self,
        from: ParticipantKey,
        track_key: TrackKey,
        pt: str0m::media::Pt,
    ) -> Option<PayloadParams> {
        let track = self.tracks.get(&track_key)?;
        if let Some(params) = track.params_by_pt.get(&pt) {
            return Some(*params);
        }
        let participant = self.participants.get(&from)?;
        let params = *participant.rtc.codec_config().find(|p| p.pt() == pt)?;
        let track = self.tracks.get_mut(&track_key)?;
        track.params_by_pt.insert(pt, params);
        if track.codec.is_none() {
            track.codec = Some(mime_type(params));
            tracing::debug!(track = %track.id, pt = *pt, codec = ?track.codec, "first media of track");
        }
        Some(params)
    }
}

/// Reads, for every subscriber of a track, the state the fan-out is about
/// to write: the participant, the subscription, its forwarder, payload
/// type map and sent ring, the session's sealer and queue.
///
/// Between two passes (tens of milliseconds of the kernel's sends) that
/// state leaves the cache. The fan-out then waits for it subscriber by
/// subscriber, each chain of loads (participant, subscriptions, ring)
/// after the last subscriber's sealing; these independent reads let the
/// processor fetch many subscribers' lines at once.
fn warm_subscribers(
    participants: &rustc_hash::FxHashMap<ParticipantKey, Box<Participant>>,
    subscribers: &[ParticipantKey],
    track_key: TrackKey,
) {
    let mut read = 0usize;
    for subscriber in subscribers {
        let Some(participant) = participants.get(subscriber) else {
            continue;
        };
        read ^= participant.own_egress.warm();
        // The subscription the fan-out takes (the first on the track).
        if let Some(subscription) = participant
            .subscriptions
            .iter()
            .find(|s| s.track == track_key)
        {
            read ^= subscription.forwarder.warm()
                ^ subscription.own.warm()
                ^ subscription
                    .pt_map
                    .first()
                    .map_or(0, |(pt, _)| usize::from(*pt));
        }
    }
    std::hint::black_box(read);
}

/// One routed packet to one subscriber (its `subscription`-th
/// subscription is on the packet's track): the forwarder's decision and
/// rewrite, then sealed by Weir's egress or written through str0m.
fn forward_to(
    participant: &mut Participant,
    subscription: usize,
    routed: &mut RoutedPacket,
    counters: &mut RoomCounters,
    config: &RoomConfig,
    spare_buffers: &mut LocalSpares,
) {
    let Some(subscription_state) = participant.subscriptions.get_mut(subscription) else {
        return;
    };
    let OutState::Open(mid) = subscription_state.state else {
        return;
    };
    let packet = &routed.packet;
    if let Some(best) = &routed.best_layer {
        if subscription_state.forwarder.target_layer() != Some(best) {
            subscription_state.forwarder.set_target_layer(best.clone());
        }
    }
    let decision = subscription_state.forwarder.decide(IncomingPacket {
        ssrc: *packet.header.ssrc,
        layer: routed.layer.as_deref(),
        seq: ExtendedSeq(*packet.seq_no),
        timestamp: RtpTimestamp(packet.header.timestamp),
        arrival: routed.arrival,
        payload: &packet.payload,
        video_codec: routed.video,
    });
    let rewritten = match decision {
        ForwardDecision::Forward(rewritten) => rewritten,
        ForwardDecision::Drop {
            request_keyframe, ..
        } => {
            routed.wants_keyframe |= request_keyframe;
            counters.rtp_not_forwarded += 1;
            return;
        }
    };
    let pt = *packet.header.payload_type;
    // Nothing written to this m-line yet (no payload type matched).
    let first_packet = subscription_state
        .pt_map
        .iter()
        .all(|(_, out)| out.is_none());
    let out_pt = match subscription_state.pt_map.iter().find(|(p, _)| *p == pt) {
        Some((_, out)) => *out,
        None => {
            let out = matching_pt(&participant.rtc, mid, routed.params);
            if let Some(s) = participant.subscriptions.get_mut(subscription) {
                s.pt_map.push((pt, out));
            }
            out
        }
    };
    let Some(out_pt) = out_pt else {
        counters.rtp_codec_mismatch += 1;
        return;
    };
    if config.own_egress && !first_packet {
        let forwarded = Forwarded {
            mid,
            fields: HeaderFields {
                payload_type: out_pt,
                marker: packet.header.marker,
                seq: rewritten.seq.wire(),
                timestamp: rewritten.timestamp.0,
                ssrc: 0,
            },
            out_seq: rewritten.seq.0,
            in_ssrc: *packet.header.ssrc,
            in_seq: *packet.seq_no,
            payload: &packet.payload,
            extensions: &routed.media_extensions,
            nackable: routed.is_video,
        };
        if let OwnSend::Sent = send_own(
            participant,
            subscription,
            &forwarded,
            routed.arrival,
            spare_buffers,
        ) {
            counters.rtp_forwarded += 1;
            counters.rtp_sealed_by_weir += 1;
            return;
        }
    }
    let mut api = participant.rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(mid, None) else {
        counters.rtp_no_send_stream += 1;
        return;
    };
    if first_packet {
        // The NACK history is bounded by age as well as count: it is most
        // of a subscriber's memory.
        stream.set_rtx_cache(
            config.nack_cache_packets,
            config.nack_cache_age,
            RTX_RATIO_CAP,
        );
    }
    stream.write_rtp(
        RtpWrite::new(
            out_pt.into(),
            rewritten.seq.0.into(),
            rewritten.timestamp.0,
            packet.timestamp,
            packet.payload.clone(),
        )
        .marker(packet.header.marker)
        .ext_vals(routed.extensions.clone())
        .nackable(routed.is_video),
    );
    participant.needs_timeout = true;
    counters.rtp_forwarded += 1;
}

/// Queued retransmissions are dropped while they exceed this share of a
/// subscriber's stream (str0m's default), so a lossy link cannot double
/// its bitrate with resends.
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

/// The subscriber's payload type for the publisher's codec on `mid`, if the
/// subscriber accepted that codec there.
fn matching_pt(rtc: &str0m::Rtc, mid: Mid, params: PayloadParams) -> Option<u8> {
    let local = rtc.codec_config().match_params(params)?;
    let pt = local.pt();
    let media = rtc.media(mid)?;
    let remote = media.remote_pts();
    if remote.is_empty() || remote.contains(&pt) {
        Some(*pt)
    } else {
        None
    }
}

/// Header extensions that describe the media and survive forwarding; the
/// transport ones (mid, rid, TWCC, abs-send-time) are the subscriber
/// connection's own and str0m writes them.
fn forwardable_extensions(incoming: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: incoming.audio_level,
        voice_activity: incoming.voice_activity,
        video_orientation: incoming.video_orientation,
        video_content_type: incoming.video_content_type,
        abs_capture_time: incoming.abs_capture_time,
        play_delay_min: incoming.play_delay_min,
        play_delay_max: incoming.play_delay_max,
        ..Default::default()
    }
}

fn tapped_packet(
    track: &crate::track::PublishedTrack,
    owner: ParticipantKey,
    packet: &RtpPacket,
    params: PayloadParams,
    now: Instant,
) -> crate::tap::TappedPacket {
    use crate::tap::{TapCodec, TapSenderReport, TappedPacket};
    let spec = params.spec();
    let codec = match spec.codec {
        Codec::Opus => TapCodec::Opus,
        Codec::Vp8 => TapCodec::Vp8,
        Codec::Vp9 => TapCodec::Vp9,
        Codec::H264 => TapCodec::H264,
        Codec::Av1 => TapCodec::Av1,
        _ => TapCodec::Other,
    };
    TappedPacket {
        owner,
        track_id: track.id.clone(),
        kind: track.kind,
        codec,
        clock_rate: spec.clock_rate.get(),
        ssrc: *packet.header.ssrc,
        payload_type: *packet.header.payload_type,
        sequence_number: packet.header.sequence_number,
        rtp_timestamp: packet.header.timestamp,
        marker: packet.header.marker,
        payload: packet.payload.clone(),
        arrival: now,
        sender_report: packet.last_sender_info.map(|info| TapSenderReport {
            ntp_time: info.ntp_time,
            rtp_time: info.rtp_time.numer() as u32,
        }),
    }
}

fn video_codec(codec: Codec) -> Option<VideoCodec> {
    match codec {
        Codec::Vp8 => Some(VideoCodec::Vp8),
        Codec::Vp9 => Some(VideoCodec::Vp9),
        Codec::H264 => Some(VideoCodec::H264),
        Codec::Av1 => Some(VideoCodec::Av1),
        Codec::H265 | Codec::H266 => Some(VideoCodec::Other),
        _ => None,
    }
}

pub(crate) fn mime_type(params: PayloadParams) -> String {
    let spec = params.spec();
    let kind = if video_codec(spec.codec).is_some() {
        "video"
    } else {
        "audio"
    };
    let name = match spec.codec {
        Codec::Opus => "opus",
        Codec::Vp8 => "VP8",
        Codec::Vp9 => "VP9",
        Codec::H264 => "H264",
        Codec::Av1 => "AV1",
        Codec::H265 => "H265",
        Codec::PCMU => "PCMU",
        Codec::PCMA => "PCMA",
        Codec::G722 => "G722",
        _ => "unknown",
    };
    format!("{kind}/{name}")
}
