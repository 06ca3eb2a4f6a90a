//! Recording statistics: how many of an application's recording files
//! started in a time window were stored, failed or are still being
//! written, and the success rate that monitoring watches.

use sqlx::Row;

use crate::recording::{RecordFormat, RecordingFileStatus};
use crate::{Store, StoreError};

/// Counts of one format's files (or of all formats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordingFileCounts {
    /// Files that started in the window.
    pub started: u64,
    /// Finalized and stored.
    pub complete: u64,
    /// Could not be stored.
    pub failed: u64,
    /// Still being written (or waiting for crash recovery).
    pub recording: u64,
    /// Complete files that were finalized after a crash.
    pub recovered: u64,
    /// Bytes of the complete files.
    pub stored_bytes: u64,
    /// Media time of the complete files.
    pub recorded_ms: u64,
}

impl RecordingFileCounts {
    /// Complete files over finished (complete + failed) ones; `None` when
    /// none finished.
    pub fn success_rate(&self) -> Option<f64> {
        let finished = self.complete + self.failed;
        (finished > 0).then(|| self.complete as f64 / finished as f64)
    }

    fn add(&mut self, status: RecordingFileStatus, group: &StatusGroup) {
        self.started += group.files;
        match status {
            RecordingFileStatus::Complete => {
                self.complete += group.files;
                self.recovered += group.recovered;
                self.stored_bytes += group.bytes;
                self.recorded_ms += group.duration_ms;
            }
            RecordingFileStatus::Failed => self.failed += group.files,
            RecordingFileStatus::Recording => self.recording += group.files,
        }
    }
}

/// An application's recording statistics over `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingStats {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Every format together.
    pub total: RecordingFileCounts,
    pub hls: RecordingFileCounts,
    pub mp4: RecordingFileCounts,
}

/// One row of the grouped query.
struct StatusGroup {
    files: u64,
    recovered: u64,
    bytes: u64,
    duration_ms: u64,
}

fn count(row: &sqlx::any::AnyRow, column: &str) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: "recording statistics",
        reason: format!("{column} is {value}"),
    })
}

impl Store {
    /// Statistics of the application's files that started in
    /// `[from_ms, to_ms)` (milliseconds since the epoch).
    pub async fn recording_stats(
        &self,
        app_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<RecordingStats, StoreError> {
        // CAST keeps SUM's type BIGINT on PostgreSQL (it widens to NUMERIC).
        let rows = sqlx::query(
            "SELECT format, status, CAST(COUNT(*) AS BIGINT) AS files, \
             CAST(COALESCE(SUM(recovered), 0) AS BIGINT) AS recovered, \
             CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) AS bytes, \
             CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) AS duration_ms \
             FROM recording_files \
             WHERE app_id = $1 AND started_at_ms >= $2 AND started_at_ms < $3 \
             GROUP BY format, status",
        )
        .bind(app_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut stats = RecordingStats {
            from_ms,
            to_ms,
            ..RecordingStats::default()
        };
        for row in &rows {
            let format: RecordFormat = row.try_get::<String, _>("format")?.parse()?;
            let status: RecordingFileStatus = row.try_get::<String, _>("status")?.parse()?;
            let group = StatusGroup {
                files: count(row, "files")?,
                recovered: count(row, "recovered")?,
                bytes: count(row, "bytes")?,
                duration_ms: count(row, "duration_ms")?,
            };
            stats.total.add(status, &group);
            match format {
                RecordFormat::Hls => stats.hls.add(status, &group),
                RecordFormat::Mp4 => stats.mp4.add(status, &group),
            }
        }
        Ok(stats)
    }
}
