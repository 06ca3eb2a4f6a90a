//! Seeds of the text-input targets: signalling, tokens, configuration,
//! recording rules, REST bodies, WHIP/WHEP offers.

use std::path::Path;
use std::time::{Duration, Instant};

use str0m::media::{Direction, MediaKind as StrMediaKind};
use weir_fuzz::net::client_rtc;
use weir_fuzz::Writer;
use weir_protocol::{
    ClientMessage, ErrorCode, Grant, LeaveReason, ParticipantId, ParticipantInfo, PublishRequest,
    ServerMessage, TrackId, TrackInfo, TrackKind, TrackSource,
};
use weir_server::token::{self, AppKey};

use super::Corpus;

pub(super) fn signalling(c: &mut Corpus, repo: &Path) {
    let doc = std::fs::read_to_string(repo.join("docs/protocol.md")).expect("docs/protocol.md");
    for (i, line) in doc
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("{\"type\""))
        .enumerate()
    {
        c.add("signalling", &format!("doc-{i:02}"), line);
    }
    let track = TrackInfo {
        track_id: TrackId::new("TR_Fq2x"),
        participant_id: ParticipantId::new("PA_9kLm"),
        user_id: "bob".into(),
        kind: TrackKind::Video,
        source: TrackSource::Camera,
        muted: false,
        codec: Some("VP8".into()),
        simulcast: true,
    };
    let messages = vec![
        serde_json::to_string(&ServerMessage::Joined {
            protocol_version: 1,
            server_version: "0.1.0".into(),
            room: "demo".into(),
            participant_id: ParticipantId::new("PA_3hYt"),
            user_id: "alice".into(),
            participants: vec![ParticipantInfo {
                participant_id: ParticipantId::new("PA_9kLm"),
                user_id: "bob".into(),
                joined_at_ms: 1717171717171,
                tracks: vec![track.clone()],
            }],
            ping_interval_ms: 10_000,
            ping_timeout_ms: 30_000,
        }),
        serde_json::to_string(&ServerMessage::TrackPublished {
            track,
            mid: Some("0".into()),
        }),
        serde_json::to_string(&ServerMessage::ParticipantLeft {
            participant_id: ParticipantId::new("PA_9kLm"),
            user_id: "bob".into(),
            reason: LeaveReason::PingTimeout,
        }),
        serde_json::to_string(&ServerMessage::error(ErrorCode::TrackNotFound, "no track")),
        serde_json::to_string(&ServerMessage::PermissionsChanged {
            grants: vec![Grant::Subscribe, Grant::Data],
        }),
        serde_json::to_string(&ClientMessage::Publish(PublishRequest {
            mid: "1".into(),
            kind: TrackKind::Audio,
            source: Some(TrackSource::Microphone),
            codecs: vec!["opus".into()],
        })),
    ];
    for (i, m) in messages.into_iter().enumerate() {
        c.add(
            "signalling",
            &format!("built-{i:02}"),
            m.expect("serializes"),
        );
    }
    c.add(
        "signalling",
        "health",
        r#"{"status":"ok","version":"0.1.0","uptime_seconds":12,"rooms":1,"participants":2}"#,
    );
    c.add(
        "signalling",
        "http-error",
        r#"{"error":{"code":"TOKEN_EXPIRED","message":"the token has expired"}}"#,
    );
}

/// The `token` target's keys (kept in step with `fuzz_targets/token.rs`).
fn keys() -> Vec<AppKey> {
    let key = |id: &str, secret: &str, enabled, rpr| AppKey {
        app_id: id.into(),
        secret: secret.into(),
        enabled,
        room_permission_required: rpr,
    };
    vec![
        key("app1", "fuzz-secret-one-0123456789abcdef", true, false),
        key("app2", "fuzz-secret-two-0123456789abcdef", false, false),
        key("app3", "fuzz-secret-three-0123456789abcd", true, true),
    ]
}

pub(super) fn tokens(c: &mut Corpus) {
    const NOW: u64 = 1_717_171_717;
    let keys = keys();
    let mut disabled = keys[1].clone();
    disabled.enabled = true;
    let minted = [
        (
            "app1-any-room",
            token::mint(
                &keys[0],
                "*",
                "alice",
                &Grant::ALL,
                Duration::from_secs(3600),
                NOW,
            ),
        ),
        (
            "app1-room",
            token::mint(
                &keys[0],
                "demo",
                "bob@example.com",
                &[Grant::Subscribe],
                Duration::from_secs(60),
                NOW,
            ),
        ),
        (
            "app2-disabled",
            token::mint(
                &disabled,
                "demo",
                "carol",
                &[Grant::Publish],
                Duration::from_secs(60),
                NOW,
            ),
        ),
        (
            "app3-permission",
            token::mint(
                &keys[2],
                "room.1",
                "dave",
                &[Grant::Publish, Grant::Data],
                Duration::from_secs(86_400),
                NOW,
            ),
        ),
        (
            "app1-expired",
            token::mint(
                &keys[0],
                "demo",
                "erin",
                &Grant::ALL,
                Duration::from_secs(1),
                NOW - 100,
            ),
        ),
    ];
    for (name, t) in minted {
        let t = t.expect("mints");
        let mut w = Writer::default();
        w.u8(0)
            .u64(NOW)
            .string(if name == "app1-room" { "demo" } else { "" })
            .raw(t.as_bytes());
        c.add("token", name, w.data);
    }
    // An unsigned token and garbage.
    for (name, text) in [
        ("alg-none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJhcHAxIiwic3ViIjoiYWxpY2UiLCJyb29tIjoiKiIsImV4cCI6OTk5OTk5OTk5OX0."),
        ("not-jwt", "hello.world"),
    ] {
        let mut w = Writer::default();
        w.u8(0).u64(NOW).string("").raw(text.as_bytes());
        c.add("token", name, w.data);
    }
    // Mint mode: app index, room, user, grants, ttl, now, tamper position.
    for (i, (app, room, user, grants, ttl)) in [
        (0u8, "demo", "alice", "psd", 3600u32),
        (2, "room.1", "bob", "s", 60),
        (0, "*", "carol@example.com", "", 15_552_000),
    ]
    .into_iter()
    .enumerate()
    {
        let mut w = Writer::default();
        w.u8(1)
            .u8(app)
            .string(room)
            .string(user)
            .string(grants)
            .u32(ttl)
            .u64(NOW)
            .u16(40);
        c.add("token", &format!("mint-{i}"), w.data);
    }
}

pub(super) fn config(c: &mut Corpus, repo: &Path) {
    let sample = std::fs::read(repo.join("deploy/weir.toml")).expect("deploy/weir.toml");
    let mut w = Writer::default();
    w.u8(0).raw(&sample);
    c.add("config", "deploy-weir-toml", w.data);
    let small = "data_dir = \"/var/lib/weir\"\n[media]\nudp_listen = \"0.0.0.0:7882\"\nadvertise_ip = \"203.0.113.7\"\n[rooms]\nmax_participants = 0\n[callbacks]\nretry_initial_ms = 500\n";
    let mut w = Writer::default();
    w.u8(3)
        .u8(0)
        .string("/tmp/weir")
        .u8(9)
        .string("20")
        .u8(17)
        .string("info,weir=debug")
        .raw(small.as_bytes());
    c.add("config", "env-and-file", w.data);
}

pub(super) fn recording_rule(c: &mut Corpus, repo: &Path) {
    let doc = std::fs::read_to_string(repo.join("docs/recording.md")).expect("docs/recording.md");
    let start = doc.find("-d '{").expect("the rule example") + 4;
    let end = start + doc[start..].find("}'").expect("its end") + 1;
    c.add("recording_rule", "docs-recording-md", &doc[start..end]);
    c.add("recording_rule", "minimal", r#"{"formats":["MP4"]}"#);
    c.add(
        "recording_rule",
        "s3",
        r#"{"formats":["HLS"],"content":"audio","hls":{"naming":"{app_id}/{room_id}/{user_id}/{file_start_time}","cycle_minutes":720,"slice_seconds":2.0,"gap_merge":{"mode":"never_split"}},"storage":{"kind":"s3","endpoint":"https://s3.example.com:9000/base","region":"eu-west-1","bucket":"my.bucket-1","prefix":"rec/weir","access_key":"AKIAEXAMPLE","secret_key":"********"},"auto_record":true}"#,
    );
    c.add(
        "recording_rule",
        "local-path",
        r#"{"formats":["MP4","HLS","MP4"],"mp4":{"naming":"{stream}/{record_format}_{file_start_time}","cycle_minutes":1,"gap_merge":{"mode":"seconds","seconds":86400}},"storage":{"kind":"local","path":"/srv/recordings"}}"#,
    );
}

pub(super) fn rest_bodies(c: &mut Corpus) {
    // Selector bytes: the order of `fuzz_support::Endpoint::ALL`.
    let bodies: &[(u8, &str, &str)] = &[
        (
            0,
            "create-app",
            r#"{"name":"my-app","description":"A test app\nsecond line","type":"live","tags":[{"key":"team","value":"media"}]}"#,
        ),
        (
            1,
            "update-app",
            r#"{"name":"renamed","room_permission_required":true,"tags":[]}"#,
        ),
        (2, "list-apps", "status=enabled&page=2&page_size=50"),
        (
            3,
            "create-room",
            r#"{"room_id":"demo.1","max_participants":4767.0,"empty_timeout_seconds":600,"metadata":{"topic":"fuzz","n":[1,2,3]}}"#,
        ),
        (
            4,
            "update-participant",
            r#"{"grants":["subscribe","data","subscribe"]}"#,
        ),
        (5, "mute-track", r#"{"muted":false}"#),
        (
            6,
            "create-token",
            r#"{"user_id":"alice","room_id":"*","role":"audience","grants":["subscribe"],"ttl_seconds":3600}"#,
        ),
        (
            7,
            "verify-token",
            r#"{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}"#,
        ),
        (
            8,
            "put-callbacks",
            r#"{"url":"https://hooks.example.com/weir?x=1","key":"0123456789abcdefABCDEF0123456789","events":["ROOM_CREATED","TRACK_PUBLISHED"]}"#,
        ),
        (9, "list-deliveries", "status=failed&page=1&page_size=100"),
        (
            10,
            "put-recording-rule",
            r#"{"formats":["HLS","MP4"],"hls":{"slice_seconds":6}}"#,
        ),
        (
            11,
            "test-storage",
            r#"{"kind":"s3","endpoint":"http://127.0.0.1:9000","bucket":"rec","access_key":"a","secret_key":"b"}"#,
        ),
        (
            12,
            "start-job",
            r#"{"room_id":"demo","user_ids":["alice","bob"],"formats":["MP4"]}"#,
        ),
        (13, "update-job", r#"{"user_ids":["carol"]}"#),
        (14, "list-jobs", "room_id=demo&page=1&page_size=20"),
        (15, "recording-stats", "from=1795000000000&to=1795086400000"),
    ];
    for (selector, name, body) in bodies {
        let mut bytes = vec![*selector];
        bytes.extend_from_slice(body.as_bytes());
        c.add("rest_bodies", name, bytes);
    }
}

/// A Chrome-style WHIP offer (audio + video, BUNDLE, rtx, extensions).
const CHROME_OFFER: &str = "v=0\r\no=- 7102348412340498201 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Zb3X\r\na=ice-pwd:0k6cB8bZ0q4z1C+2dLr0W3Vv\r\na=ice-options:trickle\r\na=fingerprint:sha-256 5A:3D:8C:6A:9E:45:17:F2:0B:2C:4E:8D:71:33:A0:5F:CE:6B:28:91:0D:4A:B7:12:E3:5C:77:19:8F:A2:64:D0\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly\r\na=msid:- 8b4e6a2c-1f0d-4c36-9a52-7e3f1b2d9c41\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1111111111 cname:abcdEFGH12345678\r\na=ssrc:1111111111 msid:- 8b4e6a2c-1f0d-4c36-9a52-7e3f1b2d9c41\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Zb3X\r\na=ice-pwd:0k6cB8bZ0q4z1C+2dLr0W3Vv\r\na=ice-options:trickle\r\na=fingerprint:sha-256 5A:3D:8C:6A:9E:45:17:F2:0B:2C:4E:8D:71:33:A0:5F:CE:6B:28:91:0D:4A:B7:12:E3:5C:77:19:8F:A2:64:D0\r\na=setup:actpass\r\na=mid:1\r\na=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:13 urn:3gpp:video-orientation\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\na=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\na=sendonly\r\na=msid:- 3c9a1e77-5b2d-4f8a-b6c3-0d1e2f3a4b5c\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=rtcp-fb:102 ccm fir\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:45 AV1/90000\r\na=rtcp-fb:45 nack pli\r\na=fmtp:45 level-idx=5;profile=0;tier=0\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\na=ssrc-group:FID 2222222222 3333333333\r\na=ssrc:2222222222 cname:abcdEFGH12345678\r\na=ssrc:3333333333 cname:abcdEFGH12345678\r\n";

pub(super) fn whip_whep(c: &mut Corpus) {
    let now = Instant::now();
    let offer = |directions: &[(StrMediaKind, Direction)]| {
        let mut rtc = client_rtc(now, "10.0.2.1:5000".parse().expect("addr"));
        let mut api = rtc.sdp_api();
        for (kind, direction) in directions {
            api.add_media(*kind, *direction, None, None, None);
        }
        let (offer, _) = api.apply().expect("offer");
        offer.to_sdp_string()
    };
    let whip = offer(&[
        (StrMediaKind::Video, Direction::SendOnly),
        (StrMediaKind::Audio, Direction::SendOnly),
    ]);
    let whep = offer(&[
        (StrMediaKind::Audio, Direction::RecvOnly),
        (StrMediaKind::Video, Direction::RecvOnly),
    ]);
    let with = |flags: u8, sdp: &str| {
        let mut b = vec![flags];
        b.extend_from_slice(sdp.as_bytes());
        b
    };
    c.add("whip_whep", "whip-str0m", with(0, &whip));
    c.add(
        "whip_whep",
        "whip-chrome-prefer-h264",
        with(0x04, CHROME_OFFER),
    );
    c.add("whip_whep", "whep-str0m", with(0x09, &whep));
    c.add("whip_whep", "whep-named", with(0x0a, &whep));
    c.add("whip_whep", "whip-no-publish-grant", with(0x10, &whip));
    let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n";
    let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102 103 96 97\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n";
    c.add(
        "whip_whep",
        "codec-order",
        with(0x80, &format!("{answer}\0\0{offer}\0\00=VP8,H264;1=opus")),
    );
}
