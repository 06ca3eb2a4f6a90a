//! For the fuzz targets in `fuzz/` only, not an API: the REST API's request
//! bodies and query strings parsed by the extractors the handlers use
//! (`Json::from_bytes`, `Query::try_from_uri`, the body parsers of
//! `recording.rs` and `rooms.rs`) and checked by the functions the handlers
//! call before they reach the store or a room, without a server.

use std::time::Duration;

use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::Json;
use weir_store::validate;
use weir_store::Tag;

use super::apps::{CreateAppRequest, ListQuery, TagView, UpdateAppRequest};
use super::callbacks::{CallbacksRequest, DeliveriesQuery};
use super::recording_stats::StatsQuery;
use super::recordings::{ListJobsQuery, StartJobRequest, UpdateJobRequest};
use super::rooms::{CreateRoomRequest, MuteRequest, ParticipantUpdate};
use super::tokens::{Role, TokenRequest, VerifyRequest};
use crate::callbacks::EventType;
use crate::recording::RecordingRule;
use crate::token::{self, AppKey};

/// A request body (or query string) of the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    CreateApp,
    UpdateApp,
    ListApps,
    CreateRoom,
    UpdateParticipant,
    MuteTrack,
    CreateToken,
    VerifyToken,
    PutCallbacks,
    ListDeliveries,
    PutRecordingRule,
    TestStorage,
    StartJob,
    UpdateJob,
    ListJobs,
    RecordingStats,
}

impl Endpoint {
    pub const ALL: [Endpoint; 16] = [
        Endpoint::CreateApp,
        Endpoint::UpdateApp,
        Endpoint::ListApps,
        Endpoint::CreateRoom,
        Endpoint::UpdateParticipant,
        Endpoint::MuteTrack,
        Endpoint::CreateToken,
        Endpoint::VerifyToken,
        Endpoint::PutCallbacks,
        Endpoint::ListDeliveries,
        Endpoint::PutRecordingRule,
        Endpoint::TestStorage,
        Endpoint::StartJob,
        Endpoint::UpdateJob,
        Endpoint::ListJobs,
        Endpoint::RecordingStats,
    ];
}

fn json<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, String> {
    Json::<T>::from_bytes(input)
        .map(|Json(value)| value)
        .map_err(|e| e.body_text())
}

fn query<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let uri: Uri = format!("/?{text}").parse().map_err(|e| format!("{e}"))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(value)| value)
        .map_err(|e| e.body_text())
}

fn store<T>(result: Result<T, weir_store::StoreError>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
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

fn page(page: Option<u32>, page_size: Option<u32>) -> Result<(), String> {
    store(validate::validate_page(
        page.unwrap_or(1),
        page_size.unwrap_or(super::apps::DEFAULT_PAGE_SIZE),
    ))
}

/// Parses `input` as `endpoint`'s body (or query string) and runs the
/// checks its handler makes before it touches the store or a room; `Ok`
/// when the handler would go on.
pub fn check(endpoint: Endpoint, input: &[u8]) -> Result<(), String> {
    match endpoint {
        Endpoint::CreateApp => {
            let request: CreateAppRequest = json(input)?;
            store(validate::validate_name(&request.name))?;
            store(validate::validate_description(
                request.description.as_deref().unwrap_or_default(),
            ))?;
            store(validate::validate_tags(&tags(
                request.tags.unwrap_or_default(),
            )))
        }
        Endpoint::UpdateApp => {
            let request: UpdateAppRequest = json(input)?;
            if let Some(name) = &request.name {
                store(validate::validate_name(name))?;
            }
            if let Some(description) = &request.description {
                store(validate::validate_description(description))?;
            }
            if let Some(views) = request.tags {
                store(validate::validate_tags(&tags(views)))?;
            }
            Ok(())
        }
        Endpoint::ListApps => {
            let q: ListQuery = query(input)?;
            page(q.page, q.page_size)
        }
        Endpoint::CreateRoom => {
            let request: CreateRoomRequest = json(input)?;
            if !token::is_valid_name(&request.room_id) {
                return Err("invalid room_id".into());
            }
            if let Some(metadata) = &request.metadata {
                serde_json::to_vec(metadata).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Endpoint::UpdateParticipant => {
            let mut update: ParticipantUpdate = json(input)?;
            update.grants.sort_by_key(|g| g.as_str());
            update.grants.dedup();
            Ok(())
        }
        Endpoint::MuteTrack => {
            if !input.iter().all(u8::is_ascii_whitespace) {
                serde_json::from_slice::<MuteRequest>(input).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Endpoint::CreateToken => {
            let request: TokenRequest = json(input)?;
            let ttl = request
                .ttl_seconds
                .unwrap_or(super::tokens::DEFAULT_TTL_SECONDS);
            if ttl == 0 || ttl > super::tokens::MAX_TTL_SECONDS {
                return Err("invalid ttl_seconds".into());
            }
            let grants =
                super::tokens::grants_for(request.role.unwrap_or(Role::Anchor), request.grants)
                    .map_err(|e| e.message)?;
            let app = AppKey {
                app_id: "app".into(),
                secret: "0123456789abcdef0123456789abcdef".into(),
                enabled: true,
                room_permission_required: false,
            };
            let minted = token::mint(
                &app,
                &request.room_id,
                &request.user_id,
                &grants,
                Duration::from_secs(ttl),
                1_700_000_000,
            )
            .map_err(|e| e.to_string())?;
            token::verify_with_key(&app, &minted, None, 1_700_000_000)
                .map(|_| ())
                .map_err(|e| format!("a minted token does not verify: {e}"))
        }
        Endpoint::VerifyToken => json::<VerifyRequest>(input).map(|_| ()),
        Endpoint::PutCallbacks => {
            let request: CallbacksRequest = json(input)?;
            for name in request.events.unwrap_or_default() {
                EventType::parse(&name).ok_or("unknown event type")?;
            }
            store(validate::validate_callback_url(&request.url))?;
            store(validate::validate_callback_key(&request.key))
        }
        Endpoint::ListDeliveries => {
            let q: DeliveriesQuery = query(input)?;
            page(q.page, q.page_size)
        }
        Endpoint::PutRecordingRule => {
            let mut rule: RecordingRule = json(input)?;
            rule.validate().map_err(|e| e.to_string())
        }
        Endpoint::TestStorage => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let body = axum::body::Bytes::copy_from_slice(input);
            match super::recording::parse_storage(&headers, &body).map_err(|e| e.message)? {
                Some(target) => target.validate().map_err(|e| e.to_string()),
                None => Ok(()),
            }
        }
        Endpoint::StartJob => {
            let request: StartJobRequest = json(input)?;
            if let Some(users) = request.user_ids {
                super::recordings::checked_users(users).map_err(|e| e.message)?;
            }
            Ok(())
        }
        Endpoint::UpdateJob => {
            let request: UpdateJobRequest = json(input)?;
            super::recordings::checked_users(request.user_ids)
                .map(|_| ())
                .map_err(|e| e.message)
        }
        Endpoint::ListJobs => {
            let q: ListJobsQuery = query(input)?;
            page(q.page, q.page_size)
        }
        Endpoint::RecordingStats => {
            let q: StatsQuery = query(input)?;
            let _ = (q.from, q.to);
            Ok(())
        }
    }
}
