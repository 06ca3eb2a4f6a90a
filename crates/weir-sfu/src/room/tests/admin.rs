//! Administration scenarios: kick, live grant changes, server-side mute.

use std::time::Duration;

use weir_protocol::{
    ClientMessage, ErrorCode, Grant, LeaveReason, PublishRequest, ServerMessage, TrackKind,
};

use super::super::admin::AdminError;
use super::harness::*;

fn track_id_of(net: &Net, subscriber: usize) -> String {
    net.peer_signals(subscriber)
        .iter()
        .find_map(|m| match m {
            ServerMessage::Subscribed { track_id, .. } => Some(track_id.to_string()),
            _ => None,
        })
        .expect("subscribed")
}

fn stream(
    net: &mut Net,
    mid: str0m::media::Mid,
    seqs: std::ops::RangeInclusive<u64>,
    keyframe_at: u64,
) {
    for seq in seqs {
        net.send_vp8(0, mid, seq, seq == keyframe_at, true);
        net.advance(Duration::from_millis(20));
    }
}

#[test]
fn kick_removes_the_user_and_tells_everyone() {
    let (mut net, _mid) = publisher_and_two_subscribers();
    assert_eq!(net.room.kick(net.now, "carol"), Ok(1));
    net.pump();
    assert!(net.peer_signals(2).iter().any(|m| matches!(
        m,
        ServerMessage::Leave {
            reason: LeaveReason::Kicked
        }
    )));
    assert!(
        net.peers[2].closed,
        "the kicked peer's connection is closed"
    );
    for peer in [0, 1] {
        assert!(net.peer_signals(peer).iter().any(|m| matches!(
            m,
            ServerMessage::ParticipantLeft { user_id, reason: LeaveReason::Kicked, .. } if user_id == "carol"
        )));
    }
    assert_eq!(net.room.participant_count(), 2);
    assert_eq!(
        net.room.kick(net.now, "carol"),
        Err(AdminError::NoSuchParticipant("carol".into()))
    );
}

#[test]
fn revoking_publish_stops_forwarding_at_once() {
    let (mut net, mid) = publisher_and_two_subscribers();
    stream(&mut net, mid, 1..=20, 1);
    net.run_for(Duration::from_millis(100));
    let before = net.peers[1].received.len();
    assert!(before >= 20);

    net.room
        .update_grants(net.now, "alice", &[Grant::Subscribe])
        .expect("alice is in the room");
    net.pump();
    stream(&mut net, mid, 21..=40, 25);
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        net.peers[1].received.len(),
        before,
        "nothing is forwarded after the revocation"
    );
    assert!(net
        .peer_signals(1)
        .iter()
        .any(|m| matches!(m, ServerMessage::TrackUnpublished { .. })));
    assert!(net.peer_signals(0).iter().any(|m| matches!(
        m,
        ServerMessage::PermissionsChanged { grants } if grants == &vec![Grant::Subscribe]
    )));
    // Publishing again is refused.
    let key = net.peers[0].key;
    net.room.handle_message(
        net.now,
        key,
        ClientMessage::Publish(PublishRequest {
            mid: "9".into(),
            kind: TrackKind::Audio,
            source: None,
            codecs: vec![],
        }),
    );
    net.pump();
    assert!(net.peer_signals(0).iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::PermissionDenied,
            ..
        }
    )));
    assert_eq!(
        net.room.update_grants(net.now, "nobody", &[]),
        Err(AdminError::NoSuchParticipant("nobody".into()))
    );
}

#[test]
fn revoking_subscribe_removes_subscriptions() {
    let (mut net, mid) = publisher_and_two_subscribers();
    stream(&mut net, mid, 1..=10, 1);
    net.room
        .update_grants(net.now, "bob", &[Grant::Publish])
        .expect("bob is in the room");
    net.run_for(Duration::from_millis(200));
    let before = net.peers[1].received.len();
    stream(&mut net, mid, 11..=30, 11);
    net.run_for(Duration::from_millis(200));
    assert_eq!(
        net.peers[1].received.len(),
        before,
        "bob no longer receives"
    );
    assert!(net
        .peer_signals(1)
        .iter()
        .any(|m| matches!(m, ServerMessage::Unsubscribed { .. })));
    assert!(net.peers[2].received.len() >= 30, "carol still receives");
}

#[test]
fn server_side_mute_pauses_forwarding_and_unmute_resumes_continuously() {
    let (mut net, mid) = publisher_and_two_subscribers();
    stream(&mut net, mid, 1..=20, 1);
    net.run_for(Duration::from_millis(100));
    let track_id = track_id_of(&net, 1);
    net.room
        .mute_track(net.now, &track_id, true)
        .expect("track exists");
    net.pump();
    let before = net.peers[1].received.len();
    stream(&mut net, mid, 21..=40, 30);
    assert_eq!(
        net.peers[1].received.len(),
        before,
        "muted: nothing forwarded"
    );
    for peer in 0..3 {
        assert!(
            net.peer_signals(peer)
                .iter()
                .any(|m| matches!(m, ServerMessage::TrackMuted { muted: true, .. })),
            "peer {peer} told about the mute"
        );
    }
    let requests_before = net.peers[0].keyframe_requests;
    net.room
        .mute_track(net.now, &track_id, false)
        .expect("track exists");
    net.pump();
    net.run_for(Duration::from_millis(600));
    assert!(
        net.peers[0].keyframe_requests > requests_before,
        "unmute asks for a keyframe"
    );
    stream(&mut net, mid, 41..=60, 45);
    net.run_for(Duration::from_millis(200));
    let received = &net.peers[1].received;
    assert!(received.len() > before, "unmuted: media flows again");
    let resumed = embedded_seqs(&received[before..]);
    assert_eq!(resumed.first(), Some(&45), "resumes at the first keyframe");
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "numbering continues across the mute"
        );
    }
    assert_eq!(
        net.room.mute_track(net.now, "TR_nope", true),
        Err(AdminError::NoSuchTrack("TR_nope".into()))
    );
}
