//! Recording statistics for monitoring: of an application's recording
//! files that started in a time window, how many were stored, failed or
//! are still being written, and the success rate.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_store::RecordingFileCounts;

use super::{Admin, ApiError, ApiErrorBody};
use crate::serve::AppState;

/// The window when `from` is left out: the last day.
const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// The largest time accepted (JSON's largest exact integer).
const MAX_TIME_MS: i64 = 9_007_199_254_740_991;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(recording_stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Start of the window, milliseconds since the Unix epoch (default:
    /// one day before `to`).
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub from: Option<i64>,
    /// End of the window (exclusive), milliseconds since the Unix epoch
    /// (default: now).
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub to: Option<i64>,
}

/// Counts of recording files that started in the window.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileCountsView {
    pub files_started: u64,
    /// Finalized and stored.
    pub files_complete: u64,
    /// Could not be stored (RECORD_FAILED was sent).
    pub files_failed: u64,
    /// Still being written.
    pub files_recording: u64,
    /// Complete files finalized after a crash.
    pub files_recovered: u64,
    /// complete / (complete + failed); null while none finished.
    pub success_rate: Option<f64>,
    /// Bytes of the complete files.
    pub stored_bytes: u64,
    /// Media seconds of the complete files.
    pub recorded_seconds: f64,
}

/// An application's recording statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingStatsView {
    /// Milliseconds since the Unix epoch.
    pub from: i64,
    pub to: i64,
    /// Every format together.
    pub total: FileCountsView,
    pub hls: FileCountsView,
    pub mp4: FileCountsView,
}

fn counts_view(counts: RecordingFileCounts) -> FileCountsView {
    FileCountsView {
        files_started: counts.started,
        files_complete: counts.complete,
        files_failed: counts.failed,
        files_recording: counts.recording,
        files_recovered: counts.recovered,
        success_rate: counts.success_rate(),
        stored_bytes: counts.stored_bytes,
        recorded_seconds: counts.recorded_ms as f64 / 1000.0,
    }
}

/// Recording statistics of the files that started in `[from, to)`.
#[utoipa::path(get, path = "/apps/{app_id}/recording-stats", tag = "recording",
    params(("app_id" = String, Path), StatsQuery),
    responses(
        (status = 200, body = RecordingStatsView),
        (status = 400, description = "INVALID_ARGUMENT: a time out of range, or `from` after `to`", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn recording_stats(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<RecordingStatsView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    for (name, value) in [("from", query.from), ("to", query.to)] {
        if value.is_some_and(|v| !(0..=MAX_TIME_MS).contains(&v)) {
            return Err(ApiError::invalid(format!(
                "invalid {name}: must be 0 to {MAX_TIME_MS}"
            )));
        }
    }
    let to = query.to.unwrap_or_else(crate::serve::ws::unix_now_ms_i64);
    let from = query
        .from
        .unwrap_or_else(|| to.saturating_sub(DEFAULT_WINDOW_MS).max(0));
    if from > to {
        return Err(ApiError::invalid("invalid from: must not be after `to`"));
    }
    // APP_NOT_FOUND for an unknown application.
    state
        .store
        .get_app(&app_id)
        .await
        .map_err(ApiError::from_store)?;
    let stats = state
        .store
        .recording_stats(&app_id, from, to)
        .await
        .map_err(ApiError::from_store)?;
    Ok(Json(RecordingStatsView {
        from,
        to,
        total: counts_view(stats.total),
        hls: counts_view(stats.hls),
        mp4: counts_view(stats.mp4),
    }))
}
