//! The REST API under `/api/v1` (issue 3, in progress): JSON in and out,
//! `Authorization: Bearer <admin key>`, errors as
//! `{"error": {"code", "message"}}`, and the OpenAPI 3.1 document at
//! `/api/v1/openapi.json`, generated from the handlers themselves so it
//! cannot drift from them.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;

mod callbacks;
mod rooms;
mod tokens;

/// Machine-readable API error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiErrorCode {
    Unauthorized,
    InvalidArgument,
    AppNotFound,
    AppDisabled,
    AppNotDisabled,
    CallbacksNotConfigured,
    RoomNotFound,
    ParticipantNotFound,
    TrackNotFound,
    /// The database (or another dependency) is not answering; retry later.
    Unavailable,
    Internal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorDetail {
    pub code: ApiErrorCode,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

/// An error answered to an API caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ApiErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: ApiErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ApiErrorCode::InvalidArgument,
            message,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorCode::Unavailable,
            message,
        )
    }

    /// The answer to a failed store operation; database failures are
    /// logged and answered without their details.
    pub fn from_store(error: weir_store::StoreError) -> Self {
        use weir_store::StoreError;
        match error {
            StoreError::NotFound { app_id } => ApiError::not_found(
                ApiErrorCode::AppNotFound,
                format!("no application `{app_id}`"),
            ),
            StoreError::Invalid { field, reason } => {
                ApiError::invalid(format!("invalid {field}: {reason}"))
            }
            StoreError::AppNotDisabled { app_id } => ApiError::new(
                StatusCode::CONFLICT,
                ApiErrorCode::AppNotDisabled,
                format!("application `{app_id}` is enabled: disable it before deleting it"),
            ),
            StoreError::Database(e) => {
                tracing::error!(error = %e, "database operation failed");
                ApiError::unavailable("the database is unavailable")
            }
            other => {
                tracing::error!(error = %other, "store operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ApiErrorCode::Internal,
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody {
            error: ApiErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Proof that the request carried the admin key.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        let verified = match presented {
            Some(key) => state.store.verify_admin_key(key).await.map_err(|e| {
                tracing::error!(error = %e, "admin key check failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ApiErrorCode::Internal,
                    "the admin key could not be checked",
                )
            })?,
            None => false,
        };
        match presented {
            Some(_) if verified => Ok(Admin),
            Some(_) => {
                state.metrics.http_requests_rejected.inc();
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ApiErrorCode::Unauthorized,
                    "the admin key is not valid",
                ))
            }
            None => {
                state.metrics.http_requests_rejected.inc();
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ApiErrorCode::Unauthorized,
                    "missing `Authorization: Bearer <admin key>`",
                ))
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Weir control plane", description = "Rooms, applications, tokens and callbacks of a Weir server."),
    modifiers(&AdminKeyScheme),
    security(("admin_key" = [])),
    components(schemas(ApiErrorBody, ApiErrorDetail, ApiErrorCode))
)]
struct ApiDoc;

struct AdminKeyScheme;

impl Modify for AdminKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "admin_key",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The API routes and their OpenAPI document.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            rooms::routes()
                .merge(tokens::routes())
                .merge(callbacks::routes()),
        )
        .split_for_parts()
}

/// `GET /api/v1/openapi.json`
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.as_str().to_string(),
    )
        .into_response()
}
