//! The applications' token keys as the join path reads them: from the
//! control-plane database, through a short-lived cache.
//!
//! Every join verifies a token, and every token names its application; a
//! database read per join would put the database on the join path. The
//! cache keeps each answer (including "no such application", so tokens with
//! made-up issuers cannot hammer the database) for [`CACHE_TTL`]. Changes
//! made through this server's API call [`AppKeys::invalidate`] and take
//! effect at once; changes made by another node take effect within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_store::{Store, StoreError};

use crate::token::{self, AppKey, TokenError, VerifiedToken};

/// How long a looked-up key (or its absence) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// The most applications kept; beyond it the cache starts over.
pub const CACHE_CAPACITY: usize = 10_000;

struct Cached {
    key: Option<AppKey>,
    fetched_at: Instant,
}

/// Application keys by id, read through from the [`Store`].
pub struct AppKeys {
    store: Store,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl AppKeys {
    pub fn new(store: Store) -> AppKeys {
        Self::with_ttl(store, CACHE_TTL)
    }

    pub fn with_ttl(store: Store, ttl: Duration) -> AppKeys {
        AppKeys {
            store,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key of `app_id`, or `None` if there is no such application.
    pub async fn get(&self, app_id: &str) -> Result<Option<AppKey>, StoreError> {
        let now = Instant::now();
        if let Some(cached) = self.lock().get(app_id) {
            if now.saturating_duration_since(cached.fetched_at) < self.ttl {
                return Ok(cached.key.clone());
            }
        }
        let key = match self.store.app_secret(app_id).await {
            Ok(secret) => Some(AppKey {
                app_id: app_id.to_string(),
                secret: secret.secret,
                enabled: secret.status.is_enabled(),
                room_permission_required: secret.room_permission_required,
            }),
            Err(StoreError::NotFound { .. }) => None,
            Err(other) => return Err(other),
        };
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(
            app_id.to_string(),
            Cached {
                key: key.clone(),
                fetched_at: now,
            },
        );
        Ok(key)
    }

    /// Forgets what is cached of `app_id` (after it changed).
    pub fn invalidate(&self, app_id: &str) {
        self.lock().remove(app_id);
    }

    /// Verifies a join token: see [`token::verify_with_key`].
    pub async fn verify(
        &self,
        token: &str,
        room: Option<&str>,
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenError> {
        let issuer = token::issuer(token)?;
        let key = self
            .get(&issuer)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading an application key failed");
                TokenError::Unavailable(e.to_string())
            })?
            .ok_or(TokenError::UnknownApp(issuer))?;
        token::verify_with_key(&key, token, room, now_unix)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // The map stays consistent even if a holder panicked.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use weir_protocol::Grant;
    use weir_store::{AppPatch, AppStatus, NewApp};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    async fn create_app(store: &Store) -> weir_store::App {
        let new = NewApp {
            name: "a".into(),
            ..NewApp::default()
        };
        store.create_app(new).await.expect("create").0
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::sqlite_in(dir.path()).await.expect("store");
        (dir, store)
    }

    fn now() -> u64 {
        1_700_000_000
    }

    #[tokio::test]
    async fn verifies_against_the_database_and_sees_changes_after_invalidate() {
        let (_dir, store) = store().await;
        let app = create_app(&store).await;
        let keys = AppKeys::with_ttl(store.clone(), Duration::from_secs(3600));
        let key = keys.get(&app.app_id).await.expect("get").expect("known");
        let token = token::mint(&key, "lobby", "alice", &Grant::ALL, HOUR, now()).expect("mint");
        let verified = keys
            .verify(&token, Some("lobby"), now())
            .await
            .expect("valid");
        assert_eq!(verified.app_id, app.app_id);

        // Disabled in the database: the cached key still says enabled
        // until it is invalidated.
        store
            .set_app_status(&app.app_id, AppStatus::Disabled)
            .await
            .expect("disable");
        assert!(keys.verify(&token, Some("lobby"), now()).await.is_ok());
        keys.invalidate(&app.app_id);
        assert_eq!(
            keys.verify(&token, Some("lobby"), now()).await,
            Err(TokenError::AppDisabled(app.app_id.clone()))
        );

        // A rotated secret invalidates old tokens.
        store
            .set_app_status(&app.app_id, AppStatus::Enabled)
            .await
            .expect("enable");
        store.rotate_secret(&app.app_id).await.expect("rotate");
        keys.invalidate(&app.app_id);
        assert_eq!(
            keys.verify(&token, Some("lobby"), now()).await,
            Err(TokenError::BadSignature)
        );
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let (_dir, store) = store().await;
        let app = create_app(&store).await;
        let keys = AppKeys::with_ttl(store.clone(), Duration::from_millis(50));
        let key = keys.get(&app.app_id).await.expect("get").expect("known");
        assert!(!key.room_permission_required);
        store
            .update_app(
                &app.app_id,
                AppPatch {
                    room_permission_required: Some(true),
                    ..AppPatch::default()
                },
            )
            .await
            .expect("update");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let key = keys.get(&app.app_id).await.expect("get").expect("known");
        assert!(key.room_permission_required);
    }

    #[tokio::test]
    async fn unknown_issuers_are_refused_and_remembered() {
        let (_dir, store) = store().await;
        let keys = AppKeys::new(store.clone());
        let stranger = AppKey {
            app_id: "app_nobody".into(),
            secret: "s".repeat(40),
            enabled: true,
            room_permission_required: false,
        };
        let token =
            token::mint(&stranger, "lobby", "alice", &Grant::ALL, HOUR, now()).expect("mint");
        assert_eq!(
            keys.verify(&token, None, now()).await,
            Err(TokenError::UnknownApp("app_nobody".into()))
        );
        assert!(keys.lock().contains_key("app_nobody"));
        assert_eq!(
            keys.verify("garbage", None, now())
                .await
                .map_err(|e| e.code()),
            Err(weir_protocol::ErrorCode::TokenInvalid)
        );
    }
}
