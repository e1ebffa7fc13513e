//! Liveness and readiness probes (no authentication).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::ApiJson;
use super::AppState;
use crate::error::ApiError;

/// A probe's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = HealthStatus)))]
pub async fn healthz() -> ApiJson<HealthStatus> {
    ApiJson(HealthStatus {
        status: "ok".into(),
    })
}

/// The store answers: the API can serve requests.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = HealthStatus), (status = 503, body = crate::error::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<ApiJson<HealthStatus>, ApiError> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(ApiJson(HealthStatus {
            status: "ok".into(),
        })),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store does not answer",
        )),
    }
}
