//! Applications over REST: create, list, read, update, disable/enable,
//! rotate the secret, delete (only once disabled).
//!
//! The secret (`secret_key`) is answered only by create and rotate-secret.
//! Every change drops the application's cached key, so a disable or a
//! rotation applies to the next join at once on this server (within the
//! cache's TTL on others). A disabled application refuses new joins while
//! its participants already in rooms stay; deleting it closes its rooms.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_protocol::LeaveReason;
use weir_store::{App, AppPatch, AppStatus, AppType, NewApp, Tag};

use super::{Admin, ApiError, ApiErrorBody, JsonBody};
use crate::serve::room_task::RoomCommand;
use crate::serve::AppState;

/// Default page size of the listing.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_app, list_apps))
        .routes(routes!(get_app, update_app, delete_app))
        .routes(routes!(disable_app))
        .routes(routes!(enable_app))
        .routes(routes!(rotate_secret))
}

/// A free-form label.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagView {
    /// 1–64 characters, no control characters; unique within an application.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub key: String,
    /// At most 256 characters, no control characters.
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub value: String,
}

/// What an application is for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppTypeView {
    Education,
    Entertainment,
    Finance,
    Other,
}

impl From<AppTypeView> for AppType {
    fn from(view: AppTypeView) -> AppType {
        match view {
            AppTypeView::Education => AppType::Education,
            AppTypeView::Entertainment => AppType::Entertainment,
            AppTypeView::Finance => AppType::Finance,
            AppTypeView::Other => AppType::Other,
        }
    }
}

impl From<AppType> for AppTypeView {
    fn from(app_type: AppType) -> AppTypeView {
        match app_type {
            AppType::Education => AppTypeView::Education,
            AppType::Entertainment => AppTypeView::Entertainment,
            AppType::Finance => AppTypeView::Finance,
            AppType::Other => AppTypeView::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusView {
    Enabled,
    Disabled,
}

impl From<AppStatus> for StatusView {
    fn from(status: AppStatus) -> StatusView {
        match status {
            AppStatus::Enabled => StatusView::Enabled,
            AppStatus::Disabled => StatusView::Disabled,
        }
    }
}

impl From<StatusView> for AppStatus {
    fn from(view: StatusView) -> AppStatus {
        match view {
            StatusView::Enabled => AppStatus::Enabled,
            StatusView::Disabled => AppStatus::Disabled,
        }
    }
}

/// An application (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub app_id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub app_type: AppTypeView,
    pub tags: Vec<TagView>,
    pub status: StatusView,
    /// Tokens must name the exact room and carry explicit grants.
    pub room_permission_required: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// An application with its secret: only answered by create.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApp {
    #[serde(flatten)]
    pub app: AppView,
    /// The HS256 secret join tokens are signed with. Shown only now and on
    /// rotation: keep it.
    pub secret_key: String,
}

/// A new secret (the old one stops verifying at once).
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    pub app_id: String,
    pub secret_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppList {
    pub apps: Vec<AppView>,
    /// Matching applications over all pages.
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppRequest {
    /// 1–64 letters, digits, `-` or `_`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// At most 300 characters; no control characters but tab and newlines.
    #[schema(
        max_length = 300,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// Default `other`.
    #[serde(rename = "type")]
    pub app_type: Option<AppTypeView>,
    /// Up to 20, with distinct keys.
    #[schema(max_items = 20)]
    pub tags: Option<Vec<TagView>>,
}

/// Fields to change; absent fields stay as they are, `tags` replaces the list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppRequest {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub name: Option<String>,
    #[schema(
        max_length = 300,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub app_type: Option<AppTypeView>,
    #[schema(max_items = 20)]
    pub tags: Option<Vec<TagView>>,
    /// Advanced permission control: tokens must name the exact room (no
    /// `*`) and carry explicit grants.
    pub room_permission_required: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only applications with this status.
    pub status: Option<StatusView>,
    /// 1-based; default 1.
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    /// 1–100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
}

fn view(app: App) -> AppView {
    AppView {
        app_id: app.app_id,
        name: app.name,
        description: app.description,
        app_type: app.app_type.into(),
        tags: app.tags.into_iter().map(tag_view).collect(),
        status: app.status.into(),
        room_permission_required: app.room_permission_required,
        created_at: app.created_at_ms,
        updated_at: app.updated_at_ms,
    }
}

fn tag_view(tag: Tag) -> TagView {
    TagView {
        key: tag.key,
        value: tag.value,
    }
}

fn tags(views: Vec<TagView>) -> Vec<Tag> {
    views
        .into_iter()
        .map(|t| Tag {
            key: t.key,
            value: t.value,
        })
        .collect()
}

/// Creates an application; the answer carries its secret, shown only now.
#[utoipa::path(post, path = "/apps", tag = "apps",
    request_body = CreateAppRequest,
    responses(
        (status = 201, body = CreatedApp),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 413, description = "BODY_TOO_LARGE", body = ApiErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ApiErrorBody),
    ))]
async fn create_app(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateAppRequest>,
) -> Result<(StatusCode, Json<CreatedApp>), ApiError> {
    let (app, secret) = state
        .store
        .create_app(NewApp {
            name: request.name,
            description: request.description.unwrap_or_default(),
            app_type: request.app_type.map(AppType::from).unwrap_or_default(),
            tags: tags(request.tags.unwrap_or_default()),
        })
        .await
        .map_err(ApiError::from_store)?;
    state.app_keys.invalidate(&app.app_id);
    Ok((
        StatusCode::CREATED,
        Json(CreatedApp {
            app: view(app),
            secret_key: secret,
        }),
    ))
}

/// Lists applications, oldest first.
#[utoipa::path(get, path = "/apps", tag = "apps",
    params(ListQuery),
    responses(
        (status = 200, body = AppList),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
    ))]
async fn list_apps(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<AppList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let page = state
        .store
        .list_apps(
            query.status.map(AppStatus::from),
            query.page.unwrap_or(1),
            query.page_size.unwrap_or(DEFAULT_PAGE_SIZE),
        )
        .await
        .map_err(ApiError::from_store)?;
    Ok(Json(AppList {
        apps: page.items.into_iter().map(view).collect(),
        total: page.total,
        page: page.page,
        page_size: page.page_size,
    }))
}

/// One application.
#[utoipa::path(get, path = "/apps/{app_id}", tag = "apps",
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn get_app(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    let app = state
        .store
        .get_app(&app_id)
        .await
        .map_err(ApiError::from_store)?;
    Ok(Json(view(app)))
}

/// Changes an application's name, description, type, tags or
/// `room_permission_required`.
#[utoipa::path(patch, path = "/apps/{app_id}", tag = "apps",
    params(("app_id" = String, Path)),
    request_body = UpdateAppRequest,
    responses(
        (status = 200, body = AppView),
        (status = 400, description = "INVALID_ARGUMENT", body = ApiErrorBody),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
        (status = 413, description = "BODY_TOO_LARGE", body = ApiErrorBody),
    ))]
async fn update_app(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    JsonBody(request): JsonBody<UpdateAppRequest>,
) -> Result<Json<AppView>, ApiError> {
    let app = state
        .store
        .update_app(
            &app_id,
            AppPatch {
                name: request.name,
                description: request.description,
                app_type: request.app_type.map(AppType::from),
                tags: request.tags.map(tags),
                room_permission_required: request.room_permission_required,
            },
        )
        .await
        .map_err(ApiError::from_store)?;
    state.app_keys.invalidate(&app_id);
    Ok(Json(view(app)))
}

async fn set_status(
    state: &AppState,
    app_id: &str,
    status: AppStatus,
) -> Result<Json<AppView>, ApiError> {
    let app = state
        .store
        .set_app_status(app_id, status)
        .await
        .map_err(ApiError::from_store)?;
    state.app_keys.invalidate(app_id);
    Ok(Json(view(app)))
}

/// Disables an application: new joins are refused with `APP_DISABLED`;
/// participants already in rooms stay.
#[utoipa::path(post, path = "/apps/{app_id}/disable", tag = "apps",
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn disable_app(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    set_status(&state, &app_id, AppStatus::Disabled).await
}

/// Enables an application again.
#[utoipa::path(post, path = "/apps/{app_id}/enable", tag = "apps",
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn enable_app(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    set_status(&state, &app_id, AppStatus::Enabled).await
}

/// Replaces the secret: tokens signed with the old one stop verifying.
#[utoipa::path(post, path = "/apps/{app_id}/rotate-secret", tag = "apps",
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = RotatedSecret),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
    ))]
async fn rotate_secret(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let secret = state
        .store
        .rotate_secret(&app_id)
        .await
        .map_err(ApiError::from_store)?;
    state.app_keys.invalidate(&app_id);
    Ok(Json(RotatedSecret {
        app_id,
        secret_key: secret,
    }))
}

/// Deletes a disabled application and closes its rooms (recordings are
/// kept). An enabled one is refused with 409 `APP_NOT_DISABLED`.
#[utoipa::path(delete, path = "/apps/{app_id}", tag = "apps",
    params(("app_id" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ApiErrorBody),
        (status = 404, description = "APP_NOT_FOUND", body = ApiErrorBody),
        (status = 409, description = "APP_NOT_DISABLED", body = ApiErrorBody),
    ))]
async fn delete_app(
    _: Admin,
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_app(&app_id)
        .await
        .map_err(ApiError::from_store)?;
    state.app_keys.invalidate(&app_id);
    for room in state.rooms.rooms_of_app(&app_id) {
        state.rooms.send(
            &room,
            RoomCommand::Close {
                reason: LeaveReason::RoomClosed,
            },
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
