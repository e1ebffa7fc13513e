//! The `Caller` extractor: authenticates the request's bearer token or, without one, the
//! browser session cookie (`hangar_session`), which for unsafe methods and WebSocket upgrades
//! must come with a same-origin `Origin` (CSRF; see [`crate::signin::routes::check_same_origin`]).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hangar_identity::Principal;

use super::AppState;
use crate::error::ApiError;

/// The authenticated caller. Rejects with 401 problem+json, or 403 `cross_origin` for a
/// cookie-authenticated unsafe request from another origin.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Caller(
            authenticate(state, &parts.method, &parts.headers).await?,
        ))
    }
}

/// Authenticates a request as [`Caller`] does: the bearer token (header or WebSocket
/// subprotocol) or, without one, the `hangar_session` cookie with the same-origin check for
/// unsafe methods and upgrades. For handlers that accept other credentials first.
pub async fn authenticate(
    state: &AppState,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
) -> Result<Principal, ApiError> {
    let header = bearer_header(headers);
    // A bearer token wins; the session cookie is used only without one.
    if header.is_none() {
        if let Some(cookie) = crate::signin::routes::session_cookie(headers) {
            crate::signin::routes::check_same_origin(
                method,
                headers,
                &state.signin.config().public_url,
            )?;
            return Ok(state.signin.authenticate_session(&cookie).await?);
        }
    }
    Ok(state.accounts.authenticate(header.as_deref()).await?)
}

/// The request's `Authorization` value, or on a WebSocket upgrade the token carried in the
/// `hangar.bearer.` subprotocol, as an `Authorization` value.
pub fn bearer_header(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| websocket_bearer(headers))
}

/// Browsers cannot set headers on a WebSocket, so a WebSocket upgrade may carry its token as
/// the subprotocol `hangar.bearer.<token>` (the server never selects or echoes it).
/// Returned as an `Authorization` header value.
fn websocket_bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let is_upgrade = headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return None;
    }
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_SUBPROTOCOL))
        .map(|token| format!("Bearer {token}"))
}

/// Prefix of the WebSocket subprotocol that carries a bearer token.
pub const BEARER_SUBPROTOCOL: &str = "hangar.bearer.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rides_the_websocket_subprotocol_only_on_upgrades() {
        let req = axum::http::Request::builder()
            .header("upgrade", "websocket")
            .header(
                "sec-websocket-protocol",
                "binary, hangar.bearer.hgr_pat_abc",
            )
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        assert_eq!(
            websocket_bearer(&parts.headers).as_deref(),
            Some("Bearer hgr_pat_abc")
        );
        let req = axum::http::Request::builder()
            .header("sec-websocket-protocol", "hangar.bearer.hgr_pat_abc")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        assert_eq!(websocket_bearer(&parts.headers), None);
    }
}
