//! Node and health routes: the node list, a node's sandboxes, node and sandbox history, and
//! the heartbeat a node agent sends. Each handler parses, calls one
//! [`MetricsService`](crate::metrics::MetricsService) operation, and maps errors.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hangar_core::NodeId;

use super::auth::Caller;
use super::dto::{
    HeartbeatRequest, HistoryQuery, HistoryView, NodeSandboxView, NodeView, SandboxView,
};
use super::json::ApiJson;
use super::sandboxes::parse_id;
use super::AppState;
use crate::error::{ApiError, Problem};

fn parse_node(raw: &str) -> Result<NodeId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("node not found"))
}

type HistoryParams = Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>;

/// Every node with its state (`ready` / `unreachable`) and newest sample (admin only).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes",
    responses((status = 200, body = [NodeView]), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<NodeView>>, ApiError> {
    let nodes = state.metrics.list_nodes(&caller).await?;
    Ok(ApiJson(nodes.into_iter().map(Into::into).collect()))
}

/// The node's sandboxes that are not destroyed, with their newest sample and health
/// (admin only).
#[utoipa::path(get, path = "/api/v1/nodes/{id}/sandboxes", tag = "nodes",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 200, body = [NodeSandboxView]), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn sandboxes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<Vec<NodeSandboxView>>, ApiError> {
    let list = state
        .metrics
        .node_sandboxes(&caller, parse_node(&id)?)
        .await?;
    Ok(ApiJson(
        list.into_iter()
            .map(|s| {
                let address = state.sandboxes.network_address(&s.sandbox);
                NodeSandboxView {
                    sandbox: SandboxView::from(s.sandbox).with_address(address),
                    latest: s.latest,
                    healthy: s.healthy,
                }
            })
            .collect(),
    ))
}

/// The node's history in columns (admin only).
#[utoipa::path(get, path = "/api/v1/nodes/{id}/metrics", tag = "nodes",
    params(("id" = String, Path, description = "Node id"), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn node_metrics(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    query: HistoryParams,
) -> Result<ApiJson<HistoryView>, ApiError> {
    let Query(q) = query?;
    let series = state
        .metrics
        .node_history(
            &caller,
            parse_node(&id)?,
            q.since.as_deref(),
            q.step.as_deref(),
        )
        .await?;
    Ok(ApiJson(series.into()))
}

/// The sandbox's history in columns (its owner, or an admin).
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/metrics", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 400, body = Problem),
        (status = 404, body = Problem)))]
pub async fn sandbox_metrics(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    query: HistoryParams,
) -> Result<ApiJson<HistoryView>, ApiError> {
    let Query(q) = query?;
    let series = state
        .metrics
        .sandbox_history(
            &caller,
            parse_id(&id)?,
            q.since.as_deref(),
            q.step.as_deref(),
        )
        .await?;
    Ok(ApiJson(series.into()))
}

/// A node agent's heartbeat: registers or refreshes node `id` and records its samples
/// (admin token only). Samples of sandboxes not placed on that node are dropped.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/heartbeat", tag = "nodes",
    params(("id" = String, Path, description = "Node id (the agent's own)")),
    request_body = HeartbeatRequest,
    responses((status = 204), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<HeartbeatRequest>,
) -> Result<StatusCode, ApiError> {
    let id: NodeId = id
        .parse()
        .map_err(|_| ApiError::bad_request("node id must be a UUID"))?;
    state.metrics.heartbeat(&caller, id, body.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}
