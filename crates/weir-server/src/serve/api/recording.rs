//! An application's recording rule (what is recorded, how files are cut
//! and merged, where they are stored) and the check that its storage
//! target is writable.
//!
//! The S3 secret is write-only: answers carry `********` in its place, and
//! a rule or storage section that sends `********` back keeps the stored
//! secret (of the same access key).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, ApiError, ApiErrorBody, ApiErrorCode, JsonBody};
use crate::recording::{RecordingRule, RecordingStorage, StorageOptions, StorageTarget};
use crate::serve::AppState;

/// Longest the storage check may take.
const STORAGE_TEST_TIMEOUT: Duration = Duration::from_secs(15);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_recording_rule, put_recording_rule))
        .routes(routes!(test_storage))
}

/// The outcome of a storage check.
#[derive(Debug, Serialize, ToSchema)]
pub struct StorageTestResult {
    /// The target took a small object, gave it back and deleted it.
    pub ok: bool,
    /// Why not (never contains the secret key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn no_rule(app_id: &str) -> ApiError {
    ApiError::not_found(
        ApiErrorCode::RecordingRuleNotConfigured,
        format!("application `{app_id}` has no recording rule"),
    )
}

/// The application's stored rule, if any. `APP_NOT_FOUND` for an unknown
/// application.
async fn stored_rule(state: &AppState, app_id: &str) -> Result<Option<RecordingRule>, ApiError> {
    let Some(stored) = state
        .store
        .recording_rule(app_id)
        .await
        .map_err(ApiError::from_store)?
    else {
        return Ok(None);
    };
    match serde_json::from_str(&stored.rule) {
        Ok(rule) => Ok(Some(rule)),
        Err(e) => {
            // The error names a position, never the content (credentials).
            tracing::error!(app_id, error = %e, "unreadable recording rule in the database");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiErrorCode::Internal,
                "the stored recording rule cannot be read",
            ))
        }
    }
}

/// The application's recording rule (the S3 secret masked).
#[utoipa::path(get, path = "/apps/{app_id}/recording-rule", tag = "recording",
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = RecordingRule),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND or RECORDING_RULE_NOT_CONFIGURED", body = ApiErrorBody),
    ))]
async fn get_recording_rule(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<RecordingRule>, ApiError> {
    match stored_rule(&state, &app_id).await? {
        Some(rule) => Ok(Json(rule.masked())),
        None => Err(no_rule(&app_id)),
    }
}

/// Sets (replaces) the application's recording rule; left-out sections
/// and fields get their defaults, which the answer shows.
#[utoipa::path(put, path = "/apps/{app_id}/recording-rule", tag = "recording",
    params(("app_id" = String, Path)),
    request_body = RecordingRule,
    responses(
        (status = 200, description = "The rule as stored (the S3 secret masked)", body = RecordingRule),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn put_recording_rule(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(mut rule): JsonBody<RecordingRule>,
) -> Result<Json<RecordingRule>, ApiError> {
    rule.validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if is_masked(&rule.storage) {
        let stored = stored_rule(&state, &app_id).await?;
        rule.storage
            .keep_stored_secret(stored.as_ref().map(|r| &r.storage))
            .map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let json = serde_json::to_string(&rule).map_err(|e| {
        tracing::error!(error = %e, "cannot serialize a recording rule");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            "internal error",
        )
    })?;
    state
        .store
        .set_recording_rule(&app_id, &json)
        .await
        .map_err(ApiError::from_store)?;
    Ok(Json(rule.masked()))
}

fn is_masked(storage: &StorageTarget) -> bool {
    matches!(storage, StorageTarget::S3(s3) if s3.secret_key.is_mask())
}

/// Checks that a storage target is writable: writes a small object under
/// `.weir-storage-test/`, reads it back and deletes it (a local directory
/// that did not exist is removed again). The body is a storage section;
/// without a body, the application's rule's storage is checked.
#[utoipa::path(post, path = "/apps/{app_id}/storage/test", tag = "recording",
    params(("app_id" = String, Path)),
    request_body(content = Option<StorageTarget>, content_type = "application/json",
        description = "The storage section to check (default: the rule's)"),
    responses(
        (status = 200, description = "Whether the target is writable", body = StorageTestResult),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND, or RECORDING_RULE_NOT_CONFIGURED without a body", body = ApiErrorBody),
        (status = 413, description = "BODY_TOO_LARGE", body = ApiErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ApiErrorBody),
    ))]
async fn test_storage(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StorageTestResult>, ApiError> {
    let body = body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiErrorCode::BodyTooLarge
        } else {
            ApiErrorCode::InvalidArgument
        };
        let status = if code == ApiErrorCode::BodyTooLarge {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    let requested = parse_storage(&headers, &body)?;
    // The stored rule: the default target, and the secret a mask keeps.
    let stored = stored_rule(&state, &app_id).await?;
    let target = match requested {
        Some(mut target) => {
            target
                .validate()
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            target
                .keep_stored_secret(stored.as_ref().map(|r| &r.storage))
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            target
        }
        None => stored.ok_or_else(|| no_rule(&app_id))?.storage,
    };
    let outcome = check(&target, &state.config.data_dir).await;
    if let Err(error) = &outcome {
        tracing::info!(app_id, %error, "storage check failed");
    }
    Ok(Json(StorageTestResult {
        ok: outcome.is_ok(),
        error: outcome.err(),
    }))
}

/// The storage section of the body (JSON only), if it has one.
pub(super) fn parse_storage(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<StorageTarget>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorCode::UnsupportedMediaType,
            "expected `Content-Type: application/json`",
        ));
    }
    // `null` is no section, as no body.
    serde_json::from_slice::<Option<StorageTarget>>(body)
        .map_err(|e| ApiError::invalid(format!("invalid storage section: {e}")))
}

async fn check(target: &StorageTarget, data_dir: &std::path::Path) -> Result<(), String> {
    let storage = RecordingStorage::open_with(target, data_dir, StorageOptions::quick())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(STORAGE_TEST_TIMEOUT, storage.check_writable()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            STORAGE_TEST_TIMEOUT.as_secs()
        )),
    }
}
