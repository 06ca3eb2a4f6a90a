//! The store's rules, on SQLite and (when configured) PostgreSQL.

mod support;

use std::collections::HashSet;

use support::{assert_invalid, assert_not_found, create, named, tag, TestDb};
use weir_store::{
    App, AppPatch, AppStatus, AppType, LegacyApp, NewApp, Store, StoreError, Tag, SECRET_LEN,
};

on_both_databases!(
    create_and_get,
    names_are_validated,
    descriptions_are_validated,
    tags_are_validated,
    unknown_ids_are_not_found,
    only_disabled_apps_are_deleted,
    listing_pages_through_all_apps,
    listing_filters_by_status,
    bad_paging_is_refused,
    update_changes_only_what_is_set,
    invalid_updates_change_nothing,
    rotation_replaces_the_secret,
    secret_follows_status,
    legacy_apps_are_imported_once,
    reconnecting_keeps_data,
    a_default_app_is_created_only_when_there_is_none,
    room_permission_setting_reaches_the_secret,
);

async fn create_and_get(db: &TestDb) {
    let store = &db.store;
    let new = NewApp {
        name: "Live-class_1".to_string(),
        description: "Lessons\nevery day — ünïcode ok".to_string(),
        app_type: AppType::Education,
        tags: vec![tag("team", "media"), tag("env", "")],
    };
    let (app, secret) = store.create_app(new.clone()).await.expect("create");
    assert!(app.app_id.starts_with("app_"), "{}", app.app_id);
    assert_eq!(app.app_id.len(), 20);
    assert!(app.app_id[4..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(secret.len(), SECRET_LEN);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(app.name, new.name);
    assert_eq!(app.description, new.description);
    assert_eq!(app.app_type, AppType::Education);
    assert_eq!(app.tags, new.tags);
    assert_eq!(app.status, AppStatus::Enabled);
    assert!(!app.room_permission_required);
    assert!(app.created_at_ms > 1_600_000_000_000);
    assert_eq!(store.get_app(&app.app_id).await.expect("get"), app);
    assert_eq!(
        store.app_secret(&app.app_id).await.expect("secret").secret,
        secret
    );

    let (plain, other_secret) = store.create_app(named("x")).await.expect("create");
    assert_eq!(plain.app_type, AppType::Other, "the default type");
    assert_eq!(plain.description, "");
    assert!(plain.tags.is_empty());
    assert_ne!(plain.app_id, app.app_id);
    assert_ne!(other_secret, secret);
    // Names need not be unique.
    store
        .create_app(named("x"))
        .await
        .expect("a second app with the same name");
}

async fn names_are_validated(db: &TestDb) {
    let store = &db.store;
    for bad in [
        "",
        "a b",
        "a/b",
        "é",
        "名前",
        "dot.ted",
        "tab\t",
        &"n".repeat(65),
    ] {
        assert_invalid(store.create_app(named(bad)).await, "name");
    }
    for good in ["a", "A-z_0-9", &"n".repeat(64)] {
        store.create_app(named(good)).await.expect(good);
    }
    let app = create(store, "ok").await;
    let patch = AppPatch {
        name: Some("not ok".to_string()),
        ..AppPatch::default()
    };
    assert_invalid(store.update_app(&app.app_id, patch).await, "name");
}

async fn descriptions_are_validated(db: &TestDb) {
    let store = &db.store;
    let with = |description: String| NewApp {
        name: "d".to_string(),
        description,
        ..NewApp::default()
    };
    assert_invalid(store.create_app(with("d".repeat(301))).await, "description");
    assert_invalid(
        store.create_app(with("bell\u{7}".to_string())).await,
        "description",
    );
    // 300 characters, not bytes.
    store
        .create_app(with("é".repeat(300)))
        .await
        .expect("300 characters");
}

async fn tags_are_validated(db: &TestDb) {
    let store = &db.store;
    let with = |tags: Vec<Tag>| NewApp {
        name: "t".to_string(),
        tags,
        ..NewApp::default()
    };
    let many = |n: usize| (0..n).map(|i| tag(&format!("k{i}"), "v")).collect();
    assert_invalid(store.create_app(with(many(21))).await, "tags");
    let (app, _) = store.create_app(with(many(20))).await.expect("20 tags");
    assert_eq!(app.tags.len(), 20);
    assert_eq!(
        store.get_app(&app.app_id).await.expect("get").tags,
        app.tags
    );

    for bad in [
        vec![tag("", "v")],
        vec![tag(&"k".repeat(65), "v")],
        vec![tag("k", &"v".repeat(257))],
        vec![tag("k", "a"), tag("k", "b")],
        vec![tag("k\n", "v")],
    ] {
        assert_invalid(store.create_app(with(bad)).await, "tags");
    }
    store
        .create_app(with(vec![tag(&"k".repeat(64), &"v".repeat(256))]))
        .await
        .expect("longest key and value");

    let patch = AppPatch {
        tags: Some(many(21)),
        ..AppPatch::default()
    };
    assert_invalid(store.update_app(&app.app_id, patch).await, "tags");
}

#[test]
fn app_types_parse() {
    for t in AppType::ALL {
        assert_eq!(t.as_str().parse::<AppType>().expect("known type"), t);
    }
    assert_eq!(AppType::default(), AppType::Other);
    for bad in ["games", "", "Education", "other "] {
        assert_invalid(bad.parse::<AppType>(), "type");
    }
    assert_eq!(
        "enabled".parse::<AppStatus>().ok(),
        Some(AppStatus::Enabled)
    );
    assert_eq!(
        "disabled".parse::<AppStatus>().ok(),
        Some(AppStatus::Disabled)
    );
    assert_invalid("on".parse::<AppStatus>(), "status");
}

async fn unknown_ids_are_not_found(db: &TestDb) {
    let store = &db.store;
    create(store, "exists").await;
    for id in ["app_0000000000000000", "", "'; DROP TABLE apps; --"] {
        assert_not_found(store.get_app(id).await);
        assert_not_found(store.update_app(id, AppPatch::default()).await);
        assert_not_found(store.set_app_status(id, AppStatus::Disabled).await);
        assert_not_found(store.rotate_secret(id).await);
        assert_not_found(store.delete_app(id).await);
        assert_not_found(store.app_secret(id).await);
    }
    let all = store.list_apps(None, 1, 100).await.expect("list");
    assert_eq!(all.total, 1);
}

async fn only_disabled_apps_are_deleted(db: &TestDb) {
    let store = &db.store;
    let app = create(store, "doomed").await;
    let keep = create(store, "kept").await;
    match store.delete_app(&app.app_id).await {
        Err(e @ StoreError::AppNotDisabled { .. }) => assert_eq!(e.code(), "APP_NOT_DISABLED"),
        other => panic!("expected AppNotDisabled, got {other:?}"),
    }
    assert_eq!(store.get_app(&app.app_id).await.expect("still there"), app);

    let disabled = store
        .set_app_status(&app.app_id, AppStatus::Disabled)
        .await
        .expect("disable");
    assert_eq!(disabled.status, AppStatus::Disabled);
    store.delete_app(&app.app_id).await.expect("delete");
    assert_not_found(store.get_app(&app.app_id).await);
    assert_not_found(store.delete_app(&app.app_id).await);
    assert_eq!(store.get_app(&keep.app_id).await.expect("other app"), keep);
}

async fn listing_pages_through_all_apps(db: &TestDb) {
    let store = &db.store;
    let empty = store.list_apps(None, 1, 10).await.expect("list");
    assert_eq!((empty.items.len(), empty.total), (0, 0));

    let mut created = HashSet::new();
    for i in 0..7 {
        created.insert(create(store, &format!("app{i}")).await.app_id);
    }
    let mut seen = Vec::new();
    for (page, expected_len) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let listed = store.list_apps(None, page, 3).await.expect("list");
        assert_eq!(listed.total, 7);
        assert_eq!((listed.page, listed.page_size), (page, 3));
        assert_eq!(listed.items.len(), expected_len, "page {page}");
        seen.extend(listed.items.into_iter().map(|a| a.app_id));
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), created);

    let last = weir_store::validate::MAX_PAGE;
    let far = store.list_apps(None, last, 100).await.expect("far page");
    assert!(far.items.is_empty());
    assert_eq!(far.total, 7);
    assert_invalid(store.list_apps(None, last + 1, 100).await, "page");
}

async fn listing_filters_by_status(db: &TestDb) {
    let store = &db.store;
    let mut disabled = HashSet::new();
    for i in 0..5 {
        let app = create(store, &format!("s{i}")).await;
        if i % 2 == 1 {
            store
                .set_app_status(&app.app_id, AppStatus::Disabled)
                .await
                .expect("disable");
            disabled.insert(app.app_id);
        }
    }
    let off = store
        .list_apps(Some(AppStatus::Disabled), 1, 100)
        .await
        .expect("list disabled");
    assert_eq!(off.total, 2);
    assert!(off.items.iter().all(|a| a.status == AppStatus::Disabled));
    assert_eq!(
        off.items
            .into_iter()
            .map(|a| a.app_id)
            .collect::<HashSet<_>>(),
        disabled
    );
    let on = store
        .list_apps(Some(AppStatus::Enabled), 1, 2)
        .await
        .expect("list enabled");
    assert_eq!(on.total, 3);
    assert_eq!(on.items.len(), 2);
    assert!(on.items.iter().all(|a| a.status == AppStatus::Enabled));
    let on_page2 = store
        .list_apps(Some(AppStatus::Enabled), 2, 2)
        .await
        .expect("list enabled, page 2");
    assert_eq!(on_page2.items.len(), 1);
    assert_eq!(store.list_apps(None, 1, 100).await.expect("all").total, 5);
}

async fn bad_paging_is_refused(db: &TestDb) {
    let store = &db.store;
    assert_invalid(store.list_apps(None, 0, 10).await, "page");
    assert_invalid(store.list_apps(None, 1, 0).await, "page_size");
    assert_invalid(
        store.list_apps(Some(AppStatus::Enabled), 1, 101).await,
        "page_size",
    );
    store.list_apps(None, 1, 100).await.expect("100 per page");
}

async fn update_changes_only_what_is_set(db: &TestDb) {
    let store = &db.store;
    let (app, secret) = store
        .create_app(NewApp {
            name: "before".to_string(),
            description: "old".to_string(),
            app_type: AppType::Finance,
            tags: vec![tag("a", "1")],
        })
        .await
        .expect("create");

    let same = store
        .update_app(&app.app_id, AppPatch::default())
        .await
        .expect("empty patch");
    assert_eq!(
        App {
            updated_at_ms: app.updated_at_ms,
            ..same.clone()
        },
        app
    );

    let renamed = store
        .update_app(
            &app.app_id,
            AppPatch {
                name: Some("after".to_string()),
                room_permission_required: Some(true),
                ..AppPatch::default()
            },
        )
        .await
        .expect("rename");
    assert_eq!(renamed.name, "after");
    assert!(renamed.room_permission_required);
    assert_eq!(renamed.description, "old");
    assert_eq!(renamed.app_type, AppType::Finance);
    assert_eq!(renamed.tags, vec![tag("a", "1")]);
    assert_eq!(renamed.created_at_ms, app.created_at_ms);
    assert!(renamed.updated_at_ms >= app.updated_at_ms);

    let retyped = store
        .update_app(
            &app.app_id,
            AppPatch {
                description: Some(String::new()),
                app_type: Some(AppType::Entertainment),
                tags: Some(Vec::new()),
                room_permission_required: Some(false),
                ..AppPatch::default()
            },
        )
        .await
        .expect("retype");
    assert_eq!(retyped.name, "after");
    assert_eq!(retyped.description, "");
    assert_eq!(retyped.app_type, AppType::Entertainment);
    assert!(retyped.tags.is_empty());
    assert!(!retyped.room_permission_required);
    assert_eq!(store.get_app(&app.app_id).await.expect("get"), retyped);
    // Updates never touch the secret or the status.
    let current = store.app_secret(&app.app_id).await.expect("secret");
    assert_eq!(current.secret, secret);
    assert_eq!(current.status, AppStatus::Enabled);
}

async fn invalid_updates_change_nothing(db: &TestDb) {
    let store = &db.store;
    let app = create(store, "stable").await;
    let patch = AppPatch {
        name: Some("renamed".to_string()),
        description: Some("x".repeat(301)),
        ..AppPatch::default()
    };
    assert_invalid(store.update_app(&app.app_id, patch).await, "description");
    assert_eq!(store.get_app(&app.app_id).await.expect("get"), app);
}

async fn rotation_replaces_the_secret(db: &TestDb) {
    let store = &db.store;
    let (app, first) = store.create_app(named("rot")).await.expect("create");
    let other = create(store, "bystander").await;
    let other_secret = store.app_secret(&other.app_id).await.expect("secret");
    let second = store.rotate_secret(&app.app_id).await.expect("rotate");
    assert_ne!(second, first);
    assert_eq!(second.len(), SECRET_LEN);
    assert!(second.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        store.app_secret(&app.app_id).await.expect("secret").secret,
        second
    );
    let third = store.rotate_secret(&app.app_id).await.expect("rotate");
    assert_ne!(third, second);
    assert_eq!(
        store.app_secret(&other.app_id).await.expect("secret"),
        other_secret
    );
}

async fn secret_follows_status(db: &TestDb) {
    let store = &db.store;
    let app = create(store, "toggle").await;
    assert_eq!(
        store.app_secret(&app.app_id).await.expect("secret").status,
        AppStatus::Enabled
    );
    store
        .set_app_status(&app.app_id, AppStatus::Disabled)
        .await
        .expect("disable");
    assert_eq!(
        store.app_secret(&app.app_id).await.expect("secret").status,
        AppStatus::Disabled
    );
    let again = store
        .set_app_status(&app.app_id, AppStatus::Enabled)
        .await
        .expect("enable");
    assert_eq!(again.status, AppStatus::Enabled);
    let debug = format!("{:?}", store.app_secret(&app.app_id).await.expect("secret"));
    assert!(debug.contains("<redacted>"), "{debug}");
}

async fn legacy_apps_are_imported_once(db: &TestDb) {
    let store = &db.store;
    let legacy = vec![
        LegacyApp {
            app_id: "app_00000000000000aa".to_string(),
            name: "default".to_string(),
            secret: "s".repeat(48),
            enabled: true,
            created_at_ms: 1_700_000_000_000,
        },
        LegacyApp {
            app_id: "app_00000000000000bb".to_string(),
            name: "old one".to_string(),
            secret: "t".repeat(40),
            enabled: false,
            created_at_ms: 1_700_000_000_001,
        },
    ];
    assert_eq!(store.import_legacy_apps(&legacy).await.expect("import"), 2);
    let first = store.get_app("app_00000000000000aa").await.expect("get");
    assert_eq!(first.name, "default");
    assert_eq!(first.status, AppStatus::Enabled);
    assert_eq!(first.app_type, AppType::Other);
    assert_eq!(first.created_at_ms, 1_700_000_000_000);
    let second = store
        .app_secret("app_00000000000000bb")
        .await
        .expect("secret");
    assert_eq!(second.secret, "t".repeat(40));
    assert_eq!(second.status, AppStatus::Disabled);

    // Again: nothing changes, even after edits in the database.
    store
        .rotate_secret("app_00000000000000aa")
        .await
        .expect("rotate");
    assert_eq!(store.import_legacy_apps(&legacy).await.expect("again"), 0);
    assert_ne!(
        store
            .app_secret("app_00000000000000aa")
            .await
            .expect("secret")
            .secret,
        "s".repeat(48)
    );
    assert_eq!(store.list_apps(None, 1, 10).await.expect("list").total, 2);

    let weak = LegacyApp {
        app_id: "app_00000000000000cc".to_string(),
        secret: "short".to_string(),
        ..legacy[0].clone()
    };
    assert_invalid(store.import_legacy_apps(&[weak]).await, "secret");
    assert_eq!(store.import_legacy_apps(&[]).await.expect("nothing"), 0);
}

async fn reconnecting_keeps_data(db: &TestDb) {
    let app = create(&db.store, "durable").await;
    // Migrations already applied are skipped.
    let reopened = Store::connect(&db.url).await.expect("reconnect");
    assert_eq!(reopened.get_app(&app.app_id).await.expect("get"), app);
    reopened.close().await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://u:hunter2@host/db", "", "weir.db"] {
        match Store::connect(url).await {
            Err(e @ StoreError::UnsupportedUrl(_)) => {
                assert_eq!(e.code(), "INTERNAL");
                assert!(!e.to_string().contains("hunter2"), "{e}");
            }
            other => panic!("expected UnsupportedUrl for {url:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_in_creates_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("nested dir?#%").join("data");
    let store = Store::sqlite_in(&data_dir).await.expect("open");
    assert_eq!(store.backend(), weir_store::Backend::Sqlite);
    create(&store, "first").await;
    store.close().await;
    assert!(data_dir.join(weir_store::SQLITE_FILE).is_file());
    // WAL is a property of the file: a fresh connection sees it.
    let mut conn = {
        use sqlx::Connection;
        let path = data_dir.join(weir_store::SQLITE_FILE);
        let mut encoded = String::new();
        for b in path.to_str().expect("utf-8 path").bytes() {
            if b.is_ascii_alphanumeric() || b"/._-".contains(&b) {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        sqlx::AnyConnection::connect(&format!("sqlite://{encoded}"))
            .await
            .expect("open the file directly")
    };
    let mode: String = sqlx::Row::get(
        &sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .expect("journal mode"),
        0,
    );
    assert_eq!(mode, "wal");
    let again = Store::sqlite_in(&data_dir).await.expect("reopen");
    assert_eq!(again.list_apps(None, 1, 10).await.expect("list").total, 1);
    again.close().await;
}

async fn a_default_app_is_created_only_when_there_is_none(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.default_app().await.expect("default"), None);
    let (created, secret) = store
        .ensure_default_app()
        .await
        .expect("ensure")
        .expect("created on an empty store");
    assert_eq!(created.name, weir_store::DEFAULT_APP_NAME);
    assert_eq!(secret.len(), SECRET_LEN);
    assert_eq!(store.ensure_default_app().await.expect("ensure"), None);
    // Another app created later does not displace it.
    create(store, "zzz").await;
    assert_eq!(
        store.default_app().await.expect("default"),
        Some(created.clone())
    );
    // Without an app named "default", the oldest one is the default.
    store
        .set_app_status(&created.app_id, AppStatus::Disabled)
        .await
        .expect("disable");
    store.delete_app(&created.app_id).await.expect("delete");
    let fallback = store.default_app().await.expect("default").expect("one");
    assert_eq!(fallback.name, "zzz");
    assert_eq!(store.ensure_default_app().await.expect("ensure"), None);
}

#[test]
fn concurrent_first_starts_create_one_default_app() {
    // Like separate processes: threads with a runtime each, opening one
    // fresh data dir at once.
    let dir = tempfile::tempdir().expect("temp dir");
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let path = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    let store = Store::sqlite_in(&path).await.expect("open");
                    let created = store.ensure_default_app().await.expect("ensure");
                    store.close().await;
                    created.is_some()
                })
            })
        })
        .collect();
    let created = threads
        .into_iter()
        .map(|t| t.join().expect("no panic"))
        .filter(|created| *created)
        .count();
    assert_eq!(created, 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = Store::sqlite_in(dir.path()).await.expect("open");
        let page = store.list_apps(None, 1, 100).await.expect("list");
        assert_eq!(page.total, 1);
    });
}

async fn room_permission_setting_reaches_the_secret(db: &TestDb) {
    let store = &db.store;
    let app = create(store, "strict").await;
    assert!(
        !store
            .app_secret(&app.app_id)
            .await
            .expect("secret")
            .room_permission_required
    );
    store
        .update_app(
            &app.app_id,
            AppPatch {
                room_permission_required: Some(true),
                ..AppPatch::default()
            },
        )
        .await
        .expect("update");
    assert!(
        store
            .app_secret(&app.app_id)
            .await
            .expect("secret")
            .room_permission_required
    );
}
