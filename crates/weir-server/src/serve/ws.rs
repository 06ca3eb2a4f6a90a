//! The WebSocket signalling session (`GET /rtc/v1?token=...`).
//!
//! The socket is always upgraded so that refusals reach the client as
//! protocol `error` messages (browsers cannot read HTTP error bodies of a
//! failed WebSocket handshake); then the socket is closed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info_span, Instrument};
use weir_protocol::{ClientMessage, ErrorCode, LeaveReason, ServerMessage, PROTOCOL_VERSION};
use weir_sfu::{JoinRequest, SessionKind};

use super::metrics::ServerMetrics;
use super::room_task::RoomCommand;
use super::rooms::RoomKey;
use super::AppState;
use crate::token::VerifiedToken;

/// Frames above this are refused by the WebSocket layer itself; between
/// `MAX_MESSAGE_BYTES` and this, the session answers MESSAGE_TOO_LARGE.
const WS_FRAME_LIMIT: usize = 1024 * 1024;
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing session waits for the client's Close frame.
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub struct RtcQuery {
    token: Option<String>,
    /// Needed only when the token's room is `*`.
    room: Option<String>,
}

/// The WebSocket read chunk per session.
const WS_BUFFER_BYTES: usize = 8 * 1024;

pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<RtcQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    // tungstenite's defaults (128 KiB read buffer allocated up front, 128
    // KiB write buffer) were most of a participant's memory; signalling
    // messages are a few kB and the buffers grow when one is larger.
    ws.max_message_size(WS_FRAME_LIMIT)
        .max_frame_size(WS_FRAME_LIMIT)
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| session(state, query, socket))
}

async fn session(state: AppState, query: RtcQuery, mut socket: WebSocket) {
    let _open = OpenConnection::count(state.metrics.clone());
    let verified = match authorize(&state, &query).await {
        Ok(v) => v,
        Err((code, message)) => {
            state.metrics.tokens_rejected.inc();
            refuse(&mut socket, code, message).await;
            return;
        }
    };
    let span = info_span!("session", room = %verified.room, user = %verified.verified.user_id);
    run_session(state, verified, socket).instrument(span).await;
}

async fn authorize(state: &AppState, query: &RtcQuery) -> Result<Joining, (ErrorCode, String)> {
    if state.shutting_down() {
        return Err((
            ErrorCode::ServerShuttingDown,
            "the server is shutting down".into(),
        ));
    }
    let Some(token) = query.token.as_deref().filter(|t| !t.is_empty()) else {
        return Err((ErrorCode::TokenMissing, "no `token` query parameter".into()));
    };
    let verified = state
        .app_keys
        .verify(token, query.room.as_deref(), unix_now())
        .await
        .map_err(|e| (e.code(), e.to_string()))?;
    let room = match (verified.room.as_str(), query.room.as_deref()) {
        ("*", Some(room)) => room.to_string(),
        ("*", None) => {
            return Err((
                ErrorCode::TokenWrongRoom,
                "the token allows any room: name one with the `room` query parameter".into(),
            ))
        }
        (room, _) => room.to_string(),
    };
    let room = RoomKey::new(verified.app_id.clone(), room);
    Ok(Joining { verified, room })
}

struct Joining {
    verified: VerifiedToken,
    room: RoomKey,
}

async fn run_session(state: AppState, joining: Joining, mut socket: WebSocket) {
    // 1. Wait for `join`.
    let auto_subscribe = match wait_for_join(&state, &mut socket).await {
        Some(auto) => auto,
        None => return,
    };
    // 2. Join the room.
    let (signals_tx, mut signals_rx) = mpsc::unbounded_channel();
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = JoinRequest {
        user_id: joining.verified.user_id.clone(),
        grants: joining.verified.grants.clone(),
        kind: SessionKind::Signalling,
        auto_subscribe: auto_subscribe.unwrap_or(state.config.rooms.auto_subscribe),
        offer: None,
        wall_clock_ms: unix_now_ms(),
    };
    let queued = state.rooms.send_creating(
        &joining.room,
        &state.room_factory,
        RoomCommand::Join {
            request,
            signals: Some(signals_tx),
            reply: reply_tx,
        },
    );
    if !queued {
        let message = "the server is shutting down".to_string();
        refuse(&mut socket, ErrorCode::ServerShuttingDown, message).await;
        return;
    }
    let joined = match reply_rx.await {
        Ok(Ok(joined)) => joined,
        Ok(Err(e)) => {
            refuse(&mut socket, e.code(), e.to_string()).await;
            return;
        }
        Err(_) => {
            refuse(
                &mut socket,
                ErrorCode::Internal,
                "the room closed".to_string(),
            )
            .await;
            return;
        }
    };
    let key = joined.key;
    let room = joining.room.clone();
    let send_to_room = |command: RoomCommand| {
        let _ = state.rooms.send(&room, command);
    };

    // The signalling connection's round trip sizes the NACK history of
    // this participant's subscriptions until its receiver reports tell.
    let mut round_trip = RoundTripProbe::send(&mut socket).await;

    // 3. Relay until either side ends.
    let ping_timeout = Duration::from_secs(state.config.signalling.ping_timeout_seconds);
    let mut last_seen = Instant::now();
    // One timer per session, due when the ping timeout would expire if
    // nothing more came; a message moves `last_seen` only, and the timer
    // is set again from it when it fires. (A check every second woke the
    // server once a second per session: 50 wake-ups a second in a 1 -> 50
    // room.)
    let silence = tokio::time::sleep_until(last_seen + ping_timeout);
    tokio::pin!(silence);
    let reason = loop {
        tokio::select! {
            outgoing = signals_rx.recv() => {
                let Some(message) = outgoing else {
                    // The room ended this session (left, kicked, closed).
                    close(&mut socket, None).await;
                    return;
                };
                let ends = matches!(*message, ServerMessage::Leave { .. });
                if send_json(&mut socket, &message).await.is_err() {
                    break LeaveReason::Disconnected;
                }
                if ends {
                    close(&mut socket, None).await;
                    return;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        state.metrics.ws_messages_rejected.inc();
                        send_to_room(RoomCommand::Reject { key, code: ErrorCode::MalformedMessage, message: "binary messages are not part of the protocol".into() });
                        continue;
                    }
                    Some(Ok(Message::Pong(payload))) => {
                        last_seen = Instant::now();
                        if let Some(rtt) = round_trip.as_ref().and_then(|p| p.answered(&payload)) {
                            round_trip = None;
                            debug!(rtt_us = rtt.as_micros(), "signalling round trip");
                            send_to_room(RoomCommand::SignallingRoundTrip { key, rtt });
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_))) => { last_seen = Instant::now(); continue; }
                    Some(Ok(Message::Close(_))) => {
                        // Sends the reply queued by the client's Close.
                        let _ = socket.send(Message::Close(None)).await;
                        break LeaveReason::Disconnected;
                    }
                    None => break LeaveReason::Disconnected,
                    Some(Err(e)) => {
                        debug!(error = %e, "websocket error");
                        break LeaveReason::Disconnected;
                    }
                };
                last_seen = Instant::now();
                match ClientMessage::parse(text.as_str()) {
                    Ok(ClientMessage::Leave) => {
                        send_to_room(RoomCommand::Message { key, message: ClientMessage::Leave });
                        close(&mut socket, None).await;
                        return;
                    }
                    Ok(message) => send_to_room(RoomCommand::Message { key, message }),
                    Err((code, message)) => {
                        state.metrics.ws_messages_rejected.inc();
                        send_to_room(RoomCommand::Reject { key, code, message });
                    }
                }
            }
            () = &mut silence => {
                if last_seen.elapsed() < ping_timeout {
                    silence.as_mut().reset(last_seen + ping_timeout);
                } else {
                    let _ = send_json(&mut socket, &ServerMessage::error(ErrorCode::PingTimeout, "no message within the ping timeout")).await;
                    // A silent client: no closing handshake to wait for.
                    let _ = socket.send(Message::Close(None)).await;
                    break LeaveReason::PingTimeout;
                }
            }
        }
    };
    send_to_room(RoomCommand::Leave { key, reason });
}

/// A WebSocket ping whose pong gives the signalling connection's round
/// trip (browsers and WebSocket libraries answer pings by themselves).
struct RoundTripProbe {
    nonce: [u8; 8],
    sent_at: Instant,
}

impl RoundTripProbe {
    /// None if the ping could not be sent.
    async fn send(socket: &mut WebSocket) -> Option<Self> {
        let nonce = rand::random::<u64>().to_be_bytes();
        let sent_at = Instant::now();
        socket
            .send(Message::Ping(nonce.to_vec().into()))
            .await
            .ok()?;
        Some(Self { nonce, sent_at })
    }

    /// The round trip, if `payload` answers this probe (unsolicited pongs
    /// and answers to other pings do not).
    fn answered(&self, payload: &[u8]) -> Option<Duration> {
        (payload == self.nonce).then(|| self.sent_at.elapsed())
    }
}

/// Reads messages until `join`; answers anything else with NOT_JOINED.
/// Returns the requested auto_subscribe, or None if the session ended.
async fn wait_for_join(state: &AppState, socket: &mut WebSocket) -> Option<Option<bool>> {
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.recv()).await;
        let text = match next {
            Err(_) => {
                refuse(
                    socket,
                    ErrorCode::NotJoined,
                    "no `join` message within 10 s".into(),
                )
                .await;
                return None;
            }
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Binary(_)))) => {
                state.metrics.ws_messages_rejected.inc();
                let _ = send_json(
                    socket,
                    &ServerMessage::error(
                        ErrorCode::MalformedMessage,
                        "binary messages are not part of the protocol",
                    ),
                )
                .await;
                continue;
            }
            Ok(_) => return None,
        };
        match ClientMessage::parse(text.as_str()) {
            Ok(ClientMessage::Join {
                version,
                auto_subscribe,
            }) => {
                if version != PROTOCOL_VERSION {
                    refuse(
                        socket,
                        ErrorCode::UnsupportedVersion,
                        format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"),
                    )
                    .await;
                    return None;
                }
                return Some(auto_subscribe);
            }
            Ok(ClientMessage::Ping { ts }) => {
                let _ = send_json(socket, &ServerMessage::Pong { ts }).await;
            }
            Ok(_) => {
                state.metrics.ws_messages_rejected.inc();
                let _ = send_json(
                    socket,
                    &ServerMessage::error(ErrorCode::NotJoined, "send `join` first"),
                )
                .await;
            }
            Err((code, message)) => {
                state.metrics.ws_messages_rejected.inc();
                let _ = send_json(socket, &ServerMessage::error(code, message)).await;
            }
        }
    }
}

async fn send_json(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(message).unwrap_or_else(|e| {
        format!(r#"{{"type":"error","code":"INTERNAL","message":"cannot encode message: {e}"}}"#)
    });
    socket.send(Message::Text(Utf8Bytes::from(text))).await
}

/// Sends an error and closes with a 4xxx close code.
async fn refuse(socket: &mut WebSocket, code: ErrorCode, message: String) {
    debug!(%code, %message, "session refused");
    let _ = send_json(socket, &ServerMessage::error(code, message)).await;
    close(
        socket,
        Some(CloseFrame {
            code: 4000,
            reason: Utf8Bytes::from(code.as_str()),
        }),
    )
    .await;
}

/// Ends a session with the closing handshake: sends Close, then reads and
/// drops what the client still sends until its Close (at most
/// [`CLOSE_HANDSHAKE_WAIT`]). Dropping the socket at once would close it
/// with the client's unread messages (a ping, a pong) in its receive
/// queue, which resets the connection — and a reset can discard what was
/// sent just before it, the `leave` among it.
async fn close(socket: &mut WebSocket, frame: Option<CloseFrame>) {
    if socket.send(Message::Close(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Counts an open signalling connection in
/// [`ServerMetrics::signalling_connections`]
/// for as long as it lives.
struct OpenConnection(Arc<ServerMetrics>);

impl OpenConnection {
    fn count(metrics: Arc<ServerMetrics>) -> Self {
        metrics.signalling_connections.inc();
        OpenConnection(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.signalling_connections.dec();
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// [`unix_now_ms`] as the database stores times.
pub fn unix_now_ms_i64() -> i64 {
    i64::try_from(unix_now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_probes_own_pong_gives_a_round_trip() {
        let probe = RoundTripProbe {
            nonce: 7u64.to_be_bytes(),
            sent_at: Instant::now(),
        };
        assert!(probe.answered(&7u64.to_be_bytes()).is_some());
        assert_eq!(probe.answered(&8u64.to_be_bytes()), None);
        assert_eq!(probe.answered(b""), None, "an unsolicited heartbeat pong");
    }
}
