//! Applications: create, read, list, update, enable/disable, rotate, delete,
//! and the one-time import of `apps.json`.

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::StoreError;
use crate::model::{App, AppPatch, AppSecret, AppStatus, AppType, LegacyApp, NewApp, Page, Tag};
use crate::validate::{validate_description, validate_name, validate_page, validate_tags};
use crate::{unix_now_ms, Store};

/// Length of generated secrets (alphanumeric: ~5.95 bits each, ~285 bits).
pub const SECRET_LEN: usize = 48;
/// The name of the application a fresh store gets.
pub const DEFAULT_APP_NAME: &str = "default";
/// Shortest secret accepted on import (HS256 wants at least 256 bits of key).
pub const SECRET_MIN_LEN: usize = 32;

const APP_COLUMNS: &str = "app_id, name, description, app_type, tags, enabled, \
     room_permission_required, created_at_ms, updated_at_ms";

impl Store {
    /// Creates an enabled application with a random id and secret; returns
    /// it with the secret.
    pub async fn create_app(&self, new: NewApp) -> Result<(App, String), StoreError> {
        validate_name(&new.name)?;
        validate_description(&new.description)?;
        validate_tags(&new.tags)?;
        let tags = tags_to_json(&new.tags)?;
        let (app_id, secret) = generate_id_and_secret();
        let now = unix_now_ms();
        sqlx::query(
            "INSERT INTO apps (app_id, name, description, app_type, tags, enabled, \
             room_permission_required, secret, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 1, 0, $6, $7, $7)",
        )
        .bind(&app_id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(new.app_type.as_str())
        .bind(&tags)
        .bind(&secret)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let app = App {
            app_id,
            name: new.name,
            description: new.description,
            app_type: new.app_type,
            tags: new.tags,
            status: AppStatus::Enabled,
            room_permission_required: false,
            created_at_ms: now,
            updated_at_ms: now,
        };
        Ok((app, secret))
    }

    pub async fn get_app(&self, app_id: &str) -> Result<App, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE app_id = $1"))
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found(app_id))?;
        app_from_row(&row)
    }

    /// Applications in creation order (oldest first), optionally only those
    /// with `status`; `page` is 1-based, `page_size` 1–100.
    pub async fn list_apps(
        &self,
        status: Option<AppStatus>,
        page: u32,
        page_size: u32,
    ) -> Result<Page<App>, StoreError> {
        validate_page(page, page_size)?;
        let filter = if status.is_some() {
            "WHERE enabled = $1"
        } else {
            ""
        };
        let enabled = status.map(|s| i64::from(s.is_enabled()));
        let count_sql = format!("SELECT COUNT(*) AS n FROM apps {filter}");
        let mut count = sqlx::query(&count_sql);
        if let Some(enabled) = enabled {
            count = count.bind(enabled);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;

        let (limit_at, offset_at) = if status.is_some() { (2, 3) } else { (1, 2) };
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM apps {filter} ORDER BY created_at_ms, app_id \
             LIMIT ${limit_at} OFFSET ${offset_at}"
        );
        let mut query = sqlx::query(&sql);
        if let Some(enabled) = enabled {
            query = query.bind(enabled);
        }
        let offset = i64::from(page - 1) * i64::from(page_size);
        let rows = query
            .bind(i64::from(page_size))
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        Ok(Page {
            items: rows.iter().map(app_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
            page,
            page_size,
        })
    }

    /// Changes the fields that `patch` sets; returns the updated application.
    pub async fn update_app(&self, app_id: &str, patch: AppPatch) -> Result<App, StoreError> {
        if let Some(name) = &patch.name {
            validate_name(name)?;
        }
        if let Some(description) = &patch.description {
            validate_description(description)?;
        }
        let tags = match &patch.tags {
            Some(tags) => {
                validate_tags(tags)?;
                Some(tags_to_json(tags)?)
            }
            None => None,
        };
        let result = sqlx::query(
            "UPDATE apps SET name = COALESCE($2, name), \
             description = COALESCE($3, description), \
             app_type = COALESCE($4, app_type), \
             tags = COALESCE($5, tags), \
             room_permission_required = COALESCE($6, room_permission_required), \
             updated_at_ms = $7 \
             WHERE app_id = $1",
        )
        .bind(app_id)
        .bind(patch.name)
        .bind(patch.description)
        .bind(patch.app_type.map(|t| t.as_str()))
        .bind(tags)
        .bind(patch.room_permission_required.map(i64::from))
        .bind(unix_now_ms())
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::not_found(app_id));
        }
        self.get_app(app_id).await
    }

    /// Enables or disables an application; returns it.
    pub async fn set_app_status(&self, app_id: &str, status: AppStatus) -> Result<App, StoreError> {
        let result =
            sqlx::query("UPDATE apps SET enabled = $2, updated_at_ms = $3 WHERE app_id = $1")
                .bind(app_id)
                .bind(i64::from(status.is_enabled()))
                .bind(unix_now_ms())
                .execute(&self.pool)
                .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::not_found(app_id));
        }
        self.get_app(app_id).await
    }

    /// Replaces the secret with a new random one and returns it; tokens
    /// signed with the old secret stop verifying at once.
    pub async fn rotate_secret(&self, app_id: &str) -> Result<String, StoreError> {
        let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), SECRET_LEN);
        let result =
            sqlx::query("UPDATE apps SET secret = $2, updated_at_ms = $3 WHERE app_id = $1")
                .bind(app_id)
                .bind(&secret)
                .bind(unix_now_ms())
                .execute(&self.pool)
                .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::not_found(app_id));
        }
        Ok(secret)
    }

    /// Deletes a disabled application (`AppNotDisabled` while it is enabled).
    pub async fn delete_app(&self, app_id: &str) -> Result<(), StoreError> {
        let result = sqlx::query("DELETE FROM apps WHERE app_id = $1 AND enabled = 0")
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 1 {
            return Ok(());
        }
        let exists = sqlx::query("SELECT 1 AS one FROM apps WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if exists {
            Err(StoreError::AppNotDisabled {
                app_id: app_id.to_string(),
            })
        } else {
            Err(StoreError::not_found(app_id))
        }
    }

    /// The signing secret and status, for minting and verifying join tokens.
    pub async fn app_secret(&self, app_id: &str) -> Result<AppSecret, StoreError> {
        let row = sqlx::query(
            "SELECT secret, enabled, room_permission_required FROM apps WHERE app_id = $1",
        )
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found(app_id))?;
        Ok(AppSecret {
            secret: row.try_get("secret")?,
            status: AppStatus::from_enabled(row.try_get::<i64, _>("enabled")? != 0),
            room_permission_required: row.try_get::<i64, _>("room_permission_required")? != 0,
        })
    }

    /// The application named [`DEFAULT_APP_NAME`] (the oldest if several),
    /// else the oldest application; `None` when there is none.
    pub async fn default_app(&self) -> Result<Option<App>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM apps \
             ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END, created_at_ms, app_id LIMIT 1"
        ))
        .bind(DEFAULT_APP_NAME)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    /// Creates an application named [`DEFAULT_APP_NAME`] when there is no
    /// application at all, so that a fresh server can be joined at once.
    /// Returns it with its secret when this call created it. One statement
    /// checks and inserts, so processes starting together on one SQLite
    /// file create one application between them.
    pub async fn ensure_default_app(&self) -> Result<Option<(App, String)>, StoreError> {
        let (app_id, secret) = generate_id_and_secret();
        let now = unix_now_ms();
        let inserted = sqlx::query(
            "INSERT INTO apps (app_id, name, description, app_type, tags, enabled, \
             room_permission_required, secret, created_at_ms, updated_at_ms) \
             SELECT $1, $2, '', 'other', '[]', 1, 0, $3, $4, $4 \
             WHERE NOT EXISTS (SELECT 1 FROM apps)",
        )
        .bind(&app_id)
        .bind(DEFAULT_APP_NAME)
        .bind(&secret)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        Ok(Some((self.get_app(&app_id).await?, secret)))
    }

    /// Copies applications from `apps.json` into the database, keeping their
    /// ids, secrets, status and creation times. Ids already present are left
    /// as they are, so running it again is harmless. Returns how many were
    /// added. Names are taken as they are (the file store had no rules).
    pub async fn import_legacy_apps(&self, apps: &[LegacyApp]) -> Result<usize, StoreError> {
        for app in apps {
            if app.app_id.is_empty() {
                return Err(StoreError::invalid("app_id", "must not be empty"));
            }
            if app.secret.len() < SECRET_MIN_LEN {
                return Err(StoreError::invalid(
                    "secret",
                    format!("must be at least {SECRET_MIN_LEN} characters"),
                ));
            }
        }
        let now = unix_now_ms();
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for app in apps {
            let created = i64::try_from(app.created_at_ms).unwrap_or(i64::MAX);
            let result = sqlx::query(
                "INSERT INTO apps (app_id, name, description, app_type, tags, enabled, \
                 room_permission_required, secret, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, '', 'other', '[]', $3, 0, $4, $5, $6) \
                 ON CONFLICT (app_id) DO NOTHING",
            )
            .bind(&app.app_id)
            .bind(&app.name)
            .bind(i64::from(app.enabled))
            .bind(&app.secret)
            .bind(created)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            added += usize::try_from(result.rows_affected()).unwrap_or(0);
        }
        tx.commit().await?;
        Ok(added)
    }
}

/// A new application id (`app_` + 16 hex digits) and secret.
fn generate_id_and_secret() -> (String, String) {
    let mut rng = rand::thread_rng();
    (
        format!("app_{:016x}", rng.gen::<u64>()),
        Alphanumeric.sample_string(&mut rng, SECRET_LEN),
    )
}

fn tags_to_json(tags: &[Tag]) -> Result<String, StoreError> {
    serde_json::to_string(tags).map_err(|e| StoreError::Corrupt {
        what: "tags",
        reason: e.to_string(),
    })
}

fn app_from_row(row: &AnyRow) -> Result<App, StoreError> {
    let app_type: String = row.try_get("app_type")?;
    let tags: String = row.try_get("tags")?;
    Ok(App {
        app_id: row.try_get("app_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        app_type: app_type
            .parse::<AppType>()
            .map_err(|_| StoreError::Corrupt {
                what: "app_type",
                reason: format!("unknown type {app_type:?}"),
            })?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt {
            what: "tags",
            reason: e.to_string(),
        })?,
        status: AppStatus::from_enabled(row.try_get::<i64, _>("enabled")? != 0),
        room_permission_required: row.try_get::<i64, _>("room_permission_required")? != 0,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}
