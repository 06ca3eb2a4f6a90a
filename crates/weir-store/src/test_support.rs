//! Scratch PostgreSQL databases for tests (feature `test-support`): the
//! store's own tests and the server's run the same suites on SQLite and,
//! when `WEIR_TEST_POSTGRES_URL` names a server (`scripts/with-postgres.sh`
//! starts a throwaway one and sets it), on PostgreSQL.

use rand::Rng;
use sqlx::Connection;

use crate::StoreError;

/// The variable naming the test PostgreSQL server (a superuser URL).
pub const POSTGRES_URL_ENV: &str = "WEIR_TEST_POSTGRES_URL";

/// The test PostgreSQL server's URL, when one is configured.
pub fn postgres_server_url() -> Option<String> {
    std::env::var(POSTGRES_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
}

/// Creates an empty database with a random name on the server at
/// `server_url`; answers its name and its URL.
pub async fn create_scratch_database(server_url: &str) -> Result<(String, String), StoreError> {
    sqlx::any::install_default_drivers();
    let database = format!("weir_test_{:016x}", rand::thread_rng().gen::<u64>());
    let mut admin = sqlx::AnyConnection::connect(server_url).await?;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let url = with_database(server_url, &database);
    Ok((database, url))
}

/// Drops a database made by [`create_scratch_database`], even while
/// connections to it remain.
pub async fn drop_scratch_database(server_url: &str, database: &str) -> Result<(), StoreError> {
    let mut admin = sqlx::AnyConnection::connect(server_url).await?;
    sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}
