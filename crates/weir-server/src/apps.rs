//! `apps.json`: where Weir kept its applications before the control-plane
//! database. A server that finds one imports it into the database at start
//! (ids, secrets and status kept, so issued tokens stay valid) and renames
//! it to `apps.json.imported`, so that an application deleted later does
//! not come back at the next start. Nothing writes `apps.json` any more.
//!
//! A file that does not parse is an error and is left untouched: it holds
//! the secrets every issued token depends on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_store::LegacyApp;

/// The file's name inside the data dir.
pub const APPS_FILE: &str = "apps.json";
/// What the file is renamed to once imported.
pub const IMPORTED_APPS_FILE: &str = "apps.json.imported";
/// Shortest secret the file may hold (HS256 wants at least 256 bits of key).
pub const MIN_SECRET_LEN: usize = weir_store::SECRET_MIN_LEN;
/// The version of the `apps.json` layout this code reads.
const FILE_VERSION: u32 = 1;

/// One application as the file kept it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    app_id: String,
    name: String,
    secret: String,
    enabled: bool,
    created_at_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    version: u32,
    apps: Vec<FileApp>,
}

/// Why `apps.json` could not be read or moved aside.
#[derive(Debug, thiserror::Error)]
pub enum LegacyAppsError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is corrupt (fix or remove it by hand; it was left untouched): {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// The applications in `DATA_DIR/apps.json`; `None` when there is no file.
pub fn read(data_dir: &Path) -> Result<Option<Vec<LegacyApp>>, LegacyAppsError> {
    let path = data_dir.join(APPS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LegacyAppsError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    let corrupt = |reason: String| LegacyAppsError::Corrupt {
        path: path.clone(),
        reason,
    };
    let file: AppsFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != FILE_VERSION {
        return Err(corrupt(format!(
            "version {} is not the supported version {FILE_VERSION}",
            file.version
        )));
    }
    check_apps(&file.apps).map_err(corrupt)?;
    Ok(Some(
        file.apps
            .into_iter()
            .map(|app| LegacyApp {
                app_id: app.app_id,
                name: app.name,
                secret: app.secret,
                enabled: app.enabled,
                created_at_ms: app.created_at_ms,
            })
            .collect(),
    ))
}

/// Renames `apps.json` to [`IMPORTED_APPS_FILE`] after a successful import.
pub fn mark_imported(data_dir: &Path) -> Result<(), LegacyAppsError> {
    let from = data_dir.join(APPS_FILE);
    let to = data_dir.join(IMPORTED_APPS_FILE);
    fs::rename(&from, &to).map_err(|source| LegacyAppsError::Io {
        action: "rename",
        path: from,
        source,
    })
}

/// Checks what serde cannot: ids and secrets usable, ids unique.
fn check_apps(apps: &[FileApp]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for app in apps {
        if !crate::token::is_valid_name(&app.app_id) || app.app_id == crate::token::ANY_ROOM {
            return Err(format!(
                "app id {:?} is not 1-128 letters, digits or -_.@",
                app.app_id
            ));
        }
        if !seen.insert(app.app_id.as_str()) {
            return Err(format!("app id {:?} appears twice", app.app_id));
        }
        if app.secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret of {:?} is shorter than {MIN_SECRET_LEN} bytes",
                app.app_id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
