//! Weir's control-plane database: applications (ids, secrets, settings) and
//! the admin key.
//!
//! One [`Store`] over SQLite (the default: `DATA_DIR/weir.db`, embedded,
//! nothing to install) or PostgreSQL (`postgres://...`), through sqlx's `Any`
//! driver. Both run the same migrations (`migrations/`, applied by
//! [`Store::connect`]) and the same queries, written in the SQL both accept:
//! `$n` placeholders, booleans as BIGINT 0/1, JSON as TEXT, times as BIGINT
//! milliseconds since the epoch.
//!
//! The store validates what it writes (see [`validate`]) and reports every
//! failure as a [`StoreError`], whose [`StoreError::code`] is the REST API
//! error code. It reads the wall clock for `created_at_ms`/`updated_at_ms`.

mod admin_key;
mod apps;
mod callbacks;
mod error;
mod model;
mod outbox;
mod recording;
mod recording_stats;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod validate;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

pub use admin_key::{ADMIN_KEY_GENERATED_LEN, ADMIN_KEY_MIN_LEN};
pub use apps::{DEFAULT_APP_NAME, SECRET_LEN, SECRET_MIN_LEN};
pub use callbacks::CallbackConfig;
pub use error::StoreError;
pub use model::{App, AppPatch, AppSecret, AppStatus, AppType, LegacyApp, NewApp, Page, Tag};
pub use outbox::{
    AttemptFailure, NewOutboxEvent, OutboxEvent, OutboxSequencer, OutboxStatus, RetryOutcome,
};
pub use recording::{
    NewRecordingFile, NewRecordingJob, RecordFormat, RecordingFile, RecordingFilePatch,
    RecordingFileStatus, RecordingJob, RecordingJobOrigin, RecordingJobPatch, RecordingJobStatus,
    StoredRecordingRule, MAX_RULE_JSON_LEN,
};
pub use recording_stats::{RecordingFileCounts, RecordingStats};

/// The SQLite file's name inside the data dir.
pub const SQLITE_FILE: &str = "weir.db";
/// Locked while a process migrates the SQLite file.
pub const SQLITE_LOCK_FILE: &str = "weir.db.lock";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the control-plane database (a connection pool; cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects to `sqlite://PATH?mode=rwc` (or `sqlite::memory:`) or
    /// `postgres://...` and applies the migrations that are not yet applied.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // Readers (token checks) then never wait for a writer. The mode
            // is stored in the file, so the pool's other connections get it.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }

    /// The default store: SQLite in `DATA_DIR/weir.db`, created (with the
    /// data dir) when missing.
    ///
    /// Migrations on SQLite take no lock of their own, so two processes
    /// opening a fresh data dir at once (`weir serve` and `weir token
    /// create`, say) would both try to create the tables. An exclusive
    /// lock on `DATA_DIR/weir.db.lock` is held while connecting and
    /// migrating; it blocks the calling thread while another process
    /// migrates (milliseconds).
    pub async fn sqlite_in(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            action: "create the data dir",
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(SQLITE_FILE);
        let text = path
            .to_str()
            .ok_or_else(|| StoreError::invalid("data_dir", "the path is not valid UTF-8"))?;
        let lock_path = data_dir.join(SQLITE_LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|file| file.lock().map(|()| file))
            .map_err(|source| StoreError::Io {
                action: "lock",
                path: lock_path,
                source,
            })?;
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", encode_path(text))).await;
        drop(lock);
        store
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Waits for the pool's connections to close (at shutdown; optional).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Percent-encodes what the SQLite URL parser would otherwise take for
/// syntax (`?`, `#`, `%`) or mangle; it percent-decodes the path.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL without a password, for error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://<redacted>{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_for_sqlite_urls() {
        assert_eq!(encode_path("/data/weir.db"), "/data/weir.db");
        assert_eq!(encode_path("/a b/c?d#e%f"), "/a%20b/c%3Fd%23e%25f");
    }

    #[test]
    fn passwords_are_not_echoed() {
        assert_eq!(
            redact_url("mysql://u:secret@host/db"),
            "mysql://<redacted>@host/db"
        );
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}
