//! The signalling client: joins a room over the WebSocket, publishes and
//! subscribes over one peer connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use weir_protocol::{
    ClientMessage, ParticipantId, ParticipantInfo, ServerMessage, TrackId, TrackKind, TrackSource,
    PROTOCOL_VERSION,
};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::local_track::LocalTrack;
use crate::peer::{Peer, PeerState};
use crate::receive::{ClientStats, Counters, MediaSink, ReceivedPacket};
use crate::session::{Command, Session};

/// How to join.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Subscribe to every track in the room automatically.
    pub auto_subscribe: bool,
    /// Rewrite the server's ICE candidates in every SDP it sends to this
    /// address (a [`crate::lossy_proxy::LossyUdpProxy`] in tests).
    pub rewrite_server_candidate: Option<SocketAddr>,
    /// Local address for the media socket. Keep it concrete: a wildcard
    /// skips loopback interfaces and gathers nothing on a loopback-only host.
    pub bind_ip: IpAddr,
    /// Capacity of the received-media channel; packets beyond it are counted
    /// and dropped. 0 turns delivery off (packets are only counted).
    pub media_buffer: usize,
    /// Bound on waits for the server (join, publish).
    pub request_timeout: Duration,
    /// Send `ping` every `ping_interval_ms` (turn off to test ping timeouts).
    pub send_pings: bool,
    /// The protocol version stated in `join`.
    pub protocol_version: u32,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            rewrite_server_candidate: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            media_buffer: 8192,
            request_timeout: Duration::from_secs(10),
            send_pings: true,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// What the server said in `joined`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedInfo {
    pub protocol_version: u32,
    pub server_version: String,
    pub room: String,
    pub participant_id: ParticipantId,
    pub user_id: String,
    /// Everyone already in the room when we joined.
    pub participants: Vec<ParticipantInfo>,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Something that happened in the session.
#[derive(Debug, Clone)]
pub enum Event {
    /// A server message. `offer`, `answer` and `pong` are handled by the
    /// client and not repeated here.
    Message(ServerMessage),
    /// The peer connection changed state.
    PeerState(PeerState),
    /// A server offer arrived while our own offer was outstanding and was
    /// ignored (glare; the server re-offers after answering).
    OfferIgnored,
    /// A client-side failure outside any request (e.g. a server offer that
    /// could not be applied).
    LocalError(String),
    /// The signalling socket closed.
    Closed { code: Option<u16>, reason: String },
}

impl Event {
    /// The server message, if this is one.
    pub fn message(&self) -> Option<&ServerMessage> {
        match self {
            Event::Message(m) => Some(m),
            _ => None,
        }
    }
}

/// A participant connected to a Weir room.
///
/// Dropping the client leaves the room (best effort); [`Client::leave`]
/// does it and waits.
pub struct Client {
    info: JoinedInfo,
    commands: mpsc::UnboundedSender<Command>,
    events: Option<mpsc::UnboundedReceiver<Event>>,
    media: Option<mpsc::Receiver<ReceivedPacket>>,
    counters: Arc<Counters>,
    peer_state: watch::Receiver<PeerState>,
    task: Option<JoinHandle<()>>,
    request_timeout: Duration,
}

impl Client {
    /// Connects to `url` (`ws://HOST/rtc/v1`), joins with `token` and waits
    /// for `joined`. A refusal comes back as [`Error::Server`] with its code.
    pub async fn connect(url: &str, token: &str, options: JoinOptions) -> Result<Client> {
        let full_url = url_with_token(url, token);
        let timeout = options.request_timeout;
        let (ws, _) =
            tokio::time::timeout(timeout, tokio_tungstenite::connect_async(full_url.as_str()))
                .await
                .map_err(|_| Error::Timeout("the WebSocket connection"))??;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let join = ClientMessage::Join {
            version: options.protocol_version,
            auto_subscribe: (!options.auto_subscribe).then_some(false),
        };
        // A refused session gets `error` and a close right after the
        // upgrade, possibly before `join` is out: read the reply even if the
        // send failed, and report the send error only if there is none.
        let sent = ws_tx.send(Message::text(encode(&join)?)).await;
        let joined = tokio::time::timeout(timeout, async {
            loop {
                let Some(frame) = ws_rx.next().await else {
                    return Err(match &sent {
                        Err(e) => Error::Protocol(format!("sending `join` failed: {e}")),
                        Ok(()) => Error::Closed,
                    });
                };
                match frame? {
                    Message::Text(text) => {
                        let message: ServerMessage = serde_json::from_str(text.as_str())
                            .map_err(|e| Error::Protocol(format!("bad server message: {e}")))?;
                        return match message {
                            ServerMessage::Joined {
                                protocol_version,
                                server_version,
                                room,
                                participant_id,
                                user_id,
                                participants,
                                ping_interval_ms,
                                ping_timeout_ms,
                            } => Ok(JoinedInfo {
                                protocol_version,
                                server_version,
                                room,
                                participant_id,
                                user_id,
                                participants,
                                ping_interval: Duration::from_millis(ping_interval_ms),
                                ping_timeout: Duration::from_millis(ping_timeout_ms),
                            }),
                            ServerMessage::Error { code, message } => {
                                Err(Error::Server { code, message })
                            }
                            other => {
                                Err(Error::Protocol(format!("expected `joined`, got {other:?}")))
                            }
                        };
                    }
                    Message::Close(_) => return Err(Error::Closed),
                    _ => continue,
                }
            }
        })
        .await
        .map_err(|_| Error::Timeout("`joined`"))??;

        let peer = Peer::build(options.bind_ip, options.rewrite_server_candidate).await?;
        let (sink, media) = MediaSink::new(options.media_buffer);
        let counters = Arc::clone(&sink.counters);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let peer_state = peer.state.clone();
        let ping_interval = options.send_pings.then_some(joined.ping_interval);
        let session = Session::new(ws_tx, peer, sink, event_tx, ping_interval);
        let task = tokio::spawn(session.run(ws_rx, command_rx));
        Ok(Client {
            info: joined,
            commands,
            events: Some(events),
            media,
            counters,
            peer_state,
            task: Some(task),
            request_timeout: timeout,
        })
    }

    pub fn participant_id(&self) -> &ParticipantId {
        &self.info.participant_id
    }

    /// Everything `joined` said.
    pub fn joined(&self) -> &JoinedInfo {
        &self.info
    }

    /// Publishes one track; returns when the server has announced it
    /// (`track_published` with our mid), so the track id is known.
    pub async fn publish(&self, kind: TrackKind, source: TrackSource) -> Result<LocalTrack> {
        let mut tracks = self.publish_tracks(&[(kind, source)]).await?;
        tracks
            .pop()
            .ok_or_else(|| Error::Protocol("no track published".to_string()))
    }

    /// Publishes a synthetic-VP8 video track.
    pub async fn publish_video_vp8(&self, source: TrackSource) -> Result<LocalTrack> {
        self.publish(TrackKind::Video, source).await
    }

    /// Publishes an H.264 video track (packetization mode 1, profile-level-id
    /// 42e01f, with RTX), e.g. for [`crate::media_file::FilePlayer`].
    pub async fn publish_video_h264(&self, source: TrackSource) -> Result<LocalTrack> {
        let mut tracks = self.publish_codecs(&[(Codec::H264, source)]).await?;
        tracks
            .pop()
            .ok_or_else(|| Error::Protocol("no track published".to_string()))
    }

    /// Publishes an Opus microphone track.
    pub async fn publish_audio_opus(&self) -> Result<LocalTrack> {
        self.publish(TrackKind::Audio, TrackSource::Microphone)
            .await
    }

    /// Publishes several tracks in one offer, in order (video as VP8,
    /// audio as Opus).
    pub async fn publish_tracks(
        &self,
        tracks: &[(TrackKind, TrackSource)],
    ) -> Result<Vec<LocalTrack>> {
        let tracks: Vec<(Codec, TrackSource)> = tracks
            .iter()
            .map(|(kind, source)| (Codec::default_for(*kind), *source))
            .collect();
        self.publish_codecs(&tracks).await
    }

    /// Publishes several tracks in one offer, in order, each sending the
    /// given codec (its m-line offers only that codec).
    pub async fn publish_codecs(&self, tracks: &[(Codec, TrackSource)]) -> Result<Vec<LocalTrack>> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Publish {
            tracks: tracks.to_vec(),
            reply,
        })?;
        tokio::time::timeout(self.request_timeout, rx)
            .await
            .map_err(|_| Error::Timeout("the server to publish the track"))?
            .map_err(|_| Error::Closed)?
    }

    /// Stops publishing `track` (message + renegotiation).
    pub fn unpublish(&self, track: &LocalTrack) -> Result<()> {
        self.command(Command::Unpublish {
            track: track.clone(),
        })
    }

    pub fn subscribe(&self, track_id: &TrackId) -> Result<()> {
        self.send(ClientMessage::Subscribe {
            track_id: track_id.clone(),
        })
    }

    pub fn unsubscribe(&self, track_id: &TrackId) -> Result<()> {
        self.send(ClientMessage::Unsubscribe {
            track_id: track_id.clone(),
        })
    }

    pub fn mute(&self, track_id: &TrackId, muted: bool) -> Result<()> {
        self.send(ClientMessage::Mute {
            track_id: track_id.clone(),
            muted,
        })
    }

    /// Sends any protocol message as is (the client does not track it).
    pub fn send(&self, message: ClientMessage) -> Result<()> {
        self.command(Command::Send(message))
    }

    /// Sends a raw text frame (for tests of malformed input).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<()> {
        self.command(Command::SendRaw(text.into()))
    }

    /// The next event; `None` once the session has ended and all events
    /// were read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.as_mut()?.recv().await
    }

    /// Takes the event channel (to read it from another task). Dropping the
    /// taken receiver stops events from accumulating, for clients whose
    /// events nobody reads (load generation).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<Event>> {
        self.events.take()
    }

    /// Reads events until `select` picks one, skipping the others. Fails on
    /// timeout or when the session ends first.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut select: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        let events = self.events.as_mut().ok_or(Error::InvalidArgument(
            "the event channel was taken".to_string(),
        ))?;
        tokio::time::timeout(timeout, async {
            while let Some(event) = events.recv().await {
                if let Some(found) = select(&event) {
                    return Ok(found);
                }
            }
            Err(Error::Closed)
        })
        .await
        .map_err(|_| Error::Timeout("an event"))?
    }

    /// Like [`Client::wait_for`] for server messages.
    pub async fn wait_for_message<T>(
        &mut self,
        timeout: Duration,
        mut select: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T> {
        self.wait_for(timeout, |e| e.message().and_then(&mut select))
            .await
    }

    /// Takes the received-media channel (to read it from another task).
    pub fn take_media(&mut self) -> Option<mpsc::Receiver<ReceivedPacket>> {
        self.media.take()
    }

    /// The next received packet (if the media channel was not taken).
    pub async fn next_packet(&mut self) -> Option<ReceivedPacket> {
        self.media.as_mut()?.recv().await
    }

    pub fn peer_state(&self) -> PeerState {
        *self.peer_state.borrow()
    }

    /// Waits until the peer connection is connected.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        crate::peer::wait_connected(self.peer_state.clone(), timeout).await
    }

    pub fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    /// Sends `leave`, closes the socket and the peer connection, and waits.
    pub async fn leave(mut self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Leave { reply }).is_ok() {
            let _ = tokio::time::timeout(self.request_timeout, rx).await;
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(self.request_timeout, task).await;
        }
        Ok(())
    }

    fn command(&self, command: Command) -> Result<()> {
        self.commands.send(command).map_err(|_| Error::Closed)
    }
}

pub(crate) fn encode(message: &ClientMessage) -> Result<String> {
    serde_json::to_string(message).map_err(|e| Error::Protocol(format!("cannot encode: {e}")))
}

/// `url?token=...`, percent-encoding the token.
pub(crate) fn url_with_token(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}token={}", percent_encode(token))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_percent_encoded_into_the_url() {
        assert_eq!(
            url_with_token("ws://h/rtc/v1", "a.b-c_d"),
            "ws://h/rtc/v1?token=a.b-c_d"
        );
        assert_eq!(
            url_with_token("ws://h/rtc/v1?x=1", "not a token/+"),
            "ws://h/rtc/v1?x=1&token=not%20a%20token%2F%2B"
        );
    }

    #[test]
    fn join_message_is_minimal() {
        let join = ClientMessage::Join {
            version: 1,
            auto_subscribe: None,
        };
        assert_eq!(
            encode(&join).expect("encode"),
            r#"{"type":"join","version":1}"#
        );
    }
}
