//! Writes the seed corpora in `fuzz/corpus/<target>/` (committed; run this
//! again only to change them):
//!
//! ```sh
//! cd fuzz && cargo run --release --example make_corpus [GENERATOR...]
//! ```
//!
//! With names (the functions below: `signalling`, `srtp_seal`, ...) only
//! those generators run and only their targets' seeds are rewritten. Seeds
//! named `regression-*` (inputs a fuzzer found, committed by hand with the
//! fix) are always kept.
//!
//! Seeds are real inputs: signalling messages from `docs/protocol.md`, the
//! sample `deploy/weir.toml`, tokens minted with the `token` target's keys,
//! the recording rule of `docs/recording.md`, the REST bodies of the README,
//! str0m offers, and RTP of short H.264 / VP8 / VP9 / AV1 / Opus clips that
//! ffmpeg encodes here (needs `ffmpeg` with libx264, libvpx, libaom and
//! libopus), also recorded to files in progress for the recovery target.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant, SystemTime};

use str0m::media::{Direction, MediaKind as StrMediaKind};
use weir_fuzz::net::client_rtc;
use weir_fuzz::Writer;
use weir_protocol::{
    ClientMessage, ErrorCode, Grant, LeaveReason, ParticipantId, ParticipantInfo, PublishRequest,
    ServerMessage, TrackId, TrackInfo, TrackKind, TrackSource,
};
use weir_recorder::{
    Codec, Command, Format, MediaKind, NamingContext, OutputConfig, Recorder, RecorderConfig,
    RtpPacket, RtpTime, SeqNo,
};
use weir_server::token::{self, AppKey};

mod srtp_seal;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = root.parent().expect("repo");
    let out = root.join("corpus");
    let work = std::env::temp_dir().join("weir-fuzz-corpus");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut corpus = Corpus {
        dir: out,
        seeds: BTreeMap::new(),
    };

    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let wants = |generator: &str| wanted.is_empty() || wanted.iter().any(|w| w == generator);

    if wants("signalling") {
        signalling(&mut corpus, repo);
    }
    if wants("tokens") {
        tokens(&mut corpus);
    }
    if wants("config") {
        config(&mut corpus, repo);
    }
    if wants("recording_rule") {
        recording_rule(&mut corpus, repo);
    }
    if wants("rest_bodies") {
        rest_bodies(&mut corpus);
    }
    if wants("whip_whep") {
        whip_whep(&mut corpus);
    }
    if ["depacketize", "segmenter", "recover"]
        .iter()
        .any(|g| wants(g))
    {
        let media = Media::encode(&work);
        if wants("depacketize") {
            depacketize(&mut corpus, &media);
        }
        if wants("segmenter") {
            segmenter(&mut corpus, &media);
        }
        if wants("recover") {
            recover(&mut corpus, &media);
        }
    }
    if wants("forwarder") {
        forwarder(&mut corpus);
    }
    if wants("room") {
        room(&mut corpus);
    }
    if wants("srtp_seal") {
        srtp_seal::seeds(&mut corpus);
    }
    corpus.write();
}

struct Corpus {
    dir: PathBuf,
    seeds: BTreeMap<String, Vec<(String, Vec<u8>)>>,
}

impl Corpus {
    fn add(&mut self, target: &str, name: &str, bytes: impl Into<Vec<u8>>) {
        self.seeds
            .entry(target.to_string())
            .or_default()
            .push((name.to_string(), bytes.into()));
    }

    fn write(&self) {
        let mut total = 0;
        for (target, seeds) in &self.seeds {
            let dir = self.dir.join(target);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            // Generated seeds are replaced; found ones stay.
            for entry in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
                let name = entry.file_name();
                if !name.to_string_lossy().starts_with("regression-") {
                    std::fs::remove_file(entry.path()).expect("old seed removed");
                }
            }
            for (name, bytes) in seeds {
                std::fs::write(dir.join(name), bytes).expect("seed");
                total += bytes.len();
            }
            println!("{target}: {} seeds", seeds.len());
        }
        println!("{total} bytes in all");
    }
}

// ------------------------------------------------------------ text inputs

fn signalling(c: &mut Corpus, repo: &Path) {
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

fn tokens(c: &mut Corpus) {
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

fn config(c: &mut Corpus, repo: &Path) {
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

fn recording_rule(c: &mut Corpus, repo: &Path) {
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

fn rest_bodies(c: &mut Corpus) {
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

fn whip_whep(c: &mut Corpus) {
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

// ------------------------------------------------------------ media

struct Media {
    /// Access units as NAL units.
    h264: Vec<Vec<Vec<u8>>>,
    vp8: Vec<Vec<u8>>,
    vp9: Vec<Vec<u8>>,
    /// Temporal units as OBUs (with their size fields, as in IVF).
    av1: Vec<Vec<Vec<u8>>>,
    opus: Vec<Vec<u8>>,
}

const FPS: u32 = 5;
const SECONDS: u32 = 3;

fn ffmpeg(args: &[&str]) {
    let status = Process::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?}");
}

impl Media {
    fn encode(work: &Path) -> Media {
        let src = format!("testsrc=size=96x64:rate={FPS}:duration={SECONDS}");
        let gop = (FPS * 2).to_string();
        let path = |name: &str| work.join(name).to_string_lossy().into_owned();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            &gop,
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            &path("v.h264"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libvpx",
            "-g",
            &gop,
            "-b:v",
            "50k",
            "-f",
            "ivf",
            &path("v.vp8.ivf"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libvpx-vp9",
            "-g",
            &gop,
            "-b:v",
            "50k",
            "-f",
            "ivf",
            &path("v.vp9.ivf"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libaom-av1",
            "-cpu-used",
            "8",
            "-g",
            &gop,
            "-b:v",
            "50k",
            "-f",
            "ivf",
            &path("v.av1.ivf"),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:duration={SECONDS}"),
            "-c:a",
            "libopus",
            "-b:a",
            "16k",
            "-f",
            "ogg",
            &path("a.ogg"),
        ]);
        let read = |name: &str| std::fs::read(work.join(name)).expect("encoded");
        Media {
            h264: access_units(&read("v.h264")),
            vp8: ivf_frames(&read("v.vp8.ivf")),
            vp9: ivf_frames(&read("v.vp9.ivf")),
            av1: ivf_frames(&read("v.av1.ivf"))
                .iter()
                .map(|tu| obus(tu))
                .collect(),
            opus: ogg_packets(&read("a.ogg")),
        }
    }
}

/// Annex-B H.264 into access units of NAL units (a new unit at each
/// AUD, SPS or first slice).
fn access_units(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if bytes[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(bytes.len(), |&n| n - 3);
        while end > s && bytes[end - 1] == 0 {
            end -= 1;
        }
        nals.push(bytes[s..end].to_vec());
    }
    let mut units: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut has_slice = false;
    for nal in nals {
        let kind = nal[0] & 0x1f;
        let first_slice = matches!(kind, 1 | 5) && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        if (matches!(kind, 7 | 9) || first_slice) && has_slice {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        has_slice |= matches!(kind, 1 | 5);
        current.push(nal);
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

fn ivf_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 32;
    while at + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        frames.push(bytes[at + 12..at + 12 + size].to_vec());
        at += 12 + size;
    }
    frames
}

/// The OBUs of a temporal unit (each with its size field).
fn obus(tu: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < tu.len() {
        let header = tu[at];
        let header_len = 1 + usize::from(header & 0x04 != 0);
        let (size, used) = weir_fuzz::media::leb128(&tu[at + header_len..]).expect("sized OBU");
        let end = at + header_len + used + size as usize;
        out.push(tu[at..end].to_vec());
        at = end;
    }
    out
}

/// An OBU without its size field (as RTP carries them).
fn unsized_obu(obu: &[u8]) -> Vec<u8> {
    let header_len = 1 + usize::from(obu[0] & 0x04 != 0);
    let (_, used) = weir_fuzz::media::leb128(&obu[header_len..]).expect("sized OBU");
    let mut out = vec![obu[0] & !0x02];
    out.extend_from_slice(&obu[1..header_len]);
    out.extend_from_slice(&obu[header_len + used..]);
    out
}

fn ogg_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut at = 0;
    while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
        let segments = usize::from(bytes[at + 26]);
        let table = &bytes[at + 27..at + 27 + segments];
        let mut data = at + 27 + segments;
        for &lace in table {
            current.extend_from_slice(&bytes[data..data + usize::from(lace)]);
            data += usize::from(lace);
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        at = data;
    }
    // Skip OpusHead and OpusTags.
    packets.into_iter().skip(2).collect()
}

/// RTP payloads of one video frame, as a browser would send them.
fn packetize(codec: Codec, media: &Media, frame: usize, mtu: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match codec {
        Codec::H264 => {
            let au = &media.h264[frame];
            let mut i = 0;
            while i < au.len() {
                let nal = &au[i];
                if nal[0] & 0x1f == 7 && au.get(i + 1).is_some_and(|n| n[0] & 0x1f == 8) {
                    let mut p = vec![24];
                    for n in [nal, &au[i + 1]] {
                        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                        p.extend_from_slice(n);
                    }
                    out.push(p);
                    i += 2;
                    continue;
                }
                if nal.len() <= mtu {
                    out.push(nal.clone());
                } else {
                    let chunks: Vec<&[u8]> = nal[1..].chunks(mtu - 2).collect();
                    for (k, chunk) in chunks.iter().enumerate() {
                        let mut fu = nal[0] & 0x1f;
                        if k == 0 {
                            fu |= 0x80;
                        }
                        if k + 1 == chunks.len() {
                            fu |= 0x40;
                        }
                        let mut p = vec![(nal[0] & 0xe0) | 28, fu];
                        p.extend_from_slice(chunk);
                        out.push(p);
                    }
                }
                i += 1;
            }
        }
        Codec::Vp8 => {
            for (k, chunk) in media.vp8[frame].chunks(mtu - 4).enumerate() {
                // X with a 15-bit picture id.
                let mut p = vec![
                    if k == 0 { 0x90 } else { 0x80 },
                    0x80,
                    0x80 | (frame >> 8) as u8,
                    frame as u8,
                ];
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        Codec::Vp9 => {
            let data = &media.vp9[frame];
            let key = data[0] >> 6 == 2 && data[0] & 0x0c == 0;
            let chunks: Vec<&[u8]> = data.chunks(mtu - 1).collect();
            for (k, chunk) in chunks.iter().enumerate() {
                let mut d = if key { 0 } else { 0x40 };
                if k == 0 {
                    d |= 0x08;
                }
                if k + 1 == chunks.len() {
                    d |= 0x04;
                }
                let mut p = vec![d];
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        Codec::Av1 => {
            let list: Vec<Vec<u8>> = media.av1[frame]
                .iter()
                .filter(|o| (o[0] >> 3) & 0x0f != 2)
                .map(|o| unsized_obu(o))
                .collect();
            let key = list.iter().any(|o| (o[0] >> 3) & 0x0f == 1);
            let mut first = true;
            for obu in &list {
                let chunks: Vec<&[u8]> = obu.chunks(mtu - 1).collect();
                for (k, chunk) in chunks.iter().enumerate() {
                    let mut h = 0x10;
                    if k > 0 {
                        h |= 0x80;
                    }
                    if k + 1 < chunks.len() {
                        h |= 0x40;
                    }
                    if first && key {
                        h |= 0x08;
                    }
                    first = false;
                    let mut p = vec![h];
                    p.extend_from_slice(chunk);
                    out.push(p);
                }
            }
        }
        Codec::Opus => out.push(media.opus[frame].clone()),
    }
    out
}

fn frames_of(codec: Codec, media: &Media) -> usize {
    match codec {
        Codec::H264 => media.h264.len(),
        Codec::Vp8 => media.vp8.len(),
        Codec::Vp9 => media.vp9.len(),
        Codec::Av1 => media.av1.len(),
        Codec::Opus => media.opus.len(),
    }
}

fn depacketize(c: &mut Corpus, media: &Media) {
    for (codec, name) in [
        (Codec::H264, "h264"),
        (Codec::Vp8, "vp8"),
        (Codec::Vp9, "vp9"),
        (Codec::Av1, "av1"),
        (Codec::Opus, "opus"),
    ] {
        let target = format!("depacketize_{name}");
        // Raw payloads: the first frames, one seed per (mtu) packetization.
        for (mtu, frames) in [(1200usize, 3usize), (120, 2)] {
            let mut w = Writer::default();
            w.u8(0);
            for frame in 0..frames.min(frames_of(codec, media)) {
                let packets = packetize(codec, media, frame, mtu);
                for (k, p) in packets.iter().enumerate() {
                    w.u8(u8::from(k + 1 == packets.len())).bytes(p);
                }
            }
            c.add(&target, &format!("rtp-mtu{mtu}"), w.data);
        }
        // Round trips of the first (key)frame and a later frame.
        for frame in [0, 1] {
            let mut w = Writer::default();
            w.u8(1);
            match codec {
                Codec::H264 => {
                    let au = &media.h264[frame];
                    w.u8((au.len().min(8) - 1) as u8);
                    for nal in au.iter().take(8) {
                        w.u8(nal[0]).bytes(&nal[1..]);
                    }
                    w.raw(&[2, 90, 0, 1, 2, 1, 0, 2, 40]);
                }
                Codec::Vp8 => {
                    w.bytes(&media.vp8[frame])
                        .raw(&[0x0f, 0x34, 0x12, 200])
                        .raw(&[199; 8]);
                }
                Codec::Vp9 => {
                    w.bool(frame != 0)
                        .bytes(&media.vp9[frame])
                        .raw(&[0x0d, 0x34, 0x12, 150])
                        .raw(&[149; 8]);
                }
                Codec::Av1 => {
                    let list: Vec<Vec<u8>> =
                        media.av1[frame].iter().map(|o| unsized_obu(o)).collect();
                    w.u8((list.len().min(6) - 1) as u8).bool(frame == 0);
                    for obu in list.iter().take(6) {
                        let ext = obu[0] & 0x04 != 0;
                        w.u8(((obu[0] >> 3) & 0x0f) | if ext { 0x10 } else { 0 });
                        if ext {
                            w.u8(obu[1]);
                        }
                        w.bytes(&obu[1 + usize::from(ext)..]);
                    }
                    w.raw(&[100, 3, 1]);
                }
                Codec::Opus => continue,
            }
            c.add(&target, &format!("round-trip-{frame}"), w.data);
        }
    }
}

/// Ops of the `segmenter` target for `seconds` of `codec` + Opus, with a
/// sender report per track and a crash in the middle.
fn segmenter_ops(w: &mut Writer, codec: Codec, media: &Media, seconds: u32, mtu: usize) {
    let frames = (frames_of(codec, media) as u32).min(seconds * FPS) as usize;
    let audio = (media.opus.len() as u32).min(seconds * 50) as usize;
    let video_step = 90_000 / FPS;
    let mut events: Vec<(u32, bool, usize)> = Vec::new(); // (ms, video, index)
    for f in 0..frames {
        events.push((f as u32 * 1000 / FPS, true, f));
    }
    for a in 0..audio {
        events.push((a as u32 * 20, false, a));
    }
    events.sort();
    let mut last_ms = 0;
    let mut first = [true, true];
    let mut crashed = false;
    for (ms, video, index) in events {
        if !crashed && ms >= seconds * 500 {
            w.u8(6).u32(u32::MAX - 12345);
            crashed = true;
        }
        let slot = usize::from(video);
        if first[slot] {
            // A sender report: NTP time (seconds << 32), RTP time offset 0.
            w.u8(3)
                .bool(video)
                .u64((3_900_000_000u64 + u64::from(ms) / 1000) << 32)
                .u32(0);
        }
        let packets = if video {
            packetize(codec, media, index, mtu)
        } else {
            vec![media.opus[index].clone()]
        };
        for (k, p) in packets.iter().enumerate() {
            let ts_step = if first[slot] || k > 0 {
                0
            } else if video {
                video_step
            } else {
                960
            };
            let marker = video && k + 1 == packets.len();
            w.u8(if video { 0 } else { 1 })
                .u8(u8::from(marker))
                .u8(1)
                .u32(ts_step)
                .u8((ms - last_ms).min(255) as u8)
                .bytes(p);
            last_ms = ms;
        }
        first[slot] = false;
    }
    // Time passes: the interruption timeout.
    w.u8(2).u16(400);
}

fn segmenter(c: &mut Corpus, media: &Media) {
    for (codec, index, name) in [
        (Codec::H264, 0u8, "h264"),
        (Codec::Vp8, 1, "vp8"),
        (Codec::Vp9, 2, "vp9"),
        (Codec::Av1, 3, "av1"),
    ] {
        // Both formats, gap merge 2 s, 2 s slices.
        let mut w = Writer::default();
        w.u8(index | (2 << 3) | (2 << 5)).u8(0);
        segmenter_ops(&mut w, codec, media, SECONDS, 1000);
        c.add("segmenter", &format!("{name}-hls-mp4"), w.data);
    }
    // MP4 only, cycles and the small size limit; HLS only, never split.
    let mut w = Writer::default();
    w.u8(0).u8(0x04 | 0x08 | 0x40);
    segmenter_ops(&mut w, Codec::H264, media, SECONDS, 300);
    c.add("segmenter", "h264-mp4-cycles", w.data);
    let mut w = Writer::default();
    w.u8(1 | (1 << 3) | (1 << 5)).u8(1);
    segmenter_ops(&mut w, Codec::Vp8, media, 2, 1200);
    c.add("segmenter", "vp8-hls-audio-only", w.data);
}

/// Records `codec` + Opus with the core and returns the files as they are
/// halfway through (a recording in progress).
fn files_in_progress(codec: Codec, media: &Media, format: Format) -> BTreeMap<String, Vec<u8>> {
    let t0 = Instant::now();
    let mut output = OutputConfig::new(format);
    output.slice = Duration::from_secs(2);
    let config = RecorderConfig::new(NamingContext::new("app", "room", "alice"), vec![output]);
    let mut recorder = Recorder::new(
        config,
        t0,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    recorder.add_track(t0, codec);
    recorder.add_track(t0, Codec::Opus);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let apply = |recorder: &mut Recorder, files: &mut BTreeMap<String, Vec<u8>>| {
        while let Some(command) = recorder.poll_command() {
            match command {
                Command::WriteFile { path, bytes } => {
                    files.insert(path, bytes);
                }
                Command::Append { path, bytes } => {
                    files.get_mut(&path).expect("written").extend(bytes)
                }
                Command::WriteAt {
                    path,
                    offset,
                    bytes,
                } => {
                    let f = files.get_mut(&path).expect("written");
                    f[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
                }
                _ => {}
            }
        }
    };
    let frames = frames_of(codec, media).min(FPS as usize * 5);
    let mut seq = [0u16; 2];
    for f in 0..frames {
        let at = t0 + Duration::from_millis(f as u64 * 1000 / u64::from(FPS));
        for a in 0..(50 / FPS as usize) {
            let index = f * (50 / FPS as usize) + a;
            if let Some(p) = media.opus.get(index) {
                seq[0] = seq[0].wrapping_add(1);
                recorder.handle_rtp(
                    at,
                    MediaKind::Audio,
                    RtpPacket {
                        ssrc: 1,
                        seq: SeqNo(seq[0]),
                        timestamp: RtpTime(index as u32 * 960),
                        marker: false,
                        payload: p.clone(),
                        arrival: at,
                    },
                );
            }
        }
        let packets = packetize(codec, media, f, 1000);
        for (k, p) in packets.iter().enumerate() {
            seq[1] = seq[1].wrapping_add(1);
            recorder.handle_rtp(
                at,
                MediaKind::Video,
                RtpPacket {
                    ssrc: 2,
                    seq: SeqNo(seq[1]),
                    timestamp: RtpTime(f as u32 * 90_000 / FPS),
                    marker: k + 1 == packets.len(),
                    payload: p.clone(),
                    arrival: at,
                },
            );
        }
        recorder.handle_timeout(at);
        apply(&mut recorder, &mut files);
    }
    files
}

fn recover(c: &mut Corpus, media: &Media) {
    let mp4 = files_in_progress(Codec::H264, media, Format::Mp4);
    let (path, bytes) = mp4.iter().next().expect("an MP4 in progress");
    assert!(path.ends_with(".mp4"));
    let mut w = Writer::default();
    w.u8(0).raw(bytes);
    c.add("recover", "mp4-in-progress", w.data);
    // The same, torn inside its last fragment.
    let mut w = Writer::default();
    w.u8(0).raw(&bytes[..bytes.len() - 37]);
    c.add("recover", "mp4-torn", w.data);
    assert!(
        weir_recorder::recover::recover_mp4(&mut Cursor::new(bytes), bytes.len() as u64, path)
            .is_ok()
    );

    let hls = files_in_progress(Codec::Vp8, media, Format::Hls);
    let find = |suffix: &str| {
        hls.iter()
            .find(|(p, _)| p.ends_with(suffix))
            .map(|(p, b)| (p.clone(), b.clone()))
    };
    let (top_path, top) = hls
        .iter()
        .find(|(p, b)| p.ends_with(".m3u8") && b.windows(18).any(|w| w == b"#EXT-X-STREAM-INF:"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .expect("a multivariant playlist");
    let media_uri = weir_recorder::recover::hls_media_uri(&top).expect("media uri");
    let dir = top_path
        .rfind('/')
        .map_or("", |i| &top_path[..=i])
        .to_string();
    let playlist = hls
        .get(&format!("{dir}{media_uri}"))
        .expect("media playlist")
        .clone();
    let init = hls
        .iter()
        .find(|(p, _)| p.contains("_init") && p.ends_with(".mp4"))
        .map(|(_, b)| b.clone())
        .expect("an init segment");
    let (segment_path, segment) = find(".m4s").expect("a segment");
    let segment_name = segment_path.rsplit('/').next().expect("name").to_string();
    let mut w = Writer::default();
    w.u8(1).bytes(&init).raw(&segment);
    c.add("recover", "hls-segment", w.data);
    let mut w = Writer::default();
    let init_name = hls
        .keys()
        .find(|p| p.contains("_init"))
        .and_then(|p| p.rsplit('/').next())
        .expect("init")
        .to_string();
    w.u8(2)
        .bytes(&top)
        .bytes(&playlist)
        .string(&segment_name)
        .u16(1500)
        .string(&init_name);
    c.add("recover", "hls-playlists", w.data);
}

fn forwarder(c: &mut Corpus) {
    // VP8 (codec 1): a keyframe on layer "q", deltas, a switch to "h" at
    // its keyframe, a restart, a pause, a new SSRC, a keyframe request.
    let key = [0x10u8, 0x00, 0x9d, 0x01, 0x2a];
    let delta = [0x10u8, 0x01, 0x00];
    let mut w = Writer::default();
    w.u8(1).u16(1000).u32(5000);
    let packet = |w: &mut Writer, which: u8, seq: i16, ts: u32, ms: u16, payload: &[u8]| {
        w.u8(0)
            .u8(which)
            .u16(seq as u16)
            .u32(ts)
            .u16(ms)
            .bytes(payload);
    };
    packet(&mut w, 1 << 2, 1, 3000, 33, &key);
    packet(&mut w, 1 << 2, 1, 3000, 33, &delta);
    packet(&mut w, 1 << 2, 2, 3000, 33, &delta);
    packet(&mut w, 1 << 2, -1, 0, 5, &delta);
    w.u8(4).u8(2);
    packet(&mut w, 1 | (2 << 2), 1, 3000, 10, &delta);
    packet(&mut w, 1 | (2 << 2), 1, 3000, 10, &key);
    w.u8(5);
    packet(&mut w, 2 | (2 << 2), 7, 90_000, 500, &key);
    w.u8(6).u8(1);
    packet(&mut w, 2 | (2 << 2), 1, 3000, 33, &key);
    w.u8(6).u8(0);
    packet(&mut w, 2 | (2 << 2), 1, 3000, 33, &key);
    w.u8(7).u32(1);
    w.u8(7).u32(0);
    c.add("forwarder", "vp8-simulcast", w.data);
    // Audio (codec 0) across an SSRC change and a reorder.
    let mut w = Writer::default();
    w.u8(0).u16(65_530).u32(u32::MAX - 2000);
    for i in 0..6u8 {
        let ssrc = if i < 3 { 0 } else { 1 };
        let step = if i == 4 { -2 } else { 1 };
        packet(&mut w, ssrc, step, 960, 20, &[0xf8, 0xff, 0xfe]);
    }
    c.add("forwarder", "audio-ssrc-change", w.data);
}

fn room(c: &mut Corpus) {
    // Op 0/1 (publisher RTP): choice (m-line, payload type), i16 seq step,
    // u32 ts step, marker, payload.
    let vp8_key = [0x10u8, 0x00, 0x9d, 0x01, 0x2a, 0x60, 0x00, 0x40, 0x00, 0x00];
    let mut w = Writer::default();
    w.u8(0).u8(0).u16(1).u32(3000).bool(true).bytes(&vp8_key);
    w.u8(1)
        .u8(1)
        .u16(1)
        .u32(960)
        .bool(false)
        .bytes(&[0xf8, 0xff, 0xfe]);
    w.u8(7).u16(50);
    w.u8(0)
        .u8(0)
        .u16(1)
        .u32(3000)
        .bool(true)
        .bytes(&[0x10, 0x01, 1, 2, 3]);
    w.u8(6).u8(0);
    w.u8(4).string(r#"{"type":"subscribe","track_id":"$T0"}"#);
    w.u8(5).u8(3).bool(true);
    w.u8(0).u8(0).u16(1).u32(3000).bool(true).bytes(&vp8_key);
    w.u8(5).u8(2).bool(true);
    w.u8(7).u16(600);
    w.u8(5).u8(2).bool(false);
    w.u8(0).u8(0).u16(1).u32(3000).bool(true).bytes(&vp8_key);
    w.u8(4).string(r#"{"type":"ping","ts":1717171717171}"#);
    c.add("room", "media-and-admin", w.data);
    let mut w = Writer::default();
    w.u8(3).u8(7).u8(1).bytes(&[0xde, 0xad]);
    w.u8(3)
        .u8(8)
        .u8(0)
        .bytes(&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2]);
    w.u8(2).bool(true).bytes(&[0x80, 0xc8, 0, 6, 1, 2, 3, 4]);
    w.u8(2).bool(false).bytes(&[0x16, 0xfe, 0xfd, 0, 0]);
    w.u8(5).u8(0).bool(false);
    c.add("room", "datagrams-and-kick", w.data);
}
