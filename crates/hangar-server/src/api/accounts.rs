//! User and token routes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use hangar_core::TokenId;

use super::auth::Caller;
use super::dto::{
    AccountView, CreateTokenRequest, CreateUserRequest, CreatedToken, CreatedUser, MeView,
    SigninProviderView, TokenView, UserView,
};
use super::json::ApiJson;
use super::AppState;
use crate::error::{ApiError, Problem};

/// The configured ways to sign in with an upstream account (GitHub, OpenID Connect), each
/// started at `/login/{name}?return_to=PATH`; no authentication (the dashboard's sign-in view
/// shows them). Signing in with a personal access token is `POST /login/token`.
#[utoipa::path(get, path = "/api/v1/signin/providers", tag = "accounts", security(()),
    responses((status = 200, body = [SigninProviderView])))]
pub async fn signin_providers(State(state): State<AppState>) -> ApiJson<Vec<SigninProviderView>> {
    ApiJson(
        state
            .signin
            .providers()
            .into_iter()
            .map(|p| SigninProviderView {
                name: p.name,
                label: p.label,
            })
            .collect(),
    )
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = MeView), (status = 401, body = Problem)))]
pub async fn me(Caller(caller): Caller) -> ApiJson<MeView> {
    ApiJson(MeView {
        id: caller.user,
        name: caller.name,
        is_admin: caller.is_admin,
        scope: caller.scopes.to_string(),
    })
}

/// The caller's account and linked identities; works with a bearer token or the browser
/// session cookie.
#[utoipa::path(get, path = "/api/v1/account", tag = "accounts",
    responses((status = 200, body = AccountView), (status = 401, body = Problem)))]
pub async fn account(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<AccountView>, ApiError> {
    let (user, identities) = state.signin.account(&caller).await?;
    Ok(ApiJson(AccountView {
        id: user.id,
        name: user.name,
        is_admin: user.is_admin,
        created_at: user.created_at,
        identities: identities.into_iter().map(Into::into).collect(),
    }))
}

/// Creates a user and its first token (admin only).
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 403, body = Problem),
        (status = 409, body = Problem)))]
pub async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, ApiJson<CreatedUser>), ApiError> {
    let (user, token) = state
        .accounts
        .create_user(&caller, &body.name, body.admin)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedUser {
            user: user.into(),
            token: token.secret.expose_secret().to_owned(),
        }),
    ))
}

/// Every user (admin only).
#[utoipa::path(get, path = "/api/v1/users", tag = "accounts",
    responses((status = 200, body = [UserView]), (status = 403, body = Problem)))]
pub async fn list_users(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<UserView>>, ApiError> {
    let users = state.accounts.list_users(&caller).await?;
    Ok(ApiJson(users.into_iter().map(Into::into).collect()))
}

/// Issues a personal access token for the caller.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = Problem)))]
pub async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, ApiJson<CreatedToken>), ApiError> {
    let scopes = body
        .scope
        .as_deref()
        .map(hangar_identity::ScopeSet::parse)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("scope: {}", e.description),
            )
        })?;
    let issued = state
        .accounts
        .create_token(&caller, &body.name, body.expires_in_s, scopes)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedToken {
            token: issued.secret.expose_secret().to_owned(),
            record: issued.record.into(),
        }),
    ))
}

/// The caller's tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts",
    responses((status = 200, body = [TokenView])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<ApiJson<Vec<TokenView>>, ApiError> {
    let tokens = state.accounts.list_tokens(&caller).await?;
    Ok(ApiJson(tokens.into_iter().map(Into::into).collect()))
}

/// Revokes one of the caller's tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: TokenId = id
        .parse()
        .map_err(|_| ApiError::not_found("token not found"))?;
    state.accounts.revoke_token(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
