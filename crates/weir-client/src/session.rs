//! The task behind a [`crate::Client`]: it owns the WebSocket and the peer
//! connection and runs the offer/answer state machine.
//!
//! Negotiation rules (docs/protocol.md):
//! - Publications go out as `publish` messages (one per new transceiver, with
//!   its mid) followed by one `offer` with complete candidates.
//! - Server offers are answered at once, unless our own offer is outstanding:
//!   then the server offer is ignored (the server is polite; it rolls back and
//!   re-offers after answering ours).
//! - A publication completes when both the answer is applied and the
//!   server's `track_published` with our mid has arrived.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::rtp_transceiver::RtpTransceiver;
use weir_protocol::{
    ClientMessage, ErrorCode, PublishRequest, ServerMessage, TrackId, TrackSource,
};

use crate::client::{encode, Event};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::local_track::{LocalTrack, NewTrack};
use crate::peer::Peer;
use crate::receive::{spawn_reader, MediaSink};
use crate::synthetic::now_us;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type WsSink = SplitSink<Ws, Message>;
pub(crate) type WsSource = SplitStream<Ws>;

pub(crate) enum Command {
    Publish {
        tracks: Vec<(Codec, TrackSource)>,
        reply: oneshot::Sender<Result<Vec<LocalTrack>>>,
    },
    Unpublish {
        track: LocalTrack,
    },
    Send(ClientMessage),
    SendRaw(String),
    Leave {
        reply: oneshot::Sender<()>,
    },
}

/// A `publish` request of the application, answered when all its tracks are
/// published.
struct Batch {
    tracks: Vec<(Codec, TrackSource)>,
    published: Vec<Option<LocalTrack>>,
    reply: oneshot::Sender<Result<Vec<LocalTrack>>>,
}

/// A track in an offer, waiting for the answer and `track_published`.
struct InFlight {
    batch: u64,
    position: usize,
    mid: String,
    track: Option<NewTrack>,
    transceiver: Arc<dyn RtpTransceiver>,
    answered: bool,
    track_id: Option<TrackId>,
}

pub(crate) struct Session {
    ws: WsSink,
    peer: Peer,
    sink: MediaSink,
    events: mpsc::UnboundedSender<Event>,
    ping_interval: Option<Duration>,
    last_ping: Option<(u64, Instant)>,
    offer_outstanding: bool,
    /// The offer changes something besides new publications (unpublish).
    renegotiate: bool,
    next_batch: u64,
    batches: HashMap<u64, Batch>,
    /// Batches not offered yet, in order.
    queued: Vec<u64>,
    in_flight: Vec<InFlight>,
    ws_open: bool,
}

impl Session {
    pub fn new(
        ws: WsSink,
        peer: Peer,
        sink: MediaSink,
        events: mpsc::UnboundedSender<Event>,
        ping_interval: Option<Duration>,
    ) -> Self {
        Self {
            ws,
            peer,
            sink,
            events,
            ping_interval,
            last_ping: None,
            offer_outstanding: false,
            renegotiate: false,
            next_batch: 0,
            batches: HashMap::new(),
            queued: Vec::new(),
            in_flight: Vec::new(),
            ws_open: true,
        }
    }

    pub async fn run(
        mut self,
        mut ws_rx: WsSource,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let (_, empty) = mpsc::unbounded_channel();
        let mut remote_tracks = std::mem::replace(&mut self.peer.remote_tracks, empty);
        let mut peer_state = self.peer.state.clone();
        let mut ping = self.ping_interval.map(|period| {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let mut leave_reply = None;
        let (code, reason) = loop {
            tokio::select! {
                frame = ws_rx.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Close(frame))) => {
                        // Flushes the reply tungstenite queued: the server
                        // waits for it to end the closing handshake.
                        let _ = self.ws.close().await;
                        break match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break (None, e.to_string()),
                    None => break (None, "connection closed".to_string()),
                },
                command = commands.recv() => match command {
                    Some(Command::Leave { reply }) => {
                        self.leave().await;
                        leave_reply = Some(reply);
                        break (None, "left".to_string());
                    }
                    Some(command) => self.on_command(command).await,
                    None => {
                        self.leave().await;
                        break (None, "client dropped".to_string());
                    }
                },
                Some(track) = remote_tracks.recv() => {
                    spawn_reader(Arc::downgrade(&self.peer.pc), track, self.sink.clone());
                }
                Ok(()) = peer_state.changed() => {
                    let state = *peer_state.borrow_and_update();
                    self.emit(Event::PeerState(state));
                }
                _ = tick(&mut ping) => self.ping().await,
            }
        };
        self.ws_open = false;
        for (_, batch) in self.batches.drain() {
            let _ = batch.reply.send(Err(Error::Closed));
        }
        if let Err(e) = self.peer.pc.close().await {
            tracing::debug!(error = %e, "closing the peer connection");
        }
        self.emit(Event::Closed { code, reason });
        if let Some(reply) = leave_reply {
            let _ = reply.send(());
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    async fn send(&mut self, message: &ClientMessage) {
        match encode(message) {
            Ok(text) => self.send_text(text).await,
            Err(e) => self.emit(Event::LocalError(e.to_string())),
        }
    }

    async fn send_text(&mut self, text: String) {
        if !self.ws_open {
            return;
        }
        if let Err(e) = self.ws.send(Message::text(text)).await {
            self.ws_open = false;
            self.emit(Event::LocalError(format!("websocket send failed: {e}")));
        }
    }

    async fn leave(&mut self) {
        self.send(&ClientMessage::Leave).await;
        if self.ws_open {
            let _ = self.ws.close().await;
        }
        self.ws_open = false;
    }

    async fn ping(&mut self) {
        let ts = now_us() / 1000;
        self.last_ping = Some((ts, Instant::now()));
        self.send(&ClientMessage::Ping { ts }).await;
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { tracks, reply } => {
                if tracks.is_empty() {
                    let _ = reply.send(Ok(Vec::new()));
                    return;
                }
                let id = self.next_batch;
                self.next_batch += 1;
                let published = vec![None; tracks.len()];
                self.batches.insert(
                    id,
                    Batch {
                        tracks,
                        published,
                        reply,
                    },
                );
                self.queued.push(id);
                self.maybe_offer().await;
            }
            Command::Unpublish { track } => self.unpublish(track).await,
            Command::Send(message) => self.send(&message).await,
            Command::SendRaw(text) => self.send_text(text).await,
            Command::Leave { .. } => {}
        }
    }

    async fn on_text(&mut self, text: &str) {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                self.emit(Event::LocalError(format!(
                    "unparseable server message: {e}"
                )));
                return;
            }
        };
        match message {
            ServerMessage::Offer { sdp } => self.on_server_offer(&sdp).await,
            ServerMessage::Answer { sdp } => self.on_server_answer(&sdp).await,
            ServerMessage::Pong { ts } => {
                if let Some((sent, at)) = self.last_ping {
                    if sent == ts {
                        let rtt = at.elapsed().as_micros().max(1) as u64;
                        self.sink
                            .counters
                            .last_rtt_us
                            .store(rtt, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                self.sink
                    .counters
                    .pongs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ServerMessage::Subscribed { track_id, mid } => {
                self.sink.mids.insert(&mid, track_id.clone());
                self.emit(Event::Message(ServerMessage::Subscribed { track_id, mid }));
            }
            ServerMessage::Unsubscribed { track_id } => {
                self.sink.mids.remove_track(&track_id);
                self.emit(Event::Message(ServerMessage::Unsubscribed { track_id }));
            }
            ServerMessage::TrackPublished { track, mid } => {
                if let Some(mid) = &mid {
                    if let Some(f) = self.in_flight.iter_mut().find(|f| f.mid == *mid) {
                        f.track_id = Some(track.track_id.clone());
                    }
                    self.complete_publications();
                }
                self.emit(Event::Message(ServerMessage::TrackPublished { track, mid }));
            }
            ServerMessage::Error { code, message } => {
                let refused = matches!(code, ErrorCode::PermissionDenied | ErrorCode::SdpInvalid);
                if refused && self.offer_outstanding {
                    self.abandon_offer(code, &message).await;
                }
                self.emit(Event::Message(ServerMessage::Error { code, message }));
            }
            other => self.emit(Event::Message(other)),
        }
    }

    async fn on_server_offer(&mut self, sdp: &str) {
        if self.offer_outstanding {
            // Glare: the server is polite and will offer again.
            self.sink
                .counters
                .offers_ignored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.emit(Event::OfferIgnored);
            return;
        }
        tracing::trace!(%sdp, "server offer");
        match self.peer.answer(sdp).await {
            Ok(answer) => {
                tracing::trace!(sdp = %answer, "client answer");
                self.send(&ClientMessage::Answer { sdp: answer }).await;
            }
            Err(e) => {
                let _ = self.peer.rollback().await;
                self.emit(Event::LocalError(format!(
                    "cannot answer the server offer: {e}"
                )));
            }
        }
        self.maybe_offer().await;
    }

    async fn on_server_answer(&mut self, sdp: &str) {
        if !self.offer_outstanding {
            self.emit(Event::LocalError(
                "the server answered, but no offer was outstanding".to_string(),
            ));
            return;
        }
        self.offer_outstanding = false;
        tracing::trace!(%sdp, "server answer");
        match self.peer.accept_answer(sdp).await {
            Ok(()) => {
                for f in &mut self.in_flight {
                    f.answered = true;
                }
                self.complete_publications();
            }
            Err(e) => {
                let message = format!("cannot apply the server answer: {e}");
                let _ = self.peer.rollback().await;
                self.fail_in_flight(|| Error::Negotiation(message.clone()))
                    .await;
                self.emit(Event::LocalError(message));
            }
        }
        self.maybe_offer().await;
    }

    /// The server refused our offer: roll it back, fail its publications.
    async fn abandon_offer(&mut self, code: ErrorCode, message: &str) {
        self.offer_outstanding = false;
        if let Err(e) = self.peer.rollback().await {
            tracing::debug!(error = %e, "rollback after a refused offer");
        }
        self.fail_in_flight(|| Error::Server {
            code,
            message: message.to_string(),
        })
        .await;
    }

    async fn fail_in_flight(&mut self, error: impl Fn() -> Error) {
        for f in std::mem::take(&mut self.in_flight) {
            let _ = f.transceiver.stop().await;
            if let Some(batch) = self.batches.remove(&f.batch) {
                let _ = batch.reply.send(Err(error()));
            }
        }
    }

    /// Hands out the publications that are answered and announced.
    fn complete_publications(&mut self) {
        let mut i = 0;
        while i < self.in_flight.len() {
            let f = &mut self.in_flight[i];
            let ready = f.answered && f.track_id.is_some();
            if !ready {
                i += 1;
                continue;
            }
            let f = self.in_flight.swap_remove(i);
            let (Some(track), Some(batch)) = (f.track, self.batches.get_mut(&f.batch)) else {
                continue;
            };
            if let Some(slot) = batch.published.get_mut(f.position) {
                *slot = Some(track.into_local(f.mid, f.track_id));
            }
        }
        let done: Vec<u64> = self
            .batches
            .iter()
            .filter(|(id, b)| !self.queued.contains(id) && b.published.iter().all(Option::is_some))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(batch) = self.batches.remove(&id) {
                let tracks = batch.published.into_iter().flatten().collect();
                let _ = batch.reply.send(Ok(tracks));
            }
        }
    }

    /// Makes an offer for queued publications (and other local changes)
    /// unless one is outstanding.
    async fn maybe_offer(&mut self) {
        if self.offer_outstanding || !self.ws_open {
            return;
        }
        if self.queued.is_empty() && !self.renegotiate {
            return;
        }
        self.renegotiate = false;
        let mut offered = Vec::new();
        for id in std::mem::take(&mut self.queued) {
            let Some(batch) = self.batches.get(&id) else {
                continue;
            };
            let tracks = batch.tracks.clone();
            let mut added = Vec::new();
            let mut failure = None;
            for (position, (codec, source)) in tracks.into_iter().enumerate() {
                let track = NewTrack::new(codec, source);
                match self.peer.add_sendonly(&track).await {
                    Ok(transceiver) => added.push((position, track, transceiver)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failure {
                for (_, _, transceiver) in added {
                    let _ = transceiver.stop().await;
                }
                if let Some(batch) = self.batches.remove(&id) {
                    let _ = batch.reply.send(Err(e.into()));
                }
                continue;
            }
            offered.extend(
                added
                    .into_iter()
                    .map(|(position, track, transceiver)| (id, position, track, transceiver)),
            );
        }
        let sdp = match self.peer.offer().await {
            Ok(sdp) => sdp,
            Err(e) => {
                let message = format!("cannot make an offer: {e}");
                let _ = self.peer.rollback().await;
                for (id, _, _, transceiver) in offered {
                    let _ = transceiver.stop().await;
                    if let Some(batch) = self.batches.remove(&id) {
                        let _ = batch.reply.send(Err(Error::Negotiation(message.clone())));
                    }
                }
                self.emit(Event::LocalError(message));
                return;
            }
        };
        for (batch, position, track, transceiver) in offered {
            let mid = match transceiver.mid().await {
                Ok(Some(mid)) => mid,
                _ => {
                    if let Some(b) = self.batches.remove(&batch) {
                        let _ = b.reply.send(Err(Error::Negotiation(
                            "no mid after the offer".to_string(),
                        )));
                    }
                    continue;
                }
            };
            // The m-line offers only the track's codec; naming a codec that
            // is not the default one says so in the protocol too.
            let codecs = if track.codec == Codec::default_for(track.kind) {
                Vec::new()
            } else {
                vec![track.codec.name().to_string()]
            };
            let request = PublishRequest {
                mid: mid.clone(),
                kind: track.kind,
                source: Some(track.source),
                codecs,
            };
            self.send(&ClientMessage::Publish(request)).await;
            self.in_flight.push(InFlight {
                batch,
                position,
                mid,
                track: Some(track),
                transceiver,
                answered: false,
                track_id: None,
            });
        }
        tracing::trace!(%sdp, "client offer");
        self.send(&ClientMessage::Offer { sdp }).await;
        self.offer_outstanding = true;
    }

    async fn unpublish(&mut self, track: LocalTrack) {
        if let Some(track_id) = track.track_id() {
            self.send(&ClientMessage::Unpublish {
                track_id: track_id.clone(),
            })
            .await;
        }
        let ours = track.rtc_track_addr();
        for sender in self.peer.pc.get_senders().await {
            if Arc::as_ptr(sender.track()) as *const () as usize == ours {
                if let Err(e) = self.peer.pc.remove_track(&sender).await {
                    self.emit(Event::LocalError(format!("cannot remove the track: {e}")));
                }
                self.renegotiate = true;
            }
        }
        self.maybe_offer().await;
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
