//! What happens to a recording's files: the finisher takes every stream's
//! file events, records the files in the database, stores finished files
//! (spool -> the rule's storage target, with retries) and sends the seed's
//! recording callbacks through the event dispatcher:
//! RECORD_NEW_FILE_START when a file has its first media on disk,
//! RECORD_FILE_COMPLETE once it is finalized and stored (once: the file
//! row remembers it was announced), RECORD_FAILED when storing fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use weir_recorder::config::{FileCompleted, FileStarted, Format};
use weir_store::{NewRecordingFile, RecordFormat, RecordingFilePatch, RecordingFileStatus, Store};

use super::stream::{StreamEvent, StreamKey};
use super::Recorders;
use crate::callbacks::{Dispatcher, EventType, NewEvent};
use crate::recording::rule::RecordingRule;
use crate::recording::storage::RecordingStorage;
use crate::serve::metrics::ServerMetrics;

/// Everything the finisher needs.
pub struct Finisher {
    pub store: Store,
    pub recorders: Recorders,
    pub events: Dispatcher,
    pub data_dir: PathBuf,
    pub metrics: Arc<ServerMetrics>,
}

/// A started file's database row, by (job, recorder file id).
type OpenFiles = HashMap<(String, StreamKey, u64), String>;

impl Finisher {
    /// Runs until every stream's event sender is gone.
    pub async fn run(self, mut stream_events: UnboundedReceiver<StreamEvent>) {
        let mut open: OpenFiles = HashMap::new();
        while let Some(event) = stream_events.recv().await {
            match event {
                StreamEvent::Started {
                    key,
                    job_id,
                    file,
                    spool,
                } => {
                    if let Some(file_id) = self.started(&key, &job_id, &file, &spool).await {
                        open.insert((job_id, key, file.file_id), file_id);
                    }
                }
                StreamEvent::Completed {
                    key,
                    job_id,
                    file,
                    spool,
                } => {
                    let row = open.remove(&(job_id.clone(), key.clone(), file.file_id));
                    self.completed(&key, &job_id, row, &file, &spool).await;
                }
                StreamEvent::Ended { key, job_id, spool } => {
                    self.recorders.ended(&key);
                    remove_empty_dirs(&spool);
                    tracing::debug!(job = %job_id, user = %key.user_id, "stream ended");
                }
            }
        }
    }

    async fn started(
        &self,
        key: &StreamKey,
        job_id: &str,
        file: &FileStarted,
        spool: &Path,
    ) -> Option<String> {
        let stream = stream_name(key);
        let row = self
            .store
            .insert_recording_file(NewRecordingFile {
                app_id: key.app_id.clone(),
                job_id: job_id.to_string(),
                room_id: key.room_id.clone(),
                user_id: key.user_id.clone(),
                stream: stream.clone(),
                format: store_format(file.format),
                file_index: file.file_index,
                object_key: file.object.clone(),
                spool_path: Some(spool.display().to_string()),
                started_at_ms: unix_ms(file.start_time),
            })
            .await;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(error = %e, "recording a started file failed");
                return None;
            }
        };
        let mut extra = Map::new();
        extra.insert("stream_name".into(), json!(stream));
        extra.insert("record_format".into(), json!(format_name(file.format)));
        extra.insert("start_time".into(), json!(utc(file.start_time)));
        extra.insert("job_id".into(), json!(job_id));
        extra.insert("file_index".into(), json!(file.file_index));
        extra.insert("obs_object".into(), json!(file.object));
        self.emit(EventType::RecordNewFileStart, key, extra);
        Some(row.file_id)
    }

    async fn completed(
        &self,
        key: &StreamKey,
        job_id: &str,
        row: Option<String>,
        file: &FileCompleted,
        spool: &Path,
    ) {
        let stored = self.store_file(&key.app_id, job_id, file, spool).await;
        let mut extra = Map::new();
        extra.insert("stream_name".into(), json!(stream_name(key)));
        extra.insert("record_format".into(), json!(format_name(file.format)));
        extra.insert("job_id".into(), json!(job_id));
        extra.insert("file_index".into(), json!(file.file_index));
        extra.insert("recovered".into(), json!(false));
        match stored {
            Ok(stored) => {
                self.metrics.recordings_completed.inc();
                extra.insert("download_url".into(), json!(stored.url));
                extra.insert("file_size".into(), json!(stored.size));
                extra.insert("record_duration".into(), json!(file.duration.as_secs_f64()));
                extra.insert("start_time".into(), json!(utc(file.start_time)));
                extra.insert("end_time".into(), json!(utc(file.end_time)));
                extra.insert("width".into(), json!(file.width));
                extra.insert("height".into(), json!(file.height));
                extra.insert("obs_location".into(), json!(stored.location));
                extra.insert("obs_bucket".into(), json!(stored.bucket));
                extra.insert("obs_object".into(), json!(stored.object));
                extra.insert("detail_message".into(), json!("ok"));
                let patch = RecordingFilePatch {
                    status: Some(RecordingFileStatus::Complete),
                    ended_at_ms: Some(unix_ms(file.end_time)),
                    size_bytes: Some(stored.size),
                    duration_ms: Some(u64::try_from(file.duration.as_millis()).unwrap_or(u64::MAX)),
                    width: Some(u32::from(file.width)),
                    height: Some(u32::from(file.height)),
                    ..RecordingFilePatch::default()
                };
                self.finish_row(row.as_deref(), patch).await;
                self.emit(EventType::RecordFileComplete, key, extra);
                if let Some(file_id) = &row {
                    if let Err(e) = self.store.mark_recording_file_notified(file_id).await {
                        tracing::error!(error = %e, "marking a recording as announced failed");
                    }
                }
                for path in &file.paths {
                    let _ = std::fs::remove_file(spool.join(path));
                }
            }
            Err(reason) => {
                self.metrics.recordings_failed.inc();
                tracing::error!(job = %job_id, object = %file.object, %reason, "storing a recording failed");
                extra.insert("obs_object".into(), json!(file.object));
                extra.insert("detail_message".into(), json!(reason));
                let patch = RecordingFilePatch {
                    status: Some(RecordingFileStatus::Failed),
                    ended_at_ms: Some(unix_ms(file.end_time)),
                    detail: Some(reason),
                    ..RecordingFilePatch::default()
                };
                self.finish_row(row.as_deref(), patch).await;
                self.emit(EventType::RecordFailed, key, extra);
            }
        }
    }

    /// Uploads every path of `file` to the job's storage target.
    async fn store_file(
        &self,
        app_id: &str,
        job_id: &str,
        file: &FileCompleted,
        spool: &Path,
    ) -> Result<StoredFile, String> {
        let job = self
            .store
            .recording_job(app_id, job_id)
            .await
            .map_err(|e| format!("reading the job: {e}"))?
            .ok_or_else(|| format!("job {job_id} is gone"))?;
        let rule: RecordingRule =
            serde_json::from_str(&job.rule).map_err(|e| format!("the job's rule: {e}"))?;
        let storage = RecordingStorage::open(&rule.storage, &self.data_dir)
            .map_err(|e| format!("opening the storage: {e}"))?;
        let mut size = 0;
        for path in &file.paths {
            size += storage
                .put_file(&spool.join(path), path)
                .await
                .map_err(|e| format!("storing {path}: {e}"))?;
        }
        Ok(StoredFile {
            url: storage.url(&file.object),
            size,
            location: storage.location(),
            bucket: storage.bucket().map(str::to_string),
            object: storage.stored_key(&file.object),
        })
    }

    async fn finish_row(&self, row: Option<&str>, patch: RecordingFilePatch) {
        let Some(file_id) = row else { return };
        if let Err(e) = self.store.update_recording_file(file_id, patch).await {
            tracing::error!(error = %e, "updating a recording file failed");
        }
    }

    fn emit(&self, event_type: EventType, key: &StreamKey, extra: Map<String, Value>) {
        let mut event = NewEvent::room(event_type, &key.app_id, &key.room_id);
        event.user_id = Some(key.user_id.clone());
        event.extra = extra;
        self.events.emit(event);
    }
}

struct StoredFile {
    url: String,
    size: u64,
    location: String,
    bucket: Option<String>,
    object: String,
}

fn stream_name(key: &StreamKey) -> String {
    format!("{}_{}", key.room_id, key.user_id)
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Hls => "HLS",
        Format::Mp4 => "MP4",
    }
}

fn store_format(format: Format) -> RecordFormat {
    match format {
        Format::Hls => RecordFormat::Hls,
        Format::Mp4 => RecordFormat::Mp4,
    }
}

/// `YYYY-MM-DDThh:mm:ssZ`, as the seed's callbacks write times.
pub fn utc(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Removes a stream's spool directory, and its job's, when empty (the
/// files of stored recordings were removed one by one; the naming
/// template's subdirectories go with `remove_dir_all` only when no file is
/// left in them).
fn remove_empty_dirs(dir: &Path) {
    if has_files(dir) {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    if let Some(job_dir) = dir.parent() {
        let _ = std::fs::remove_dir(job_dir);
    }
}

fn has_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            has_files(&path)
        } else {
            true
        }
    })
}
