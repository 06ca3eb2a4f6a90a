//! An application's callback configuration: where its signed event
//! callbacks go, with which key, for which events.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_store::{CallbackConfig, StoreError};

use super::{Admin, ApiError, ApiErrorBody, ApiErrorCode};
use crate::callbacks::EventType;
use crate::serve::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_callbacks, put_callbacks))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbacksRequest {
    /// `http://` or `https://`, at most 2083 characters.
    pub url: String,
    /// The HMAC-SHA256 key: 32–64 letters and digits.
    pub key: String,
    /// Event types to send (default: all): ROOM_CREATED, ROOM_DISSOLVED,
    /// PARTICIPANT_JOINED, PARTICIPANT_LEFT, TRACK_PUBLISHED, TRACK_UNPUBLISHED.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbacksView {
    pub url: String,
    pub key: String,
    /// The event types sent.
    pub events: Vec<String>,
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound { app_id } => ApiError::not_found(
            ApiErrorCode::AppNotFound,
            format!("no application `{app_id}`"),
        ),
        StoreError::Invalid { field, reason } => {
            ApiError::invalid(format!("invalid {field}: {reason}"))
        }
        other => {
            tracing::error!(error = %other, "callback configuration failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiErrorCode::Internal,
                "database error",
            )
        }
    }
}

fn view(config: CallbackConfig) -> CallbacksView {
    let events = if config.events.is_empty() {
        EventType::ALL
            .iter()
            .map(|e| e.as_str().to_string())
            .collect()
    } else {
        config.events
    };
    CallbacksView {
        url: config.url,
        key: config.key,
        events,
    }
}

/// The application's callback configuration.
#[utoipa::path(get, path = "/apps/{app_id}/callbacks", tag = "callbacks",
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = CallbacksView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND or CALLBACKS_NOT_CONFIGURED", body = ApiErrorBody),
    ))]
async fn get_callbacks(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<CallbacksView>, ApiError> {
    match state
        .store
        .callback_config(&app_id)
        .await
        .map_err(store_error)?
    {
        Some(config) => Ok(Json(view(config))),
        None => Err(ApiError::not_found(
            ApiErrorCode::CallbacksNotConfigured,
            format!("application `{app_id}` has no callback configuration"),
        )),
    }
}

/// Sets (replaces) the application's callback configuration.
#[utoipa::path(put, path = "/apps/{app_id}/callbacks", tag = "callbacks",
    params(("app_id" = String, Path)),
    request_body = CallbacksRequest,
    responses(
        (status = 200, body = CallbacksView),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn put_callbacks(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    body: Result<Json<CallbacksRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CallbacksView>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let mut events = Vec::new();
    for name in request.events.unwrap_or_default() {
        let Some(event) = EventType::parse(&name) else {
            return Err(ApiError::invalid(format!("unknown event type `{name}`")));
        };
        if !events.contains(&event.as_str().to_string()) {
            events.push(event.as_str().to_string());
        }
    }
    let config = CallbackConfig {
        url: request.url,
        key: request.key,
        events,
    };
    let saved = state
        .store
        .set_callback_config(&app_id, config)
        .await
        .map_err(store_error)?;
    Ok(Json(view(saved)))
}
