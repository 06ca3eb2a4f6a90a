use super::*;

fn local(path: &FsPath, options: StorageOptions) -> RecordingStorage {
    let target = StorageTarget::Local {
        path: Some(path.display().to_string()),
    };
    RecordingStorage::open_with(&target, FsPath::new("/unused"), options).expect("open")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn local_files_are_put_read_and_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("rec");
    let options = StorageOptions {
        multipart_threshold: 1000,
        part_size: 300,
        ..StorageOptions::default()
    };
    let storage = local(&root, options);
    let spool = dir.path().join("spool.mp4");
    for (key, len) in [("app/mp4/small.mp4", 999), ("app/mp4/big file.mp4", 4321)] {
        std::fs::write(&spool, pattern(len)).expect("spool");
        let size = storage.put_file(&spool, key).await.expect("put");
        assert_eq!(size, len as u64);
        assert_eq!(storage.head(key).await.expect("head"), len as u64);
        assert_eq!(std::fs::read(root.join(key)).expect("stored"), pattern(len));
        assert_eq!(storage.get_bytes(key).await.expect("get"), pattern(len));
    }
    let url = storage.url("app/mp4/big file.mp4");
    assert_eq!(
        url,
        format!("file://{}/app/mp4/big%20file.mp4", root.display())
    );
    assert_eq!(storage.location(), root.display().to_string());
    assert_eq!(storage.bucket(), None);

    storage.delete("app/mp4/small.mp4").await.expect("delete");
    storage
        .delete("app/mp4/small.mp4")
        .await
        .expect("delete twice");
    assert!(matches!(
        storage.head("app/mp4/small.mp4").await,
        Err(StorageError::NotFound(_))
    ));
    storage
        .delete("app/mp4/big file.mp4")
        .await
        .expect("delete");
    assert!(!root.join("app").exists(), "empty directories are removed");
}

#[tokio::test]
async fn unsafe_keys_and_missing_spool_files_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = local(dir.path(), StorageOptions::default());
    for key in ["", "/abs", "a/../b", "a//b", "a/"] {
        assert!(
            matches!(storage.head(key).await, Err(StorageError::InvalidKey(_))),
            "{key:?}"
        );
    }
    let missing = storage.put_file(&dir.path().join("nope"), "a.mp4").await;
    assert!(
        matches!(missing, Err(StorageError::Spool { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn the_check_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("new/nested/root");
    let storage = local(&root, StorageOptions::quick());
    storage.check_writable().await.expect("writable");
    assert!(
        !dir.path().join("new").exists(),
        "created directories are removed"
    );

    // An existing root stays, empty.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    local(&existing, StorageOptions::quick())
        .check_writable()
        .await
        .expect("writable");
    assert!(existing.is_dir());
    assert_eq!(std::fs::read_dir(&existing).expect("list").count(), 0);
}

#[tokio::test]
async fn a_root_under_a_file_is_not_writable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("file");
    let error = local(&file.join("sub"), StorageOptions::quick())
        .check_writable()
        .await
        .expect_err("not writable");
    assert!(matches!(error, StorageError::Config(_)), "{error:?}");
}

#[test]
fn relative_roots_are_under_the_data_dir() {
    let data = FsPath::new("/data");
    assert_eq!(local_root(None, data), PathBuf::from("/data/recordings"));
    assert_eq!(
        local_root(Some("rec/a"), data),
        PathBuf::from("/data/rec/a")
    );
    assert_eq!(
        local_root(Some("/srv/rec"), data),
        PathBuf::from("/srv/rec")
    );
}

#[test]
fn s3_urls_are_path_style_and_secrets_stay_hidden() {
    let target: StorageTarget = serde_json::from_value(serde_json::json!({
        "kind": "s3", "endpoint": "http://127.0.0.1:9000/", "bucket": "rec",
        "prefix": "tenant/a", "access_key": "AK", "secret_key": "very-secret"
    }))
    .expect("target");
    let storage = RecordingStorage::open(&target, FsPath::new("/data")).expect("open");
    assert_eq!(
        storage.url("app/hls/s 1.m3u8"),
        "http://127.0.0.1:9000/rec/tenant/a/app/hls/s%201.m3u8"
    );
    assert_eq!(storage.stored_key("x.mp4"), "tenant/a/x.mp4");
    assert_eq!(storage.location(), "http://127.0.0.1:9000");
    assert_eq!(storage.bucket(), Some("rec"));
    assert!(!format!("{storage:?}").contains("very-secret"));
    assert!(!format!("{target:?}").contains("very-secret"));
    assert_eq!(
        scrub("sig very-secret here", Some("very-secret")),
        "sig <hidden> here"
    );
}

#[test]
fn endpoints_are_normalized_or_refused() {
    assert_eq!(
        normalize_endpoint("http://127.0.0.1:9000/").expect("valid"),
        "http://127.0.0.1:9000"
    );
    let idn = normalize_endpoint("https://\u{131}xample.test/s3/").expect("valid");
    assert!(
        idn.starts_with("https://xn--") && idn.ends_with(".test/s3"),
        "{idn}"
    );
    for bad in [
        "http://\u{131}\u{2a07e}a\u{e7db7}6\u{1f3fb}9\u{ad}",
        "http://[::1",
        "http://user:pw@host",
        "http://host/?q=1",
        "ftp://host",
    ] {
        assert!(
            matches!(normalize_endpoint(bad), Err(StorageError::Config(_))),
            "{bad:?}"
        );
    }
}
