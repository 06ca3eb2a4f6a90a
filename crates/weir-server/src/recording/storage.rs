//! Where finished recording files go: a local directory or an
//! S3-compatible bucket, both through `object_store`.
//!
//! The recorder spools files locally and hands each finished one to
//! [`RecordingStorage::put_file`], which uploads it (multipart above a
//! size threshold) and retries a failed upload with exponential backoff
//! when the failure may be transient; `object_store` also retries single
//! requests (5xx, connection errors). Local targets write through a
//! staging file and rename, so a reader never sees half a file.
//!
//! Errors never carry the secret key (the S3 client signs requests; the
//! messages are scrubbed anyway).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use super::rule::{S3Target, StorageTarget};

/// The local directory under the data dir when a rule names none.
pub const DEFAULT_LOCAL_DIR: &str = "recordings";
/// Where the storage check writes its probe object (under the prefix).
pub const PROBE_DIR: &str = ".weir-storage-test";
/// S3 refuses parts smaller than this (but the last).
pub const MIN_S3_PART_SIZE: usize = 5 * 1024 * 1024;

/// How uploads are done.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Files at least this large are uploaded in parts.
    pub multipart_threshold: u64,
    /// The size of each part; at least [`MIN_S3_PART_SIZE`] on S3.
    pub part_size: usize,
    /// Parts in flight at once.
    pub part_concurrency: usize,
    /// Whole-upload attempts (the first included) on transient failures.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each next one.
    pub backoff: Duration,
    /// Per-request retries inside `object_store` (S3 only).
    pub request_retries: usize,
    /// Per-request timeout (S3 only).
    pub request_timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: 4,
            attempts: 5,
            backoff: Duration::from_secs(1),
            request_retries: 4,
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl StorageOptions {
    /// For a quick interactive check (the storage test endpoint): one
    /// attempt, few retries, short timeouts.
    pub fn quick() -> StorageOptions {
        StorageOptions {
            attempts: 1,
            request_retries: 1,
            request_timeout: Duration::from_secs(5),
            ..StorageOptions::default()
        }
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The target cannot be set up (bad endpoint, unusable directory).
    #[error("storage configuration: {0}")]
    Config(String),
    /// The spooled file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An object key that is not a safe relative path.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// No such object.
    #[error("object {0} not found")]
    NotFound(String),
    /// The store refused or failed (after retries).
    #[error("{action} {key}: {message}")]
    Store {
        action: &'static str,
        key: String,
        message: String,
        /// Worth another attempt later (network, 5xx, timeouts).
        transient: bool,
    },
}

impl StorageError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Store {
                transient: true,
                ..
            }
        )
    }
}

/// Which kind of target, with what describes it in callbacks.
#[derive(Debug, Clone)]
enum Target {
    /// Absolute root directory.
    Local { root: PathBuf },
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
}

/// An opened storage target.
pub struct RecordingStorage {
    target: Target,
    /// S3: built at open. Local: built at first use (the directory is
    /// created then).
    store: OnceCell<Arc<dyn ObjectStore>>,
    options: StorageOptions,
    /// Scrubbed from every error message.
    secret: Option<String>,
}

impl std::fmt::Debug for RecordingStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingStorage")
            .field("target", &self.target)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The local root for `path` (`None`: the default directory).
pub fn local_root(path: Option<&str>, data_dir: &FsPath) -> PathBuf {
    let root = match path {
        None => data_dir.join(DEFAULT_LOCAL_DIR),
        Some(path) => data_dir.join(path), // an absolute `path` replaces data_dir
    };
    std::path::absolute(&root).unwrap_or(root)
}

impl RecordingStorage {
    /// Opens the rule's storage section with the default options.
    pub fn open(target: &StorageTarget, data_dir: &FsPath) -> Result<Self, StorageError> {
        Self::open_with(target, data_dir, StorageOptions::default())
    }

    /// Opens a storage section; nothing is written or created yet.
    pub fn open_with(
        target: &StorageTarget,
        data_dir: &FsPath,
        options: StorageOptions,
    ) -> Result<Self, StorageError> {
        match target {
            StorageTarget::Local { path } => Ok(RecordingStorage {
                target: Target::Local {
                    root: local_root(path.as_deref(), data_dir),
                },
                store: OnceCell::new(),
                options,
                secret: None,
            }),
            StorageTarget::S3(s3) => {
                let secret = s3.secret_key.expose().to_string();
                let endpoint = normalize_endpoint(&s3.endpoint)?;
                let store = build_s3(s3, &endpoint, &options)
                    .map_err(|e| StorageError::Config(scrub(&e.to_string(), Some(&secret))))?;
                Ok(RecordingStorage {
                    target: Target::S3 {
                        endpoint,
                        bucket: s3.bucket.clone(),
                        prefix: s3.prefix.clone(),
                    },
                    store: OnceCell::new_with(Some(store)),
                    options,
                    secret: Some(secret),
                })
            }
        }
    }

    /// For callbacks' `obs_location`: the S3 endpoint or the local root.
    pub fn location(&self) -> String {
        match &self.target {
            Target::Local { root } => root.display().to_string(),
            Target::S3 { endpoint, .. } => endpoint.clone(),
        }
    }

    /// For callbacks' `obs_bucket`: the S3 bucket (none for local).
    pub fn bucket(&self) -> Option<&str> {
        match &self.target {
            Target::Local { .. } => None,
            Target::S3 { bucket, .. } => Some(bucket),
        }
    }

    /// The key as stored: `PREFIX/KEY` on S3, `KEY` under a local root.
    pub fn stored_key(&self, key: &str) -> String {
        match &self.target {
            Target::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{key}"),
            _ => key.to_string(),
        }
    }

    /// The download URL of an object: `file://` + path for a local target,
    /// `ENDPOINT/BUCKET/PREFIX/KEY` (path style, percent-encoded) on S3.
    pub fn url(&self, key: &str) -> String {
        match &self.target {
            Target::Local { root } => {
                let path = root.join(key);
                reqwest::Url::from_file_path(&path)
                    .map(String::from)
                    .unwrap_or_else(|()| format!("file://{}", path.display()))
            }
            Target::S3 {
                endpoint, bucket, ..
            } => {
                let stored = self.stored_key(key);
                match reqwest::Url::parse(endpoint) {
                    Ok(mut url) if !url.cannot_be_a_base() => {
                        if let Ok(mut segments) = url.path_segments_mut() {
                            segments
                                .pop_if_empty()
                                .push(bucket)
                                .extend(stored.split('/'));
                        }
                        url.into()
                    }
                    _ => format!("{endpoint}/{bucket}/{stored}"),
                }
            }
        }
    }

    /// Uploads the local file `local` as `key`; returns its size. Large
    /// files go in parts; transient failures are retried with backoff.
    pub async fn put_file(&self, local: &FsPath, key: &str) -> Result<u64, StorageError> {
        let location = self.object_path(key)?;
        let mut wait = self.options.backoff;
        let mut attempt = 1;
        loop {
            match self.put_file_once(local, &location, key).await {
                Ok(size) => return Ok(size),
                Err(error) if error.is_transient() && attempt < self.options.attempts => {
                    tracing::warn!(%error, attempt, key, "upload failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn put_file_once(
        &self,
        local: &FsPath,
        location: &ObjectPath,
        key: &str,
    ) -> Result<u64, StorageError> {
        let spool = |source| StorageError::Spool {
            path: local.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(local).await.map_err(spool)?;
        let size = file.metadata().await.map_err(spool)?.len();
        let store = self.store().await?;
        if size < self.options.multipart_threshold {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut bytes).await.map_err(spool)?;
            store
                .put(location, PutPayload::from(bytes))
                .await
                .map_err(|e| self.error("upload", key, e))?;
            return Ok(size);
        }
        let upload = store
            .put_multipart(location)
            .await
            .map_err(|e| self.error("start the upload of", key, e))?;
        let part_size = match self.target {
            Target::S3 { .. } => self.options.part_size.max(MIN_S3_PART_SIZE),
            Target::Local { .. } => self.options.part_size.max(1),
        };
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        let mut buffer = vec![0; part_size];
        loop {
            let read = match read_full(&mut file, &mut buffer).await {
                Ok(read) => read,
                Err(source) => {
                    let _ = writer.abort().await;
                    return Err(spool(source));
                }
            };
            if read == 0 {
                break;
            }
            if let Err(e) = writer
                .wait_for_capacity(self.options.part_concurrency.max(1))
                .await
            {
                let _ = writer.abort().await;
                return Err(self.error("upload a part of", key, e));
            }
            writer.write(&buffer[..read]);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.error("finish the upload of", key, e))?;
        Ok(size)
    }

    /// Stores `bytes` as `key` (small objects: playlists, probes).
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let location = self.object_path(key)?;
        self.store()
            .await?
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(|e| self.error("write", key, e))?;
        Ok(())
    }

    /// Reads a whole object.
    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let location = self.object_path(key)?;
        let result = self
            .store()
            .await?
            .get(&location)
            .await
            .map_err(|e| self.error("read", key, e))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.error("read", key, e))?;
        Ok(bytes.to_vec())
    }

    /// The size of a stored object.
    pub async fn head(&self, key: &str) -> Result<u64, StorageError> {
        let location = self.object_path(key)?;
        let meta = self
            .store()
            .await?
            .head(&location)
            .await
            .map_err(|e| self.error("look up", key, e))?;
        Ok(meta.size)
    }

    /// Deletes an object (no error if it does not exist).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let location = self.object_path(key)?;
        match self.store().await?.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// Checks that the target is writable: writes a small object, reads it
    /// back, deletes it. A local root that did not exist is removed again.
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let created = match &self.target {
            Target::Local { root } => missing_ancestors(root),
            Target::S3 { .. } => Vec::new(),
        };
        let result = self.probe().await;
        // Only directories this check created, deepest first, and only
        // when empty (remove_dir refuses otherwise).
        for dir in created {
            let _ = tokio::fs::remove_dir(&dir).await;
        }
        result
    }

    async fn probe(&self) -> Result<(), StorageError> {
        let key = format!("{PROBE_DIR}/{:016x}", rand::random::<u64>());
        let content = format!("weir storage test {key}\n").into_bytes();
        self.put_bytes(&key, content.clone()).await?;
        let read = self.get_bytes(&key).await;
        let deleted = self.delete(&key).await;
        if read? != content {
            return Err(StorageError::Store {
                action: "read back",
                key,
                message: "the object read back differs from what was written".into(),
                transient: false,
            });
        }
        deleted
    }

    fn object_path(&self, key: &str) -> Result<ObjectPath, StorageError> {
        let bad = || StorageError::InvalidKey(key.to_string());
        if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
            return Err(bad());
        }
        ObjectPath::parse(self.stored_key(key)).map_err(|_| bad())
    }

    async fn store(&self) -> Result<&Arc<dyn ObjectStore>, StorageError> {
        self.store
            .get_or_try_init(|| async {
                let Target::Local { root } = &self.target else {
                    return Err(StorageError::Config("the S3 client is missing".into()));
                };
                tokio::fs::create_dir_all(root).await.map_err(|e| {
                    StorageError::Config(format!("cannot create {}: {e}", root.display()))
                })?;
                let local = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| StorageError::Config(e.to_string()))?
                    .with_automatic_cleanup(true);
                Ok(Arc::new(local) as Arc<dyn ObjectStore>)
            })
            .await
    }

    fn error(&self, action: &'static str, key: &str, error: object_store::Error) -> StorageError {
        use object_store::Error as E;
        let transient = !matches!(
            error,
            E::NotFound { .. }
                | E::InvalidPath { .. }
                | E::NotSupported { .. }
                | E::AlreadyExists { .. }
                | E::Precondition { .. }
                | E::NotImplemented { .. }
                | E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::UnknownConfigurationKey { .. }
        );
        if let E::NotFound { .. } = error {
            return StorageError::NotFound(key.to_string());
        }
        StorageError::Store {
            action,
            key: key.to_string(),
            message: scrub(&error.to_string(), self.secret.as_deref()),
            transient,
        }
    }
}

/// `dir` and its ancestors that do not exist, deepest first.
fn missing_ancestors(dir: &FsPath) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|path| !path.as_os_str().is_empty() && !path.exists())
        .map(FsPath::to_path_buf)
        .collect()
}

/// Reads until `buffer` is full or the file ends.
async fn read_full(file: &mut tokio::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

fn scrub(message: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => message.replace(secret, "<hidden>"),
        _ => message.to_string(),
    }
}

/// The endpoint as an ASCII URL without a trailing `/` (hosts in
/// punycode, paths percent-encoded): `object_store` builds request URIs by
/// appending to it, and panics on one that does not parse.
pub(super) fn normalize_endpoint(endpoint: &str) -> Result<String, StorageError> {
    let bad = |reason: &str| StorageError::Config(format!("endpoint {endpoint:?}: {reason}"));
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("must be http:// or https:// and a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    let normalized = url.as_str().trim_end_matches('/').to_string();
    format!("{normalized}/bucket/key")
        .parse::<axum::http::Uri>()
        .map_err(|e| bad(&e.to_string()))?;
    Ok(normalized)
}

fn build_s3(
    s3: &S3Target,
    endpoint: &str,
    options: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: options.request_retries,
        retry_timeout: options.request_timeout.saturating_mul(2),
    };
    let client = ClientOptions::new()
        .with_timeout(options.request_timeout)
        .with_connect_timeout(Duration::from_secs(5))
        .with_allow_http(true);
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_region(&s3.region)
        .with_bucket_name(&s3.bucket)
        .with_access_key_id(&s3.access_key)
        .with_secret_access_key(s3.secret_key.expose())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_retry(retry)
        .with_client_options(client)
        .build()?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests;
