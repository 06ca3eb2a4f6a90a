//! Room administration: list and inspect live rooms, close them, kick
//! participants, change grants live, mute tracks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::{Grant, TrackKind, TrackSource};
use weir_sfu::AdminError;

use super::{Admin, ApiError, ApiErrorBody, ApiErrorCode, JsonBody};
use crate::serve::room_task::{AdminAction, AdminOutcome, RoomDescription, RoomSettings};
use crate::serve::rooms::{OpenRefused, RoomKey};
use crate::serve::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, close_room))
        .routes(routes!(kick_participant))
        .routes(routes!(update_participant))
        .routes(routes!(mute_track))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackView {
    pub track_id: String,
    #[schema(value_type = String, example = "video")]
    pub kind: TrackKind,
    #[schema(value_type = String, example = "camera")]
    pub source: TrackSource,
    pub muted: bool,
    pub codec: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantView {
    pub participant_id: String,
    pub user_id: String,
    /// Milliseconds since the Unix epoch.
    pub joined_at: u64,
    pub tracks: Vec<TrackView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub room_id: String,
    /// Milliseconds since the Unix epoch when the room opened.
    pub since: u64,
    pub participants: Vec<ParticipantView>,
    /// The most participants the room admits.
    pub max_participants: u32,
    /// How long the room stays open while empty.
    pub empty_timeout_seconds: u64,
    /// What the application attached when it pre-created the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// The recording job in progress, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RoomRecordingView>,
}

/// Which streams of a room are being recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomRecordingView {
    pub job_id: String,
    /// The publishers being recorded.
    pub user_ids: Vec<String>,
}

/// Longest `metadata` of a pre-created room, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Largest `max_participants` of a pre-created room.
pub const MAX_PARTICIPANTS_LIMIT: u32 = 10_000;
/// Longest `empty_timeout_seconds` of a pre-created room: one day.
pub const MAX_EMPTY_TIMEOUT_SECONDS: u64 = 86_400;

/// A room to open before anyone joins, with its own limits.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomRequest {
    /// 1–128 letters, digits or `-_.@`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9._@-]{1,128}$"
    )]
    pub room_id: String,
    /// 1–10000; default the server's `rooms.max_participants`.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "super::whole_number::option_u32")]
    pub max_participants: Option<u32>,
    /// 1–86400; default the server's `rooms.empty_timeout_seconds`. The
    /// room closes when it has been empty this long (counted from its
    /// creation until someone joins).
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(default, deserialize_with = "super::whole_number::option_u64")]
    pub empty_timeout_seconds: Option<u64>,
    /// Any JSON, at most 4096 bytes; shown with the room.
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantUpdate {
    /// The participant's new grants: any of `publish`, `subscribe`, `data`.
    #[schema(value_type = Vec<super::GrantName>, example = json!(["subscribe"]))]
    pub grants: Vec<Grant>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantGrants {
    pub user_id: String,
    #[schema(value_type = Vec<String>)]
    pub grants: Vec<Grant>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    /// `true` to mute (default), `false` to unmute.
    #[serde(default = "yes")]
    pub muted: bool,
}

fn yes() -> bool {
    true
}

fn view(description: RoomDescription) -> RoomView {
    RoomView {
        room_id: description.room,
        since: description.created_at_ms,
        max_participants: description.settings.max_participants,
        empty_timeout_seconds: description.settings.empty_timeout.as_secs(),
        metadata: description.settings.metadata,
        recording: description
            .recording
            .map(|(job_id, user_ids)| RoomRecordingView { job_id, user_ids }),
        participants: description
            .participants
            .into_iter()
            .map(|p| ParticipantView {
                participant_id: p.participant_id.to_string(),
                user_id: p.user_id,
                joined_at: p.joined_at_ms,
                tracks: p
                    .tracks
                    .into_iter()
                    .map(|t| TrackView {
                        track_id: t.track_id.to_string(),
                        kind: t.kind,
                        source: t.source,
                        muted: t.muted,
                        codec: t.codec,
                    })
                    .collect(),
            })
            .collect(),
    }
}

async fn known_app(state: &AppState, app_id: &str) -> Result<(), ApiError> {
    match state.app_keys.get(app_id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ApiError::not_found(
            ApiErrorCode::AppNotFound,
            format!("no application `{app_id}`"),
        )),
        Err(e) => Err(ApiError::from_store(e)),
    }
}

async fn run(
    state: &AppState,
    key: &RoomKey,
    action: AdminAction,
) -> Result<AdminOutcome, ApiError> {
    match state.rooms.admin(key, action).await {
        None => Err(ApiError::not_found(
            ApiErrorCode::RoomNotFound,
            format!("no live room `{}`", key.room),
        )),
        Some(Err(AdminError::NoSuchParticipant(user))) => Err(ApiError::not_found(
            ApiErrorCode::ParticipantNotFound,
            format!("no participant `{user}` in room `{}`", key.room),
        )),
        Some(Err(AdminError::NoSuchTrack(track))) => Err(ApiError::not_found(
            ApiErrorCode::TrackNotFound,
            format!("no track `{track}` in room `{}`", key.room),
        )),
        Some(Ok(outcome)) => Ok(outcome),
    }
}

async fn describe(state: &AppState, key: &RoomKey) -> Result<RoomView, ApiError> {
    match run(state, key, AdminAction::Describe).await? {
        AdminOutcome::Description(d) => Ok(view(d)),
        AdminOutcome::Done | AdminOutcome::Refused(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            "the room did not describe itself",
        )),
    }
}

/// The application's live rooms.
#[utoipa::path(get, path = "/apps/{app_id}/rooms", tag = "rooms",
    params(("app_id" = String, Path, description = "The application")),
    responses(
        (status = 200, body = RoomList),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn list_rooms(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<RoomList>, ApiError> {
    known_app(&state, &app_id).await?;
    let mut rooms = Vec::new();
    for key in state.rooms.rooms_of_app(&app_id) {
        // A room may close between listing and describing: skip it.
        if let Ok(room) = describe(&state, &key).await {
            rooms.push(room);
        }
    }
    Ok(Json(RoomList { rooms }))
}

/// Pre-creates a room with its own participant limit, empty timeout and
/// metadata. The room opens at once; joins then find it.
#[utoipa::path(post, path = "/apps/{app_id}/rooms", tag = "rooms",
    params(("app_id" = String, Path, description = "The application")),
    request_body = CreateRoomRequest,
    responses(
        (status = 201, body = RoomView),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
        (status = 409, description = "ROOM_EXISTS or APP_DISABLED", body = ApiErrorBody),
        (status = 503, description = "UNAVAILABLE: the server is shutting down", body = ApiErrorBody),
    ))]
async fn create_room(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(request): JsonBody<CreateRoomRequest>,
) -> Result<(StatusCode, Json<RoomView>), ApiError> {
    let app = state
        .app_keys
        .get(&app_id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| {
            ApiError::not_found(
                ApiErrorCode::AppNotFound,
                format!("no application `{app_id}`"),
            )
        })?;
    if !app.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ApiErrorCode::AppDisabled,
            format!("application `{app_id}` is disabled"),
        ));
    }
    if !crate::token::is_valid_name(&request.room_id) {
        return Err(ApiError::invalid(
            "invalid room_id: use 1-128 letters, digits or -_.@",
        ));
    }
    let defaults = &state.room_factory.default_settings;
    let max_participants = request
        .max_participants
        .unwrap_or(defaults.max_participants);
    if !(1..=MAX_PARTICIPANTS_LIMIT).contains(&max_participants) {
        return Err(ApiError::invalid(format!(
            "invalid max_participants: must be 1 to {MAX_PARTICIPANTS_LIMIT}"
        )));
    }
    let empty_timeout = match request.empty_timeout_seconds {
        Some(seconds) if (1..=MAX_EMPTY_TIMEOUT_SECONDS).contains(&seconds) => {
            std::time::Duration::from_secs(seconds)
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "invalid empty_timeout_seconds: must be 1 to {MAX_EMPTY_TIMEOUT_SECONDS}"
            )))
        }
        None => defaults.empty_timeout,
    };
    if let Some(metadata) = &request.metadata {
        let size = serde_json::to_vec(metadata).map(|v| v.len()).unwrap_or(0);
        if size > MAX_METADATA_BYTES {
            return Err(ApiError::invalid(format!(
                "invalid metadata: {size} bytes of JSON, at most {MAX_METADATA_BYTES}"
            )));
        }
    }
    let key = RoomKey::new(app_id, request.room_id);
    let settings = RoomSettings {
        max_participants,
        empty_timeout,
        metadata: request.metadata,
    };
    match state.rooms.create(&key, &state.room_factory, settings) {
        Ok(()) => {}
        Err(OpenRefused::Exists) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ApiErrorCode::RoomExists,
                format!("room `{}` is already open", key.room),
            ))
        }
        Err(OpenRefused::Closed) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiErrorCode::Unavailable,
                "the server is shutting down".to_string(),
            ))
        }
    }
    Ok((StatusCode::CREATED, Json(describe(&state, &key).await?)))
}

/// One live room: participants, their tracks, and since when it is open.
#[utoipa::path(get, path = "/apps/{app_id}/rooms/{room_id}", tag = "rooms",
    params(("app_id" = String, Path), ("room_id" = String, Path)),
    responses(
        (status = 200, body = RoomView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND or ROOM_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn get_room(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, room_id)): Path<(String, String)>,
) -> Result<Json<RoomView>, ApiError> {
    known_app(&state, &app_id).await?;
    Ok(Json(
        describe(&state, &RoomKey::new(app_id, room_id)).await?,
    ))
}

/// Closes a room: every participant is told (`leave {reason: room_closed}`) and disconnected.
#[utoipa::path(delete, path = "/apps/{app_id}/rooms/{room_id}", tag = "rooms",
    params(("app_id" = String, Path), ("room_id" = String, Path)),
    responses(
        (status = 204, description = "Closed"),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND or ROOM_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn close_room(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, room_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    known_app(&state, &app_id).await?;
    run(&state, &RoomKey::new(app_id, room_id), AdminAction::Close).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes a participant (every session of the user) from the room.
#[utoipa::path(post, path = "/apps/{app_id}/rooms/{room_id}/participants/{user_id}/kick", tag = "rooms",
    params(("app_id" = String, Path), ("room_id" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND, ROOM_NOT_FOUND or PARTICIPANT_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn kick_participant(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, room_id, user_id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    known_app(&state, &app_id).await?;
    run(
        &state,
        &RoomKey::new(app_id, room_id),
        AdminAction::Kick { user_id },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Changes a participant's grants live: without `publish` its tracks are
/// unpublished at once; without `subscribe` its subscriptions end.
#[utoipa::path(patch, path = "/apps/{app_id}/rooms/{room_id}/participants/{user_id}", tag = "rooms",
    params(("app_id" = String, Path), ("room_id" = String, Path), ("user_id" = String, Path)),
    request_body = ParticipantUpdate,
    responses(
        (status = 200, body = ParticipantGrants),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND, ROOM_NOT_FOUND or PARTICIPANT_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn update_participant(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, room_id, user_id)): Path<(String, String, String)>,
    body: Result<Json<ParticipantUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ParticipantGrants>, ApiError> {
    known_app(&state, &app_id).await?;
    let Json(update) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let mut grants = update.grants;
    grants.sort_by_key(|g| g.as_str());
    grants.dedup();
    run(
        &state,
        &RoomKey::new(app_id, room_id),
        AdminAction::UpdateGrants {
            user_id: user_id.clone(),
            grants: grants.clone(),
        },
    )
    .await?;
    Ok(Json(ParticipantGrants { user_id, grants }))
}

/// Mutes (or unmutes) a track from the server side: forwarding pauses and
/// every participant is told.
#[utoipa::path(post, path = "/apps/{app_id}/rooms/{room_id}/tracks/{track_id}/mute", tag = "rooms",
    params(("app_id" = String, Path), ("room_id" = String, Path), ("track_id" = String, Path)),
    request_body(content = MuteRequest, description = "Optional; muted defaults to true"),
    responses(
        (status = 204, description = "Done"),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND, ROOM_NOT_FOUND or TRACK_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn mute_track(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, room_id, track_id)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    known_app(&state, &app_id).await?;
    let request: MuteRequest = if body.iter().all(u8::is_ascii_whitespace) {
        MuteRequest { muted: true }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("bad body: {e}")))?
    };
    run(
        &state,
        &RoomKey::new(app_id, room_id),
        AdminAction::MuteTrack {
            track_id,
            muted: request.muted,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
