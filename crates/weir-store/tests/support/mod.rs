//! The databases the tests run against: a fresh SQLite file always, and a
//! fresh PostgreSQL database per test when `WEIR_TEST_POSTGRES_URL` is set
//! (`scripts/with-postgres.sh` starts a throwaway server and sets it).

#![allow(dead_code)] // each test file uses some of these helpers

use weir_store::{test_support, App, NewApp, Store, StoreError, Tag};

pub use test_support::POSTGRES_URL_ENV;

/// A store on a database made for one test; `finish` removes the database.
pub struct TestDb {
    pub store: Store,
    /// The URL the store was opened with (to reconnect to the same data).
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        server_url: String,
        database: String,
    },
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::sqlite_in(dir.path())
        .await
        .expect("open sqlite store");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("weir.db").display());
    TestDb {
        store,
        url,
        cleanup: Cleanup::Sqlite(dir),
    }
}

/// `None` when no PostgreSQL server is configured for tests.
pub async fn postgres() -> Option<TestDb> {
    let server_url = test_support::postgres_server_url()?;
    let (database, url) = test_support::create_scratch_database(&server_url)
        .await
        .expect("create a test database");
    let store = Store::connect(&url).await.expect("open postgres store");
    Some(TestDb {
        store,
        url,
        cleanup: Cleanup::Postgres {
            server_url,
            database,
        },
    })
}

impl TestDb {
    pub async fn finish(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Sqlite(_dir) => {}
            Cleanup::Postgres {
                server_url,
                database,
            } => {
                test_support::drop_scratch_database(&server_url, &database)
                    .await
                    .expect("drop the test database");
            }
        }
    }
}

/// Runs each named `async fn(&TestDb)` as a test on SQLite and, when
/// configured, on PostgreSQL (`sqlite::NAME`, `postgres::NAME`).
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::sqlite().await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = $crate::support::postgres().await else {
                        eprintln!(
                            "skipped: set {} to run on PostgreSQL",
                            $crate::support::POSTGRES_URL_ENV
                        );
                        return;
                    };
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

// ---- helpers shared by the test files

pub fn named(name: &str) -> NewApp {
    NewApp {
        name: name.to_string(),
        ..NewApp::default()
    }
}

pub fn tag(key: &str, value: &str) -> Tag {
    Tag {
        key: key.to_string(),
        value: value.to_string(),
    }
}

#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, expected_field: &str) {
    match result {
        Err(e @ StoreError::Invalid { field, .. }) => {
            assert_eq!(field, expected_field, "{e}");
            assert_eq!(e.code(), "INVALID_ARGUMENT");
        }
        other => panic!("expected Invalid {{ field: {expected_field:?} }}, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(e @ StoreError::NotFound { .. }) => assert_eq!(e.code(), "APP_NOT_FOUND"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

pub async fn create(store: &Store, name: &str) -> App {
    store.create_app(named(name)).await.expect("create app").0
}

/// The id of a new application named `name`.
pub async fn new_app_id(store: &Store, name: &str) -> String {
    create(store, name).await.app_id
}
