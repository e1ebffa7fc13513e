//! `GET /api/v1/events`: recorded operational events for admins, newest first.

use axum::extract::{Query, State};

use super::auth::Caller;
use super::dto::{EventView, EventsQuery};
use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, Problem};
use crate::events::EventError;
use hangar_store::EventCursor;

/// Default page size.
const DEFAULT_LIMIT: u32 = 50;

/// Recent events (sandbox failures with their stage, sandboxes the runtime lost, reconciler
/// actions, connect-session outcomes, node reachability), newest first. Admins only.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = [EventView]),
        (status = 400, description = "Bad limit or before", body = Problem),
        (status = 401, body = Problem),
        (status = 403, description = "Not an admin (or no admin scope)", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<Vec<EventView>>, ApiError> {
    crate::accounts::require_admin(&caller)?;
    let Query(query) = query?;
    let cursor = match query.before.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_cursor(text)?),
    };
    let events = state
        .events
        .list(&caller, query.limit.unwrap_or(DEFAULT_LIMIT), cursor)
        .await?;
    Ok(ApiJson(events.iter().map(EventView::from).collect()))
}

/// `before`: an event id, or an RFC 3339 time.
fn parse_cursor(text: &str) -> Result<EventCursor, ApiError> {
    if let Ok(id) = text.parse() {
        return Ok(EventCursor::After(id));
    }
    hangar_core::Timestamp::parse_rfc3339(text)
        .map(EventCursor::Before)
        .ok_or_else(|| ApiError::bad_request("before must be an event id or an RFC 3339 time"))
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::Account(a) => a.into(),
            EventError::UnknownCursor { .. } | EventError::Limit => {
                ApiError::bad_request(e.to_string())
            }
            EventError::Store(_) => ApiError::internal(&e),
        }
    }
}
