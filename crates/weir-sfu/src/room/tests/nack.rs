//! NACK scenarios: losses toward a subscriber recovered (by Weir's egress
//! or str0m's), the publisher's packets kept for NACKs only as long as a
//! subscriber's round trip needs, and the server's NACKs to a publisher.

use std::time::Duration;

use super::super::*;
use super::harness::*;

/// A lossy link: drops every 20th RTP packet (5%) of one peer.
fn every_20th_rtp_of(lossy_peer: usize) -> DropRule {
    let mut counter = 0usize;
    Box::new(move |peer, _| {
        if peer != lossy_peer {
            return false;
        }
        counter += 1;
        counter.is_multiple_of(20)
    })
}

/// 400 VP8 packets at 100 packets/s (keyframe first), then 1 s to settle.
fn stream_400_packets(net: &mut Net, mid: str0m::media::Mid) {
    for seq in 1..=400u64 {
        net.send_vp8(0, mid, seq, seq == 1, seq % 4 == 0);
        net.advance(Duration::from_millis(10));
    }
    net.run_for(Duration::from_secs(1));
}

#[test]
fn nack_recovers_packets_dropped_toward_one_subscriber() {
    let net = nack_recovery(true);
    // Weir sealed most packets, so it answered most NACKs itself, from the
    // track's history.
    let counters = net.room.counters();
    assert!(counters.rtp_retransmitted >= 15, "{counters:?}");
}

#[test]
fn nack_recovers_packets_dropped_toward_one_subscriber_through_str0m_alone() {
    let net = nack_recovery(false);
    assert_eq!(net.room.counters().rtp_retransmitted, 0);
}

fn nack_recovery(own_egress: bool) -> Net {
    let mut config = RoomConfig::new(server_addr());
    config.own_egress = own_egress;
    let (mut net, mid) = publisher_and_two_subscribers_with(config);
    // Drop every 20th RTP packet (5%) toward subscriber 1 only.
    net.drop_downstream = Some(every_20th_rtp_of(1));
    stream_400_packets(&mut net, mid);
    assert!(
        net.dropped >= 15,
        "the lossy link dropped packets ({})",
        net.dropped
    );
    let mut got: Vec<u64> = embedded_seqs(&net.peers[1].received);
    got.sort_unstable();
    got.dedup();
    let recovered = got.len() as f64 / 400.0;
    assert!(
        recovered >= 0.99,
        "NACK recovery delivered {:.1}% of packets",
        recovered * 100.0
    );
    // The lossless subscriber saw no loss at all.
    assert_eq!(embedded_seqs(&net.peers[2].received).len(), 400);
    net
}

#[test]
fn packets_are_kept_for_nacks_only_while_someone_subscribes() {
    let (mut net, mid) = publisher_and_two_subscribers();
    net.stream_vp8_frames(0, mid, 20, Duration::from_millis(10));
    let kept = net.room.packets_kept_for_nacks();
    assert!(kept >= 15, "kept {kept} of 20 for the two subscribers");
    for subscriber in [1, 2] {
        let key = net.peers[subscriber].key;
        net.room.leave(net.now, key, LeaveReason::ClientLeft);
    }
    net.stream_vp8_frames_numbered(0, mid, 21..=40, Duration::from_millis(10));
    // Still received and routed, only no longer kept.
    assert_eq!(net.room.counters().rtp_received, 40);
    assert_eq!(
        net.room.packets_kept_for_nacks(),
        0,
        "nobody left to ask for them again"
    );
}

#[test]
fn the_nack_history_is_as_long_as_the_subscribers_round_trip_needs() {
    let (mut net, mid) = publisher_and_two_subscribers();
    // 12 s at 100 packets/s: the subscribers' receiver reports give the
    // round trip (~0 on this in-memory link) once they answer a sender
    // report (one goes out with the packet str0m sends every 4 s; here
    // the first round trip is known 8-9 s in).
    net.stream_vp8_frames(0, mid, 1200, Duration::from_millis(10));
    let kept = net.room.packets_kept_for_nacks();
    // ~0.3 s of packets (the floor of the window) instead of the
    // configured 0.5 s (51 packets).
    assert!((28..=34).contains(&kept), "kept {kept}");
}

#[test]
fn the_signalling_round_trip_sizes_the_nack_history_before_receiver_reports() {
    let (mut net, mid) = publisher_and_two_subscribers();
    // Bob's ping was answered in 40 ms; Carol's not yet.
    let bob = net.peers[1].key;
    net.room
        .set_signalling_round_trip(net.now, bob, Duration::from_millis(40));
    // 1 s at 100 packets/s: no receiver report yet.
    net.stream_vp8_frames(0, mid, 100, Duration::from_millis(10));
    let kept = net.room.packets_kept_for_nacks();
    // 0.3 s + 2 x 40 ms of packets, not the configured 0.5 s (51).
    assert!((36..=42).contains(&kept), "kept {kept}");
}

#[test]
fn a_round_trip_known_before_subscribing_still_counts_when_media_starts_later() {
    let mut net = Net::new();
    let publisher = net.join_signalling("alice");
    let bob = net.join_signalling("bob");
    let bob = net.peers[bob].key;
    net.room
        .set_signalling_round_trip(net.now, bob, Duration::from_millis(60));
    let mid = net.publish_video(publisher);
    net.wait_connected();
    // Longer than the track's round-trip memory: the media starts after
    // the round trip observed at subscribing has aged out.
    net.run_for(Duration::from_secs(12));
    net.stream_vp8_frames(0, mid, 100, Duration::from_millis(10));
    let kept = net.room.packets_kept_for_nacks();
    // 0.3 s + 2 x 60 ms.
    assert!((40..=46).contains(&kept), "kept {kept}");
}

#[test]
fn a_publisher_alone_keeps_nothing_for_nacks() {
    let mut net = Net::new();
    let publisher = net.join_signalling("alice");
    let mid = net.publish_video(publisher);
    net.wait_connected();
    net.stream_vp8_frames(0, mid, 20, Duration::from_millis(10));
    assert_eq!(net.room.counters().rtp_received, 20);
    assert_eq!(net.room.packets_kept_for_nacks(), 0);
}

#[test]
fn the_server_nacks_the_publisher_for_its_own_losses() {
    let (mut net, mid) = publisher_and_two_subscribers();
    // Drop every 20th RTP packet (5%) from the publisher to the server.
    net.drop_upstream = Some(every_20th_rtp_of(0));
    stream_400_packets(&mut net, mid);
    assert!(
        net.dropped >= 15,
        "the lossy uplink dropped packets ({})",
        net.dropped
    );
    for subscriber in [1, 2] {
        let mut got = embedded_seqs(&net.peers[subscriber].received);
        got.sort_unstable();
        got.dedup();
        assert!(
            got.len() >= 396,
            "subscriber {subscriber} got {} of 400: the server's NACKs recovered the uplink losses",
            got.len()
        );
    }
}
