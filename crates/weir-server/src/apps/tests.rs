use std::fs;
use std::path::Path;

use super::*;

fn open(dir: &Path) -> (AppStore, Option<App>) {
    AppStore::open_or_init(dir).expect("the store opens")
}

fn write_apps(dir: &Path, apps: &[App]) {
    let file = AppsFile {
        version: FILE_VERSION,
        apps: apps.to_vec(),
    };
    let json = serde_json::to_string_pretty(&file).expect("serialises");
    fs::write(dir.join(APPS_FILE), json).expect("write apps.json");
}

fn app(id: &str, name: &str) -> App {
    App {
        app_id: id.to_string(),
        name: name.to_string(),
        secret: "s".repeat(MIN_SECRET_LEN),
        enabled: true,
        created_at_ms: 1,
    }
}

#[test]
fn first_open_creates_a_default_app_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("nested").join("data");
    let (store, created) = open(&data_dir);
    let created = created.expect("an app is created");
    assert_eq!(created.name, DEFAULT_APP_NAME);
    assert!(created.enabled);
    assert!(created.created_at_ms > 0);
    assert_eq!(store.apps(), std::slice::from_ref(&created));
    assert_eq!(store.default_app(), Some(&created));
    assert_eq!(store.get(&created.app_id), Some(&created));
    assert_eq!(store.path(), data_dir.join(APPS_FILE));
    assert!(data_dir.join(APPS_FILE).is_file());
}

#[test]
fn generated_ids_and_secrets_have_the_documented_shape() {
    let app = App::generate("x", 0);
    let hex = app.app_id.strip_prefix("app_").expect("app_ prefix");
    assert_eq!(hex.len(), 16);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(app.secret.len() >= 32);
    assert!(app.secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    let other = App::generate("x", 0);
    assert_ne!(app.app_id, other.app_id);
    assert_ne!(app.secret, other.secret);
}

#[test]
fn reopening_returns_the_same_app_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, created) = open(dir.path());
    let created = created.expect("created on first open");
    let (store, again) = open(dir.path());
    assert!(again.is_none());
    assert_eq!(store.apps(), &[created]);
}

#[cfg(unix)]
#[test]
fn the_file_is_private_and_no_temp_file_remains() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    open(dir.path());
    let mode = fs::metadata(dir.path().join(APPS_FILE))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(APPS_FILE)]);
}

#[test]
fn an_empty_app_list_gets_a_default_app() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_apps(dir.path(), &[]);
    let (store, created) = open(dir.path());
    assert!(created.is_some());
    assert_eq!(store.apps().len(), 1);
    let (_, again) = open(dir.path());
    assert!(again.is_none(), "the default app was persisted");
}

#[test]
fn default_app_prefers_the_name_then_the_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_apps(
        dir.path(),
        &[app("app_a", "alpha"), app("app_b", "default")],
    );
    let (store, created) = open(dir.path());
    assert!(created.is_none());
    assert_eq!(
        store.default_app().map(|a| a.app_id.as_str()),
        Some("app_b")
    );
    assert_eq!(store.get("app_a").map(|a| a.name.as_str()), Some("alpha"));
    assert!(store.get("app_c").is_none());

    write_apps(dir.path(), &[app("app_a", "alpha"), app("app_b", "beta")]);
    let (store, _) = open(dir.path());
    assert_eq!(
        store.default_app().map(|a| a.app_id.as_str()),
        Some("app_a")
    );
}

#[test]
fn corrupt_files_are_reported_and_left_untouched() {
    let long_secret = "s".repeat(MIN_SECRET_LEN);
    let cases = [
        "".to_string(),
        "{not json".to_string(),
        "[]".to_string(),
        r#"{"version": 2, "apps": []}"#.to_string(),
        r#"{"version": 1, "apps": [{"app_id": "a"}]}"#.to_string(),
        format!(
            r#"{{"version": 1, "apps": [{{"app_id": "a b", "name": "x", "secret": "{long_secret}", "enabled": true, "created_at_ms": 0}}]}}"#
        ),
        r#"{"version": 1, "apps": [{"app_id": "a", "name": "x", "secret": "short", "enabled": true, "created_at_ms": 0}]}"#.to_string(),
        format!(
            r#"{{"version": 1, "extra": 1, "apps": [{{"app_id": "a", "name": "x", "secret": "{long_secret}", "enabled": true, "created_at_ms": 0}}]}}"#
        ),
    ];
    for text in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(APPS_FILE);
        fs::write(&path, &text).expect("write");
        let err = AppStore::open_or_init(dir.path()).expect_err("a corrupt store is refused");
        assert!(
            matches!(err, AppStoreError::Corrupt { .. }),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains("apps.json"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("read"), text, "untouched");
    }
}

#[test]
fn duplicate_app_ids_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_apps(dir.path(), &[app("app_a", "one"), app("app_a", "two")]);
    let err = AppStore::open_or_init(dir.path()).expect_err("refused");
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn a_data_dir_that_is_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain-file");
    fs::write(&file, "x").expect("write");
    let err = AppStore::open_or_init(&file).expect_err("refused");
    assert!(matches!(err, AppStoreError::Io { .. }), "{err:?}");
}

#[test]
fn debug_never_shows_the_secret() {
    let app = App::generate("x", 0);
    let text = format!("{app:?}");
    assert!(!text.contains(&app.secret));
    assert!(text.contains(&app.app_id));
}

#[test]
fn concurrent_initialisation_agrees_on_one_app() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || AppStore::open_or_init(&path).expect("opens"))
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .collect();
    let created = results.iter().filter(|(_, c)| c.is_some()).count();
    assert_eq!(created, 1, "exactly one initialiser wins");
    let ids: std::collections::HashSet<_> = results
        .iter()
        .map(|(s, _)| s.default_app().expect("an app").app_id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "everyone sees the winner's app");
}

#[test]
fn open_reads_without_creating() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = AppStore::open(dir.path()).expect("a missing file is an empty store");
    assert!(store.apps().is_empty());
    assert!(store.default_app().is_none());
    assert!(!dir.path().join(APPS_FILE).exists(), "nothing was written");
    let (_, created) = open(dir.path());
    let created = created.expect("created");
    let store = AppStore::open(dir.path()).expect("opens");
    assert_eq!(store.apps(), &[created]);
    fs::write(dir.path().join(APPS_FILE), "junk").expect("write");
    assert!(AppStore::open(dir.path()).is_err());
}
