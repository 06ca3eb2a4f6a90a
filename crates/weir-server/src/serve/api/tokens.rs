//! Tokens over REST: mint a join token for an application, verify one.
//! Same rules as `weir token create|verify` and the join path.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::Grant;

use super::{Admin, ApiError, ApiErrorBody, ApiErrorCode};
use crate::serve::ws::unix_now;
use crate::serve::AppState;
use crate::token::{self, TokenError, VerifiedToken};

/// Default token lifetime: one day.
pub const DEFAULT_TTL_SECONDS: u64 = 24 * 3600;
/// Longest token lifetime: 180 days.
pub const MAX_TTL_SECONDS: u64 = 180 * 24 * 3600;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token))
        .routes(routes!(verify_token))
}

/// `anchor` may publish and subscribe; `audience` may only subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Anchor,
    Audience,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1–128 letters, digits or `-_.@`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9._@-]{1,128}$"
    )]
    pub user_id: String,
    /// A room name, or `*` for any room (refused when the application
    /// requires room permissions).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^(\*|[A-Za-z0-9._@-]{1,128})$"
    )]
    pub room_id: String,
    /// Default `anchor`.
    pub role: Option<Role>,
    /// Explicit grants (`publish`, `subscribe`, `data`); default from the role.
    /// An audience may only hold `subscribe`.
    #[schema(value_type = Option<Vec<super::GrantName>>, min_items = 1)]
    pub grants: Option<Vec<Grant>>,
    /// 1 to 15552000 (180 days); default 86400.
    #[schema(minimum = 1, maximum = 15552000)]
    #[serde(default, deserialize_with = "super::whole_number::option_u64")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenClaims {
    pub app_id: String,
    pub user_id: String,
    pub room: String,
    #[schema(value_type = Vec<super::GrantName>)]
    pub grants: Vec<Grant>,
    pub expires_at: u64,
}

/// `{valid: true, claims}` or `{valid: false, reason}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<TokenClaims>,
    /// One of `expired`, `bad_signature`, `unknown_app`, `app_disabled`, `malformed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub(super) fn grants_for(role: Role, grants: Option<Vec<Grant>>) -> Result<Vec<Grant>, ApiError> {
    let grants = match (role, grants) {
        (_, Some(grants)) if grants.is_empty() => {
            return Err(ApiError::invalid("`grants` must not be empty"));
        }
        (Role::Audience, Some(grants)) if grants.iter().any(|g| *g != Grant::Subscribe) => {
            return Err(ApiError::invalid("an audience may only subscribe"));
        }
        (_, Some(grants)) => grants,
        (Role::Anchor, None) => Grant::ALL.to_vec(),
        (Role::Audience, None) => vec![Grant::Subscribe],
    };
    Ok(grants)
}

/// Mints a join token for one of the application's users.
#[utoipa::path(post, path = "/apps/{app_id}/tokens", tag = "tokens",
    params(("app_id" = String, Path)),
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
        (status = 409, description = "APP_DISABLED", body = ApiErrorBody),
    ))]
async fn create_token(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Some(app) = state
        .app_keys
        .get(&app_id)
        .await
        .map_err(ApiError::from_store)?
    else {
        return Err(ApiError::not_found(
            ApiErrorCode::AppNotFound,
            format!("no application `{app_id}`"),
        ));
    };
    let Json(request) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let ttl = request.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if ttl == 0 || ttl > MAX_TTL_SECONDS {
        return Err(ApiError::invalid(format!(
            "`ttl_seconds` must be 1 to {MAX_TTL_SECONDS}"
        )));
    }
    let grants = grants_for(request.role.unwrap_or(Role::Anchor), request.grants)?;
    let now = unix_now();
    let token = token::mint(
        &app,
        &request.room_id,
        &request.user_id,
        &grants,
        Duration::from_secs(ttl),
        now,
    )
    .map_err(|e| match e {
        TokenError::AppDisabled(_) => ApiError::new(
            StatusCode::CONFLICT,
            ApiErrorCode::AppDisabled,
            e.to_string(),
        ),
        TokenError::InvalidName { .. }
        | TokenError::InvalidTtl(_)
        | TokenError::RoomPermissionRequired(_) => ApiError::invalid(e.to_string()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            other.to_string(),
        ),
    })?;
    Ok(Json(TokenResponse {
        token,
        expires_at: now + ttl,
    }))
}

fn reason(error: &TokenError) -> &'static str {
    match error {
        TokenError::Expired => "expired",
        TokenError::BadSignature => "bad_signature",
        TokenError::UnknownApp(_) => "unknown_app",
        TokenError::AppDisabled(_) => "app_disabled",
        _ => "malformed",
    }
}

/// Verifies a token: signature, application, expiry.
#[utoipa::path(post, path = "/tokens/verify", tag = "tokens",
    request_body = VerifyRequest,
    responses(
        (status = 200, body = VerifyResponse),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
    ))]
async fn verify_token(
    _: Admin,
    State(state): State<AppState>,
    body: Result<Json<VerifyRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let Json(request) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(Json(
        match state
            .app_keys
            .verify(&request.token, None, unix_now())
            .await
        {
            Ok(VerifiedToken {
                app_id,
                user_id,
                room,
                grants,
                expires_at,
            }) => VerifyResponse {
                valid: true,
                claims: Some(TokenClaims {
                    app_id,
                    user_id,
                    room,
                    grants,
                    expires_at,
                }),
                reason: None,
            },
            Err(TokenError::Unavailable(message)) => {
                return Err(ApiError::unavailable(message));
            }
            Err(error) => VerifyResponse {
                valid: false,
                claims: None,
                reason: Some(reason(&error).to_string()),
            },
        },
    ))
}
