//! Bad input never hurts a healthy call: while a publisher streams to a
//! subscriber, the server is fed garbage datagrams at its media port,
//! malformed and oversized signalling messages, bad tokens and bad WHIP
//! requests. Each gets its error or counter, and the healthy pair keeps
//! receiving throughout.
//!
//! Run inside a loopback-only namespace (scripts/test.sh does):
//! `unshare -n bash -c 'ip link set lo up; exec cargo test -p weir-server --test bad_input'`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use support::{TestServer, ALL_GRANTS, WAIT};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use weir_client::synthetic::{Vp8Config, Vp8Source};
use weir_client::weir_protocol::{ErrorCode, Grant, ServerMessage};
use weir_client::{Client, Error, JoinOptions};

/// Datagrams shaped like every protocol that shares the media port, broken
/// in the ways a fuzzer or a buggy peer would break them.
fn garbage_datagrams(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x80],
        // RTP header cut short, and a full header with a bogus extension length.
        vec![0x80, 0x60, 0x00, 0x01],
        vec![
            0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0xff, 0xff,
        ],
        // RTCP SR / RR / PLI with lengths that lie.
        vec![0x80, 200, 0xff, 0xff, 0, 0, 0, 1],
        vec![0x81, 201, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2],
        vec![0x81, 206, 0x00, 0x02, 0, 0, 0, 1],
        // STUN binding requests: truncated, unknown ufrag, bad attribute length.
        vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42],
        weir_sfu::stun::binding_request_with_username("nosuchufrag:x"),
        {
            let mut m = weir_sfu::stun::binding_request_with_username("abc:def");
            m[23] = 0xff;
            m
        },
        // DTLS records: handshake and application data with no session.
        vec![
            0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x10, 1, 0, 0,
        ],
        vec![0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0xff, 0xff],
        vec![0xff; 1500],
    ];
    for _ in 0..300 {
        let len = rng.gen_range(1..1400);
        let mut datagram: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Bias half of them toward the RTP/RTCP and STUN ranges.
        match rng.gen_range(0..4) {
            0 => datagram[0] = 0x80 | (datagram[0] & 0x3f),
            1 => datagram[0] &= 0x03,
            _ => {}
        }
        out.push(datagram);
    }
    out
}

/// Sends garbage at the media port from a fresh socket.
async fn flood_udp(target: SocketAddr, rounds: usize) -> usize {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut sent = 0;
    for round in 0..rounds {
        for datagram in garbage_datagrams(round as u64) {
            if socket.send_to(&datagram, target).await.is_ok() {
                sent += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sent
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_server_message(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.ok()??.ok()?;
        match frame {
            Message::Text(text) => {
                return Some(serde_json::from_str(text.as_str()).expect("server sends valid JSON"))
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Waits for the next `error` message and returns its code.
async fn next_error(ws: &mut Ws) -> Option<ErrorCode> {
    loop {
        match next_server_message(ws).await? {
            ServerMessage::Error { code, .. } => return Some(code),
            _ => continue,
        }
    }
}

async fn raw_session(server: &TestServer, token: &str) -> Ws {
    let url = format!("{}?token={}", server.ws_url(), token);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_everywhere_while_a_call_keeps_flowing() {
    let server = TestServer::start().await;
    let room = "robust";
    let url = server.ws_url();

    // The healthy pair.
    let (publisher, video) = server.camera_publisher(room, "pub").await;
    let mut subscriber = server
        .join(room, "sub", &[Grant::Subscribe])
        .await
        .expect("subscriber joins");
    let mut media = subscriber.take_media().expect("media channel");

    // Stream 30 fps for the whole test.
    let streaming = tokio::spawn(async move {
        let mut source = Vp8Source::new(Vp8Config {
            keyframe_interval: 30,
            ..Vp8Config::default()
        });
        let mut tick = tokio::time::interval(source.frame_interval());
        let mut frame = Vec::new();
        for _ in 0..(30 * 12) {
            tick.tick().await;
            if video.send_vp8_frame(&mut source, &mut frame).await.is_err() {
                break;
            }
        }
        video
    });

    // Wait until media flows before attacking.
    let first = tokio::time::timeout(WAIT, media.recv())
        .await
        .expect("media starts within the wait")
        .expect("media channel open");
    assert!(!first.payload.is_empty());

    // Count what the subscriber receives in 1-second windows during the attack.
    let counting = tokio::spawn(async move {
        let mut windows = Vec::new();
        for _ in 0..6 {
            let end = tokio::time::Instant::now() + Duration::from_secs(1);
            let mut count = 0usize;
            while let Ok(Some(_)) = tokio::time::timeout_at(end, media.recv()).await {
                count += 1;
            }
            windows.push(count);
        }
        windows
    });

    // 1. Garbage at the media port.
    let udp_target = server.udp_addr;
    let flood = tokio::spawn(flood_udp(udp_target, 40));

    // 2. Bad tokens, each refused with its code.
    let expired = server.token_at(
        room,
        "late",
        &ALL_GRANTS,
        Duration::from_secs(60),
        support::unix_now() - 3600,
    );
    let other_room = server.token("elsewhere", "x", &ALL_GRANTS);
    for (token, expected) in [
        ("".to_string(), ErrorCode::TokenMissing),
        ("garbage".to_string(), ErrorCode::TokenInvalid),
        ("a.b.c".to_string(), ErrorCode::TokenInvalid),
        (expired, ErrorCode::TokenExpired),
    ] {
        let mut ws = raw_session(&server, &token).await;
        assert_eq!(next_error(&mut ws).await, Some(expected), "token {token:?}");
    }
    let wrong_room = format!("{}?token={}&room={}", url, other_room, room);
    let (mut ws, _) = tokio_tungstenite::connect_async(wrong_room)
        .await
        .expect("connects");
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::TokenWrongRoom));
    // The same refusals through the client API.
    match Client::connect(&url, "not-a-token", JoinOptions::default()).await {
        Err(Error::Server { code, .. }) => assert_eq!(code, ErrorCode::TokenInvalid),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a garbage token was accepted"),
    }

    // 3. Garbage signalling on a joined session; the session survives.
    let mut ws = raw_session(&server, &server.token(room, "noisy", &[Grant::Subscribe])).await;
    ws.send(Message::text(r#"{"type":"ping","ts":1}"#))
        .await
        .expect("send");
    assert_eq!(
        next_server_message(&mut ws).await,
        Some(ServerMessage::Pong { ts: 1 })
    );
    ws.send(Message::text(r#"{"type":"leave"}"#))
        .await
        .expect("send");
    assert_eq!(
        next_error(&mut ws).await,
        Some(ErrorCode::NotJoined),
        "anything but join before join"
    );
    ws.send(Message::text(r#"{"type":"join","version":1}"#))
        .await
        .expect("send");
    let joined = loop {
        match next_server_message(&mut ws).await.expect("session open") {
            ServerMessage::Joined { .. } => break true,
            _ => continue,
        }
    };
    assert!(joined);
    let oversized = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "v".repeat(200 * 1024));
    for (text, expected) in [
        ("{".to_string(), ErrorCode::MalformedMessage),
        ("[1,2,3]".to_string(), ErrorCode::MalformedMessage),
        (
            r#"{"type":"teleport"}"#.to_string(),
            ErrorCode::UnknownMessage,
        ),
        (
            r#"{"type":"mute","track_id":"TR_nope","muted":true}"#.to_string(),
            ErrorCode::TrackNotFound,
        ),
        (
            r#"{"type":"offer","sdp":"v=0 nonsense"}"#.to_string(),
            ErrorCode::SdpInvalid,
        ),
        (
            r#"{"type":"answer","sdp":"v=0"}"#.to_string(),
            ErrorCode::SdpInvalid,
        ),
        (
            r#"{"type":"publish","mid":"0","kind":"video"}"#.to_string(),
            ErrorCode::PermissionDenied,
        ),
        (
            r#"{"type":"join","version":1}"#.to_string(),
            ErrorCode::AlreadyJoined,
        ),
        (oversized, ErrorCode::MessageTooLarge),
    ] {
        ws.send(Message::text(text.clone())).await.expect("send");
        assert_eq!(
            next_error(&mut ws).await,
            Some(expected),
            "message {:.60}",
            text
        );
    }
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(next_error(&mut ws).await, Some(ErrorCode::MalformedMessage));
    ws.send(Message::text(r#"{"type":"ping","ts":42}"#))
        .await
        .expect("send");
    let pong = loop {
        match next_server_message(&mut ws).await.expect("still open") {
            ServerMessage::Pong { ts } => break ts,
            _ => continue,
        }
    };
    assert_eq!(pong, 42, "the session survived the garbage");

    // 4. Bad WHIP requests.
    let http = reqwest::Client::new();
    let whip = format!("{}/whip/v1/rooms/{}", server.http_base(), room);
    let publish_token = server.token(room, "whip", &ALL_GRANTS);
    let status = |r: reqwest::Response| r.status().as_u16();
    let no_auth = http
        .post(&whip)
        .header("content-type", "application/sdp")
        .body("v=0")
        .send()
        .await
        .expect("http");
    assert_eq!(status(no_auth), 401);
    let wrong_type = http
        .post(&whip)
        .bearer_auth(&publish_token)
        .header("content-type", "text/plain")
        .body("v=0")
        .send()
        .await
        .expect("http");
    assert_eq!(status(wrong_type), 415);
    let bad_sdp = http
        .post(&whip)
        .bearer_auth(&publish_token)
        .header("content-type", "application/sdp")
        .body("v=0\r\nthis is not sdp\r\n")
        .send()
        .await
        .expect("http");
    assert_eq!(status(bad_sdp), 400);
    let huge = http
        .post(&whip)
        .bearer_auth(&publish_token)
        .header("content-type", "application/sdp")
        .body("a".repeat(70 * 1024))
        .send()
        .await
        .expect("http");
    assert_eq!(status(huge), 413);
    let viewer_token = server.token(room, "viewer", &[Grant::Subscribe]);
    let forbidden = http
        .post(&whip)
        .bearer_auth(&viewer_token)
        .header("content-type", "application/sdp")
        .body(stun_sdp_placeholder())
        .send()
        .await
        .expect("http");
    assert!(
        matches!(status(forbidden), 400 | 403),
        "a subscribe-only token cannot publish over WHIP"
    );
    let gone = http
        .delete(format!(
            "{}/whip/v1/rooms/{}/sessions/PA_unknown",
            server.http_base(),
            room
        ))
        .send()
        .await
        .expect("http");
    assert_eq!(status(gone), 404);

    let sent = flood.await.expect("flood task");
    let windows = counting.await.expect("counting task");
    let video = streaming.await.expect("streaming task");
    drop(video);

    // The healthy subscriber kept receiving in every window of the attack
    // (30 fps VP8, several packets per frame).
    assert!(
        windows.iter().all(|&count| count >= 30),
        "media kept flowing during the attack: packets per second {windows:?}"
    );
    let metrics = server.metrics();
    // Every datagram the server read is accounted for: routed to a room,
    // or counted as unroutable or dropped. (The kernel itself may drop some
    // of a flood before the server reads them.)
    let received = metrics.udp_datagrams_received.get();
    let accounted = metrics.udp_datagrams_routed.get()
        + metrics.udp_datagrams_unroutable.get()
        + metrics.udp_datagrams_dropped.get();
    // The reader is one task: at most the datagram it is handling right now
    // is counted as received but not yet classified.
    assert!(
        accounted <= received && received - accounted <= 1,
        "every datagram read is accounted for ({accounted} of {received})"
    );
    assert!(
        metrics.udp_datagrams_unroutable.get() * 2 >= sent as u64,
        "garbage was counted as unroutable ({} of {sent} sent)",
        metrics.udp_datagrams_unroutable.get()
    );
    assert!(metrics.tokens_rejected.get() >= 5);
    assert!(metrics.ws_messages_rejected.get() >= 4);
    assert!(metrics.http_requests_rejected.get() >= 4);
    subscriber.leave().await.expect("leave");
    publisher.leave().await.expect("leave");
    server.shutdown().await;
}

/// A syntactically fine offer that sends video (for the permission check).
fn stun_sdp_placeholder() -> String {
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sendonly",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
        "a=setup:actpass",
        "a=rtcp-mux",
        "a=rtpmap:96 VP8/90000",
        "",
    ]
    .join("\r\n")
}
