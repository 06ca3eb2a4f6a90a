//! Session scenarios: joining, permissions, bad input, SDP leniency.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use weir_protocol::{ClientMessage, Grant, LeaveReason, ServerMessage};

use super::super::sdp::with_bundle_group;
use super::super::*;
use super::harness::*;

#[test]
fn join_lists_existing_participants_and_announces_newcomers() {
    let mut net = Net::new();
    let a = net.join_signalling("alice");
    let b = net.join_signalling("bob");
    net.pump();
    match &net.peer_signals(b)[0] {
        ServerMessage::Joined { participants, .. } => {
            assert_eq!(participants.len(), 1);
            assert_eq!(participants[0].user_id, "alice");
        }
        other => panic!("expected joined, got {other:?}"),
    }
    assert!(net.peer_signals(a).iter().any(
        |m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.user_id == "bob")
    ));
    let key = net.peers[b].key;
    net.room.leave(net.now, key, LeaveReason::ClientLeft);
    net.pump();
    assert!(net.peer_signals(a).iter().any(|m| matches!(
        m,
        ServerMessage::ParticipantLeft { user_id, reason: LeaveReason::ClientLeft, .. } if user_id == "bob"
    )));
    assert_eq!(net.room.participant_count(), 1);
}

#[test]
fn publications_and_departures_are_reported_to_the_owner_in_order() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    let published: Vec<String> = net
        .lifecycle
        .iter()
        .filter(|e| e.starts_with('+'))
        .cloned()
        .collect();
    assert_eq!(published.len(), 1, "{:?}", net.lifecycle);
    let track_id = published[0].trim_start_matches('+').to_string();
    let infos = net.room.participant_infos();
    let publisher = &infos[0];
    assert_eq!(publisher.tracks[0].track_id.to_string(), track_id);
    net.lifecycle.clear();
    let key = net.peers[0].key;
    net.room.leave(net.now, key, LeaveReason::ClientLeft);
    net.pump();
    assert_eq!(
        net.lifecycle,
        vec![
            format!("-{track_id}"),
            format!("left {}", publisher.user_id)
        ],
        "the track is unpublished before its owner leaves"
    );
}

#[test]
fn a_removed_participant_is_told_over_dtls() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    assert!(!net.peers[2].closed);
    let key = net.peers[2].key;
    net.room.leave(net.now, key, LeaveReason::Kicked);
    net.pump();
    assert!(
        net.peers[2].closed,
        "the peer got the server's close_notify"
    );
    assert!(!net.peers[1].closed);
}

#[test]
fn malformed_datagrams_are_counted_and_never_panic() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    let source: SocketAddr = "10.9.9.9:1234".parse().expect("addr");
    let samples: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0x80],
        vec![0x80, 0x60, 0, 1],
        vec![0x80; 12],
        vec![0x16, 0xfe, 0xfd, 0, 0],
        vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42],
        vec![0xff; 1500],
        (0..=255).collect(),
    ];
    for datagram in &samples {
        assert!(!net.room.handle_datagram(net.now, source, datagram));
    }
    // The same garbage from a connected peer's address reaches its Rtc,
    // which refuses it without failing the session.
    let peer = net.peers[1].addr;
    for datagram in &samples {
        net.room.handle_datagram(net.now, peer, datagram);
    }
    net.pump();
    assert_eq!(net.room.participant_count(), 3);
    let counters = net.room.counters();
    assert!(counters.datagrams_malformed + counters.datagrams_unmatched >= samples.len() as u64);
}

#[test]
fn subscribe_only_participant_cannot_publish() {
    let mut net = Net::new();
    let index = net.peers.len();
    let addr: SocketAddr = format!("10.0.1.{}:5000", index + 1).parse().expect("addr");
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(net.now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let joined = net
        .room
        .join(
            net.now,
            JoinRequest {
                user_id: "viewer".into(),
                grants: vec![Grant::Subscribe],
                kind: SessionKind::Signalling,
                auto_subscribe: true,
                offer: None,
                wall_clock_ms: 0,
            },
        )
        .expect("joined");
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("offer");
    net.room.handle_message(
        net.now,
        joined.key,
        ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
        },
    );
    let mut refused = false;
    while let Some(output) = net.room.poll_output() {
        if let RoomOutput::Signal {
            message: ServerMessage::Error { code, .. },
            ..
        } = output
        {
            refused |= code == weir_protocol::ErrorCode::PermissionDenied;
        }
    }
    assert!(refused, "publishing without the grant is refused");
}

#[test]
fn an_answer_without_a_bundle_group_is_accepted() {
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=inactive\r\na=rtpmap:96 VP8/90000\r\n";
    let fixed = with_bundle_group(sdp);
    assert!(
        fixed.contains("t=0 0\r\na=group:BUNDLE\r\nm=video"),
        "{fixed}"
    );
    assert_eq!(with_bundle_group(&fixed), fixed, "idempotent");
}

#[test]
fn an_offer_that_panics_str0m_is_refused() {
    // Found by fuzz/ (whip_whep): one payload type for two codecs across
    // bundled m-lines made str0m panic ("Pt locked multiple times") in the
    // room's task, which ended the room for everyone.
    let offer = [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 102",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=recvonly",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
        "a=setup:actpass",
        "a=rtcp-mux",
        "a=rtpmap:102 H264/90000",
        "m=video 9 UDP/TLS/RTP/SAVPF 102",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtpmap:102 H265/90000",
        "",
    ]
    .join("\r\n");
    let mut net = Net::new();
    net.join_http(
        "pub",
        SessionKind::Whip,
        Grant::Publish,
        Direction::SendOnly,
    );
    let refused = net.room.join(
        net.now,
        JoinRequest {
            user_id: "viewer".into(),
            grants: vec![Grant::Subscribe],
            kind: SessionKind::Whep { publisher: None },
            auto_subscribe: false,
            offer: Some(offer.clone()),
            wall_clock_ms: 0,
        },
    );
    match refused {
        Err(JoinError::SdpInvalid(reason)) => assert!(reason.contains("Pt locked"), "{reason}"),
        other => panic!("expected SDP_INVALID, got {other:?}"),
    }
    assert_eq!(net.room.participant_count(), 1);

    // Over signalling: that session ends, the room goes on.
    let alice = net.join_signalling("alice");
    let key = net.peers[alice].key;
    net.room
        .handle_message(net.now, key, ClientMessage::Offer { sdp: offer });
    net.pump();
    assert!(net.peer_signals(alice).iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::SdpInvalid,
            ..
        }
    )));
    assert_eq!(net.room.participant_count(), 1);
    assert!(net.room.participant_by_user("pub").is_some());
}

#[test]
fn a_peer_gone_silent_is_removed_when_its_connection_times_out() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    let silent = net.peers.remove(2);
    assert_eq!(silent.name, "carol");
    net.lifecycle.clear();
    // No answer to the room's ICE checks, no media, no RTCP: str0m reports
    // the ICE connection disconnected and the end of that drive pass
    // removes the session.
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.room.participant_count(), 2, "{:?}", net.lifecycle);
    assert_eq!(net.lifecycle, vec!["left carol".to_string()]);
}

#[test]
fn a_session_whose_rtc_failed_is_removed_at_the_end_of_the_next_pass() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    let key = net.peers[2].key;
    // What an input or output error does to a session (`Rtc::disconnect`),
    // here without one: no event follows, only the `Rtc`'s next run finds
    // it dead.
    net.room
        .participants
        .get_mut(&key)
        .expect("carol is in the room")
        .rtc
        .disconnect();
    net.lifecycle.clear();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.room.participant_count(), 2);
    assert_eq!(net.lifecycle, vec!["left carol".to_string()]);
}
