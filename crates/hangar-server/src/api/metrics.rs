//! `GET /metrics`: the Prometheus exposition (see [`crate::telemetry`]).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::IntoResponse;

use super::AppState;
use crate::error::{ApiError, Problem};

/// Metrics in the OpenMetrics text format, for Prometheus. Needs an admin's bearer token
/// with the `admin` scope, unless the server is configured with `[metrics] public = true`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "OpenMetrics text exposition",
            content_type = "application/openmetrics-text", body = String),
        (status = 401, body = Problem),
        (status = 403, description = "Not an admin (or no admin scope)", body = Problem)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if !state.telemetry_config.public {
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state.accounts.authenticate(auth).await?;
        crate::accounts::require_admin(&caller)?;
    }
    let text = state
        .telemetry
        .render(&state.store, state.live.subscribers())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(([(CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)], text))
}
