//! The application store: which applications exist and the secrets their
//! join tokens are signed with.
//!
//! Until the control plane brings a database, the store is one JSON file,
//! `DATA_DIR/apps.json` (mode 0600), written atomically (temp file, then
//! rename). A file that does not parse is an error and is never
//! overwritten: it holds the secrets every issued token depends on.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The store's file name inside the data dir.
pub const APPS_FILE: &str = "apps.json";
/// The name of the application created in an empty store.
pub const DEFAULT_APP_NAME: &str = "default";
/// Length of generated secrets (alphanumeric: ~5.95 bits each, ~285 bits).
pub const SECRET_LEN: usize = 48;
/// Shortest secret the store accepts (HS256 wants at least 256 bits of key).
pub const MIN_SECRET_LEN: usize = 32;
/// The version of the `apps.json` layout this code reads and writes.
const FILE_VERSION: u32 = 1;

/// One application: a tenant whose backend mints join tokens with `secret`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Public id, the tokens' `iss` claim (`app_` + 16 hex digits when generated).
    pub app_id: String,
    pub name: String,
    /// The HS256 signing secret. Never logged: `Debug` redacts it.
    pub secret: String,
    /// Tokens of a disabled application are refused.
    pub enabled: bool,
    pub created_at_ms: u64,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

impl App {
    /// A new enabled application with a random id and secret.
    pub fn generate(name: &str, created_at_ms: u64) -> App {
        let mut rng = rand::thread_rng();
        App {
            app_id: format!("app_{:016x}", rng.gen::<u64>()),
            name: name.to_string(),
            secret: Alphanumeric.sample_string(&mut rng, SECRET_LEN),
            enabled: true,
            created_at_ms,
        }
    }
}

/// The on-disk layout of `apps.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    version: u32,
    apps: Vec<App>,
}

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AppStoreError {
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

/// The applications of this server, loaded from `DATA_DIR/apps.json`.
#[derive(Debug, Clone)]
pub struct AppStore {
    path: PathBuf,
    apps: Vec<App>,
}

impl AppStore {
    /// Opens the store; with no apps yet it creates one named "default" and
    /// returns it as the second value so the caller can print its id.
    ///
    /// Creates the data dir if needed. When two processes initialise the
    /// same empty dir at once, one application wins and both return it.
    pub fn open_or_init(data_dir: &Path) -> Result<(AppStore, Option<App>), AppStoreError> {
        let path = data_dir.join(APPS_FILE);
        let existing = AppStore::load(&path)?;
        if let Some(store) = existing.as_ref().filter(|s| !s.apps.is_empty()) {
            return Ok((store.clone(), None));
        }
        create_dir(data_dir)?;
        let app = App::generate(DEFAULT_APP_NAME, unix_now_ms());
        let store = AppStore {
            path,
            apps: vec![app.clone()],
        };
        let replace = if existing.is_some() {
            Replace::Existing
        } else {
            Replace::Nothing
        };
        match store.persist(replace)? {
            Written::Yes => Ok((store, Some(app))),
            // Another process initialised the store first: use its app.
            Written::LostRace => match AppStore::load(&store.path)? {
                Some(theirs) if !theirs.apps.is_empty() => Ok((theirs, None)),
                _ => Err(AppStoreError::Corrupt {
                    path: store.path,
                    reason: "it changed while being initialised".to_string(),
                }),
            },
        }
    }

    /// Opens the store without creating anything: a missing file is an
    /// empty store.
    pub fn open(data_dir: &Path) -> Result<AppStore, AppStoreError> {
        let path = data_dir.join(APPS_FILE);
        Ok(AppStore::load(&path)?.unwrap_or(AppStore {
            path,
            apps: Vec::new(),
        }))
    }

    /// The application with this id.
    pub fn get(&self, app_id: &str) -> Option<&App> {
        self.apps.iter().find(|app| app.app_id == app_id)
    }

    /// The application named "default", else the first one.
    pub fn default_app(&self) -> Option<&App> {
        self.apps
            .iter()
            .find(|app| app.name == DEFAULT_APP_NAME)
            .or_else(|| self.apps.first())
    }

    /// Every application, in file order.
    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// A store that lives only in memory, for unit tests.
    #[cfg(test)]
    pub(crate) fn in_memory(apps: Vec<App>) -> AppStore {
        AppStore {
            path: PathBuf::from("<memory>"),
            apps,
        }
    }

    /// The path of `apps.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file; `None` if it does not exist.
    fn load(path: &Path) -> Result<Option<AppStore>, AppStoreError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AppStoreError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| AppStoreError::Corrupt {
            path: path.to_path_buf(),
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
        warn_if_readable_by_others(path);
        Ok(Some(AppStore {
            path: path.to_path_buf(),
            apps: file.apps,
        }))
    }

    /// Writes the store to a temp file in the same dir, then moves it into
    /// place: with a rename over an existing file, or with a hard link when
    /// there was none (so a concurrent initialisation is detected, not
    /// overwritten).
    fn persist(&self, replace: Replace) -> Result<Written, AppStoreError> {
        let io_err = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| AppStoreError::Io {
                action,
                path,
                source,
            }
        };
        let file = AppsFile {
            version: FILE_VERSION,
            apps: self.apps.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| AppStoreError::Io {
            action: "serialise",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        json.push(b'\n');
        let temp = temp_path(&self.path);
        let mut out = private_file(&temp).map_err(io_err("create", &temp))?;
        let written = out
            .write_all(&json)
            .and_then(|()| out.sync_all())
            .map_err(io_err("write", &temp));
        drop(out);
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        let outcome = if replace == Replace::Existing {
            fs::rename(&temp, &self.path).map(|()| Written::Yes)
        } else {
            match fs::hard_link(&temp, &self.path) {
                Ok(()) => Ok(Written::Yes),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Written::LostRace),
                // Filesystems without hard links: fall back to a rename.
                Err(_) => fs::rename(&temp, &self.path).map(|()| Written::Yes),
            }
        };
        let _ = fs::remove_file(&temp);
        let outcome = outcome.map_err(io_err("write", &self.path))?;
        sync_dir(&self.path);
        Ok(outcome)
    }
}

/// What [`AppStore::persist`] expects to find in place.
#[derive(PartialEq, Eq)]
enum Replace {
    Existing,
    Nothing,
}

enum Written {
    Yes,
    LostRace,
}

/// Checks what serde cannot: ids, names and secrets usable, ids unique.
fn check_apps(apps: &[App]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for app in apps {
        if !crate::token::is_valid_name(&app.app_id) || app.app_id == "*" {
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

fn create_dir(dir: &Path) -> Result<(), AppStoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| AppStoreError::Io {
        action: "create the data dir",
        path: dir.to_path_buf(),
        source,
    })
}

fn private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:08x}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    ));
    path.with_file_name(name)
}

/// Makes the rename durable; best effort (not every platform can open a dir).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the application store holds secrets but others may read it; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
