//! OAuth administration and linked apps: `/api/v1/oauth/clients` (admin, scope `admin`) and
//! `/api/v1/account/apps` (the person's grants).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use hangar_core::GrantId;
use hangar_oauth::client::{ClientType, GrantType, NewClient};
use hangar_oauth::ScopeSet;

use super::auth::Caller;
use super::dto::{CreateOAuthClientRequest, CreatedOAuthClient, LinkedAppView, OAuthClientView};
use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, Problem};

fn unprocessable(detail: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
}

/// Registers an OAuth client (admin). A confidential client's secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/oauth/clients", tag = "oauth",
    request_body = CreateOAuthClientRequest,
    responses((status = 201, body = CreatedOAuthClient), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
pub async fn create_client(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateOAuthClientRequest>,
) -> Result<(StatusCode, ApiJson<CreatedOAuthClient>), ApiError> {
    let scopes = ScopeSet::parse(&body.scope)
        .map_err(|e| unprocessable(format!("scope: {}", e.description)))?;
    let grant_types = body
        .grant_types
        .iter()
        .map(|g| g.parse::<GrantType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unprocessable(format!("grant_types: {}", e.description)))?;
    let new = NewClient {
        name: body.name,
        client_type: if body.public {
            ClientType::Public
        } else {
            ClientType::Confidential
        },
        redirect_uris: body.redirect_uris,
        scopes,
        grant_types,
    };
    let (client, secret) = state.oauth.register_client(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedOAuthClient {
            client: client.into(),
            client_secret: secret.map(|s| s.expose_secret().to_owned()),
        }),
    ))
}

/// Every registered client (admin; never their secrets).
#[utoipa::path(get, path = "/api/v1/oauth/clients", tag = "oauth",
    responses((status = 200, body = [OAuthClientView]), (status = 403, body = Problem)))]
pub async fn list_clients(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<OAuthClientView>>, ApiError> {
    let clients = state.oauth.list_clients(&caller).await?;
    Ok(ApiJson(clients.into_iter().map(Into::into).collect()))
}

/// Removes a client and everything issued to it (admin).
#[utoipa::path(delete, path = "/api/v1/oauth/clients/{id}", tag = "oauth",
    params(("id" = String, Path, description = "client_id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_client(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.oauth.delete_client(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's linked apps (OAuth grants).
#[utoipa::path(get, path = "/api/v1/account/apps", tag = "oauth",
    responses((status = 200, body = [LinkedAppView]), (status = 403, body = Problem)))]
pub async fn list_apps(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<LinkedAppView>>, ApiError> {
    let grants = state.oauth.list_grants(&caller).await?;
    Ok(ApiJson(grants.into_iter().map(Into::into).collect()))
}

/// Revokes a linked app: the grant and every token of it.
#[utoipa::path(delete, path = "/api/v1/account/apps/{id}", tag = "oauth",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn revoke_app(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: GrantId = id.parse().map_err(|_| ApiError::not_found("not found"))?;
    state.oauth.revoke_grant(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
