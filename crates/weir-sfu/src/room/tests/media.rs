//! Media scenarios: forwarding, keyframes, continuity (NACKs: `nack.rs`).

use std::collections::HashSet;
use std::time::Duration;

use str0m::media::{Direction, KeyframeRequestKind, MediaKind};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Rtc};
use weir_protocol::{ClientMessage, Grant, LeaveReason, ServerMessage};

use super::super::*;
use super::harness::*;

#[test]
fn forwards_every_packet_in_order_with_continuous_rewritten_sequence() {
    forwards_every_packet_in_order(true);
}

#[test]
fn forwards_every_packet_in_order_through_str0m_alone() {
    forwards_every_packet_in_order(false);
}

/// Subscriptions whose sequence starts just below the 16-bit wrap: the
/// first packets (through str0m, before Weir's egress has its keys and
/// destination) cross it, and Weir's later packets must be sealed with
/// the rollover counter the subscriber learned from them. Before the fix
/// Weir's sealer started counting at its own first packet (rollover 0)
/// and the subscribers got only str0m's ~2 packets a second.
#[test]
fn forwards_every_packet_when_the_first_ones_cross_the_sequence_wrap() {
    for start in [65_534u16, 65_535, 65_530] {
        super::super::negotiation::PINNED_INITIAL_SEQ.with(|pinned| pinned.set(Some(start)));
        forwards_every_packet_in_order(true);
    }
    super::super::negotiation::PINNED_INITIAL_SEQ.with(|pinned| pinned.set(None));
}

/// `own_egress`: Weir seals forwarded packets (and str0m one every few
/// seconds per subscription, for its sender reports), or str0m all.
fn forwards_every_packet_in_order(own_egress: bool) {
    let mut config = RoomConfig::new(server_addr());
    config.own_egress = own_egress;
    let (mut net, mid) = publisher_and_two_subscribers_with(config);
    let publisher_ssrc: Vec<Ssrc> = {
        let mut api = net.peers[0].rtc.direct_api();
        api.stream_tx_by_mid(mid, None)
            .map(|s| s.ssrc())
            .into_iter()
            .collect()
    };
    for seq in 1..=300u64 {
        let keyframe = seq == 1;
        net.send_vp8(0, mid, seq, keyframe, seq % 3 == 0);
        net.advance(Duration::from_millis(11));
    }
    net.run_for(Duration::from_millis(300));
    for subscriber in [1, 2] {
        let received = &net.peers[subscriber].received;
        assert_eq!(
            embedded_seqs(received),
            (1..=300).collect::<Vec<_>>(),
            "subscriber {subscriber}"
        );
        for pair in received.windows(2) {
            assert_eq!(
                pair[1].seq,
                pair[0].seq + 1,
                "continuous rewritten sequence"
            );
        }
        assert!(received
            .iter()
            .all(|r| !publisher_ssrc.iter().any(|s| **s == r.ssrc)));
        let ssrcs: HashSet<u32> = received.iter().map(|r| r.ssrc).collect();
        assert_eq!(ssrcs.len(), 1, "one SSRC per subscribed track");
    }
    // RTCP receiver reports fed the link statistics both ways. (On this
    // zero-latency network many reports measure no RTT, DLSR being 0: the
    // last measured one is kept.)
    net.run_for(Duration::from_secs(4));
    let snapshots = net.room.track_snapshots();
    assert_eq!(snapshots.len(), 1);
    let ingress = &snapshots[0].ingress;
    assert!(
        ingress.iter().any(|(_, s)| s.packets >= 300),
        "ingress stats: {ingress:?}"
    );
    assert_eq!(snapshots[0].subscribers.len(), 2);
    for (subscriber, egress) in &snapshots[0].subscribers {
        let egress = egress.as_ref().expect("egress stats reported");
        assert!(egress.packets >= 300, "{subscriber}: {egress:?}");
        assert!(
            egress.rtt.is_some(),
            "{subscriber}: RTT from receiver reports"
        );
    }
    // The two subscribers' streams are independent (own SSRCs).
    assert_ne!(net.peers[1].received[0].ssrc, net.peers[2].received[0].ssrc);
    let counters = net.room.counters();
    assert_eq!(counters.rtp_forwarded, 600);
    if own_egress {
        // 300 packets over 3.3 s: a few per subscriber went through str0m
        // (its first packets, then one for its sender reports; the next is
        // due after `SENDER_REPORT_REFRESH`, 4 s).
        assert!(
            (588..600).contains(&counters.rtp_sealed_by_weir),
            "{counters:?}"
        );
    } else {
        assert_eq!(counters.rtp_sealed_by_weir, 0);
    }
}

#[test]
fn twcc_is_negotiated_for_publishers_uplinks_only() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.stream_vp8_frames(0, mid, 20, Duration::from_millis(33));
    const TWCC: &str = "transport-wide-cc-extensions";
    // The publisher's m-line keeps it: its bandwidth estimation runs on the
    // server's feedback.
    let answer = net
        .peer_signals(0)
        .iter()
        .find_map(|m| match m {
            ServerMessage::Answer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .expect("the publisher got an answer");
    assert!(answer.contains(TWCC), "{answer}");
    for subscriber in [1, 2] {
        let offers: Vec<&String> = net
            .peer_signals(subscriber)
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Offer { sdp } => Some(sdp),
                _ => None,
            })
            .collect();
        assert!(!offers.is_empty());
        for offer in offers {
            for section in offer.split("m=").skip(1) {
                if section.contains("a=sendonly") {
                    assert!(!section.contains(TWCC), "{section}");
                }
            }
        }
        let received = &net.peers[subscriber].received;
        assert_eq!(received.len(), 20, "subscriber {subscriber}");
        assert!(received.iter().all(|r| !r.twcc), "subscriber {subscriber}");
    }
}

/// A frame's packets that reach the room together are handled in one
/// pass (as the server's room task takes a burst) and forwarded
/// subscriber by subscriber: each subscriber gets every packet of the
/// burst, in order, in one output (one GSO send), besides at most one
/// packet str0m sends for its sender reports.
#[test]
fn a_burst_handled_in_one_pass_reaches_every_subscriber_in_order_together() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.stream_vp8_frames(0, mid, 30, Duration::from_millis(33));
    let sealed_before = net.room.counters().rtp_sealed_by_weir;
    let subscribers: Vec<std::net::SocketAddr> =
        [1, 2].iter().map(|&i| net.peers[i].addr).collect();
    for burst in 0..3u64 {
        // The publisher sends six at once: six `handle_datagram`s, then
        // the outputs are drained.
        net.send_vp8_burst(0, mid, 31 + burst * 6, 6);
        let mut outputs: Vec<(std::net::SocketAddr, Vec<Vec<u8>>)> = Vec::new();
        while let Some(output) = net.room.poll_output() {
            if let RoomOutput::Transmit {
                destination,
                datagrams,
            } = output
            {
                let rtp: Vec<Vec<u8>> = datagrams
                    .iter()
                    .filter(|d| is_rtp(d))
                    .map(<[u8]>::to_vec)
                    .collect();
                if subscribers.contains(&destination) && !rtp.is_empty() {
                    outputs.push((destination, rtp));
                }
            }
        }
        for subscriber in &subscribers {
            let mine: Vec<usize> = outputs
                .iter()
                .filter(|(to, _)| to == subscriber)
                .map(|(_, rtp)| rtp.len())
                .collect();
            assert_eq!(mine.iter().sum::<usize>(), 6, "burst {burst}: {mine:?}");
            assert!(
                mine == [6] || mine == [1, 5],
                "burst {burst}: one output, or str0m's packet then the rest: {mine:?}"
            );
        }
        for (to, rtp) in outputs {
            for datagram in rtp {
                net.deliver(to, &datagram);
            }
        }
        net.advance(Duration::from_millis(33));
    }
    net.run_for(Duration::from_millis(200));
    for subscriber in [1, 2] {
        assert_eq!(
            embedded_seqs(&net.peers[subscriber].received),
            (1..=48).collect::<Vec<_>>(),
            "subscriber {subscriber}"
        );
        for pair in net.peers[subscriber].received.windows(2) {
            assert_eq!(
                pair[1].seq,
                pair[0].seq + 1,
                "continuous rewritten sequence"
            );
        }
    }
    let sealed = net.room.counters().rtp_sealed_by_weir - sealed_before;
    assert!(sealed >= 2 * 18 - 2, "sealed by Weir: {sealed}");
}

/// The buffers the owner gives back once sent carry the subscribers' next
/// passes (no allocation per subscriber per pass), and nothing of what
/// they held goes out again.
#[test]
fn sent_buffers_given_back_carry_the_next_passes() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.stream_vp8_frames(0, mid, 30, Duration::from_millis(33));
    let subscribers: Vec<std::net::SocketAddr> =
        [1, 2].iter().map(|&i| net.peers[i].addr).collect();
    let mut given_back: Vec<*const u8> = Vec::new();
    let mut reused = 0;
    for burst in 0..4u64 {
        net.send_vp8_burst(0, mid, 31 + burst * 6, 6);
        let mut sent = Vec::new();
        while let Some(output) = net.room.poll_output() {
            if let RoomOutput::Transmit {
                destination,
                datagrams,
            } = output
            {
                let copies: Vec<Vec<u8>> = datagrams.iter().map(<[u8]>::to_vec).collect();
                let (buffer, _) = datagrams.into_parts();
                if subscribers.contains(&destination) && given_back.contains(&buffer.as_ptr()) {
                    reused += 1;
                }
                sent.push((destination, copies, buffer));
            }
        }
        given_back.clear();
        for (to, copies, buffer) in sent {
            for datagram in copies {
                net.deliver(to, &datagram);
            }
            given_back.push(buffer.as_ptr());
            net.room.give_back_buffer(buffer);
        }
        net.advance(Duration::from_millis(33));
    }
    net.run_for(Duration::from_millis(200));
    // Every pass after the first sealed both subscribers' packets into
    // buffers of the pass before.
    assert!(reused >= 2 * 3, "outputs in given-back buffers: {reused}");
    for subscriber in [1, 2] {
        assert_eq!(
            embedded_seqs(&net.peers[subscriber].received),
            (1..=54).collect::<Vec<_>>(),
            "subscriber {subscriber}"
        );
    }
}

#[test]
fn video_starts_at_a_keyframe_and_asks_the_publisher_for_one() {
    let (mut net, mid) = publisher_and_two_subscribers();
    let before = net.peers[0].keyframe_requests;
    for seq in 1..=20u64 {
        net.send_vp8(0, mid, seq, seq == 10, true);
        net.advance(Duration::from_millis(33));
    }
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        embedded_seqs(&net.peers[1].received),
        (10..=20).collect::<Vec<_>>()
    );
    assert!(
        net.peers[0].keyframe_requests > before,
        "publisher was asked for a keyframe"
    );
}

#[test]
fn keyframe_requests_from_many_subscribers_are_merged() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.send_vp8(0, mid, 1, true, true);
    net.run_for(Duration::from_millis(600));
    let before = net.peers[0].keyframe_requests;
    // Both subscribers request keyframes 10 times each within 100 ms.
    for _ in 0..10 {
        for subscriber in [1, 2] {
            let ssrc = net.peers[subscriber]
                .received
                .last()
                .map(|r| r.ssrc)
                .expect("received");
            let mut api = net.peers[subscriber].rtc.direct_api();
            if let Some(stream) = api.stream_rx(&ssrc.into()) {
                stream.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(50));
    let forwarded = net.peers[0].keyframe_requests - before;
    assert!(forwarded >= 1, "at least one request reaches the publisher");
    assert!(
        forwarded <= 2,
        "20 requests within 150 ms merge into at most 2, got {forwarded}"
    );
    assert!(net.room.counters().keyframe_requests_merged >= 10);
}

#[test]
fn whep_viewer_stream_stays_continuous_when_the_publisher_reconnects() {
    let mut net = Net::new();
    let (camera, mid) = net.join_http(
        "cam",
        SessionKind::Whip,
        Grant::Publish,
        Direction::SendOnly,
    );
    let (viewer, _) = net.join_http(
        "viewer",
        SessionKind::Whep { publisher: None },
        Grant::Subscribe,
        Direction::RecvOnly,
    );
    net.wait_connected();
    for seq in 1..=50u64 {
        net.send_vp8(camera, mid, seq, seq == 1, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    assert_eq!(embedded_seqs(&net.peers[viewer].received).len(), 50);

    // The camera reconnects: a new WHIP session of the same user.
    let old_key = net.peers[camera].key;
    net.room.leave(net.now, old_key, LeaveReason::Disconnected);
    net.pump();
    net.peers.remove(camera);
    let viewer = viewer - 1;
    let (camera, mid) = net.join_http(
        "cam",
        SessionKind::Whip,
        Grant::Publish,
        Direction::SendOnly,
    );
    net.wait_connected();
    for seq in 1000..1050u64 {
        net.send_vp8(camera, mid, seq, seq == 1000, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(300));
    let received = &net.peers[viewer].received;
    assert_eq!(
        embedded_seqs(received).len(),
        100,
        "both sessions' packets arrive"
    );
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "continuous across the reconnect"
        );
    }
    let ssrcs: HashSet<u32> = received.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "the viewer keeps one SSRC");
}

#[test]
fn unsubscribed_lines_are_parked_and_reused_with_continuous_numbering() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.stream_vp8_frames(0, mid, 30, Duration::from_millis(20));
    let track_id = net.peer_signals(1).iter().find_map(|m| match m {
        ServerMessage::Subscribed { track_id, mid } => Some((track_id.clone(), mid.clone())),
        _ => None,
    });
    let (track_id, first_mid) = track_id.expect("subscribed");
    let key = net.peers[1].key;
    net.room.handle_message(
        net.now,
        key,
        ClientMessage::Unsubscribe {
            track_id: track_id.clone(),
        },
    );
    net.run_for(Duration::from_millis(100));
    assert!(net
        .peer_signals(1)
        .iter()
        .any(|m| matches!(m, ServerMessage::Unsubscribed { track_id: t } if *t == track_id)));
    let before = net.peers[1].received.len();
    for seq in 31..=40u64 {
        net.send_vp8(0, mid, seq, false, true);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(
        net.peers[1].received.len(),
        before,
        "nothing arrives while unsubscribed"
    );

    net.room.handle_message(
        net.now,
        key,
        ClientMessage::Subscribe {
            track_id: track_id.clone(),
        },
    );
    net.run_for(Duration::from_millis(100));
    let resubscribed_mid = net
        .peer_signals(1)
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Subscribed { mid, .. } => Some(mid.clone()),
            _ => None,
        })
        .expect("subscribed again");
    assert_eq!(resubscribed_mid, first_mid, "the parked m-line is reused");
    for seq in 41..=60u64 {
        net.send_vp8(0, mid, seq, seq == 41, true);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    let received = &net.peers[1].received;
    assert!(received.len() > before, "media flows again");
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "numbering continues across the pause"
        );
    }
}

#[test]
fn simulcast_forwards_one_layer_and_moves_to_the_best_one() {
    let mut net = Net::new();
    let publisher = net.join_signalling("alice");
    net.join_signalling("bob");
    let mid = net.publish_simulcast_video(publisher, &["l", "h"]);
    net.wait_connected();
    net.run_for(Duration::from_millis(200));
    // 3 s of both layers at 50 packets/s; keyframes every 25 packets.
    for seq in 1..=150u64 {
        let keyframe = seq % 25 == 1;
        net.write_vp8(0, mid, Some("l"), seq, keyframe, true, 200);
        net.write_vp8(0, mid, Some("h"), 10_000 + seq, keyframe, true, 1000);
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(300));
    let received = &net.peers[1].received;
    assert!(received.len() >= 100, "received {}", received.len());
    let layers: Vec<u8> = received.iter().map(|r| r.payload[13]).collect();
    // One layer at a time: at most one switch, and it ends on the best ("h").
    let switches = layers.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches <= 1, "layers flapped: {switches} switches");
    assert_eq!(
        layers.last(),
        Some(&b'h'),
        "ends on the highest-bitrate layer"
    );
    // One layer's worth of packets (150 per layer were sent), never both.
    assert!(received.len() <= 152, "received {}", received.len());
    let first_high = received
        .iter()
        .find(|r| r.payload[13] == b'h')
        .expect("the best layer is forwarded");
    assert_eq!(
        first_high.payload[1] & 0x01,
        0,
        "the switch happens at a keyframe"
    );
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "continuous across the layer switch"
        );
    }
    let ssrcs: HashSet<u32> = received.iter().map(|r| r.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one outgoing SSRC whatever the layer");
}

#[test]
fn a_whep_answer_lists_the_publishers_codec_first() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.send_vp8(0, mid, 1, true, true);
    net.run_for(Duration::from_millis(100));
    // A viewer that prefers H.264: its offer lists H.264 before VP8.
    let mut viewer = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .enable_vp8(true)
        .set_rtp_mode(true)
        .build(net.now);
    viewer.add_local_candidate(
        Candidate::host("10.0.3.1:5000".parse().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = viewer.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("offer");
    let offer = offer.to_sdp_string();
    assert_eq!(
        first_video_codec(&offer),
        "H264",
        "the viewer prefers H.264"
    );
    let joined = net
        .room
        .join(
            net.now,
            JoinRequest {
                user_id: "viewer".into(),
                grants: vec![Grant::Subscribe],
                kind: SessionKind::Whep {
                    publisher: Some("alice".into()),
                },
                auto_subscribe: false,
                offer: Some(offer),
                wall_clock_ms: 0,
            },
        )
        .expect("WHEP join");
    let answer = joined.answer.expect("an answer");
    assert_eq!(
        first_video_codec(&answer),
        "VP8",
        "the publisher's codec comes first"
    );
}

#[test]
fn the_recorder_tap_copies_a_tracks_packets_only_while_on() {
    let (mut net, mid) = publisher_and_two_subscribers();
    let track_id = net.room.participant_infos()[0].tracks[0]
        .track_id
        .to_string();
    for seq in 1..=10u64 {
        net.send_vp8(0, mid, seq, seq == 1, false);
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(100));
    assert!(net.tapped.is_empty(), "off by default");

    net.room
        .set_tap(net.now, &track_id, true)
        .expect("the track exists");
    for seq in 11..=40u64 {
        net.send_vp8(0, mid, seq, seq == 11, seq % 5 == 0);
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.tapped.len(), 30);
    let first = &net.tapped[0];
    assert_eq!(first.track_id.to_string(), track_id);
    assert_eq!(first.codec, crate::tap::TapCodec::Vp8);
    assert_eq!(first.clock_rate, 90_000);
    for pair in net.tapped.windows(2) {
        assert_eq!(
            pair[1].sequence_number,
            pair[0].sequence_number.wrapping_add(1),
            "the publisher's own numbering, in order"
        );
    }
    assert!(net.tapped.iter().all(|p| !p.payload.is_empty()));

    net.room
        .set_tap(net.now, &track_id, false)
        .expect("the track exists");
    net.tapped.clear();
    for seq in 41..=50u64 {
        net.send_vp8(0, mid, seq, false, false);
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(100));
    assert!(net.tapped.is_empty(), "off again");
    assert!(net.room.set_tap(net.now, "TR_nope", true).is_err());
}

#[test]
fn a_preferred_video_codec_goes_first_for_new_whip_publishers() {
    let answer_for = |net: &mut Net, user: &str, host: u8| -> String {
        let mut publisher = Rtc::builder()
            .clear_codecs()
            .enable_vp8(true)
            .enable_h264(true)
            .set_rtp_mode(true)
            .build(net.now);
        publisher.add_local_candidate(
            Candidate::host(format!("10.0.4.{host}:5000").parse().expect("addr"), "udp")
                .expect("candidate"),
        );
        let mut api = publisher.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, _pending) = api.apply().expect("offer");
        let offer = offer.to_sdp_string();
        assert_eq!(
            first_video_codec(&offer),
            "VP8",
            "the publisher prefers VP8"
        );
        let joined = net
            .room
            .join(
                net.now,
                JoinRequest {
                    user_id: user.into(),
                    grants: vec![Grant::Publish],
                    kind: SessionKind::Whip,
                    auto_subscribe: false,
                    offer: Some(offer),
                    wall_clock_ms: 0,
                },
            )
            .expect("WHIP join");
        joined.answer.expect("an answer")
    };
    let mut net = Net::new();
    assert_eq!(first_video_codec(&answer_for(&mut net, "cam1", 1)), "VP8");
    net.room.set_preferred_video_codec(Some("h264"));
    assert_eq!(
        first_video_codec(&answer_for(&mut net, "cam2", 2)),
        "H264",
        "while preferred, H.264 comes first"
    );
    net.room.set_preferred_video_codec(None);
    assert_eq!(first_video_codec(&answer_for(&mut net, "cam3", 3)), "VP8");
}
