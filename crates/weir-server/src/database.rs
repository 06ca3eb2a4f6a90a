//! Opening the control-plane database as configured: SQLite in the data dir
//! unless `database.url` names PostgreSQL; shared by `weir serve` and the
//! offline `weir token` commands.

use anyhow::Context;
use tracing::info;
use weir_store::Store;

use crate::config::Config;

/// Connects (applying migrations) and moves a legacy `apps.json` in.
pub async fn open(config: &Config) -> anyhow::Result<Store> {
    let store = match &config.database.url {
        Some(url) => Store::connect(url).await,
        None => Store::sqlite_in(&config.data_dir).await,
    }
    .with_context(|| format!("opening the control-plane database ({})", location(config)))?;
    import_legacy_apps(&store, config).await?;
    Ok(store)
}

/// Where the database is, for messages: the SQLite file, or the PostgreSQL
/// URL without its password.
pub fn location(config: &Config) -> String {
    match &config.database.url {
        Some(url) => weir_store::redact_url(url),
        None => config
            .data_dir
            .join(weir_store::SQLITE_FILE)
            .display()
            .to_string(),
    }
}

/// Moves the applications of an `apps.json` (the file store of earlier
/// versions) into the database, once: the file is renamed afterwards.
async fn import_legacy_apps(store: &Store, config: &Config) -> anyhow::Result<()> {
    let Some(apps) = crate::apps::read(&config.data_dir)? else {
        return Ok(());
    };
    let added = store
        .import_legacy_apps(&apps)
        .await
        .context("importing apps.json into the database")?;
    crate::apps::mark_imported(&config.data_dir)?;
    info!(
        found = apps.len(),
        added, "imported apps.json into the database"
    );
    Ok(())
}
