//! The control plane's application types, as the store returns and takes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// One application: a tenant whose backend mints join tokens with its secret.
///
/// The secret is not part of this view: see [`crate::Store::app_secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Public id, the tokens' `iss` claim (`app_` + 16 hex digits when generated).
    pub app_id: String,
    pub name: String,
    pub description: String,
    pub app_type: AppType,
    pub tags: Vec<Tag>,
    pub status: AppStatus,
    /// Joins need a room permission (an app setting; the server enforces it).
    pub room_permission_required: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What an application is for (informational).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    Education,
    Entertainment,
    Finance,
    #[default]
    Other,
}

impl AppType {
    pub const ALL: [AppType; 4] = [
        AppType::Education,
        AppType::Entertainment,
        AppType::Finance,
        AppType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Education => "education",
            AppType::Entertainment => "entertainment",
            AppType::Finance => "finance",
            AppType::Other => "other",
        }
    }
}

impl fmt::Display for AppType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppType {
    type Err = StoreError;

    /// Parses the API spelling; an unknown type is `Invalid { field: "type" }`.
    fn from_str(s: &str) -> Result<AppType, StoreError> {
        AppType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                StoreError::invalid(
                    "type",
                    "must be one of education, entertainment, finance, other",
                )
            })
    }
}

/// Whether an application's tokens are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    Enabled,
    Disabled,
}

impl AppStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Enabled => "enabled",
            AppStatus::Disabled => "disabled",
        }
    }

    pub fn is_enabled(self) -> bool {
        self == AppStatus::Enabled
    }

    pub(crate) fn from_enabled(enabled: bool) -> AppStatus {
        if enabled {
            AppStatus::Enabled
        } else {
            AppStatus::Disabled
        }
    }
}

impl FromStr for AppStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<AppStatus, StoreError> {
        match s {
            "enabled" => Ok(AppStatus::Enabled),
            "disabled" => Ok(AppStatus::Disabled),
            _ => Err(StoreError::invalid(
                "status",
                "must be \"enabled\" or \"disabled\"",
            )),
        }
    }
}

/// A free-form label on an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The fields of a new application (validated by `create_app`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewApp {
    pub name: String,
    pub description: String,
    pub app_type: AppType,
    pub tags: Vec<Tag>,
}

/// A partial update: `None` leaves a field as it is; `tags` replaces the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub app_type: Option<AppType>,
    pub tags: Option<Vec<Tag>>,
    pub room_permission_required: Option<bool>,
}

/// The signing secret of an application and whether its tokens are accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret {
    /// The HS256 secret. Never logged: `Debug` redacts it.
    pub secret: String,
    pub status: AppStatus,
    /// Tokens must name the exact room and carry explicit grants.
    pub room_permission_required: bool,
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppSecret")
            .field("secret", &"<redacted>")
            .field("status", &self.status)
            .field("room_permission_required", &self.room_permission_required)
            .finish()
    }
}

/// One page of a listing, with the total over all pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Matching rows over all pages.
    pub total: u64,
    /// 1-based.
    pub page: u32,
    pub page_size: u32,
}

/// An application as `apps.json` (weir-server's file store) kept it, for the
/// one-time move into the database.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyApp {
    pub app_id: String,
    pub name: String,
    pub secret: String,
    pub enabled: bool,
    pub created_at_ms: u64,
}

impl fmt::Debug for LegacyApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyApp")
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}
