//! Join tokens: HS256 JWTs an application's backend signs with the
//! application's secret.
//!
//! Claims: `iss` (the app id), `sub` (the user id), `room` (a room name, or
//! `*` for any room), `grants` (`publish` / `subscribe` / `data`), `exp` and
//! `iat` (unix seconds). Neither [`mint`] nor [`verify`] reads the clock:
//! the caller passes `now_unix`.
//!
//! [`verify`] reads `iss` from the unverified payload only to pick the
//! secret; nothing else is trusted before the signature checks out.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use weir_protocol::{ErrorCode, Grant};

#[cfg(test)]
mod tests;

/// The `room` claim of a token valid for every room.
pub const ANY_ROOM: &str = "*";
/// Longest user id, room name or app id, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest lifetime [`mint`] accepts: 180 days.
pub const MAX_TTL: Duration = Duration::from_secs(180 * 24 * 3600);
/// Longest token [`verify`] looks at, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What signing and checking a token needs to know of its application.
#[derive(Clone, PartialEq, Eq)]
pub struct AppKey {
    pub app_id: String,
    /// The HS256 secret. Never logged: `Debug` redacts it.
    pub secret: String,
    /// Tokens of a disabled application are refused (and none are minted).
    pub enabled: bool,
    /// Advanced permission control: tokens must name the exact room (no
    /// [`ANY_ROOM`]) and carry an explicit `grants` claim.
    pub room_permission_required: bool,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("room_permission_required", &self.room_permission_required)
            .finish()
    }
}

/// The JWT payload.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    room: String,
    /// Absent means every grant, unless the application requires room
    /// permissions (then it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grants: Option<Vec<Grant>>,
    exp: u64,
    /// Written by [`mint`]; optional on [`verify`] (nothing depends on it,
    /// and not every JWT library adds it).
    #[serde(default)]
    iat: u64,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedToken {
    pub app_id: String,
    pub user_id: String,
    /// The room claim: a room name, or [`ANY_ROOM`].
    pub room: String,
    /// Without duplicates, in token order.
    pub grants: Vec<Grant>,
    /// Unix seconds.
    pub expires_at: u64,
}

impl VerifiedToken {
    pub fn allows(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }
}

/// Why a token could not be minted or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token given")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("the token's signature does not match its application's secret")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for room {token_room:?}, not {requested:?}")]
    WrongRoom {
        token_room: String,
        requested: String,
    },
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    #[error("application {0:?} is disabled")]
    AppDisabled(String),
    /// The application requires room permissions and the token names no
    /// exact room or carries no explicit grants.
    #[error("application requires room permissions: {0}")]
    RoomPermissionRequired(String),
    /// The application store could not be read.
    #[error("the application store is unavailable: {0}")]
    Unavailable(String),
    /// A user id or room name that is not 1-128 letters, digits or `-_.@`.
    #[error("invalid {field} {value:?}: use 1-128 letters, digits or -_.@")]
    InvalidName { field: &'static str, value: String },
    #[error("invalid lifetime: {0}")]
    InvalidTtl(String),
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

impl TokenError {
    /// The protocol error code a client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Missing => ErrorCode::TokenMissing,
            TokenError::Malformed(_) | TokenError::BadSignature => ErrorCode::TokenInvalid,
            TokenError::Expired => ErrorCode::TokenExpired,
            TokenError::WrongRoom { .. } => ErrorCode::TokenWrongRoom,
            TokenError::UnknownApp(_) => ErrorCode::UnknownApp,
            TokenError::AppDisabled(_) => ErrorCode::AppDisabled,
            TokenError::RoomPermissionRequired(_) => ErrorCode::RoomPermissionRequired,
            TokenError::InvalidName { .. } | TokenError::InvalidTtl(_) => ErrorCode::BadRequest,
            TokenError::Signing(_) | TokenError::Unavailable(_) => ErrorCode::Internal,
        }
    }
}

/// Whether `name` is a valid user id, room name or app id: 1-128 ASCII
/// letters, digits, `-`, `_`, `.` or `@`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

fn is_valid_room_claim(room: &str) -> bool {
    room == ANY_ROOM || is_valid_name(room)
}

/// Signs a token for `user_id` in `room` (or [`ANY_ROOM`]), valid from
/// `now_unix` for `ttl` (whole seconds, 1 s to [`MAX_TTL`]).
pub fn mint(
    app: &AppKey,
    room: &str,
    user_id: &str,
    grants: &[Grant],
    ttl: Duration,
    now_unix: u64,
) -> Result<String, TokenError> {
    if !app.enabled {
        return Err(TokenError::AppDisabled(app.app_id.clone()));
    }
    if !is_valid_name(user_id) {
        return Err(TokenError::InvalidName {
            field: "user id",
            value: user_id.to_string(),
        });
    }
    if !is_valid_room_claim(room) {
        return Err(TokenError::InvalidName {
            field: "room",
            value: room.to_string(),
        });
    }
    if app.room_permission_required && room == ANY_ROOM {
        return Err(TokenError::RoomPermissionRequired(
            "a token must name one room, not `*`".to_string(),
        ));
    }
    if app.room_permission_required && grants.is_empty() {
        return Err(TokenError::RoomPermissionRequired(
            "a token must carry explicit grants".to_string(),
        ));
    }
    if ttl.as_secs() == 0 || ttl > MAX_TTL {
        return Err(TokenError::InvalidTtl(format!(
            "{} s is not between 1 s and {} days",
            ttl.as_secs(),
            MAX_TTL.as_secs() / 86_400
        )));
    }
    let exp = now_unix
        .checked_add(ttl.as_secs())
        .ok_or_else(|| TokenError::InvalidTtl("the expiry overflows".to_string()))?;
    let claims = Claims {
        iss: app.app_id.clone(),
        sub: user_id.to_string(),
        room: room.to_string(),
        grants: Some(dedup(grants)),
        exp,
        iat: now_unix,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .map_err(|e| TokenError::Signing(e.to_string()))
}

/// Checks a token against `keys`: well-formed HS256 JWT, `iss` one of
/// `keys` and enabled, then everything [`verify_with_key`] checks.
pub fn verify(
    keys: &[AppKey],
    token: &str,
    room: Option<&str>,
    now_unix: u64,
) -> Result<VerifiedToken, TokenError> {
    let issuer = issuer(token)?;
    let key = keys
        .iter()
        .find(|key| key.app_id == issuer)
        .ok_or(TokenError::UnknownApp(issuer))?;
    verify_with_key(key, token, room, now_unix)
}

/// The application a token claims to come from (its unverified `iss`),
/// after checking that it is a plausible HS256 JWT. Nothing else is
/// trusted before [`verify_with_key`] checks the signature.
pub fn issuer(token: &str) -> Result<String, TokenError> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: String,
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
    }
    let header = jsonwebtoken::decode_header(token).map_err(describe)?;
    if header.alg != Algorithm::HS256 {
        return Err(malformed(format!(
            "algorithm {:?} is not HS256",
            header.alg
        )));
    }
    let issuer = jsonwebtoken::dangerous::insecure_decode::<Issuer>(token)
        .map_err(describe)?
        .claims
        .iss;
    if !is_valid_name(&issuer) {
        return Err(malformed("iss is not an application id".to_string()));
    }
    Ok(issuer)
}

/// Checks a token issued by `app`: signature by its secret, the
/// application enabled, `exp` after `now_unix` (no leeway), valid names,
/// the application's room-permission rule, and `room` (the room being
/// joined, `None` = do not check) allowed by the room claim.
pub fn verify_with_key(
    app: &AppKey,
    token: &str,
    room: Option<&str>,
    now_unix: u64,
) -> Result<VerifiedToken, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.validate_exp = false; // checked below against `now_unix`
    validation.validate_aud = false;
    validation.leeway = 0;
    let key = DecodingKey::from_secret(app.secret.as_bytes());
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(describe)?
        .claims;

    if claims.iss != app.app_id {
        return Err(malformed("iss is not the application checked".to_string()));
    }
    if !app.enabled {
        return Err(TokenError::AppDisabled(app.app_id.clone()));
    }
    if claims.exp <= now_unix {
        return Err(TokenError::Expired);
    }
    if !is_valid_name(&claims.sub) {
        return Err(malformed("sub is not a valid user id".to_string()));
    }
    if !is_valid_room_claim(&claims.room) {
        return Err(malformed("room is not a valid room name".to_string()));
    }
    if app.room_permission_required {
        if claims.room == ANY_ROOM {
            return Err(TokenError::RoomPermissionRequired(
                "the token must name one room, not `*`".to_string(),
            ));
        }
        if claims.grants.as_ref().is_none_or(Vec::is_empty) {
            return Err(TokenError::RoomPermissionRequired(
                "the token must carry explicit grants".to_string(),
            ));
        }
    }
    if let Some(requested) = room {
        check_room(&claims.room, requested)?;
    }
    let grants = claims.grants.unwrap_or_else(|| Grant::ALL.to_vec());
    Ok(VerifiedToken {
        app_id: claims.iss,
        user_id: claims.sub,
        room: claims.room,
        grants: dedup(&grants),
        expires_at: claims.exp,
    })
}

fn check_room(token_room: &str, requested: &str) -> Result<(), TokenError> {
    if token_room == ANY_ROOM {
        if is_valid_name(requested) {
            return Ok(());
        }
        return Err(TokenError::InvalidName {
            field: "room",
            value: requested.chars().take(MAX_NAME_LEN).collect(),
        });
    }
    if token_room == requested {
        return Ok(());
    }
    Err(TokenError::WrongRoom {
        token_room: token_room.to_string(),
        requested: requested.chars().take(MAX_NAME_LEN).collect(),
    })
}

fn dedup(grants: &[Grant]) -> Vec<Grant> {
    let mut unique = Vec::with_capacity(grants.len());
    for &grant in grants {
        if !unique.contains(&grant) {
            unique.push(grant);
        }
    }
    unique
}

fn malformed(reason: String) -> TokenError {
    TokenError::Malformed(reason)
}

/// Maps a `jsonwebtoken` error to ours, with a short reason.
fn describe(error: jsonwebtoken::errors::Error) -> TokenError {
    let reason = match error.kind() {
        ErrorKind::InvalidSignature => return TokenError::BadSignature,
        ErrorKind::ExpiredSignature => return TokenError::Expired,
        ErrorKind::InvalidToken => "not a JWT (three base64url parts)".to_string(),
        ErrorKind::Base64(_) => "a part is not base64url".to_string(),
        ErrorKind::Utf8(_) => "a part is not UTF-8".to_string(),
        ErrorKind::Json(e) => {
            let text: String = e.to_string().chars().take(160).collect();
            format!("not the expected JSON ({text})")
        }
        ErrorKind::InvalidAlgorithm => "the algorithm is not HS256".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim `{claim}` has the wrong type"),
        other => format!("{other:?}"),
    };
    TokenError::Malformed(reason)
}
