//! Recording: each application's recording rule, the recording jobs and
//! the files they produce (issue 4).
//!
//! The store keeps the rule as JSON text and does not interpret it: its
//! shape and validation belong to the server (`weir_server::recording`).
//! It holds the storage credentials, so no type here shows it in `Debug`.
//!
//! Jobs and files are the recorder's durable state: a job freezes the rule
//! it started with (files recovered after a crash go where the job was
//! writing them), a file row exists from its first media on, and
//! [`Store::mark_recording_file_notified`] flips `complete_notified` once,
//! so RECORD_FILE_COMPLETE is announced exactly once across restarts.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::model::Page;
use crate::validate::validate_page;
use crate::{unix_now_ms, Store, StoreError};

/// Longest rule JSON the store accepts (the API's body limit is smaller).
pub const MAX_RULE_JSON_LEN: usize = 64 * 1024;

/// An application's recording rule as stored: JSON text.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRecordingRule {
    /// The rule, as the server serialized it (holds storage credentials).
    pub rule: String,
    pub updated_at_ms: i64,
}

impl fmt::Debug for StoredRecordingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRecordingRule")
            .field("rule", &format_args!("<{} bytes, hidden>", self.rule.len()))
            .field("updated_at_ms", &self.updated_at_ms)
            .finish()
    }
}

/// A container of recording files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordFormat {
    Hls,
    Mp4,
}

/// Where a recording job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingJobStatus {
    /// Recording (or waiting for publishers).
    Active,
    /// Stop requested: files are being finalized and stored.
    Stopping,
    /// Every file is finished.
    Stopped,
    /// Gave up (storage kept failing, or the job could not start).
    Failed,
}

/// Who started a recording job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingJobOrigin {
    /// `POST /api/v1/apps/{app_id}/recordings`.
    Manual,
    /// The rule's `auto_record`, when the room was created.
    Auto,
}

/// Where a recording file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingFileStatus {
    /// Being written (or waiting in its gap-merge window).
    Recording,
    /// Finalized and stored.
    Complete,
    /// Could not be stored.
    Failed,
}

/// The database spelling of the enums above, and their parsing.
macro_rules! spelled {
    ($type:ident, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $type {
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            /// The database (and API) spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<$type, StoreError> {
                $type::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == s)
                    .ok_or_else(|| StoreError::invalid($what, format!("unknown value {s:?}")))
            }
        }
    };
}

spelled!(RecordFormat, "format", Hls => "hls", Mp4 => "mp4");
spelled!(RecordingJobStatus, "status",
    Active => "active", Stopping => "stopping", Stopped => "stopped", Failed => "failed");
spelled!(RecordingJobOrigin, "origin", Manual => "manual", Auto => "auto");
spelled!(RecordingFileStatus, "status",
    Recording => "recording", Complete => "complete", Failed => "failed");

/// A job to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewRecordingJob {
    pub app_id: String,
    pub room_id: String,
    /// The publishers to record; empty means every publisher.
    pub user_ids: Vec<String>,
    /// At least one.
    pub formats: Vec<RecordFormat>,
    pub origin: RecordingJobOrigin,
    /// The rule JSON the job records with (holds storage credentials).
    pub rule: String,
    pub created_at_ms: i64,
}

/// A recording job.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordingJob {
    /// `rec_` + 32 hex digits.
    pub job_id: String,
    pub app_id: String,
    pub room_id: String,
    /// Empty means every publisher.
    pub user_ids: Vec<String>,
    pub formats: Vec<RecordFormat>,
    pub origin: RecordingJobOrigin,
    /// The rule JSON frozen at the job's start (holds storage credentials).
    pub rule: String,
    pub status: RecordingJobStatus,
    /// Why the job stopped or failed.
    pub detail: Option<String>,
    pub created_at_ms: i64,
    pub stopped_at_ms: Option<i64>,
}

/// `Debug` for the job types without their rule (credentials).
macro_rules! debug_without_rule {
    ($type:ident { $($field:ident),+ }) => {
        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($field), &self.$field))+
                    .field("rule", &format_args!("<{} bytes, hidden>", self.rule.len()))
                    .finish()
            }
        }
    };
}

debug_without_rule!(NewRecordingJob {
    app_id,
    room_id,
    user_ids,
    formats,
    origin,
    created_at_ms
});
debug_without_rule!(RecordingJob {
    job_id,
    app_id,
    room_id,
    user_ids,
    formats,
    origin,
    status,
    detail,
    created_at_ms,
    stopped_at_ms
});

/// Changes to a job; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingJobPatch {
    pub user_ids: Option<Vec<String>>,
    pub status: Option<RecordingJobStatus>,
    pub detail: Option<String>,
    pub stopped_at_ms: Option<i64>,
}

/// A file the recorder started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecordingFile {
    pub app_id: String,
    pub job_id: String,
    pub room_id: String,
    pub user_id: String,
    pub stream: String,
    pub format: RecordFormat,
    pub file_index: u32,
    /// The object key in the storage target.
    pub object_key: String,
    /// Where it is spooled locally until stored.
    pub spool_path: Option<String>,
    pub started_at_ms: i64,
}

/// A recording file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    /// `rf_` + 32 hex digits.
    pub file_id: String,
    pub app_id: String,
    pub job_id: String,
    pub room_id: String,
    pub user_id: String,
    pub stream: String,
    pub format: RecordFormat,
    pub file_index: u32,
    pub object_key: String,
    pub spool_path: Option<String>,
    pub status: RecordingFileStatus,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub size_bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Finalized after a crash.
    pub recovered: bool,
    /// RECORD_FILE_COMPLETE was handed to the outbox.
    pub complete_notified: bool,
    pub detail: Option<String>,
}

/// Changes to a file; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilePatch {
    pub status: Option<RecordingFileStatus>,
    pub ended_at_ms: Option<i64>,
    pub size_bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub recovered: Option<bool>,
    pub detail: Option<String>,
}

const JOB_COLUMNS: &str = "job_id, app_id, room_id, user_ids, formats, origin, rule, status, \
     detail, created_at_ms, stopped_at_ms";

const FILE_COLUMNS: &str = "file_id, app_id, job_id, room_id, user_id, stream, format, \
     file_index, object_key, spool_path, status, started_at_ms, ended_at_ms, size_bytes, \
     duration_ms, width, height, recovered, complete_notified, detail";

impl Store {
    /// Sets (replaces) the application's recording rule, JSON text that
    /// the caller validated. `NotFound` for an unknown application.
    pub async fn set_recording_rule(
        &self,
        app_id: &str,
        rule: &str,
    ) -> Result<StoredRecordingRule, StoreError> {
        check_rule_json(rule)?;
        self.get_app(app_id).await?;
        let now = unix_now_ms();
        sqlx::query(
            "INSERT INTO recording_rules (app_id, rule, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id) DO UPDATE SET rule = excluded.rule, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(app_id)
        .bind(rule)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(StoredRecordingRule {
            rule: rule.to_string(),
            updated_at_ms: now,
        })
    }

    /// The application's recording rule, if one was set. `NotFound` for an
    /// unknown application.
    pub async fn recording_rule(
        &self,
        app_id: &str,
    ) -> Result<Option<StoredRecordingRule>, StoreError> {
        self.get_app(app_id).await?;
        let row = sqlx::query("SELECT rule, updated_at_ms FROM recording_rules WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(StoredRecordingRule {
                rule: row.try_get("rule")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            })
        })
        .transpose()
    }

    /// Removes the application's recording rule; `false` if it had none.
    pub async fn delete_recording_rule(&self, app_id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM recording_rules WHERE app_id = $1")
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Creates an `active` job with a fresh id. `NotFound` for an unknown
    /// application; at least one format is required.
    pub async fn create_recording_job(
        &self,
        job: NewRecordingJob,
    ) -> Result<RecordingJob, StoreError> {
        if job.formats.is_empty() {
            return Err(StoreError::invalid("formats", "must list at least one"));
        }
        check_rule_json(&job.rule)?;
        self.get_app(&job.app_id).await?;
        let job_id = format!("rec_{}", random_hex());
        sqlx::query(
            "INSERT INTO recording_jobs (job_id, app_id, room_id, user_ids, formats, origin, \
             rule, status, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
        )
        .bind(&job_id)
        .bind(&job.app_id)
        .bind(&job.room_id)
        .bind(to_json("user_ids", &job.user_ids)?)
        .bind(formats_to_json(&job.formats)?)
        .bind(job.origin.as_str())
        .bind(&job.rule)
        .bind(job.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(RecordingJob {
            job_id,
            app_id: job.app_id,
            room_id: job.room_id,
            user_ids: job.user_ids,
            formats: job.formats,
            origin: job.origin,
            rule: job.rule,
            status: RecordingJobStatus::Active,
            detail: None,
            created_at_ms: job.created_at_ms,
            stopped_at_ms: None,
        })
    }

    /// One job of the application. `NotFound` for an unknown application,
    /// `None` for a job it does not have.
    pub async fn recording_job(
        &self,
        app_id: &str,
        job_id: &str,
    ) -> Result<Option<RecordingJob>, StoreError> {
        self.get_app(app_id).await?;
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM recording_jobs WHERE app_id = $1 AND job_id = $2"
        ))
        .bind(app_id)
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// The application's jobs, newest first, optionally of one room only.
    pub async fn list_recording_jobs(
        &self,
        app_id: &str,
        room_id: Option<&str>,
        page: u32,
        page_size: u32,
    ) -> Result<Page<RecordingJob>, StoreError> {
        validate_page(page, page_size)?;
        self.get_app(app_id).await?;
        // No `$2 IS NULL` (PostgreSQL wants a typed NULL): two filters.
        let (filter, room) = match room_id {
            Some(room) => ("room_id = $2", room),
            None => ("room_id <> $2", ""),
        };
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM recording_jobs WHERE app_id = $1 AND {filter}"
        ))
        .bind(app_id)
        .bind(room)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM recording_jobs WHERE app_id = $1 AND {filter} \
             ORDER BY created_at_ms DESC, job_id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(app_id)
        .bind(room)
        .bind(i64::from(page_size))
        .bind(i64::from(page - 1) * i64::from(page_size))
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            items: rows.iter().map(job_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
            page,
            page_size,
        })
    }

    /// Jobs of every application that are `active` or `stopping`, oldest
    /// first: what a restarted server resumes.
    pub async fn unfinished_recording_jobs(&self) -> Result<Vec<RecordingJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM recording_jobs WHERE status IN ('active', 'stopping') \
             ORDER BY created_at_ms, job_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Applies `patch` to a job of the application and returns the job as
    /// it is now; `None` for a job it does not have.
    pub async fn update_recording_job(
        &self,
        app_id: &str,
        job_id: &str,
        patch: RecordingJobPatch,
    ) -> Result<Option<RecordingJob>, StoreError> {
        let user_ids = patch
            .user_ids
            .as_ref()
            .map(|ids| to_json("user_ids", ids))
            .transpose()?;
        sqlx::query(
            "UPDATE recording_jobs SET user_ids = COALESCE($3, user_ids), \
             status = COALESCE($4, status), detail = COALESCE($5, detail), \
             stopped_at_ms = COALESCE($6, stopped_at_ms) WHERE app_id = $1 AND job_id = $2",
        )
        .bind(app_id)
        .bind(job_id)
        .bind(user_ids)
        .bind(patch.status.map(RecordingJobStatus::as_str))
        .bind(patch.detail)
        .bind(patch.stopped_at_ms)
        .execute(&self.pool)
        .await?;
        self.recording_job(app_id, job_id).await
    }

    /// Records a file the recorder started (status `recording`), with a
    /// fresh id.
    pub async fn insert_recording_file(
        &self,
        file: NewRecordingFile,
    ) -> Result<RecordingFile, StoreError> {
        let file_id = format!("rf_{}", random_hex());
        sqlx::query(
            "INSERT INTO recording_files (file_id, app_id, job_id, room_id, user_id, stream, \
             format, file_index, object_key, spool_path, status, started_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'recording', $11)",
        )
        .bind(&file_id)
        .bind(&file.app_id)
        .bind(&file.job_id)
        .bind(&file.room_id)
        .bind(&file.user_id)
        .bind(&file.stream)
        .bind(file.format.as_str())
        .bind(i64::from(file.file_index))
        .bind(&file.object_key)
        .bind(&file.spool_path)
        .bind(file.started_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(RecordingFile {
            file_id,
            app_id: file.app_id,
            job_id: file.job_id,
            room_id: file.room_id,
            user_id: file.user_id,
            stream: file.stream,
            format: file.format,
            file_index: file.file_index,
            object_key: file.object_key,
            spool_path: file.spool_path,
            status: RecordingFileStatus::Recording,
            started_at_ms: file.started_at_ms,
            ended_at_ms: None,
            size_bytes: None,
            duration_ms: None,
            width: None,
            height: None,
            recovered: false,
            complete_notified: false,
            detail: None,
        })
    }

    /// One file, by id.
    pub async fn recording_file(&self, file_id: &str) -> Result<Option<RecordingFile>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM recording_files WHERE file_id = $1"
        ))
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    /// Applies `patch` to a file and returns it as it is now; `None` for an
    /// unknown id.
    pub async fn update_recording_file(
        &self,
        file_id: &str,
        patch: RecordingFilePatch,
    ) -> Result<Option<RecordingFile>, StoreError> {
        sqlx::query(
            "UPDATE recording_files SET status = COALESCE($2, status), \
             ended_at_ms = COALESCE($3, ended_at_ms), size_bytes = COALESCE($4, size_bytes), \
             duration_ms = COALESCE($5, duration_ms), width = COALESCE($6, width), \
             height = COALESCE($7, height), recovered = COALESCE($8, recovered), \
             detail = COALESCE($9, detail) WHERE file_id = $1",
        )
        .bind(file_id)
        .bind(patch.status.map(RecordingFileStatus::as_str))
        .bind(patch.ended_at_ms)
        .bind(patch.size_bytes.map(saturating_i64))
        .bind(patch.duration_ms.map(saturating_i64))
        .bind(patch.width.map(i64::from))
        .bind(patch.height.map(i64::from))
        .bind(patch.recovered.map(i64::from))
        .bind(patch.detail)
        .execute(&self.pool)
        .await?;
        self.recording_file(file_id).await
    }

    /// The files of a job, in the order they started.
    pub async fn recording_files_of_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM recording_files WHERE job_id = $1 \
             ORDER BY started_at_ms, file_index, file_id"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Files whose RECORD_FILE_COMPLETE has not been handed to the outbox:
    /// still `recording` (to recover after a crash) or `complete` but not
    /// announced. Failed files are not included. Oldest first.
    pub async fn recording_files_not_notified(&self) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM recording_files WHERE complete_notified = 0 \
             AND status IN ('recording', 'complete') ORDER BY started_at_ms, file_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Marks a `complete` file's RECORD_FILE_COMPLETE as handed to the
    /// outbox. `true` only for the one call that changed it: whoever gets
    /// `true` sends the event (use an event id derived from the file id, so
    /// that a crash between the two is repaired by the outbox's
    /// idempotent enqueue).
    pub async fn mark_recording_file_notified(&self, file_id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE recording_files SET complete_notified = 1 \
             WHERE file_id = $1 AND status = 'complete' AND complete_notified = 0",
        )
        .bind(file_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

fn check_rule_json(rule: &str) -> Result<(), StoreError> {
    if rule.len() > MAX_RULE_JSON_LEN {
        return Err(StoreError::invalid(
            "rule",
            format!("must be at most {MAX_RULE_JSON_LEN} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(rule) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        // Never echo the text: it holds credentials.
        _ => Err(StoreError::invalid("rule", "must be a JSON object")),
    }
}

/// 32 random hex digits.
fn random_hex() -> String {
    let mut rng = rand::thread_rng();
    format!("{:016x}{:016x}", rng.gen::<u64>(), rng.gen::<u64>())
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_json(what: &'static str, values: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(values).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn formats_to_json(formats: &[RecordFormat]) -> Result<String, StoreError> {
    let names: Vec<String> = formats.iter().map(|f| f.as_str().to_string()).collect();
    to_json("formats", &names)
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |reason| StoreError::Corrupt { what, reason }
}

fn from_json(what: &'static str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what)(e.to_string()))
}

fn parse<T: FromStr>(what: &'static str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| corrupt(what)(format!("unknown value {text:?}")))
}

fn job_from_row(row: &AnyRow) -> Result<RecordingJob, StoreError> {
    let user_ids: String = row.try_get("user_ids")?;
    let formats: String = row.try_get("formats")?;
    let origin: String = row.try_get("origin")?;
    let status: String = row.try_get("status")?;
    Ok(RecordingJob {
        job_id: row.try_get("job_id")?,
        app_id: row.try_get("app_id")?,
        room_id: row.try_get("room_id")?,
        user_ids: from_json("recording job user_ids", &user_ids)?,
        formats: from_json("recording job formats", &formats)?
            .iter()
            .map(|f| parse("recording job formats", f))
            .collect::<Result<_, _>>()?,
        origin: parse("recording job origin", &origin)?,
        rule: row.try_get("rule")?,
        status: parse("recording job status", &status)?,
        detail: row.try_get("detail")?,
        created_at_ms: row.try_get("created_at_ms")?,
        stopped_at_ms: row.try_get("stopped_at_ms")?,
    })
}

fn file_from_row(row: &AnyRow) -> Result<RecordingFile, StoreError> {
    const WHAT: &str = "recording file";
    let format: String = row.try_get("format")?;
    let status: String = row.try_get("status")?;
    let file_index: i64 = row.try_get("file_index")?;
    let unsigned = |column: &str| -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = row.try_get(column)?;
        value
            .map(|v| u64::try_from(v).map_err(|_| corrupt(WHAT)(format!("{column} is {v}"))))
            .transpose()
    };
    let dimension = |column: &str| -> Result<Option<u32>, StoreError> {
        unsigned(column)?
            .map(|v| u32::try_from(v).map_err(|_| corrupt(WHAT)(format!("{column} is {v}"))))
            .transpose()
    };
    let recovered: i64 = row.try_get("recovered")?;
    let complete_notified: i64 = row.try_get("complete_notified")?;
    Ok(RecordingFile {
        file_id: row.try_get("file_id")?,
        app_id: row.try_get("app_id")?,
        job_id: row.try_get("job_id")?,
        room_id: row.try_get("room_id")?,
        user_id: row.try_get("user_id")?,
        stream: row.try_get("stream")?,
        format: parse(WHAT, &format)?,
        file_index: u32::try_from(file_index)
            .map_err(|_| corrupt(WHAT)(format!("file_index is {file_index}")))?,
        object_key: row.try_get("object_key")?,
        spool_path: row.try_get("spool_path")?,
        status: parse(WHAT, &status)?,
        started_at_ms: row.try_get("started_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        size_bytes: unsigned("size_bytes")?,
        duration_ms: unsigned("duration_ms")?,
        width: dimension("width")?,
        height: dimension("height")?,
        recovered: recovered != 0,
        complete_notified: complete_notified != 0,
        detail: row.try_get("detail")?,
    })
}
