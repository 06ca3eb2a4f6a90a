//! Manual recording jobs: start recording a live room (all its publishers
//! or some), see a job with its files so far, change whom it records, stop
//! it, list a room's jobs.
//!
//! A job records with the application's recording rule as it is when the
//! job starts (frozen into the job, so that its files still go where it was
//! writing them after the rule changes); without a rule, the defaults
//! (MP4, local storage). `formats` narrows the rule's formats.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_store::{
    NewRecordingJob, RecordFormat, RecordingFile, RecordingFileStatus, RecordingJob,
    RecordingJobOrigin, RecordingJobPatch, RecordingJobStatus,
};

use super::{Admin, ApiError, ApiErrorBody, ApiErrorCode, JsonBody};
use crate::recording::rule::{RecordFormatName, RecordingRule};
use crate::serve::recorder::room::ActiveJob;
use crate::serve::room_task::{AdminAction, AdminOutcome};
use crate::serve::rooms::RoomKey;
use crate::serve::AppState;

/// Most publishers a job may name.
pub const MAX_JOB_USERS: usize = 25;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_job, list_jobs))
        .routes(routes!(get_job, update_job, stop_job))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartJobRequest {
    /// A live room of the application.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9._@-]{1,128}$"
    )]
    pub room_id: String,
    /// The publishers to record (at most 25); default every publisher
    /// (the first 25 by the time they publish).
    #[schema(max_items = 25)]
    pub user_ids: Option<Vec<String>>,
    /// Some of the rule's formats; default all of them.
    #[schema(min_items = 1)]
    pub formats: Option<Vec<RecordFormatName>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateJobRequest {
    /// The publishers to record from now on (at most 25).
    #[schema(max_items = 25)]
    pub user_ids: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Only this room's jobs.
    pub room_id: Option<String>,
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
}

/// A recording file of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    pub file_id: String,
    pub user_id: String,
    pub stream: String,
    /// `HLS` or `MP4`.
    pub record_format: String,
    pub file_index: u32,
    /// The object in the storage target (for HLS the `.m3u8`).
    pub object: String,
    /// `recording`, `complete` or `failed`.
    pub status: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub size_bytes: Option<u64>,
    pub duration_ms: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub recovered: bool,
}

/// A recording job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    pub room_id: String,
    /// `manual` or `auto`.
    pub origin: String,
    /// `active`, `stopping`, `stopped` or `failed`.
    pub status: String,
    /// The publishers it records (empty: every publisher, up to 25).
    pub user_ids: Vec<String>,
    pub formats: Vec<String>,
    /// The publishers being recorded right now (live jobs only).
    pub streams: Vec<String>,
    pub files: Vec<FileView>,
    pub detail: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub stopped_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

/// Starts recording a live room.
#[utoipa::path(post, path = "/apps/{app_id}/recordings", tag = "recordings",
    params(("app_id" = String, Path)),
    request_body = StartJobRequest,
    responses(
        (status = 201, body = JobView),
        (status = 404, description = "APP_NOT_FOUND or ROOM_NOT_FOUND", body = ApiErrorBody),
        (status = 409, description = "RECORDING_ACTIVE: another job records the room", body = ApiErrorBody),
    ))]
async fn start_job(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(request): JsonBody<StartJobRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    state
        .store
        .get_app(&app_id)
        .await
        .map_err(ApiError::from_store)?;
    let user_ids = match request.user_ids {
        Some(users) => Some(checked_users(users)?),
        None => None,
    };
    let mut rule = match state
        .store
        .recording_rule(&app_id)
        .await
        .map_err(ApiError::from_store)?
    {
        Some(stored) => serde_json::from_str::<RecordingRule>(&stored.rule).map_err(|e| {
            tracing::error!(error = %e, "the stored recording rule does not parse");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiErrorCode::Internal,
                "the stored recording rule is unreadable",
            )
        })?,
        None => default_rule(),
    };
    if let Some(formats) = request.formats {
        if formats.is_empty() {
            return Err(ApiError::invalid("invalid formats: name at least one"));
        }
        rule.formats = formats;
    }
    let key = RoomKey::new(app_id.clone(), request.room_id.clone());
    if !state.rooms.rooms_of_app(&app_id).contains(&key) {
        return Err(room_not_found(&request.room_id));
    }
    let rule_json = serde_json::to_string(&rule).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            format!("serializing the rule: {e}"),
        )
    })?;
    let job = state
        .store
        .create_recording_job(NewRecordingJob {
            app_id: app_id.clone(),
            room_id: request.room_id.clone(),
            user_ids: user_ids
                .as_ref()
                .map(|users| users.iter().cloned().collect())
                .unwrap_or_default(),
            formats: rule.formats.iter().map(|f| f.store_format()).collect(),
            origin: RecordingJobOrigin::Manual,
            rule: rule_json,
            created_at_ms: crate::serve::ws::unix_now_ms_i64(),
        })
        .await
        .map_err(ApiError::from_store)?;
    let active = ActiveJob {
        job_id: job.job_id.clone(),
        user_ids,
        rule: Arc::new(rule),
    };
    let outcome = state
        .rooms
        .admin(&key, AdminAction::StartRecording(active))
        .await;
    let refusal = match outcome {
        Some(Ok(AdminOutcome::Done)) => None,
        Some(Ok(AdminOutcome::Refused(reason))) => Some((StatusCode::CONFLICT, reason)),
        _ => Some((StatusCode::NOT_FOUND, "the room closed".to_string())),
    };
    if let Some((status, reason)) = refusal {
        let patch = RecordingJobPatch {
            status: Some(RecordingJobStatus::Failed),
            detail: Some(reason.clone()),
            stopped_at_ms: Some(crate::serve::ws::unix_now_ms_i64()),
            ..RecordingJobPatch::default()
        };
        let _ = state
            .store
            .update_recording_job(&app_id, &job.job_id, patch)
            .await;
        return Err(if status == StatusCode::CONFLICT {
            ApiError::new(status, ApiErrorCode::RecordingActive, reason)
        } else {
            room_not_found(&request.room_id)
        });
    }
    Ok((StatusCode::CREATED, Json(job_view(&state, job).await?)))
}

/// A job: its status, the streams it records now, its files so far.
#[utoipa::path(get, path = "/apps/{app_id}/recordings/{job_id}", tag = "recordings",
    params(("app_id" = String, Path), ("job_id" = String, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "APP_NOT_FOUND or JOB_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn get_job(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, job_id)): Path<(String, String)>,
) -> Result<Json<JobView>, ApiError> {
    let job = find_job(&state, &app_id, &job_id).await?;
    Ok(Json(job_view(&state, job).await?))
}

/// Changes whom a live job records.
#[utoipa::path(patch, path = "/apps/{app_id}/recordings/{job_id}", tag = "recordings",
    params(("app_id" = String, Path), ("job_id" = String, Path)),
    request_body = UpdateJobRequest,
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "APP_NOT_FOUND or JOB_NOT_FOUND", body = ApiErrorBody),
        (status = 409, description = "JOB_NOT_ACTIVE", body = ApiErrorBody),
    ))]
async fn update_job(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, job_id)): Path<(String, String)>,
    JsonBody(request): JsonBody<UpdateJobRequest>,
) -> Result<Json<JobView>, ApiError> {
    let users = checked_users(request.user_ids)?;
    let job = find_job(&state, &app_id, &job_id).await?;
    let key = RoomKey::new(app_id.clone(), job.room_id.clone());
    let action = AdminAction::SetRecordedUsers {
        job_id: job_id.clone(),
        user_ids: users.clone(),
    };
    match state.rooms.admin(&key, action).await {
        Some(Ok(AdminOutcome::Done)) => {}
        _ => return Err(job_not_active(&job_id)),
    }
    let patch = RecordingJobPatch {
        user_ids: Some(users.into_iter().collect()),
        ..RecordingJobPatch::default()
    };
    let job = state
        .store
        .update_recording_job(&app_id, &job_id, patch)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| job_not_found(&job_id))?;
    Ok(Json(job_view(&state, job).await?))
}

/// Stops a job: its files are finalized, stored and announced.
#[utoipa::path(delete, path = "/apps/{app_id}/recordings/{job_id}", tag = "recordings",
    params(("app_id" = String, Path), ("job_id" = String, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "APP_NOT_FOUND or JOB_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn stop_job(
    _: Admin,
    State(state): State<AppState>,
    Path((app_id, job_id)): Path<(String, String)>,
) -> Result<Json<JobView>, ApiError> {
    let job = find_job(&state, &app_id, &job_id).await?;
    if job.status == RecordingJobStatus::Active {
        let key = RoomKey::new(app_id.clone(), job.room_id.clone());
        let action = AdminAction::StopRecording {
            job_id: job_id.clone(),
        };
        // A room that closed already ended the job.
        let _ = state.rooms.admin(&key, action).await;
    }
    let patch = RecordingJobPatch {
        status: Some(RecordingJobStatus::Stopped),
        detail: Some("stopped through the API".to_string()),
        stopped_at_ms: Some(crate::serve::ws::unix_now_ms_i64()),
        ..RecordingJobPatch::default()
    };
    let job = if job.status == RecordingJobStatus::Active {
        state
            .store
            .update_recording_job(&app_id, &job_id, patch)
            .await
            .map_err(ApiError::from_store)?
            .ok_or_else(|| job_not_found(&job_id))?
    } else {
        job
    };
    Ok(Json(job_view(&state, job).await?))
}

/// The application's jobs, newest first.
#[utoipa::path(get, path = "/apps/{app_id}/recordings", tag = "recordings",
    params(("app_id" = String, Path), ListJobsQuery),
    responses(
        (status = 200, body = JobList),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn list_jobs(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    query: Result<Query<ListJobsQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let page = state
        .store
        .list_recording_jobs(
            &app_id,
            query.room_id.as_deref(),
            query.page.unwrap_or(1),
            query.page_size.unwrap_or(20),
        )
        .await
        .map_err(ApiError::from_store)?;
    let mut jobs = Vec::with_capacity(page.items.len());
    for job in page.items {
        jobs.push(job_view(&state, job).await?);
    }
    Ok(Json(JobList {
        jobs,
        total: page.total,
        page: page.page,
        page_size: page.page_size,
    }))
}

/// The rule of an application that has none: MP4 to local storage.
fn default_rule() -> RecordingRule {
    RecordingRule {
        formats: vec![RecordFormatName::Mp4],
        content: Default::default(),
        hls: Default::default(),
        mp4: Default::default(),
        storage: Default::default(),
        auto_record: false,
    }
}

pub(super) fn checked_users(users: Vec<String>) -> Result<HashSet<String>, ApiError> {
    if users.len() > MAX_JOB_USERS {
        return Err(ApiError::invalid(format!(
            "invalid user_ids: at most {MAX_JOB_USERS}"
        )));
    }
    if let Some(bad) = users.iter().find(|u| !crate::token::is_valid_name(u)) {
        return Err(ApiError::invalid(format!(
            "invalid user_ids: {bad:?} is not 1-128 letters, digits or -_.@"
        )));
    }
    Ok(users.into_iter().collect())
}

async fn find_job(state: &AppState, app_id: &str, job_id: &str) -> Result<RecordingJob, ApiError> {
    state
        .store
        .recording_job(app_id, job_id)
        .await
        .map_err(ApiError::from_store)?
        .ok_or_else(|| job_not_found(job_id))
}

async fn job_view(state: &AppState, job: RecordingJob) -> Result<JobView, ApiError> {
    let files = state
        .store
        .recording_files_of_job(&job.job_id)
        .await
        .map_err(ApiError::from_store)?;
    let streams = if job.status == RecordingJobStatus::Active {
        live_streams(state, &job).await
    } else {
        Vec::new()
    };
    Ok(JobView {
        job_id: job.job_id,
        room_id: job.room_id,
        origin: match job.origin {
            RecordingJobOrigin::Manual => "manual",
            RecordingJobOrigin::Auto => "auto",
        }
        .to_string(),
        status: match job.status {
            RecordingJobStatus::Active => "active",
            RecordingJobStatus::Stopping => "stopping",
            RecordingJobStatus::Stopped => "stopped",
            RecordingJobStatus::Failed => "failed",
        }
        .to_string(),
        user_ids: job.user_ids,
        formats: job
            .formats
            .iter()
            .map(|f| format_name(*f).to_string())
            .collect(),
        streams,
        files: files.into_iter().map(file_view).collect(),
        detail: job.detail,
        created_at: job.created_at_ms,
        stopped_at: job.stopped_at_ms,
    })
}

/// The users a live job records now, from its room.
async fn live_streams(state: &AppState, job: &RecordingJob) -> Vec<String> {
    let key = RoomKey::new(job.app_id.clone(), job.room_id.clone());
    match state.rooms.admin(&key, AdminAction::Describe).await {
        Some(Ok(AdminOutcome::Description(room))) => match room.recording {
            Some((job_id, users)) if job_id == job.job_id => users,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn file_view(file: RecordingFile) -> FileView {
    FileView {
        file_id: file.file_id,
        user_id: file.user_id,
        stream: file.stream,
        record_format: format_name(file.format).to_string(),
        file_index: file.file_index,
        object: file.object_key,
        status: match file.status {
            RecordingFileStatus::Recording => "recording",
            RecordingFileStatus::Complete => "complete",
            RecordingFileStatus::Failed => "failed",
        }
        .to_string(),
        started_at: file.started_at_ms,
        ended_at: file.ended_at_ms,
        size_bytes: file.size_bytes,
        duration_ms: file.duration_ms,
        width: file.width,
        height: file.height,
        recovered: file.recovered,
    }
}

fn format_name(format: RecordFormat) -> &'static str {
    match format {
        RecordFormat::Hls => "HLS",
        RecordFormat::Mp4 => "MP4",
    }
}

fn room_not_found(room_id: &str) -> ApiError {
    ApiError::not_found(
        ApiErrorCode::RoomNotFound,
        format!("no live room `{room_id}`"),
    )
}

fn job_not_found(job_id: &str) -> ApiError {
    ApiError::not_found(
        ApiErrorCode::JobNotFound,
        format!("no recording job `{job_id}`"),
    )
}

fn job_not_active(job_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ApiErrorCode::JobNotActive,
        format!("recording job `{job_id}` is not recording a live room"),
    )
}
