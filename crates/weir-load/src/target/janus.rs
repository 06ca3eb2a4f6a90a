//! The Janus VideoRoom target (`--target janus --janus-url
//! http://127.0.0.1:8088/janus`): the same scenario against Janus Gateway
//! 1.x (multistream), over its HTTP API ([`api`]), with the same webrtc-rs
//! peers ([`weir_client::SdpPeer`]: same codecs, interceptors and loopback
//! binding as the Weir target) sending the same synthetic payloads.
//!
//! - Every client has its own Janus session and one `janus.plugin.videoroom`
//!   handle, as a browser would.
//! - A room name maps to a numeric room id ([`room_number`]); the first
//!   publisher creates the room (VP8 + Opus, up to 100 publishers, no
//!   bitrate cap), the others find it there (error 427, "room exists").
//! - A publisher sends `joinandconfigure` with its offer (VP8 and/or Opus,
//!   as the scenario says), applies the answer and waits for `webrtcup`.
//!   Its track ids are `FEED/video` and `FEED/audio`.
//! - A subscriber lists the room's publishers, joins as a subscriber to all
//!   their feeds (one handle, a `streams` list), answers Janus's offer with
//!   `start`, and answers later offers (`updated`) the same way. It is
//!   subscribed to `FEED/KIND` once Janus lists that stream for it.
//! - Recording is not supported (Janus records to its own files).

pub mod api;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_client::synthetic::{OpusSource, SyntheticPacket, Vp8Source};
use weir_client::{Codec, PeerState, SdpPeer};

use self::api::{Handle, JanusError, Session};
use super::tracks::{wait_for_tracks, PacketStream, SendTracks};
use super::{MediaStream, Publisher, RecordingJob, RecordingOutcome, Subscriber, Target};
use crate::scenario::Media;

/// The plugin.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";
/// The default `--janus-url`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8088/janus";
/// VideoRoom's "room already exists".
const ROOM_EXISTS: i64 = 427;
/// Publishers a created room admits (the harness's own bound per room).
const ROOM_PUBLISHERS: u32 = 100;
/// Bound on each wait for Janus while joining.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on ICE + DTLS (and `webrtcup`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on destroying a session and closing its peer.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Received packets buffered per subscriber (as for the Weir target).
const MEDIA_BUFFER: usize = 16_384;
/// The default `--janus-bind-ip`: the address a loopback-only namespace
/// gives Janus on a veth (Janus gathers no candidate on a loopback
/// interface, see benches/compare-janus.sh).
pub const DEFAULT_BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The VideoRoom id of a room name: FNV-1a, in 1..2^52 (JSON-safe).
pub fn room_number(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % ((1 << 52) - 1) + 1
}

/// Checks a `--janus-url` (`http(s)://HOST[:PORT]/PATH`); returns it
/// without a trailing `/`.
pub fn parse_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| anyhow!("--janus-url {url:?} is not like {DEFAULT_URL}"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        bail!("--janus-url {url:?} has no host");
    }
    Ok(url.to_string())
}

/// A JSEP object for Janus: the complete SDP, no trickle.
fn jsep(kind: &str, sdp: String) -> Value {
    json!({"type": kind, "sdp": sdp, "trickle": false})
}

/// The SDP of an event's JSEP of `kind`.
fn jsep_sdp<'a>(event: &'a Value, kind: &str) -> Option<&'a str> {
    (event["jsep"]["type"] == kind)
        .then(|| event["jsep"]["sdp"].as_str())
        .flatten()
}

/// The `FEED/KIND` of every active stream that a subscriber's `attached`
/// or `updated` event lists.
fn subscribed_streams(event: &Value) -> Vec<String> {
    let data = &event["plugindata"]["data"];
    data["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter(|s| s["active"] != false)
                .filter_map(|s| {
                    let feed = s["feed_id"].as_u64()?;
                    let kind = s["type"].as_str()?;
                    matches!(kind, "audio" | "video").then(|| format!("{feed}/{kind}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Janus server under load.
pub struct JanusTarget {
    url: String,
    /// The media sockets' address.
    bind_ip: IpAddr,
    http: reqwest::Client,
}

impl JanusTarget {
    /// `url` like [`DEFAULT_URL`]; the peers' media sockets bind `bind_ip`.
    ///
    /// Janus (libnice) sends only through the interface of its own
    /// candidate (`IP_UNICAST_IF`): with its candidate on a veth holding
    /// 127.0.0.2, a peer on 127.0.0.1 gets its checks but never an answer
    /// (`EINVAL`), so the peers bind an address of that interface.
    pub fn new(url: &str, bind_ip: IpAddr) -> anyhow::Result<JanusTarget> {
        if bind_ip.is_unspecified() {
            bail!("--janus-bind-ip {bind_ip}: a wildcard gathers no candidate on loopback");
        }
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        Ok(JanusTarget {
            url: parse_url(url)?,
            bind_ip,
            http,
        })
    }

    /// A new session with a VideoRoom handle.
    async fn attach(&self) -> anyhow::Result<(Session, Handle)> {
        let session = Session::create(&self.http, &self.url).await?;
        match session.attach(VIDEOROOM).await {
            Ok(handle) => Ok((session, handle)),
            Err(e) => {
                session.destroy().await;
                Err(e)
            }
        }
    }

    /// Creates the room of `name` unless it exists; returns its id.
    async fn ensure_room(handle: &Handle, name: &str) -> anyhow::Result<u64> {
        let room = room_number(name);
        let created = handle
            .request(json!({
                "request": "create",
                "room": room,
                "description": name,
                "publishers": ROOM_PUBLISHERS,
                "bitrate": 0,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "permanent": false,
            }))
            .await;
        match created {
            Ok(_) => Ok(room),
            Err(e) if e.downcast_ref::<JanusError>().map(|j| j.code) == Some(ROOM_EXISTS) => {
                Ok(room)
            }
            Err(e) => Err(e.context(format!("creating room {room} ({name})"))),
        }
    }

    async fn publish(
        &self,
        session: &Session,
        handle: &Handle,
        room: &str,
        user: &str,
        media: Media,
    ) -> anyhow::Result<(SdpPeer, Vec<String>)> {
        let room_id = Self::ensure_room(handle, room).await?;
        let mut peer = SdpPeer::new(self.bind_ip, 0).await?;
        let mut kinds = Vec::new();
        if media.has_video() {
            peer.add_sendonly(Codec::Vp8).await?;
            kinds.push("video");
        }
        if media.has_audio() {
            peer.add_sendonly(Codec::Opus).await?;
            kinds.push("audio");
        }
        let offer = peer.offer().await?;
        tracing::debug!(user, offer, "publisher offer to Janus");
        let joined = handle
            .call(
                json!({
                    "request": "joinandconfigure",
                    "ptype": "publisher",
                    "room": room_id,
                    "display": user,
                    "audio": media.has_audio(),
                    "video": media.has_video(),
                }),
                Some(jsep("offer", offer)),
                REQUEST_TIMEOUT,
            )
            .await
            .context("joinandconfigure")?;
        let feed = joined["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no publisher id in {joined}"))?;
        let answer =
            jsep_sdp(&joined, "answer").ok_or_else(|| anyhow!("no JSEP answer in {joined}"))?;
        tracing::debug!(user, answer, "Janus's answer to a publisher");
        peer.accept_answer(answer).await?;
        connected(session, handle, &peer).await?;
        let track_ids = kinds.iter().map(|k| format!("{feed}/{k}")).collect();
        Ok((peer, track_ids))
    }

    async fn subscribe(
        &self,
        handle: &Handle,
        room: &str,
    ) -> anyhow::Result<(SdpPeer, HashSet<String>)> {
        let room_id = room_number(room);
        let listed = handle
            .request(json!({"request": "listparticipants", "room": room_id}))
            .await
            .context("listparticipants")?;
        let feeds: Vec<Value> = listed["participants"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|p| p["publisher"] == true)
                    .filter_map(|p| p["id"].as_u64())
                    .map(|feed| json!({"feed": feed}))
                    .collect()
            })
            .unwrap_or_default();
        if feeds.is_empty() {
            bail!("room {room_id} has no publisher");
        }
        let attached = handle
            .call(
                json!({
                    "request": "join",
                    "ptype": "subscriber",
                    "room": room_id,
                    "streams": feeds,
                }),
                None,
                REQUEST_TIMEOUT,
            )
            .await
            .context("joining as a subscriber")?;
        let peer = SdpPeer::new(self.bind_ip, MEDIA_BUFFER).await?;
        answer_offer(handle, &peer, &attached).await?;
        let streams = subscribed_streams(&attached).into_iter().collect();
        Ok((peer, streams))
    }
}

/// Answers the offer in `event` and sends it with `start`.
async fn answer_offer(handle: &Handle, peer: &SdpPeer, event: &Value) -> anyhow::Result<()> {
    let offer = jsep_sdp(event, "offer").ok_or_else(|| anyhow!("no JSEP offer in {event}"))?;
    let answer = peer.answer(offer).await?;
    tracing::debug!(offer, answer, "a subscriber's answer to Janus");
    handle
        .call(
            json!({"request": "start"}),
            Some(jsep("answer", answer)),
            REQUEST_TIMEOUT,
        )
        .await
        .context("start")?;
    Ok(())
}

/// Waits for Janus's `webrtcup` and for our peer to connect.
async fn connected(session: &Session, handle: &Handle, peer: &SdpPeer) -> anyhow::Result<()> {
    let up = handle.wait(&|e| e["janus"] == "webrtcup", CONNECT_TIMEOUT);
    let (up, ours) = tokio::join!(up, peer.wait_connected(CONNECT_TIMEOUT));
    up.context("waiting for webrtcup")?;
    ours.context("connecting media")?;
    if session.is_closed() {
        bail!("Janus hung up");
    }
    Ok(())
}

/// A client's Janus session and peer.
struct Connection {
    session: Session,
    state: watch::Receiver<PeerState>,
    peer: tokio::sync::Mutex<Option<SdpPeer>>,
}

impl Connection {
    fn new(session: Session, peer: SdpPeer) -> Connection {
        Connection {
            session,
            state: peer.watch_state(),
            peer: tokio::sync::Mutex::new(Some(peer)),
        }
    }

    fn is_closed(&self) -> bool {
        self.session.is_closed()
            || matches!(*self.state.borrow(), PeerState::Failed | PeerState::Closed)
    }

    /// Destroys the session, then closes the peer (bounded).
    async fn leave(&self) {
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, async {
            self.session.destroy().await;
            let taken = self.peer.lock().await.take();
            if let Some(peer) = taken {
                let _ = peer.close().await;
            }
        })
        .await;
    }
}

#[async_trait]
impl Target for JanusTarget {
    async fn join_publisher(
        &self,
        room: &str,
        user: &str,
        media: Media,
    ) -> anyhow::Result<Arc<dyn Publisher>> {
        let (session, handle) = self
            .attach()
            .await
            .with_context(|| format!("{user} joining {room}"))?;
        match self.publish(&session, &handle, room, user, media).await {
            Ok((peer, track_ids)) => {
                let tracks = SendTracks {
                    video: peer.video().cloned(),
                    audio: peer.audio().cloned(),
                };
                Ok(Arc::new(JanusPublisher {
                    tracks,
                    track_ids,
                    connection: Connection::new(session, peer),
                }))
            }
            Err(e) => {
                session.destroy().await;
                Err(e.context(format!("{user} publishing in {room}")))
            }
        }
    }

    async fn join_subscriber(&self, room: &str, user: &str) -> anyhow::Result<Box<dyn Subscriber>> {
        let (session, handle) = self
            .attach()
            .await
            .with_context(|| format!("{user} joining {room}"))?;
        let (mut peer, streams) = match self.subscribe(&handle, room).await {
            Ok(subscribed) => subscribed,
            Err(e) => {
                session.destroy().await;
                return Err(e.context(format!("{user} subscribing in {room}")));
            }
        };
        let media = peer
            .take_media()
            .map(|rx| Box::new(PacketStream(rx)) as Box<dyn MediaStream>);
        let (subscribed_tx, subscribed) = watch::channel(streams);
        let connection = Arc::new(Connection::new(session, peer));
        let renegotiation = tokio::spawn(renegotiate(
            handle.clone(),
            Arc::clone(&connection),
            subscribed_tx,
        ));
        Ok(Box::new(JanusSubscriber {
            user: user.to_string(),
            handle,
            subscribed,
            media: Mutex::new(media),
            connection,
            renegotiation,
        }))
    }

    async fn start_recording(&self, _room: &str) -> anyhow::Result<RecordingJob> {
        bail!("recording is not supported on janus")
    }

    async fn stop_recording(
        &self,
        _job: &RecordingJob,
        _timeout: Duration,
    ) -> anyhow::Result<RecordingOutcome> {
        bail!("recording is not supported on janus")
    }
}

/// Answers Janus's later offers (`updated`: feeds came or went) until the
/// session ends.
async fn renegotiate(
    handle: Handle,
    connection: Arc<Connection>,
    subscribed: watch::Sender<HashSet<String>>,
) {
    const FOREVER: Duration = Duration::from_secs(24 * 3600);
    while let Ok(event) = handle
        .wait(&|e| jsep_sdp(e, "offer").is_some(), FOREVER)
        .await
    {
        let answered = {
            let peer = connection.peer.lock().await;
            match peer.as_ref() {
                Some(peer) => answer_offer(&handle, peer, &event).await,
                None => return,
            }
        };
        if answered.is_ok() {
            subscribed.send_replace(subscribed_streams(&event).into_iter().collect());
        }
    }
}

struct JanusPublisher {
    tracks: SendTracks,
    track_ids: Vec<String>,
    connection: Connection,
}

#[async_trait]
impl Publisher for JanusPublisher {
    fn track_ids(&self) -> Vec<String> {
        self.track_ids.clone()
    }

    async fn send_video_frame(
        &self,
        source: &mut Vp8Source,
        frame: &mut Vec<SyntheticPacket>,
    ) -> anyhow::Result<usize> {
        self.tracks.send_video_frame(source, frame).await
    }

    async fn send_audio_packet(&self, source: &mut OpusSource) -> anyhow::Result<()> {
        self.tracks.send_audio_packet(source).await
    }

    fn is_closed(&self) -> bool {
        self.connection.is_closed()
    }

    async fn leave(&self) {
        self.connection.leave().await;
    }
}

struct JanusSubscriber {
    user: String,
    handle: Handle,
    subscribed: watch::Receiver<HashSet<String>>,
    media: Mutex<Option<Box<dyn MediaStream>>>,
    connection: Arc<Connection>,
    renegotiation: JoinHandle<()>,
}

#[async_trait]
impl Subscriber for JanusSubscriber {
    async fn wait_subscribed(&self, track_ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        wait_for_tracks(&self.user, &self.subscribed, track_ids, timeout).await?;
        let peer = self.connection.peer.lock().await;
        let peer = peer
            .as_ref()
            .ok_or_else(|| anyhow!("{}: already left", self.user))?;
        connected(&self.connection.session, &self.handle, peer)
            .await
            .with_context(|| format!("{}: connecting media", self.user))
    }

    fn take_media(&self) -> Option<Box<dyn MediaStream>> {
        self.media.lock().ok()?.take()
    }

    fn is_closed(&self) -> bool {
        self.connection.is_closed()
    }

    async fn leave(&self) {
        self.renegotiation.abort();
        self.connection.leave().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_numbers_are_stable_nonzero_and_json_safe() {
        let a = room_number("load-abc123-1");
        assert_eq!(a, room_number("load-abc123-1"));
        assert_ne!(a, room_number("load-abc123-2"));
        for name in ["", "x", "load-ffffff-1000"] {
            let n = room_number(name);
            assert!((1..(1 << 52)).contains(&n), "{name}: {n}");
        }
    }

    #[test]
    fn janus_urls_are_checked() {
        assert_eq!(parse_url(DEFAULT_URL).expect("valid"), DEFAULT_URL);
        assert_eq!(
            parse_url("http://127.0.0.1:8088/janus/").expect("valid"),
            "http://127.0.0.1:8088/janus"
        );
        for bad in [
            "127.0.0.1:8088/janus",
            "ws://127.0.0.1:8188",
            "http://",
            "http:///x",
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert!(e.to_string().contains("--janus-url"), "{e}");
        }
    }

    #[test]
    fn a_subscribers_streams_are_feed_and_kind() {
        let event = json!({"janus": "event", "plugindata": {"data": {
            "videoroom": "attached",
            "streams": [
                {"type": "audio", "mid": "0", "feed_id": 11, "active": true},
                {"type": "video", "mid": "1", "feed_id": 11},
                {"type": "video", "mid": "2", "feed_id": 12, "active": false},
                {"type": "data", "mid": "3"}
            ]
        }}, "jsep": {"type": "offer", "sdp": "v=0"}});
        assert_eq!(subscribed_streams(&event), vec!["11/audio", "11/video"]);
        assert_eq!(jsep_sdp(&event, "offer"), Some("v=0"));
        assert_eq!(jsep_sdp(&event, "answer"), None);
    }
}
