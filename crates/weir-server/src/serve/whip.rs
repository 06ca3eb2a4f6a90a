//! WHIP ingest (RFC 9725) and WHEP egress over plain HTTP.
//!
//! `POST /whip/v1/rooms/{room}`: publish; `POST /whep/v1/rooms/{room}` (the
//! room's first publisher) or `/whep/v1/rooms/{room}/participants/{user}`:
//! subscribe. Both answer `201 Created` with the SDP answer and a
//! `Location` of the session, which `DELETE` ends.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use weir_protocol::{ErrorCode, LeaveReason};
use weir_sfu::{JoinRequest, SessionKind};

use super::http::error_response;
use super::room_task::RoomCommand;
use super::rooms::{HttpSession, RoomKey};
use super::ws::{unix_now, unix_now_ms};
use super::AppState;

/// SDP offers larger than this are refused.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

pub async fn whip_post(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_session(state, room, headers, body, SessionKind::Whip, "whip").await
}

pub async fn whep_post(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_session(
        state,
        room,
        headers,
        body,
        SessionKind::Whep { publisher: None },
        "whep",
    )
    .await
}

pub async fn whep_post_participant(
    State(state): State<AppState>,
    Path((room, user_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = SessionKind::Whep {
        publisher: Some(user_id),
    };
    create_session(state, room, headers, body, kind, "whep").await
}

pub async fn delete_session(
    State(state): State<AppState>,
    Path((_room, session_id)): Path<(String, String)>,
) -> Response {
    let Some(session) = state.rooms.http_session(&session_id) else {
        return error_response(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such session",
        );
    };
    state.rooms.forget_http_session(&session_id);
    state.rooms.send(
        &session.room,
        RoomCommand::Leave {
            key: session.key,
            reason: LeaveReason::ClientLeft,
        },
    );
    tracing::info!(room = %session.room, user = %session.user_id, "HTTP session deleted");
    StatusCode::OK.into_response()
}

/// Trickle ICE and ICE restarts over PATCH are not supported (the server is
/// ICE-lite and answers with complete candidates).
pub async fn patch_session() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        "trickle ICE is not supported: send a complete offer",
    )
}

async fn create_session(
    state: AppState,
    room: String,
    headers: HeaderMap,
    body: Bytes,
    kind: SessionKind,
    path_prefix: &str,
) -> Response {
    match create_session_inner(&state, &room, &headers, body, kind, path_prefix).await {
        Ok(response) => response,
        Err((status, code, message)) => {
            state.metrics.http_requests_rejected.inc();
            error_response(status, code, &message)
        }
    }
}

type Refusal = (StatusCode, ErrorCode, String);

fn shutting_down() -> Refusal {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerShuttingDown,
        "the server is shutting down".into(),
    )
}

async fn create_session_inner(
    state: &AppState,
    room: &str,
    headers: &HeaderMap,
    body: Bytes,
    kind: SessionKind,
    path_prefix: &str,
) -> Result<Response, Refusal> {
    if state.shutting_down() {
        return Err(shutting_down());
    }
    let token = bearer_token(headers).ok_or((
        StatusCode::UNAUTHORIZED,
        ErrorCode::TokenMissing,
        "missing `Authorization: Bearer <token>`".to_string(),
    ))?;
    let verified = state
        .app_keys
        .verify(token, Some(room), unix_now())
        .await
        .map_err(|e| {
            state.metrics.tokens_rejected.inc();
            let status = match e.code() {
                ErrorCode::AppDisabled
                | ErrorCode::TokenWrongRoom
                | ErrorCode::RoomPermissionRequired => StatusCode::FORBIDDEN,
                ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            (status, e.code(), e.to_string())
        })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/sdp")
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "Content-Type must be application/sdp".into(),
        ));
    }
    if body.len() > MAX_SDP_BYTES {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            format!("SDP offer larger than {MAX_SDP_BYTES} bytes"),
        ));
    }
    let offer = String::from_utf8(body.to_vec()).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            ErrorCode::SdpInvalid,
            "SDP is not UTF-8".to_string(),
        )
    })?;
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = JoinRequest {
        user_id: verified.user_id.clone(),
        grants: verified.grants.clone(),
        kind,
        auto_subscribe: false,
        offer: Some(offer),
        wall_clock_ms: unix_now_ms(),
    };
    let room_key = RoomKey::new(verified.app_id.clone(), room);
    let queued = state.rooms.send_creating(
        &room_key,
        &state.room_factory,
        RoomCommand::Join {
            request,
            signals: None,
            reply: reply_tx,
        },
    );
    if !queued {
        return Err(shutting_down());
    }
    let joined = match reply_rx.await {
        Ok(Ok(joined)) => joined,
        Ok(Err(e)) => {
            let status = match e.code() {
                ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::RoomFull => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            return Err((status, e.code(), e.to_string()));
        }
        Err(_) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                "the room closed".into(),
            ));
        }
    };
    let Some(answer) = joined.answer else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "no SDP answer".into(),
        ));
    };
    let session_id = joined.participant_id.to_string();
    state.rooms.insert_http_session(
        session_id.clone(),
        HttpSession {
            room: room_key,
            key: joined.key,
            user_id: verified.user_id,
        },
    );
    let location = format!("/{path_prefix}/v1/rooms/{room}/sessions/{session_id}");
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}
