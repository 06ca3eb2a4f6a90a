//! Callback configurations: where an application's signed event callbacks
//! go, with which key, for which events.

use sqlx::Row;

use crate::{unix_now_ms, validate, Store, StoreError};

/// An application's callback configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// `http://` or `https://`, at most 2083 characters.
    pub url: String,
    /// The HMAC key: 32–64 letters and digits.
    pub key: String,
    /// Event type names to send; empty means every event.
    pub events: Vec<String>,
}

impl std::fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("url", &self.url)
            .field("key", &"<hidden>")
            .field("events", &self.events)
            .finish()
    }
}

impl Store {
    /// Sets (replaces) the application's callback configuration. Event
    /// names are checked by the caller, which knows the event types.
    pub async fn set_callback_config(
        &self,
        app_id: &str,
        config: CallbackConfig,
    ) -> Result<CallbackConfig, StoreError> {
        validate::validate_callback_url(&config.url)?;
        validate::validate_callback_key(&config.key)?;
        // The application must exist.
        self.get_app(app_id).await?;
        let events = serde_json::to_string(&config.events).map_err(|e| StoreError::Corrupt {
            what: "callback events",
            reason: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO callback_configs (app_id, url, signing_key, events, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, \
             signing_key = excluded.signing_key, events = excluded.events, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(app_id)
        .bind(&config.url)
        .bind(&config.key)
        .bind(&events)
        .bind(unix_now_ms())
        .execute(&self.pool)
        .await?;
        Ok(config)
    }

    /// The application's callback configuration, if one was set.
    pub async fn callback_config(
        &self,
        app_id: &str,
    ) -> Result<Option<CallbackConfig>, StoreError> {
        self.get_app(app_id).await?;
        let Some(row) =
            sqlx::query("SELECT url, signing_key, events FROM callback_configs WHERE app_id = $1")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let events: String = row.try_get("events")?;
        let events: Vec<String> =
            serde_json::from_str(&events).map_err(|e| StoreError::Corrupt {
                what: "callback events",
                reason: e.to_string(),
            })?;
        Ok(Some(CallbackConfig {
            url: row.try_get("url")?,
            key: row.try_get("signing_key")?,
            events,
        }))
    }
}
