//! Sandbox routes. Each handler parses, calls one [`SandboxService`] operation, and maps errors.
//!
//! [`SandboxService`]: crate::sandboxes::SandboxService

use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hangar_core::SandboxId;
use hangar_runtime::image::Image;

use super::auth::Caller;
use super::dto::{
    CreateSandboxRequest, ExecRequestBody, ExecResult, ImageView, ListQuery, SandboxView,
};
use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, Problem};
use crate::sandboxes::{CreateSandbox, ExecInput};
use hangar_identity::Scope;

/// Parses a sandbox id from the path; a malformed id is "not found" like an unknown one.
pub(super) fn parse_id(raw: &str) -> Result<SandboxId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("sandbox not found"))
}

/// Creates a sandbox and starts its boot. Answers at once with state `creating`.
#[utoipa::path(post, path = "/api/v1/sandboxes", tag = "sandboxes",
    request_body = CreateSandboxRequest,
    responses(
        (status = 202, description = "Accepted; boot in progress", body = SandboxView),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, description = "Unknown image, limits out of range, unknown network \
            policy or egress on a node without a sandbox network", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateSandboxRequest>,
) -> Result<(StatusCode, ApiJson<SandboxView>), ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let defaults = state.sandboxes.config().default_limits;
    let req = CreateSandbox {
        image: body.image.unwrap_or_default(),
        limits: body.limits.map(|l| l.resolve(defaults)),
        readiness_timeout: body.readiness_timeout_ms.map(Duration::from_millis),
        retention: body.retention.unwrap_or_default(),
        network: body.network,
    };
    let sandbox = state.sandboxes.create(&caller, req).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(sandbox.into())))
}

/// The caller's sandboxes, newest first.
#[utoipa::path(get, path = "/api/v1/sandboxes", tag = "sandboxes", params(ListQuery),
    responses((status = 200, body = [SandboxView]), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<Vec<SandboxView>>, ApiError> {
    caller.require(Scope::SandboxesRead)?;
    let Query(query) = query?;
    let sandboxes = state.sandboxes.list(&caller, query.all).await?;
    Ok(ApiJson(
        sandboxes
            .into_iter()
            .map(|s| {
                let address = state.sandboxes.network_address(&s);
                SandboxView::from(s).with_address(address)
            })
            .collect(),
    ))
}

/// One sandbox: state, limits, network policy (and address while it runs with egress), boot
/// stages with times, failure.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = SandboxView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<SandboxView>, ApiError> {
    caller.require(Scope::SandboxesRead)?;
    let sandbox = state.sandboxes.get(&caller, parse_id(&id)?).await?;
    let address = state.sandboxes.network_address(&sandbox);
    Ok(ApiJson(SandboxView::from(sandbox).with_address(address)))
}

/// Runs a command to completion in a running sandbox.
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/exec", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ExecRequestBody,
    responses((status = 200, body = ExecResult), (status = 404, body = Problem),
        (status = 409, description = "Not running", body = Problem),
        (status = 422, description = "Bad command", body = Problem)))]
pub async fn exec(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExecRequestBody>,
) -> Result<ApiJson<ExecResult>, ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let id = parse_id(&id)?;
    let started = Instant::now();
    let input = ExecInput {
        argv: body.argv,
        env: body.env.into_iter().collect(),
        cwd: body.cwd,
        timeout: body.timeout_ms.map(Duration::from_millis),
        stdin: body.stdin.map(String::into_bytes),
    };
    let out = state.sandboxes.exec(&caller, id, input).await?;
    Ok(ApiJson(ExecResult {
        exit_code: out.status.code,
        signal: out.status.signal,
        timed_out: out.status.timed_out,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

/// Begins a planned stop (`stopping`, then `stopped`); files are kept.
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/stop", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 202, body = SandboxView), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn stop(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, ApiJson<SandboxView>), ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let sandbox = state.sandboxes.stop(&caller, parse_id(&id)?).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(sandbox.into())))
}

/// Boots a stopped sandbox again (`starting`, then `running`).
#[utoipa::path(post, path = "/api/v1/sandboxes/{id}/start", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 202, body = SandboxView), (status = 404, body = Problem),
        (status = 409, description = "Not stopped (failed and destroyed never start)", body = Problem)))]
pub async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, ApiJson<SandboxView>), ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let sandbox = state.sandboxes.start(&caller, parse_id(&id)?).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(sandbox.into())))
}

/// Begins removal (`destroying`, then `destroyed`).
#[utoipa::path(delete, path = "/api/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 202, body = SandboxView), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn destroy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, ApiJson<SandboxView>), ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let sandbox = state.sandboxes.destroy(&caller, parse_id(&id)?).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(sandbox.into())))
}

/// Images available on the node.
#[utoipa::path(get, path = "/api/v1/images", tag = "images",
    responses((status = 200, body = [ImageView]), (status = 401, body = Problem)))]
pub async fn list_images(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<ImageView>>, ApiError> {
    caller.require(Scope::SandboxesRead)?;
    let images = state
        .sandboxes
        .node()
        .images()
        .list()
        .map_err(|e| ApiError::internal(&e))?;
    Ok(ApiJson(images.into_iter().map(image_view).collect()))
}

fn image_view(image: Image) -> ImageView {
    ImageView {
        name: image.name,
        digest: image.digest,
        size_bytes: image.size_bytes,
        labels: image.config.labels,
    }
}
