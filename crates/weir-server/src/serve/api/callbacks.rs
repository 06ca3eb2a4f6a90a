//! An application's callback configuration (where its signed event
//! callbacks go, with which key, for which events) and the record of their
//! deliveries, with a retry for those given up on.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_store::{CallbackConfig, OutboxEvent, OutboxStatus, RetryOutcome};

use super::{Admin, ApiError, ApiErrorBody, ApiErrorCode};
use crate::callbacks::EventType;
use crate::serve::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_callbacks, put_callbacks))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbacksRequest {
    /// `http://` or `https://` with a host, at most 2083 characters, no
    /// spaces or control characters.
    #[schema(
        min_length = 8,
        max_length = 2083,
        pattern = r"^https?://[^\s\u0000-\u001F\u007F-\u009F/?#:][^\s\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub url: String,
    /// The HMAC-SHA256 key: 32–64 letters and digits.
    #[schema(pattern = r"^[A-Za-z0-9]{32,64}$")]
    pub key: String,
    /// Event types to send (default: all): ROOM_CREATED, ROOM_DISSOLVED,
    /// PARTICIPANT_JOINED, PARTICIPANT_LEFT, TRACK_PUBLISHED, TRACK_UNPUBLISHED.
    #[serde(default)]
    #[schema(value_type = Option<Vec<EventType>>)]
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbacksView {
    pub url: String,
    pub key: String,
    /// The event types sent.
    pub events: Vec<String>,
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
        .map_err(ApiError::from_store)?
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
        .map_err(ApiError::from_store)?;
    Ok(Json(view(saved)))
}

/// Where a callback event's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not delivered yet: waiting for its (next) attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up on: retried for the configured window without a 2xx, or
    /// the application has no callback configuration any more.
    Failed,
}

impl From<OutboxStatus> for DeliveryStatus {
    fn from(status: OutboxStatus) -> Self {
        match status {
            OutboxStatus::Pending => DeliveryStatus::Pending,
            OutboxStatus::Delivered => DeliveryStatus::Delivered,
            OutboxStatus::Failed => DeliveryStatus::Failed,
        }
    }
}

impl From<DeliveryStatus> for OutboxStatus {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => OutboxStatus::Pending,
            DeliveryStatus::Delivered => OutboxStatus::Delivered,
            DeliveryStatus::Failed => OutboxStatus::Failed,
        }
    }
}

/// The listing's filter and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only events with this status (default: all).
    pub status: Option<DeliveryStatus>,
    /// 1-based (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
}

/// One callback event and the state of its delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Stable across retries: receivers deduplicate on it.
    pub event_id: String,
    /// ROOM_CREATED, PARTICIPANT_JOINED, ...
    pub event_type: String,
    pub room_id: String,
    pub status: DeliveryStatus,
    /// Attempts made (since the last retry through the API).
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The receiver's HTTP status in the last attempt, if it answered.
    pub last_status_code: Option<u16>,
    /// Milliseconds since the Unix epoch when the event happened.
    pub created_at_ms: i64,
    /// Milliseconds since the Unix epoch, once delivered.
    pub delivered_at_ms: Option<i64>,
    /// Milliseconds since the Unix epoch, while pending: when the next
    /// attempt may start.
    pub next_attempt_at_ms: Option<i64>,
}

/// One page of an application's callback events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
    /// Matching events over all pages.
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

/// Listing page size when the request names none.
const DEFAULT_PAGE_SIZE: u32 = 20;

fn delivery_view(event: OutboxEvent) -> DeliveryView {
    DeliveryView {
        event_id: event.event_id,
        event_type: event.event_type,
        room_id: event.room_id,
        status: event.status.into(),
        attempts: event.attempts,
        last_error: event.last_error,
        last_status_code: event.last_status_code,
        created_at_ms: event.created_at_ms,
        delivered_at_ms: event.delivered_at_ms,
        next_attempt_at_ms: event.next_attempt_at_ms,
    }
}

/// The application's callback events and their deliveries, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/callbacks/deliveries", tag = "callbacks",
    params(("app_id" = String, Path), DeliveriesQuery),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn list_deliveries(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let page = state
        .store
        .list_outbox_events(
            &app_id,
            query.status.map(OutboxStatus::from),
            query.page.unwrap_or(1),
            query.page_size.unwrap_or(DEFAULT_PAGE_SIZE),
        )
        .await
        .map_err(ApiError::from_store)?;
    Ok(Json(DeliveryList {
        deliveries: page.items.into_iter().map(delivery_view).collect(),
        total: page.total,
        page: page.page,
        page_size: page.page_size,
    }))
}

/// Sends a failed callback event again: it becomes pending, due at once,
/// with a fresh retry window. It is again the oldest pending event of its
/// room, so later events of that room wait for it.
#[utoipa::path(post, path = "/apps/{app_id}/callbacks/deliveries/{event_id}/retry",
    tag = "callbacks",
    params(("app_id" = String, Path), ("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event, pending again", body = DeliveryView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND or EVENT_NOT_FOUND", body = ApiErrorBody),
        (status = 409, description = "EVENT_NOT_FAILED", body = ApiErrorBody),
    ))]
async fn retry_delivery(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, event_id)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, ApiError> {
    match state
        .events
        .retry_failed(&app_id, &event_id)
        .await
        .map_err(ApiError::from_store)?
    {
        RetryOutcome::Retried(event) => Ok(Json(delivery_view(*event))),
        RetryOutcome::NotFound => Err(ApiError::not_found(
            ApiErrorCode::EventNotFound,
            format!("application `{app_id}` has no callback event `{event_id}`"),
        )),
        RetryOutcome::NotFailed(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ApiErrorCode::EventNotFailed,
            format!("callback event `{event_id}` is {status}: only failed events are retried"),
        )),
    }
}
