//! Connect-session and credential routes.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use hangar_core::{ConnectSession, ConnectSessionId, CredentialStatus};
use hangar_identity::ViewerToken;

use super::auth::Caller;
use super::dto::{ConnectSessionView, ProviderView, StartConnectRequest, SubmitCodeRequest};
use super::json::ApiJson;
use super::AppState;
use crate::connect::StartConnect;
use crate::error::{ApiError, Problem};
use hangar_identity::Scope;

fn parse_session(raw: &str) -> Result<ConnectSessionId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("connect session not found"))
}

/// Starts connecting a provider account; answers at once with state `starting`.
#[utoipa::path(post, path = "/api/v1/connect", tag = "connect", request_body = StartConnectRequest,
    responses((status = 202, body = ConnectSessionView),
        (status = 422, description = "Unknown provider or flow", body = Problem)))]
pub async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<StartConnectRequest>,
) -> Result<(StatusCode, ApiJson<ConnectSessionView>), ApiError> {
    caller.require(Scope::Connect)?;
    let (session, viewer) = state
        .connect
        .start(
            &caller,
            StartConnect {
                provider: body.provider,
                flow: body.flow,
            },
        )
        .await?;
    let id = session.id;
    let mut view = ConnectSessionView::from(session);
    view.viewer_url = viewer.map(|t| format!("/connect/{id}#viewer={}", t.expose_secret()));
    Ok((StatusCode::ACCEPTED, ApiJson(view)))
}

/// Who may look at one connect session: its owner (a token, or the dashboard's session
/// cookie, same-origin) or the holder of its viewer token (the viewer page). A token comes
/// from the `Authorization` header or, on a WebSocket upgrade, from the `hangar.bearer.`
/// subprotocol.
async fn session_for_viewer(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    id: ConnectSessionId,
) -> Result<ConnectSession, ApiError> {
    let header = super::auth::bearer_header(headers);
    let token = header
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if ViewerToken::is_viewer_token(t) => {
            Ok(state.connect.authorize_viewer(id, t).await?)
        }
        _ => {
            let caller = super::auth::authenticate(state, method, headers).await?;
            caller.require(Scope::Connect)?;
            Ok(state.connect.get(&caller, id).await?)
        }
    }
}

/// The browser sandbox's VNC stream for the viewer (WebSocket, binary; owner or viewer
/// token).
#[utoipa::path(get, path = "/api/v1/connect/{id}/vnc", tag = "connect",
    params(("id" = String, Path, description = "Connect session id")),
    responses((status = 101, description = "Switching to a binary WebSocket carrying RFB"),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn vnc(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let session = session_for_viewer(&state, &method, &headers, parse_session(&id)?).await?;
    let ws = ws.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let stream = state.connect.vnc_stream(&session).await?;
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |socket| super::ports::bridge(socket, stream)))
}

/// The caller's connect sessions, newest first.
#[utoipa::path(get, path = "/api/v1/connect", tag = "connect",
    responses((status = 200, body = [ConnectSessionView])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<ConnectSessionView>>, ApiError> {
    caller.require(Scope::Connect)?;
    let sessions = state.connect.list(&caller).await?;
    Ok(ApiJson(sessions.into_iter().map(Into::into).collect()))
}

/// One connect session: state, prompt, viewer (owner, or the session's viewer token).
#[utoipa::path(get, path = "/api/v1/connect/{id}", tag = "connect",
    params(("id" = String, Path, description = "Connect session id")),
    responses((status = 200, body = ConnectSessionView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<ApiJson<ConnectSessionView>, ApiError> {
    let session = session_for_viewer(&state, &method, &headers, parse_session(&id)?).await?;
    Ok(ApiJson(session.into()))
}

/// Cancels an open connect session.
#[utoipa::path(delete, path = "/api/v1/connect/{id}", tag = "connect",
    params(("id" = String, Path, description = "Connect session id")),
    responses((status = 200, body = ConnectSessionView), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<ConnectSessionView>, ApiError> {
    caller.require(Scope::Connect)?;
    let session = state.connect.cancel(&caller, parse_session(&id)?).await?;
    Ok(ApiJson(session.into()))
}

/// Passes a paste code (or a token) to the session's login command.
#[utoipa::path(post, path = "/api/v1/connect/{id}/code", tag = "connect",
    params(("id" = String, Path, description = "Connect session id")),
    request_body = SubmitCodeRequest,
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn submit_code(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SubmitCodeRequest>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Connect)?;
    state
        .connect
        .submit_code(&caller, parse_session(&id)?, &body.code)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Per provider: connected since, last status check and its output, token expiry, last refresh.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "connect",
    responses((status = 200, body = [CredentialStatus])))]
pub async fn credentials(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<CredentialStatus>>, ApiError> {
    caller.require(Scope::CredentialsRead)?;
    Ok(ApiJson(state.connect.status(&caller).await?))
}

/// Removes a credential from the vault and from the caller's live sandboxes.
#[utoipa::path(delete, path = "/api/v1/credentials/{provider}", tag = "connect",
    params(("provider" = String, Path, description = "Provider id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_credential(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(provider): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::CredentialsWrite)?;
    state.connect.remove_credential(&caller, &provider).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The providers hangar can connect, with their flows.
#[utoipa::path(get, path = "/api/v1/providers", tag = "connect",
    responses((status = 200, body = [ProviderView])))]
pub async fn providers(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<ProviderView>>, ApiError> {
    caller.require(Scope::Connect)?;
    Ok(ApiJson(
        state
            .connect
            .providers()
            .iter()
            .map(|p| ProviderView {
                id: p.id.clone(),
                display_name: p.display_name.clone(),
                flows: p.offered_flows().map(|(f, _)| f).collect(),
            })
            .collect(),
    ))
}
