//! WHIP publishing and WHEP viewing over HTTP (one offer, one answer, no
//! renegotiation), with the same peer connection setup as the signalling
//! client.
//!
//! - `POST {base}/whip/v1/rooms/{room}` with `Authorization: Bearer <token>`,
//!   `Content-Type: application/sdp` and the offer; `201 Created` with a
//!   `Location` and the answer. `DELETE` on the location ends the session.
//! - `POST {base}/whep/v1/rooms/{room}` (the room's first publisher) or
//!   `.../participants/{user_id}`; same rules.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use weir_protocol::{HttpErrorBody, TrackKind, TrackSource};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::local_track::{LocalTrack, NewTrack};
use crate::peer::{Peer, PeerState};
use crate::receive::{spawn_reader, ClientStats, Counters, MediaSink, ReceivedPacket};

/// Options shared by WHIP and WHEP sessions.
#[derive(Debug, Clone)]
pub struct HttpSessionOptions {
    /// Publish / receive video.
    pub video: bool,
    /// Publish / receive audio.
    pub audio: bool,
    /// WHIP: the codec of the published video (VP8 or H.264; WHEP
    /// receives whatever the publisher sends).
    pub video_codec: Codec,
    /// See [`crate::JoinOptions::rewrite_server_candidate`].
    pub rewrite_server_candidate: Option<SocketAddr>,
    pub bind_ip: IpAddr,
    /// WHEP: capacity of the received-media channel (0: count only).
    pub media_buffer: usize,
    pub request_timeout: Duration,
}

impl Default for HttpSessionOptions {
    fn default() -> Self {
        Self {
            video: true,
            audio: true,
            video_codec: Codec::Vp8,
            rewrite_server_candidate: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            media_buffer: 8192,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The HTTP side of a WHIP/WHEP session.
struct Resource {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Resource {
    async fn delete(&self) -> Result<StatusCode> {
        let response = self
            .http
            .delete(&self.url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .send()
            .await?;
        Ok(response.status())
    }
}

/// A WHIP publication.
pub struct WhipSession {
    peer: Peer,
    resource: Resource,
    video: Option<LocalTrack>,
    audio: Option<LocalTrack>,
    closed: bool,
}

/// Publishes over WHIP to `{http_base}/whip/v1/rooms/{room}` (`http_base`
/// like `http://127.0.0.1:7880`).
pub async fn whip_publish(
    http_base: &str,
    room: &str,
    token: &str,
    options: HttpSessionOptions,
) -> Result<WhipSession> {
    let peer = Peer::build(options.bind_ip, options.rewrite_server_candidate).await?;
    let mut added = Vec::new();
    if options.video_codec.kind() != TrackKind::Video {
        return Err(Error::InvalidArgument(format!(
            "{} is not a video codec",
            options.video_codec.name()
        )));
    }
    let kinds = [
        (options.video, options.video_codec, TrackSource::Camera),
        (options.audio, Codec::Opus, TrackSource::Microphone),
    ];
    for (wanted, codec, source) in kinds {
        if !wanted {
            continue;
        }
        let track = NewTrack::new(codec, source);
        let transceiver = match peer.add_sendonly(&track).await {
            Ok(t) => t,
            Err(e) => {
                let _ = peer.pc.close().await;
                return Err(e.into());
            }
        };
        added.push((track, transceiver));
    }
    let url = format!("{}/whip/v1/rooms/{}", http_base.trim_end_matches('/'), room);
    let resource = match exchange(&peer, &url, token, options.request_timeout).await {
        Ok(resource) => resource,
        Err(e) => {
            let _ = peer.pc.close().await;
            return Err(e);
        }
    };
    let mut video = None;
    let mut audio = None;
    for (track, transceiver) in added {
        let mid = transceiver.mid().await.ok().flatten().unwrap_or_default();
        let kind = track.kind;
        let local = track.into_local(mid, None);
        match kind {
            TrackKind::Video => video = Some(local),
            TrackKind::Audio => audio = Some(local),
        }
    }
    Ok(WhipSession {
        peer,
        resource,
        video,
        audio,
        closed: false,
    })
}

impl WhipSession {
    pub fn video(&self) -> Option<&LocalTrack> {
        self.video.as_ref()
    }

    pub fn audio(&self) -> Option<&LocalTrack> {
        self.audio.as_ref()
    }

    /// The absolute URL of the session resource (from `Location`).
    pub fn resource_url(&self) -> &str {
        &self.resource.url
    }

    pub fn peer_state(&self) -> PeerState {
        *self.peer.state.borrow()
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        self.peer.wait_connected(timeout).await
    }

    /// Sends `DELETE` to the resource; returns the status (a second delete
    /// is expected to give 404). The peer connection stays open.
    pub async fn delete(&self) -> Result<StatusCode> {
        self.resource.delete().await
    }

    /// Deletes the resource (ignoring the status) and closes the peer
    /// connection.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        let _ = self.resource.delete().await;
        self.peer.pc.close().await?;
        Ok(())
    }
}

impl Drop for WhipSession {
    fn drop(&mut self) {
        if !self.closed {
            close_in_background(Arc::clone(&self.peer.pc));
        }
    }
}

/// A WHEP viewer.
pub struct WhepSession {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<PeerState>,
    resource: Resource,
    media: Option<mpsc::Receiver<ReceivedPacket>>,
    counters: Arc<Counters>,
    reader_spawner: JoinHandle<()>,
    closed: bool,
}

/// Views a room over WHEP: `participant` picks a publisher by user id,
/// `None` the room's first publisher.
pub async fn whep_subscribe(
    http_base: &str,
    room: &str,
    participant: Option<&str>,
    token: &str,
    options: HttpSessionOptions,
) -> Result<WhepSession> {
    let mut peer = Peer::build(options.bind_ip, options.rewrite_server_candidate).await?;
    let kinds = [
        (
            options.video,
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video,
        ),
        (
            options.audio,
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
        ),
    ];
    for (wanted, kind) in kinds {
        if !wanted {
            continue;
        }
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: Vec::new(),
            send_encodings: Vec::new(),
        };
        if let Err(e) = peer.pc.add_transceiver_from_kind(kind, Some(init)).await {
            let _ = peer.pc.close().await;
            return Err(e.into());
        }
    }
    let base = http_base.trim_end_matches('/');
    let url = match participant {
        Some(user) => format!("{base}/whep/v1/rooms/{room}/participants/{user}"),
        None => format!("{base}/whep/v1/rooms/{room}"),
    };
    let (sink, media) = MediaSink::new(options.media_buffer);
    let counters = Arc::clone(&sink.counters);
    let (_, empty) = mpsc::unbounded_channel();
    let mut tracks = std::mem::replace(&mut peer.remote_tracks, empty);
    let weak_pc = Arc::downgrade(&peer.pc);
    let reader_spawner = tokio::spawn(async move {
        while let Some(track) = tracks.recv().await {
            spawn_reader(weak_pc.clone(), track, sink.clone());
        }
    });
    let resource = match exchange(&peer, &url, token, options.request_timeout).await {
        Ok(resource) => resource,
        Err(e) => {
            reader_spawner.abort();
            let _ = peer.pc.close().await;
            return Err(e);
        }
    };
    Ok(WhepSession {
        pc: Arc::clone(&peer.pc),
        state: peer.state.clone(),
        resource,
        media,
        counters,
        reader_spawner,
        closed: false,
    })
}

impl WhepSession {
    pub fn resource_url(&self) -> &str {
        &self.resource.url
    }

    pub fn take_media(&mut self) -> Option<mpsc::Receiver<ReceivedPacket>> {
        self.media.take()
    }

    pub async fn next_packet(&mut self) -> Option<ReceivedPacket> {
        self.media.as_mut()?.recv().await
    }

    pub fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    pub fn peer_state(&self) -> PeerState {
        *self.state.borrow()
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        crate::peer::wait_connected(self.state.clone(), timeout).await
    }

    /// Sends `DELETE` to the resource; returns the status.
    pub async fn delete(&self) -> Result<StatusCode> {
        self.resource.delete().await
    }

    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        let _ = self.resource.delete().await;
        self.reader_spawner.abort();
        self.pc.close().await?;
        Ok(())
    }
}

impl Drop for WhepSession {
    fn drop(&mut self) {
        if !self.closed {
            self.reader_spawner.abort();
            close_in_background(Arc::clone(&self.pc));
        }
    }
}

/// A dropped peer connection keeps its driver running until closed.
pub(crate) fn close_in_background(pc: Arc<dyn PeerConnection>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _ = pc.close().await;
        });
    }
}

/// Offer, POST, answer.
async fn exchange(peer: &Peer, url: &str, token: &str, timeout: Duration) -> Result<Resource> {
    let offer = peer.offer().await?;
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let response = http
        .post(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/sdp")
        .body(offer)
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await?;
    if status != StatusCode::CREATED {
        return Err(http_error(status, body));
    }
    let location =
        location.ok_or_else(|| Error::Protocol("201 Created without a Location".to_string()))?;
    peer.accept_answer(&body).await?;
    Ok(Resource {
        http,
        url: resolve_location(url, &location),
        token: token.to_string(),
    })
}

/// A protocol error from the body, or the bare status.
pub(crate) fn http_error(status: StatusCode, body: String) -> Error {
    match serde_json::from_str::<HttpErrorBody>(&body) {
        Ok(parsed) => Error::Server {
            code: parsed.error.code,
            message: parsed.error.message,
        },
        Err(_) => Error::HttpStatus {
            status: status.as_u16(),
            body,
        },
    }
}

/// Resolves a `Location` header against the request URL.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = request_url.find("://").map(|i| i + 3).unwrap_or(0);
    let origin_end = request_url[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(request_url.len());
    if location.starts_with('/') {
        format!("{}{}", &request_url[..origin_end], location)
    } else {
        let dir_end = request_url.rfind('/').unwrap_or(request_url.len());
        format!("{}/{}", &request_url[..dir_end], location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::ErrorCode;

    #[test]
    fn locations_resolve_against_the_request() {
        let url = "http://127.0.0.1:7880/whip/v1/rooms/r1";
        assert_eq!(
            resolve_location(url, "/whip/v1/sessions/abc"),
            "http://127.0.0.1:7880/whip/v1/sessions/abc"
        );
        assert_eq!(
            resolve_location(url, "http://other:1/x"),
            "http://other:1/x"
        );
        assert_eq!(
            resolve_location(url, "abc"),
            "http://127.0.0.1:7880/whip/v1/rooms/abc"
        );
    }

    #[test]
    fn http_errors_carry_the_protocol_code() {
        let body = r#"{"error":{"code":"TOKEN_EXPIRED","message":"expired"}}"#.to_string();
        let e = http_error(StatusCode::UNAUTHORIZED, body);
        assert_eq!(e.code(), Some(ErrorCode::TokenExpired));
        let e = http_error(StatusCode::BAD_GATEWAY, "nope".to_string());
        assert!(matches!(e, Error::HttpStatus { status: 502, .. }));
    }
}
