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
use weir_recorder::config::{Command, FileCompleted, FileStarted, Format};
use weir_store::{NewRecordingFile, RecordFormat, RecordingFilePatch, RecordingFileStatus, Store};

use super::spool::Spool;
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
    /// When this server started (ms since the epoch): jobs and files older
    /// than this that are unfinished were left by a previous process.
    pub started_at_ms: i64,
}

/// A started file's database row, by (job, recorder file id).
type OpenFiles = HashMap<(String, StreamKey, u64), String>;

impl Finisher {
    /// Runs until every stream's event sender is gone.
    pub async fn run(self, mut stream_events: UnboundedReceiver<StreamEvent>) {
        self.recover_crashed().await;
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
                    self.completed(&key, &job_id, row, &file, &spool, false)
                        .await;
                }
                StreamEvent::Ended { key, job_id, spool } => {
                    self.recorders.thread_ended(&key);
                    remove_empty_dirs(&spool);
                    tracing::debug!(job = %job_id, user = %key.user_id, "stream ended");
                }
            }
        }
    }

    /// What a previous process left unfinished (it crashed or was killed):
    /// files being recorded are recovered from their spool (at most the
    /// fragment being written is lost), stored and announced once with
    /// `recovered: true`; files stored but not announced are announced;
    /// its jobs are marked stopped.
    async fn recover_crashed(&self) {
        let files = match self.store.recording_files_not_notified().await {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(error = %e, "listing unfinished recordings failed");
                return;
            }
        };
        for file in files {
            if file.started_at_ms >= self.started_at_ms {
                continue;
            }
            let key = StreamKey {
                app_id: file.app_id.clone(),
                room_id: file.room_id.clone(),
                user_id: file.user_id.clone(),
            };
            let spool = PathBuf::from(file.spool_path.clone().unwrap_or_default());
            match file.status {
                RecordingFileStatus::Recording => match recover_spooled(&spool, &file) {
                    Ok(completed) => {
                        tracing::info!(object = %file.object_key, "recovered a recording");
                        self.completed(
                            &key,
                            &file.job_id,
                            Some(file.file_id.clone()),
                            &completed,
                            &spool,
                            true,
                        )
                        .await;
                    }
                    Err(reason) => {
                        tracing::error!(object = %file.object_key, %reason, "a recording could not be recovered");
                        self.metrics.recordings_failed.inc();
                        let patch = RecordingFilePatch {
                            status: Some(RecordingFileStatus::Failed),
                            detail: Some(format!("recovery failed: {reason}")),
                            ..RecordingFilePatch::default()
                        };
                        self.finish_row(Some(&file.file_id), patch).await;
                        let mut extra = Map::new();
                        extra.insert("job_id".into(), json!(file.job_id));
                        extra.insert("obs_object".into(), json!(file.object_key));
                        extra.insert("file_index".into(), json!(file.file_index));
                        extra.insert("recovered".into(), json!(true));
                        extra.insert("detail_message".into(), json!(reason));
                        self.emit(EventType::RecordFailed, &key, extra);
                    }
                },
                RecordingFileStatus::Complete => {
                    self.announce_stored(&key, &file).await;
                }
                RecordingFileStatus::Failed => {}
            }
        }
        if let Ok(jobs) = self.store.unfinished_recording_jobs().await {
            for job in jobs
                .into_iter()
                .filter(|j| j.created_at_ms < self.started_at_ms)
            {
                let patch = weir_store::RecordingJobPatch {
                    status: Some(weir_store::RecordingJobStatus::Stopped),
                    detail: Some("the server restarted".to_string()),
                    stopped_at_ms: Some(self.started_at_ms),
                    ..weir_store::RecordingJobPatch::default()
                };
                let _ = self
                    .store
                    .update_recording_job(&job.app_id, &job.job_id, patch)
                    .await;
            }
        }
    }

    /// Announces a file the previous process stored but did not announce.
    async fn announce_stored(&self, key: &StreamKey, file: &weir_store::RecordingFile) {
        let storage = match self.job_storage(&file.app_id, &file.job_id).await {
            Ok(storage) => storage,
            Err(reason) => {
                tracing::error!(%reason, "announcing a stored recording failed");
                return;
            }
        };
        let mut extra = Map::new();
        extra.insert("stream_name".into(), json!(file.stream));
        extra.insert(
            "record_format".into(),
            json!(file.format.as_str().to_ascii_uppercase()),
        );
        extra.insert("job_id".into(), json!(file.job_id));
        extra.insert("file_index".into(), json!(file.file_index));
        extra.insert("recovered".into(), json!(file.recovered));
        extra.insert("download_url".into(), json!(storage.url(&file.object_key)));
        extra.insert("file_size".into(), json!(file.size_bytes.unwrap_or(0)));
        extra.insert(
            "record_duration".into(),
            json!(file.duration_ms.unwrap_or(0) as f64 / 1000.0),
        );
        extra.insert("start_time".into(), json!(utc(from_ms(file.started_at_ms))));
        extra.insert(
            "end_time".into(),
            json!(utc(from_ms(file.ended_at_ms.unwrap_or(file.started_at_ms)))),
        );
        extra.insert("width".into(), json!(file.width.unwrap_or(0)));
        extra.insert("height".into(), json!(file.height.unwrap_or(0)));
        extra.insert("obs_location".into(), json!(storage.location()));
        extra.insert("obs_bucket".into(), json!(storage.bucket()));
        extra.insert(
            "obs_object".into(),
            json!(storage.stored_key(&file.object_key)),
        );
        extra.insert("detail_message".into(), json!("ok"));
        self.announce_complete(key, Some(&file.file_id), extra)
            .await;
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
        recovered: bool,
    ) {
        let stored = self.store_file(&key.app_id, job_id, file, spool).await;
        let mut extra = Map::new();
        extra.insert("stream_name".into(), json!(stream_name(key)));
        extra.insert("record_format".into(), json!(format_name(file.format)));
        extra.insert("job_id".into(), json!(job_id));
        extra.insert("file_index".into(), json!(file.file_index));
        extra.insert("recovered".into(), json!(recovered));
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
                    recovered: Some(recovered),
                    ..RecordingFilePatch::default()
                };
                self.finish_row(row.as_deref(), patch).await;
                self.announce_complete(key, row.as_deref(), extra).await;
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
        let storage = self.job_storage(app_id, job_id).await?;
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

    /// The storage target of a job's frozen rule.
    async fn job_storage(&self, app_id: &str, job_id: &str) -> Result<RecordingStorage, String> {
        let job = self
            .store
            .recording_job(app_id, job_id)
            .await
            .map_err(|e| format!("reading the job: {e}"))?
            .ok_or_else(|| format!("job {job_id} is gone"))?;
        let rule: RecordingRule =
            serde_json::from_str(&job.rule).map_err(|e| format!("the job's rule: {e}"))?;
        RecordingStorage::open(&rule.storage, &self.data_dir)
            .map_err(|e| format!("opening the storage: {e}"))
    }

    async fn finish_row(&self, row: Option<&str>, patch: RecordingFilePatch) {
        let Some(file_id) = row else { return };
        if let Err(e) = self.store.update_recording_file(file_id, patch).await {
            tracing::error!(error = %e, "updating a recording file failed");
        }
    }

    fn emit(&self, event_type: EventType, key: &StreamKey, extra: Map<String, Value>) {
        self.emit_with_id(event_type, key, extra, None);
    }

    fn emit_with_id(
        &self,
        event_type: EventType,
        key: &StreamKey,
        extra: Map<String, Value>,
        event_id: Option<String>,
    ) {
        let mut event = NewEvent::room(event_type, &key.app_id, &key.room_id);
        event.user_id = Some(key.user_id.clone());
        event.extra = extra;
        event.event_id = event_id;
        self.events.emit(event);
    }

    /// RECORD_FILE_COMPLETE exactly once per file: a fixed event id (the
    /// outbox keeps one event per id), in the outbox before the file row
    /// says it was announced. A crash in between sends the same event again
    /// after the restart, which the outbox drops.
    async fn announce_complete(
        &self,
        key: &StreamKey,
        row: Option<&str>,
        extra: Map<String, Value>,
    ) {
        let event_id = row.map(|file_id| format!("ev_complete_{file_id}"));
        self.emit_with_id(EventType::RecordFileComplete, key, extra, event_id);
        let Some(file_id) = row else { return };
        self.events.flush().await;
        if let Err(e) = self.store.mark_recording_file_notified(file_id).await {
            tracing::error!(error = %e, "marking a recording as announced failed");
        }
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

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Finishes a file the recorder was writing when the process died, in its
/// spool: MP4 (cut the torn fragment, finalize) or HLS (end the playlist).
fn recover_spooled(
    spool: &Path,
    file: &weir_store::RecordingFile,
) -> Result<FileCompleted, String> {
    let object = &file.object_key;
    let path = spool.join(object);
    let start_time = from_ms(file.started_at_ms);
    let (paths, size, duration, width, height) = match file.format {
        RecordFormat::Mp4 => {
            let recovered = {
                let mut handle = std::fs::File::open(&path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                let len = handle.metadata().map_err(|e| e.to_string())?.len();
                weir_recorder::recover::recover_mp4(&mut handle, len, object)
                    .map_err(|e| e.to_string())?
            };
            // The same file commands a recording carries out, on its spool.
            let mut writer = Spool::new(spool.to_path_buf());
            writer
                .truncate(object, recovered.keep_len)
                .map_err(|e| e.to_string())?;
            for command in &recovered.commands {
                match command {
                    Command::WriteAt {
                        path,
                        offset,
                        bytes,
                    } => writer.write_at(path, *offset, bytes),
                    Command::Append { path, bytes } => writer.append(path, bytes),
                    _ => Ok(()),
                }
                .map_err(|e| e.to_string())?;
            }
            (
                vec![object.clone()],
                recovered.size,
                recovered.duration,
                recovered.width,
                recovered.height,
            )
        }
        RecordFormat::Hls => {
            let top =
                std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let dir = match object.rfind('/') {
                Some(i) => object[..=i].to_string(),
                None => String::new(),
            };
            let media_uri =
                weir_recorder::recover::hls_media_uri(&top).map_err(|e| e.to_string())?;
            let media_path = spool.join(format!("{dir}{media_uri}"));
            let media = std::fs::read(&media_path).map_err(|e| e.to_string())?;
            let trailing = trailing_segment(&spool.join(&dir), &media)?;
            let recovered = weir_recorder::recover::recover_hls(
                &top,
                &media,
                trailing.as_ref().map(|(uri, duration, init)| {
                    weir_recorder::recover::TrailingSegment {
                        uri,
                        duration: *duration,
                        init_uri: init,
                    }
                }),
            )
            .map_err(|e| e.to_string())?;
            std::fs::write(&media_path, &recovered.media_playlist).map_err(|e| e.to_string())?;
            let mut paths = vec![object.clone()];
            paths.extend(recovered.paths.iter().map(|p| format!("{dir}{p}")));
            let mut size = 0;
            for p in &paths {
                size += std::fs::metadata(spool.join(p))
                    .map_err(|e| format!("{p}: {e}"))?
                    .len();
            }
            (
                paths,
                size,
                recovered.duration,
                recovered.width,
                recovered.height,
            )
        }
    };
    Ok(FileCompleted {
        file_id: 0,
        format: match file.format {
            RecordFormat::Mp4 => Format::Mp4,
            RecordFormat::Hls => Format::Hls,
        },
        object: object.clone(),
        paths,
        size,
        duration,
        start_time,
        end_time: start_time + duration,
        width,
        height,
        file_index: file.file_index,
    })
}

/// The segment of an HLS recording that was being written when the process
/// died (a `.m4s` in `dir` that the media playlist does not list): cut to
/// its complete fragments; its URI, their duration and its init segment.
fn trailing_segment(
    dir: &Path,
    media_playlist: &[u8],
) -> Result<Option<(String, std::time::Duration, String)>, String> {
    let listed = String::from_utf8_lossy(media_playlist);
    let mut segment = None;
    let mut inits = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".m4s") && !listed.contains(&name) {
            segment = Some(name);
        } else if name.contains("_init") && name.ends_with(".mp4") {
            inits.push(name);
        }
    }
    let (Some(segment), Some(init)) = (segment, inits.into_iter().max()) else {
        return Ok(None);
    };
    let init_bytes = std::fs::read(dir.join(&init)).map_err(|e| e.to_string())?;
    let path = dir.join(&segment);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let kept = weir_recorder::recover::recover_segment(&init_bytes, &mut file, len)
        .map_err(|e| e.to_string())?;
    let Some(kept) = kept else {
        // Not one complete fragment: the segment goes.
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    };
    file.set_len(kept.keep_len).map_err(|e| e.to_string())?;
    Ok(Some((segment, kept.duration, init)))
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
