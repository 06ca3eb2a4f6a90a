//! The HTTP edge: health, the join page, the dev token, and routing to the
//! signalling and WHIP/WHEP handlers.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use weir_protocol::{ErrorCode, Grant, Health, HttpError, HttpErrorBody};

use super::ws::unix_now;
use super::{whip, ws, AppState};

pub fn router(state: AppState, api: Router<AppState>) -> Router {
    let counted = axum::middleware::from_fn_with_state(state.clone(), count_api_outcomes);
    Router::new()
        .merge(api.layer(counted))
        .route("/api/v1/openapi.json", get(super::api::openapi_json))
        .route("/", get(index))
        .route("/static/app.js", get(app_js))
        .route("/static/style.css", get(style_css))
        .route("/healthz", get(healthz))
        .route("/dev/token", get(dev_token))
        .route("/dev/status", get(dev_status))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/rtc/v1", get(ws::upgrade))
        .route("/whip/v1/rooms/{room}", post(whip::whip_post))
        .route(
            "/whip/v1/rooms/{room}/sessions/{session}",
            axum::routing::delete(whip::delete_session).patch(whip::patch_session),
        )
        .route("/whep/v1/rooms/{room}", post(whip::whep_post))
        .route(
            "/whep/v1/rooms/{room}/participants/{user_id}",
            post(whip::whep_post_participant),
        )
        .route(
            "/whep/v1/rooms/{room}/sessions/{session}",
            axum::routing::delete(whip::delete_session).patch(whip::patch_session),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(whip::MAX_SDP_BYTES + 1))
        .with_state(state)
}

/// Counts the REST API's refusals (4xx) and failures (5xx).
async fn count_api_outcomes(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() {
        state.metrics.api_requests_refused.inc();
    } else if status.is_server_error() {
        state.metrics.api_requests_failed.inc();
    }
    response
}

pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        Json(HttpErrorBody {
            error: HttpError {
                code,
                message: message.to_string(),
            },
        }),
    )
        .into_response()
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint",
    )
}

async fn index() -> Html<&'static str> {
    Html(include_str!("../../static/index.html"))
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    // With the heap profiler on, each health check logs the live heap (to
    // tell memory still held from memory the allocator keeps).
    #[cfg(feature = "dhat-heap")]
    {
        let heap = dhat::HeapStats::get();
        tracing::info!(
            live_bytes = heap.curr_bytes,
            live_blocks = heap.curr_blocks,
            "heap"
        );
    }
    Json(Health {
        status: if state.shutting_down() {
            "shutting_down"
        } else {
            "ok"
        }
        .to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: state.started.elapsed().as_secs(),
        rooms: state.rooms.room_count() as u64,
        participants: state.metrics.participants.get().max(0) as u64,
        forwarding_latency: state.metrics.forwarding_latency.summary(),
    })
}

/// Whether the join page may mint tokens (`serve --dev`).
async fn dev_status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "enabled": state.config.dev }))
}

#[derive(Debug, Deserialize)]
struct DevTokenQuery {
    room: String,
    user: String,
}

/// Only with `serve --dev`: mints a token with every grant for the default
/// application, so a human can try the join page without the CLI.
async fn dev_token(State(state): State<AppState>, Query(query): Query<DevTokenQuery>) -> Response {
    if !state.config.dev {
        return not_found().await;
    }
    let key = match state.store.default_app().await {
        Ok(Some(app)) => state.app_keys.get(&app.app_id).await,
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let key = match key {
        Ok(Some(key)) => key,
        Ok(None) => {
            return error_response(
                StatusCode::CONFLICT,
                ErrorCode::UnknownApp,
                "no application",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the default application failed");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                "the application store is unavailable",
            );
        }
    };
    match crate::token::mint(
        &key,
        &query.room,
        &query.user,
        &Grant::ALL,
        Duration::from_secs(6 * 3600),
        unix_now(),
    ) {
        Ok(token) => Json(serde_json::json!({ "token": token })).into_response(),
        Err(e) => error_response(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    }
}
