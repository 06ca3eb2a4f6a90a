//! Signalling messages: what the server does per WebSocket text frame.
//!
//! - `signalling/decode_*`: `weir_protocol::ClientMessage::parse` (the
//!   server's decoder: size limit, JSON, `type` check, typed message) of a
//!   `join`, a `publish`, an `offer` carrying a real SDP offer (str0m's,
//!   audio + video) and a `ping`.
//! - `signalling/encode_*`: `serde_json::to_string` of a `ServerMessage`
//!   (as `serve/ws.rs` sends them): `joined` into a room of 4 publishers
//!   with 2 tracks each, `track_published`, `subscribed`, a server `offer`
//!   with 4 m-lines, and a `pong`.
//!
//! Throughput counts messages.
//!
//! `cargo bench -p weir-benches --bench signalling`
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use weir_protocol::{
    ClientMessage, ParticipantId, ParticipantInfo, PublishRequest, ServerMessage, TrackId,
    TrackInfo, TrackKind, TrackSource, PROTOCOL_VERSION,
};

/// An SDP offer made by str0m with these m-lines.
fn sdp_offer(lines: &[(MediaKind, Direction)]) -> String {
    weir_sfu::install_crypto();
    let mut rtc = Rtc::builder().build(Instant::now());
    let addr = "192.0.2.10:50000".parse().expect("address");
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    for (kind, direction) in lines {
        api.add_media(*kind, *direction, None, None, None);
    }
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

fn track(n: usize, kind: TrackKind) -> TrackInfo {
    TrackInfo {
        track_id: TrackId::new(format!("TR_{n:04}_{kind:?}")),
        participant_id: ParticipantId::new(format!("PA_{n:04}")),
        user_id: format!("user-{n}"),
        kind,
        source: TrackSource::default_for(kind),
        muted: false,
        codec: Some(match kind {
            TrackKind::Audio => "audio/opus".to_string(),
            TrackKind::Video => "video/VP8".to_string(),
        }),
        simulcast: false,
    }
}

fn decode(c: &mut Criterion) {
    let publish_offer = sdp_offer(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let messages: Vec<(&str, ClientMessage)> = vec![
        (
            "decode_join",
            ClientMessage::Join {
                version: PROTOCOL_VERSION,
                auto_subscribe: Some(true),
            },
        ),
        (
            "decode_publish",
            ClientMessage::Publish(PublishRequest {
                mid: "1".to_string(),
                kind: TrackKind::Video,
                source: Some(TrackSource::Camera),
                codecs: vec!["VP8".to_string(), "H264".to_string()],
            }),
        ),
        (
            "decode_offer_sdp",
            ClientMessage::Offer { sdp: publish_offer },
        ),
        (
            "decode_ping",
            ClientMessage::Ping {
                ts: 1_700_000_000_000,
            },
        ),
    ];
    let mut group = c.benchmark_group("signalling");
    group.throughput(Throughput::Elements(1));
    for (name, message) in &messages {
        let text = serde_json::to_string(message).expect("encodes");
        assert_eq!(&ClientMessage::parse(&text).expect("parses"), message);
        eprintln!("{name}: {} bytes", text.len());
        let kind = std::mem::discriminant(message);
        group.bench_function(*name, |b| {
            b.iter(|| {
                let parsed = ClientMessage::parse(black_box(&text)).expect("parses");
                assert_eq!(std::mem::discriminant(&parsed), kind);
                parsed
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let server_offer = sdp_offer(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ]);
    let participants: Vec<ParticipantInfo> = (0..4)
        .map(|n| ParticipantInfo {
            participant_id: ParticipantId::new(format!("PA_{n:04}")),
            user_id: format!("user-{n}"),
            tracks: vec![track(n, TrackKind::Audio), track(n, TrackKind::Video)],
            joined_at_ms: 1_700_000_000_000 + n as u64,
        })
        .collect();
    let messages: Vec<(&str, ServerMessage)> = vec![
        (
            "encode_joined_4_participants",
            ServerMessage::Joined {
                protocol_version: PROTOCOL_VERSION,
                server_version: "0.1.0".to_string(),
                room: "standup".to_string(),
                participant_id: ParticipantId::new("PA_0005"),
                user_id: "user-5".to_string(),
                participants,
                ping_interval_ms: 10_000,
                ping_timeout_ms: 30_000,
            },
        ),
        (
            "encode_track_published",
            ServerMessage::TrackPublished {
                track: track(1, TrackKind::Video),
                mid: None,
            },
        ),
        (
            "encode_subscribed",
            ServerMessage::Subscribed {
                track_id: TrackId::new("TR_0001_Video"),
                mid: "3".to_string(),
            },
        ),
        (
            "encode_offer_sdp",
            ServerMessage::Offer { sdp: server_offer },
        ),
        (
            "encode_pong",
            ServerMessage::Pong {
                ts: 1_700_000_000_000,
            },
        ),
    ];
    let mut group = c.benchmark_group("signalling");
    group.throughput(Throughput::Elements(1));
    for (name, message) in &messages {
        let text = serde_json::to_string(message).expect("encodes");
        let back: ServerMessage = serde_json::from_str(&text).expect("decodes");
        assert_eq!(&back, message);
        eprintln!("{name}: {} bytes", text.len());
        let len = text.len();
        group.bench_function(*name, |b| {
            b.iter(|| {
                let text = serde_json::to_string(black_box(message)).expect("encodes");
                assert_eq!(text.len(), len);
                text
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
