//! The REST API under `/api/v1` (issue 3, in progress): JSON in and out,
//! `Authorization: Bearer <admin key>`, errors as
//! `{"error": {"code", "message"}}`, and the OpenAPI 3.1 document at
//! `/api/v1/openapi.json`, generated from the handlers themselves so it
//! cannot drift from them.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;

mod apps;
mod callbacks;
#[doc(hidden)]
pub mod fuzz_support;
mod recording;
mod recording_stats;
mod recordings;
mod rooms;
mod tokens;

/// Machine-readable API error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiErrorCode {
    Unauthorized,
    InvalidArgument,
    /// The request body is larger than the endpoint accepts.
    BodyTooLarge,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    AppNotFound,
    AppDisabled,
    AppNotDisabled,
    CallbacksNotConfigured,
    /// No callback event with this id (for this application).
    EventNotFound,
    /// Only failed callback events can be retried.
    EventNotFailed,
    RoomNotFound,
    /// A room with this id is already open.
    RoomExists,
    /// Another recording job records the room.
    RecordingActive,
    /// No recording job has this id.
    JobNotFound,
    /// The job is not recording a live room.
    JobNotActive,
    ParticipantNotFound,
    TrackNotFound,
    /// The application has no recording rule.
    RecordingRuleNotConfigured,
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
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read, so the connection cannot
            // carry another request: say so, or a client reuses it and its
            // next request fails.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// Serde helpers for optional whole numbers that a JSON client may also
/// spell with a zero fraction (`4767.0`, a valid JSON Schema integer).
pub mod whole_number {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    pub fn option_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
        option_u64(deserializer)?
            .map(|n| u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large"))))
            .transpose()
    }

    pub fn option_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if let Some(n) = number.as_u64() {
            return Ok(Some(n));
        }
        match number.as_f64() {
            // u64::MAX as f64 rounds up to 2^64, which does not fit.
            Some(f) if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) => {
                // In range and whole: the cast is exact.
                Ok(Some(f as u64))
            }
            _ => Err(D::Error::custom(format!(
                "expected a whole number of at least 0, got {number}"
            ))),
        }
    }
}

/// A participant's permission, as the API spells it: the schema of
/// `weir_protocol::Grant`, which the handlers use.
#[expect(
    dead_code,
    reason = "documents weir_protocol::Grant in the OpenAPI document; never built"
)]
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantName {
    Publish,
    Subscribe,
    Data,
}

/// A JSON request body whose rejections are API errors: 400
/// `INVALID_ARGUMENT` (not JSON, missing or mistyped fields, unknown fields
/// where the type refuses them), 413 `BODY_TOO_LARGE`, 415
/// `UNSUPPORTED_MEDIA_TYPE`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiErrorCode::BodyTooLarge,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiErrorCode::UnsupportedMediaType,
                    _ => ApiErrorCode::InvalidArgument,
                };
                let status = if code == ApiErrorCode::InvalidArgument {
                    StatusCode::BAD_REQUEST
                } else {
                    status
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
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
    components(schemas(ApiErrorBody, ApiErrorDetail, ApiErrorCode, GrantName))
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
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            apps::routes()
                .merge(rooms::routes())
                .merge(tokens::routes())
                .merge(callbacks::routes())
                .merge(recording::routes())
                .merge(recordings::routes())
                .merge(recording_stats::routes()),
        )
        .split_for_parts();
    document_body_errors(&mut openapi);
    (router, openapi)
}

/// Every operation that takes a JSON body can answer 400, 413 and 415
/// (see [`JsonBody`]), and every operation 401 and 503: documented here
/// once instead of on each handler.
fn document_body_errors(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description));
            };
            add("401", "UNAUTHORIZED: no or a wrong admin key");
            add("503", "UNAVAILABLE: the database is not answering");
            let has_query = operation.parameters.iter().flatten().any(|p| {
                matches!(p, utoipa::openapi::RefOr::T(p)
                    if matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query))
            });
            if has_query || operation.request_body.is_some() {
                add("400", "INVALID_ARGUMENT");
            }
            if operation.request_body.is_some() {
                add("413", "BODY_TOO_LARGE");
                add("415", "UNSUPPORTED_MEDIA_TYPE");
            }
        }
    }
}

/// `GET /api/v1/openapi.json`
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.as_str().to_string(),
    )
        .into_response()
}
