//! The admin key and callback configurations, on SQLite and (when
//! configured) PostgreSQL.

mod support;

use support::{assert_invalid, assert_not_found, named, TestDb};
use weir_store::Store;

on_both_databases!(
    admin_key_is_generated_once,
    configured_admin_key_replaces_the_stored_one,
    no_admin_key_verifies_nothing,
    callback_configs_are_validated_and_replaced,
);

async fn admin_key_is_generated_once(db: &TestDb) {
    let store = &db.store;
    let key = store
        .ensure_admin_key(None)
        .await
        .expect("ensure")
        .expect("a new key on first start");
    assert_eq!(key.len(), weir_store::ADMIN_KEY_GENERATED_LEN);
    assert_eq!(store.ensure_admin_key(None).await.expect("ensure"), None);
    assert!(store.verify_admin_key(&key).await.expect("verify"));
    for wrong in [
        "",
        "wrong",
        &key[..key.len() - 1],
        &format!("{key}x"),
        &key.to_lowercase(),
    ] {
        if wrong != key {
            assert!(
                !store.verify_admin_key(wrong).await.expect("verify"),
                "{wrong}"
            );
        }
    }
    // The key itself is not stored anywhere: a restart cannot print it again.
    let reopened = Store::connect(&db.url).await.expect("reconnect");
    assert_eq!(reopened.ensure_admin_key(None).await.expect("ensure"), None);
    assert!(reopened.verify_admin_key(&key).await.expect("verify"));
    reopened.close().await;
}

async fn configured_admin_key_replaces_the_stored_one(db: &TestDb) {
    let store = &db.store;
    assert_invalid(store.ensure_admin_key(Some("short")).await, "admin_key");
    let generated = store
        .ensure_admin_key(None)
        .await
        .expect("ensure")
        .expect("generated");
    let configured = "c".repeat(weir_store::ADMIN_KEY_MIN_LEN);
    assert_eq!(
        store
            .ensure_admin_key(Some(&configured))
            .await
            .expect("ensure"),
        None
    );
    assert!(store.verify_admin_key(&configured).await.expect("verify"));
    assert!(!store.verify_admin_key(&generated).await.expect("verify"));
    // A later start without the setting keeps the last configured key.
    assert_eq!(store.ensure_admin_key(None).await.expect("ensure"), None);
    assert!(store.verify_admin_key(&configured).await.expect("verify"));
    let next = format!("{configured}-next");
    store
        .ensure_admin_key(Some(&next))
        .await
        .expect("change the configured key");
    assert!(store.verify_admin_key(&next).await.expect("verify"));
    assert!(!store.verify_admin_key(&configured).await.expect("verify"));
}

async fn no_admin_key_verifies_nothing(db: &TestDb) {
    let store = &db.store;
    assert!(!store.verify_admin_key("").await.expect("verify"));
    assert!(!store.verify_admin_key("anything").await.expect("verify"));
}

async fn callback_configs_are_validated_and_replaced(db: &TestDb) {
    let store = &db.store;
    let (app, _) = store.create_app(named("hooks")).await.expect("create");
    assert_eq!(
        store.callback_config(&app.app_id).await.expect("read"),
        None
    );
    let key = "k".repeat(32);
    let config = weir_store::CallbackConfig {
        url: "https://hooks.example.test/weir?x=1".into(),
        key: key.clone(),
        events: vec!["ROOM_CREATED".into()],
    };
    store
        .set_callback_config(&app.app_id, config.clone())
        .await
        .expect("set");
    assert_eq!(
        store.callback_config(&app.app_id).await.expect("read"),
        Some(config)
    );
    // Replaced as a whole.
    let all = weir_store::CallbackConfig {
        url: "http://127.0.0.1:9/cb".into(),
        key: "Z9".repeat(32),
        events: vec![],
    };
    store
        .set_callback_config(&app.app_id, all.clone())
        .await
        .expect("replace");
    assert_eq!(
        store.callback_config(&app.app_id).await.expect("read"),
        Some(all)
    );
    assert!(
        !format!("{:?}", store.callback_config(&app.app_id).await).contains("Z9Z9"),
        "Debug hides the key"
    );

    for (url, key, field) in [
        ("ftp://host/x", key.as_str(), "url"),
        ("https://", key.as_str(), "url"),
        ("https:///path", key.as_str(), "url"),
        ("https://host/with space", key.as_str(), "url"),
        (
            &format!("https://host/{}", "a".repeat(2100)),
            key.as_str(),
            "url",
        ),
        ("https://host/", "short", "key"),
        ("https://host/", &"k".repeat(65), "key"),
        ("https://host/", &format!("{}!", "k".repeat(32)), "key"),
    ] {
        let bad = weir_store::CallbackConfig {
            url: url.to_string(),
            key: key.to_string(),
            events: vec![],
        };
        assert_invalid(store.set_callback_config(&app.app_id, bad).await, field);
    }
    let ok = weir_store::CallbackConfig {
        url: format!("https://h/{}", "a".repeat(2083 - "https://h/".len())),
        key: key.clone(),
        events: vec![],
    };
    store
        .set_callback_config(&app.app_id, ok)
        .await
        .expect("2083 characters is the limit");
    assert_not_found(store.callback_config("app_missing").await);
    assert_not_found(
        store
            .set_callback_config(
                "app_missing",
                weir_store::CallbackConfig {
                    url: "https://h/".into(),
                    key,
                    events: vec![],
                },
            )
            .await,
    );
}
