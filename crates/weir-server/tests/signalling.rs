//! Signalling through an in-process server with real WebRTC peers: joins,
//! refusals, malformed input, glare, ping timeouts, manual subscriptions.
//!
//! These tests open UDP peers on 127.0.0.1: run them in a loopback-only
//! network namespace,
//! `unshare -n bash -c 'ip link set lo up; exec cargo test -p weir-server --test signalling'`.
//! Every wait is bounded, so a failure never hangs.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::media::{
    check_stream, collect, packets_of, send_synthetic, subscriber_options, wait_subscribed,
};
use support::{TestServer, ALL_GRANTS, WAIT};
use weir_client::weir_protocol::{
    ErrorCode, Grant, LeaveReason, ServerMessage, TrackId, TrackKind, TrackSource,
};
use weir_client::{Client, Error, JoinOptions};

async fn expect_refused(server: &TestServer, url: &str, token: &str, code: ErrorCode) {
    expect_refused_with(server, url, token, JoinOptions::default(), code).await;
}

async fn expect_refused_with(
    server: &TestServer,
    url: &str,
    token: &str,
    options: JoinOptions,
    code: ErrorCode,
) {
    match Client::connect(url, token, options).await {
        Err(Error::Server { code: got, message }) => {
            assert_eq!(got, code, "refused with {got} ({message}), expected {code}");
        }
        Err(e) => panic!("expected {code}, got {e}"),
        Ok(client) => {
            let _ = client.leave().await;
            panic!(
                "expected {code}, but the join succeeded (server {})",
                server.http_addr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_join_leave_refusals_and_malformed_input() {
    let server = TestServer::start().await;
    let room = "signalling";
    let url = server.ws_url();

    let mut alice = Client::connect(
        &url,
        &server.token(room, "alice", &ALL_GRANTS),
        JoinOptions::default(),
    )
    .await
    .expect("alice joins");
    assert_eq!(alice.joined().room, room);
    assert_eq!(alice.joined().user_id, "alice");
    assert!(alice.joined().participants.is_empty());
    assert!(alice.joined().ping_interval > Duration::ZERO);

    let bob = Client::connect(
        &url,
        &server.token(room, "bob", &ALL_GRANTS),
        JoinOptions::default(),
    )
    .await
    .expect("bob joins");
    let listed: Vec<_> = bob
        .joined()
        .participants
        .iter()
        .map(|p| (p.participant_id.clone(), p.user_id.clone()))
        .collect();
    assert_eq!(
        listed,
        vec![(alice.participant_id().clone(), "alice".to_string())]
    );
    let bob_id = bob.participant_id().clone();
    let joined = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::ParticipantJoined { participant } => Some(participant.clone()),
            _ => None,
        })
        .await
        .expect("alice hears that bob joined");
    assert_eq!(joined.participant_id, bob_id);
    assert_eq!(joined.user_id, "bob");

    bob.leave().await.expect("bob leaves");
    let (left_id, left_user, reason) = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::ParticipantLeft {
                participant_id,
                user_id,
                reason,
            } => Some((participant_id.clone(), user_id.clone(), *reason)),
            _ => None,
        })
        .await
        .expect("alice hears that bob left");
    assert_eq!((left_id, left_user.as_str()), (bob_id, "bob"));
    assert_eq!(reason, LeaveReason::ClientLeft);

    // Refusals.
    expect_refused(&server, &url, "not-a-jwt", ErrorCode::TokenInvalid).await;
    let good = server.token(room, "mallory", &ALL_GRANTS);
    let mut tampered = good.clone();
    let last = tampered.pop().expect("a non-empty token");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    expect_refused(&server, &url, &tampered, ErrorCode::TokenInvalid).await;
    let expired = server.token_at(
        room,
        "mallory",
        &ALL_GRANTS,
        Duration::from_secs(60),
        support::unix_now() - 7200,
    );
    expect_refused(&server, &url, &expired, ErrorCode::TokenExpired).await;
    let elsewhere = server.token("another-room", "mallory", &ALL_GRANTS);
    let wrong_room_url = format!("{url}?room={room}");
    expect_refused(
        &server,
        &wrong_room_url,
        &elsewhere,
        ErrorCode::TokenWrongRoom,
    )
    .await;

    expect_refused_with(
        &server,
        &url,
        &server.token(room, "time-traveller", &ALL_GRANTS),
        JoinOptions {
            protocol_version: 2,
            ..JoinOptions::default()
        },
        ErrorCode::UnsupportedVersion,
    )
    .await;

    // A subscribe-only participant cannot publish.
    let viewer = Client::connect(
        &url,
        &server.token(room, "viewer", &[Grant::Subscribe]),
        JoinOptions::default(),
    )
    .await
    .expect("the viewer joins");
    match viewer.publish_video_vp8(TrackSource::Camera).await {
        Err(e) => assert_eq!(
            e.code(),
            Some(ErrorCode::PermissionDenied),
            "publishing without the grant: {e}"
        ),
        Ok(track) => panic!("a subscribe-only token published {track:?}"),
    }

    // Malformed input is answered and the session survives.
    alice.send_raw("{this is not json").expect("send");
    let code = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .expect("an error for malformed JSON");
    assert_eq!(code, ErrorCode::MalformedMessage);
    alice.send_raw(r#"{"type":"subscribe"}"#).expect("send");
    let code = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .expect("an error for a message without its fields");
    assert_eq!(code, ErrorCode::MalformedMessage);
    alice.send_raw(r#"{"type":"teleport"}"#).expect("send");
    let code = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .expect("an error for an unknown type");
    assert_eq!(code, ErrorCode::UnknownMessage);
    let pongs = alice.stats().pongs;
    alice.send_raw(r#"{"type":"ping","ts":7}"#).expect("send");
    tokio::time::timeout(WAIT, async {
        while alice.stats().pongs == pongs {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session still answers pings");
    let carol = Client::connect(
        &url,
        &server.token(room, "carol", &[Grant::Subscribe]),
        JoinOptions::default(),
    )
    .await
    .expect("carol joins");
    let seen = alice
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::ParticipantJoined { participant } if participant.user_id == "carol" => {
                Some(participant.participant_id.clone())
            }
            _ => None,
        })
        .await
        .expect("alice still gets events");
    assert_eq!(&seen, carol.participant_id());

    for client in [viewer, carol, alice] {
        client.leave().await.expect("leave");
    }
    server.shutdown().await;
}

/// Both sides offer at about the same time: a participant publishes right
/// after joining, while the server offers it the room's existing track. The
/// client ignores a server offer while its own is outstanding; the server
/// (polite) rolls back, answers, and offers again. Media must flow both
/// ways afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_while_the_server_offers_converges() {
    let server = TestServer::start().await;
    let room = "glare";
    let mut first = Client::connect(
        &server.ws_url(),
        &server.token(room, "first", &ALL_GRANTS),
        subscriber_options(),
    )
    .await
    .expect("first joins");
    let first_video = first
        .publish_video_vp8(TrackSource::Camera)
        .await
        .expect("first publishes");
    first.wait_connected(WAIT).await.expect("first connects");

    let mut second = Client::connect(
        &server.ws_url(),
        &server.token(room, "second", &ALL_GRANTS),
        subscriber_options(),
    )
    .await
    .expect("second joins");
    // The server's offer for `first`'s track is on its way.
    let second_video = second
        .publish_video_vp8(TrackSource::Camera)
        .await
        .expect("second publishes during the server offer");
    let first_id = first_video.track_id().expect("id").clone();
    let second_id = second_video.track_id().expect("id").clone();
    wait_subscribed(&mut second, &[&first_id]).await;
    wait_subscribed(&mut first, &[&second_id]).await;
    second.wait_connected(WAIT).await.expect("second connects");

    let collectors: Vec<_> = [&mut first, &mut second]
        .into_iter()
        .map(|c| {
            let media = c.take_media().expect("media");
            tokio::spawn(collect(
                media,
                Duration::from_secs(3),
                Duration::from_secs(60),
            ))
        })
        .collect();
    let (sent_first, sent_second) = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join(
            send_synthetic(Some(first_video.clone()), None, 90, 0),
            send_synthetic(Some(second_video.clone()), None, 90, 0),
        ),
    )
    .await
    .expect("sending finishes");
    let mut received = Vec::new();
    for collector in collectors {
        received.push(collector.await.expect("collector"));
    }
    check_stream(
        "first <- second",
        &packets_of(&received[0], &second_id),
        &sent_second.video,
        true,
        second_video.ssrc(),
    );
    check_stream(
        "second <- first",
        &packets_of(&received[1], &first_id),
        &sent_first.video,
        true,
        first_video.ssrc(),
    );
    eprintln!(
        "server offers ignored during glare: first {}, second {}",
        first.stats().offers_ignored,
        second.stats().offers_ignored
    );
    first.leave().await.expect("leave");
    second.leave().await.expect("leave");
    server.shutdown().await;
}

/// A participant that stops pinging is timed out: it gets PING_TIMEOUT and a
/// closed socket, the others get `participant_left` with `ping_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_participant_is_timed_out() {
    let server = TestServer::start_with(|config| {
        config.signalling.ping_interval_seconds = 1;
        config.signalling.ping_timeout_seconds = 2;
    })
    .await;
    let room = "pings";
    let mut watcher = server
        .join(room, "watcher", &ALL_GRANTS)
        .await
        .expect("the watcher joins");
    assert_eq!(watcher.joined().ping_interval, Duration::from_secs(1));
    assert_eq!(watcher.joined().ping_timeout, Duration::from_secs(2));
    let mut silent = Client::connect(
        &server.ws_url(),
        &server.token(room, "silent", &ALL_GRANTS),
        JoinOptions {
            send_pings: false,
            ..JoinOptions::default()
        },
    )
    .await
    .expect("the silent one joins");
    let silent_id = silent.participant_id().clone();
    let code = silent
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .expect("an error before the close");
    assert_eq!(code, ErrorCode::PingTimeout);
    silent
        .wait_for(WAIT, |e| {
            matches!(e, weir_client::Event::Closed { .. }).then_some(())
        })
        .await
        .expect("the socket closes");
    let (left, reason) = watcher
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::ParticipantLeft {
                participant_id,
                reason,
                ..
            } => Some((participant_id.clone(), *reason)),
            _ => None,
        })
        .await
        .expect("the watcher hears of it");
    assert_eq!(left, silent_id);
    assert_eq!(reason, LeaveReason::PingTimeout);
    // The watcher, which pings, is still there, and stays past further
    // ping timeouts: its session's timer finds it active and is set again
    // (its pings go on being answered).
    let pongs = watcher.stats().pongs;
    assert!(pongs >= 1, "the watcher's pings are answered");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        watcher.stats().pongs >= pongs + 3,
        "the watcher's session lives on over two more ping timeouts ({} pongs before, {} after)",
        pongs,
        watcher.stats().pongs
    );
    watcher.leave().await.expect("leave");
    server.shutdown().await;
}

/// Without auto-subscribe nothing arrives until `subscribe`; `unsubscribe`
/// removes the m-line (`unsubscribed`) and stops that track's media while
/// the other continues; `mute` and `unpublish` reach the subscriber as
/// events, and the publisher's renegotiation after `unpublish` is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_subscriptions_mute_and_unpublish() {
    let server = TestServer::start().await;
    let room = "manual";
    let mut publisher = server
        .join(room, "publisher", &ALL_GRANTS)
        .await
        .expect("the publisher joins");
    let tracks = publisher
        .publish_tracks(&[
            (TrackKind::Video, TrackSource::Screen),
            (TrackKind::Audio, TrackSource::ScreenAudio),
        ])
        .await
        .expect("publish");
    let (video, audio) = (tracks[0].clone(), tracks[1].clone());
    let video_id = video.track_id().expect("id").clone();
    let audio_id = audio.track_id().expect("id").clone();
    assert_eq!(video.source(), TrackSource::Screen);
    publisher.wait_connected(WAIT).await.expect("connected");
    let sender = {
        let (video, audio) = (video.clone(), audio.clone());
        tokio::spawn(async move { send_synthetic(Some(video), Some(audio), 600, 1000).await })
    };

    let mut viewer = Client::connect(
        &server.ws_url(),
        &server.token(room, "viewer", &[Grant::Subscribe]),
        JoinOptions {
            auto_subscribe: false,
            ..subscriber_options()
        },
    )
    .await
    .expect("the viewer joins");
    let listed: Vec<(TrackId, TrackSource)> = viewer.joined().participants[0]
        .tracks
        .iter()
        .map(|t| (t.track_id.clone(), t.source))
        .collect();
    assert_eq!(
        listed,
        vec![
            (video_id.clone(), TrackSource::Screen),
            (audio_id.clone(), TrackSource::ScreenAudio)
        ]
    );
    // Nothing is offered without a subscription.
    let early = viewer
        .wait_for_message(Duration::from_millis(700), |m| {
            matches!(m, ServerMessage::Subscribed { .. }).then_some(())
        })
        .await;
    assert!(early.is_err(), "subscribed without asking");

    viewer.subscribe(&video_id).expect("subscribe");
    viewer.subscribe(&audio_id).expect("subscribe");
    wait_subscribed(&mut viewer, &[&video_id, &audio_id]).await;
    viewer.wait_connected(WAIT).await.expect("connected");
    let mut media = viewer.take_media().expect("media");
    let mut seen = HashSet::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < 2 {
            let packet = media.recv().await.expect("a packet");
            seen.insert(packet.track_id.as_deref().cloned().expect("a known track"));
        }
    })
    .await
    .expect("media of both tracks after subscribe");

    publisher.mute(&video_id, true).expect("mute");
    let muted = viewer
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::TrackMuted {
                track_id, muted, ..
            } if *track_id == video_id => Some(*muted),
            _ => None,
        })
        .await
        .expect("track_muted");
    assert!(muted);
    publisher.mute(&video_id, false).expect("unmute");

    viewer.unsubscribe(&video_id).expect("unsubscribe");
    let gone = viewer
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Unsubscribed { track_id } => Some(track_id.clone()),
            ServerMessage::Error { code, message } => panic!("{code}: {message}"),
            _ => None,
        })
        .await
        .expect("unsubscribed");
    assert_eq!(gone, video_id);
    // Drain what was in flight; then audio only, while video is still sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while media.try_recv().is_ok() {}
    let mut audio_after = 0;
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(packet)) = tokio::time::timeout_at(quiet_until, media.recv()).await {
        assert_eq!(
            packet.track_id.as_deref(),
            Some(&audio_id),
            "video still arrives after unsubscribe"
        );
        audio_after += 1;
    }
    assert!(
        audio_after > 20,
        "audio stopped too ({audio_after} packets)"
    );

    publisher.unpublish(&video).expect("unpublish");
    let unpublished = viewer
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::TrackUnpublished { track_id, .. } => Some(track_id.clone()),
            _ => None,
        })
        .await
        .expect("track_unpublished");
    assert_eq!(unpublished, video_id);
    publisher
        .wait_for(WAIT, |e| match e {
            weir_client::Event::LocalError(e) => panic!("publisher: {e}"),
            weir_client::Event::Message(ServerMessage::Error { code, message }) => {
                panic!("publisher: {code}: {message}")
            }
            weir_client::Event::Message(ServerMessage::TrackUnpublished { .. }) => Some(()),
            _ => None,
        })
        .await
        .expect("the publisher sees its track unpublished");
    sender.abort();
    viewer.leave().await.expect("leave");
    publisher.leave().await.expect("leave");
    server.shutdown().await;
}

/// Removing a subscriber's only m-line: the server offers it stopped (port
/// 0, `a=group:BUNDLE` with no mids); a standard answer then carries no
/// `a=group` line at all (RFC 8843: an empty BUNDLE group is omitted), and
/// the server must accept it, then send `unsubscribed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_the_last_track_renegotiates() {
    let server = TestServer::start().await;
    let room = "last-track";
    let (publisher, video) = server.camera_publisher(room, "publisher").await;
    let video_id = video.track_id().expect("id").clone();
    let mut viewer = server
        .join(room, "viewer", &[Grant::Subscribe])
        .await
        .expect("the viewer joins");
    wait_subscribed(&mut viewer, &[&video_id]).await;
    viewer.wait_connected(WAIT).await.expect("connected");
    viewer.unsubscribe(&video_id).expect("unsubscribe");
    let gone = viewer
        .wait_for_message(WAIT, |m| match m {
            ServerMessage::Unsubscribed { track_id } => Some(track_id.clone()),
            ServerMessage::Error { code, message } => {
                panic!("the answer removing the last m-line was refused: {code}: {message}")
            }
            _ => None,
        })
        .await
        .expect("unsubscribed");
    assert_eq!(gone, video_id);
    // And a new subscription works afterwards.
    viewer.subscribe(&video_id).expect("subscribe again");
    wait_subscribed(&mut viewer, &[&video_id]).await;
    viewer.leave().await.expect("leave");
    publisher.leave().await.expect("leave");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_join_the_server_pings_once_to_learn_the_round_trip() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = TestServer::start().await;
    let token = server.token("probe", "ann", &[Grant::Subscribe]);
    let url = format!("{}?token={}", server.ws_url(), token);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws.send(Message::text(r#"{"type":"join","version":1}"#))
        .await
        .expect("send join");
    // The library answers the ping itself; the session goes on as before.
    let mut pings = Vec::new();
    let mut joined = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await {
        match frame {
            Message::Ping(payload) => pings.push(payload.len()),
            Message::Text(text) => {
                joined |= matches!(
                    serde_json::from_str(text.as_str()),
                    Ok(ServerMessage::Joined { .. })
                );
            }
            _ => {}
        }
    }
    assert!(joined, "joined");
    assert_eq!(pings, vec![8], "one probe, with its 8-byte nonce");
    ws.send(Message::text(r#"{"type":"ping","ts":7}"#))
        .await
        .expect("send ping");
    let pong = tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame {
                if let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) {
                    return Some(message);
                }
            }
        }
        None
    })
    .await;
    assert!(
        matches!(pong, Ok(Some(ServerMessage::Pong { ts: 7 }))),
        "{pong:?}"
    );
    server.shutdown().await;
}
