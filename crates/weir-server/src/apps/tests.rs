use std::fs;

use super::*;

fn app_json(id: &str, secret: &str) -> String {
    format!(
        r#"{{"app_id": "{id}", "name": "n", "secret": "{secret}", "enabled": true, "created_at_ms": 5}}"#
    )
}

#[test]
fn a_missing_file_is_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(read(dir.path()).expect("reads").is_none());
}

#[test]
fn a_valid_file_is_read_and_can_be_moved_aside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = "s".repeat(MIN_SECRET_LEN);
    fs::write(
        dir.path().join(APPS_FILE),
        format!(
            r#"{{"version": 1, "apps": [{}, {}]}}"#,
            app_json("app_a", &secret),
            app_json("app_b", &secret)
        ),
    )
    .expect("write");
    let apps = read(dir.path()).expect("reads").expect("some");
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].app_id, "app_a");
    assert_eq!(apps[1].secret, secret);
    assert!(apps[0].enabled);
    assert_eq!(apps[0].created_at_ms, 5);
    assert!(!format!("{:?}", apps[0]).contains(&secret));
    mark_imported(dir.path()).expect("renamed");
    assert!(read(dir.path()).expect("reads").is_none());
    assert!(dir.path().join(IMPORTED_APPS_FILE).exists());
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
            r#"{{"version": 1, "apps": [{}]}}"#,
            app_json("a b", &long_secret)
        ),
        format!(r#"{{"version": 1, "apps": [{}]}}"#, app_json("a", "short")),
        format!(
            r#"{{"version": 1, "apps": [{}, {}]}}"#,
            app_json("a", &long_secret),
            app_json("a", &long_secret)
        ),
        format!(
            r#"{{"version": 1, "extra": 1, "apps": [{}]}}"#,
            app_json("a", &long_secret)
        ),
    ];
    for text in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(APPS_FILE);
        fs::write(&path, &text).expect("write");
        let err = read(dir.path()).expect_err("a corrupt file is refused");
        assert!(
            matches!(err, LegacyAppsError::Corrupt { .. }),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains("apps.json"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("read"), text, "untouched");
    }
}

#[test]
fn an_unreadable_path_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join(APPS_FILE)).expect("a dir where the file would be");
    let err = read(dir.path()).expect_err("refused");
    assert!(matches!(err, LegacyAppsError::Io { .. }), "{err:?}");
}
