//! The store's one error type and its API error codes.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Input that breaks a rule (name, description, type, tags, paging, key).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No application has this id.
    #[error("application {app_id} not found")]
    NotFound { app_id: String },
    /// Only disabled applications may be deleted.
    #[error("application {app_id} is enabled; disable it before deleting it")]
    AppNotDisabled { app_id: String },
    /// The database URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    /// A row that this code cannot read (written by something else).
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The REST API error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Invalid { .. } => "INVALID_ARGUMENT",
            StoreError::NotFound { .. } => "APP_NOT_FOUND",
            StoreError::AppNotDisabled { .. } => "APP_NOT_DISABLED",
            StoreError::UnsupportedUrl(_)
            | StoreError::Corrupt { .. }
            | StoreError::Io { .. }
            | StoreError::Database(_)
            | StoreError::Migrate(_) => "INTERNAL",
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(app_id: &str) -> StoreError {
        StoreError::NotFound {
            app_id: app_id.to_string(),
        }
    }
}
