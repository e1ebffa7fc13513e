//! The OAuth endpoints, mounted at the root: `/oauth/token`, `/oauth/revoke`,
//! `/oauth/introspect`, `/oauth/device_authorization`, `/oauth/userinfo`, `/oauth/jwks`, and
//! the metadata at `/.well-known/oauth-authorization-server` (RFC 8414) and
//! `/.well-known/openid-configuration`. Answers use RFC 6749 error bodies, not problem+json.
//!
//! Input rules (RFC 6749 section 3.2 and RFC 9700): `POST` with
//! `application/x-www-form-urlencoded` only; a body of at most [`MAX_BODY_BYTES`] (413
//! otherwise) and values of at most [`MAX_VALUE_BYTES`]; no parameter twice; no secret in
//! the query string; one client authentication method per request. Every answer carries
//! `Cache-Control: no-store` and `Pragma: no-cache`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use hangar_oauth::{OAuthError, ScopeSet};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::AppState;
use crate::oauth::{ClientAuth, EndpointError, TokenGrant};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest single parameter value accepted.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Query parameters that carry secrets and must never be in a URL.
const SECRET_PARAMETERS: [&str; 7] = [
    "client_secret",
    "code",
    "code_verifier",
    "refresh_token",
    "token",
    "device_code",
    "password",
];

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/device_authorization", post(device_authorization))
        .route("/oauth/userinfo", get(userinfo).post(userinfo))
        .route("/oauth/jwks", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
}

/// An OAuth error answer: `{"error", "error_description"}` with the RFC's status and headers.
#[derive(Debug)]
pub struct OAuthResponseError {
    error: EndpointError,
    /// A status other than the error code's (413 for an oversized body).
    status: Option<StatusCode>,
}

impl From<OAuthError> for OAuthResponseError {
    fn from(e: OAuthError) -> Self {
        EndpointError::from(e).into()
    }
}

impl From<EndpointError> for OAuthResponseError {
    fn from(error: EndpointError) -> Self {
        Self {
            error,
            status: None,
        }
    }
}

fn invalid_request(why: &'static str) -> OAuthResponseError {
    OAuthError::invalid_request(why).into()
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthResponseError {
    fn into_response(self) -> Response {
        let EndpointError { error, retry_after } = self.error;
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
        });
        let body = json!({
            "error": error.code.as_str(),
            "error_description": error.description,
        });
        let mut response = (status, axum::Json(body)).into_response();
        no_store(&mut response);
        if let Some(value) = error
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(wait) = retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// A JSON answer with `Cache-Control: no-store`.
fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    no_store(&mut response);
    response
}

/// The peer's address, if the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A checked form body plus the request's `Authorization` header.
pub struct OAuthForm {
    params: HashMap<String, Zeroizing<String>>,
    authorization: Option<String>,
}

impl std::fmt::Debug for OAuthForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.params.keys().collect();
        names.sort();
        f.debug_struct("OAuthForm")
            .field("params", &names)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthResponseError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(query) = req.uri().query() {
            let secret_in_query = url::form_urlencoded::parse(query.as_bytes())
                .any(|(name, _)| SECRET_PARAMETERS.contains(&name.as_ref()));
            if secret_in_query {
                return Err(invalid_request(
                    "credentials must not be sent in the query string",
                ));
            }
        }
        let form_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
            .unwrap_or(false);
        if !form_type {
            return Err(invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = state;
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| OAuthResponseError {
                error: OAuthError::invalid_request("the request body is too large").into(),
                status: Some(StatusCode::PAYLOAD_TOO_LARGE),
            })?;
        Self::parse(&bytes, authorization)
    }
}

impl OAuthForm {
    fn parse(bytes: &Bytes, authorization: Option<String>) -> Result<Self, OAuthResponseError> {
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(bytes) {
            if value.len() > MAX_VALUE_BYTES || name.len() > 64 {
                return Err(invalid_request("a parameter is too long"));
            }
            if params
                .insert(name.into_owned(), Zeroizing::new(value.into_owned()))
                .is_some()
            {
                return Err(invalid_request("a parameter is repeated"));
            }
        }
        Ok(Self {
            params,
            authorization,
        })
    }

    /// A parameter; empty values count as absent (RFC 6749 section 3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn require(&self, name: &'static str, why: &'static str) -> Result<&str, OAuthResponseError> {
        self.get(name).ok_or_else(|| invalid_request(why))
    }

    /// The client authentication of the request (RFC 6749 section 2.3): HTTP Basic, or
    /// `client_id` + `client_secret` in the body, or `client_id` alone; never two methods.
    fn client_auth(&self) -> Result<ClientAuth, OAuthResponseError> {
        let basic = self
            .authorization
            .as_deref()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
        if let Some((_, encoded)) = basic {
            if self.get("client_secret").is_some() {
                return Err(invalid_request("use one client authentication method"));
            }
            let (client_id, secret) =
                decode_basic(encoded.trim()).ok_or_else(OAuthError::invalid_client)?;
            if self.get("client_id").is_some_and(|id| id != client_id) {
                return Err(invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            return Ok(ClientAuth::Basic { client_id, secret });
        }
        let Some(client_id) = self.get("client_id") else {
            return Err(OAuthError::invalid_client().into());
        };
        Ok(match self.get("client_secret") {
            Some(secret) => ClientAuth::Post {
                client_id: client_id.to_owned(),
                secret: Zeroizing::new(secret.to_owned()),
            },
            None => ClientAuth::None {
                client_id: client_id.to_owned(),
            },
        })
    }

    fn scope(&self) -> Result<Option<ScopeSet>, OAuthResponseError> {
        self.get("scope")
            .map(ScopeSet::parse)
            .transpose()
            .map_err(Into::into)
    }
}

/// `base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 section 2.3.1).
fn decode_basic(encoded: &str) -> Option<(String, Zeroizing<String>)> {
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?,
    );
    let text = std::str::from_utf8(&raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((
        form_decode(id)?.to_string(),
        Zeroizing::new(form_decode(secret)?),
    ))
}

/// Decodes one `application/x-www-form-urlencoded` component (no raw `&` or `=`).
fn form_decode(component: &str) -> Option<String> {
    if component.contains(['&', '=']) {
        return None;
    }
    if component.is_empty() {
        return Some(String::new());
    }
    url::form_urlencoded::parse(component.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
}

/// `POST /oauth/token` (RFC 6749 sections 4.1.3, 5 and 6; RFC 8628 section 3.4).
async fn token(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    form: Result<OAuthForm, OAuthResponseError>,
) -> Result<Response, OAuthResponseError> {
    let form = form?;
    let grant_type: hangar_oauth::GrantType = form
        .require("grant_type", "grant_type is missing")?
        .parse()?;
    let grant = match grant_type {
        hangar_oauth::GrantType::AuthorizationCode => TokenGrant::AuthorizationCode {
            code: Zeroizing::new(form.require("code", "code is missing")?.to_owned()),
            redirect_uri: form.get("redirect_uri").map(str::to_owned),
            code_verifier: form
                .get("code_verifier")
                .map(|v| Zeroizing::new(v.to_owned())),
        },
        hangar_oauth::GrantType::RefreshToken => TokenGrant::RefreshToken {
            refresh_token: Zeroizing::new(
                form.require("refresh_token", "refresh_token is missing")?
                    .to_owned(),
            ),
            scope: form.scope()?,
        },
        hangar_oauth::GrantType::DeviceCode => TokenGrant::DeviceCode {
            device_code: Zeroizing::new(
                form.require("device_code", "device_code is missing")?
                    .to_owned(),
            ),
        },
    };
    let auth = form.client_auth()?;
    // The grant runs to completion even if the client goes away mid-request: a transaction
    // dropped half-way (a code redemption, a refresh rotation) would otherwise keep its locks
    // until its pooled connection is next used, stalling every request behind them.
    let oauth = std::sync::Arc::clone(&state.oauth);
    let issued = tokio::spawn(async move { oauth.token(peer, auth, grant).await })
        .await
        .map_err(|_| OAuthError::server_error())??;
    let mut body = json!({
        "access_token": issued.access_token.expose_secret(),
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope.to_string(),
    });
    if let Some(refresh) = &issued.refresh_token {
        body["refresh_token"] = refresh.expose_secret().into();
    }
    if let Some(id_token) = &issued.id_token {
        body["id_token"] = id_token.as_str().into();
    }
    Ok(answer(StatusCode::OK, body))
}

/// `POST /oauth/revoke` (RFC 7009).
async fn revoke(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    form: Result<OAuthForm, OAuthResponseError>,
) -> Result<Response, OAuthResponseError> {
    let form = form?;
    let token = form.require("token", "token is missing")?.to_owned();
    let auth = form.client_auth()?;
    state.oauth.revoke(peer, auth, &token).await?;
    let mut response = StatusCode::OK.into_response();
    no_store(&mut response);
    Ok(response)
}

/// `POST /oauth/introspect` (RFC 7662).
async fn introspect(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    form: Result<OAuthForm, OAuthResponseError>,
) -> Result<Response, OAuthResponseError> {
    let form = form?;
    let token = form.require("token", "token is missing")?.to_owned();
    let auth = form.client_auth()?;
    let info = state.oauth.introspect(peer, auth, &token).await?;
    let mut body = json!({ "active": info.active });
    if info.active {
        body["scope"] = info.scope.map(|s| s.to_string()).into();
        body["client_id"] = info.client_id.into();
        body["username"] = info.username.into();
        body["token_type"] = info.token_type.into();
        body["exp"] = info.exp.into();
        body["iat"] = info.iat.into();
        body["sub"] = info.sub.into();
        body["aud"] = info.aud.into();
        body["iss"] = info.iss.into();
    }
    Ok(answer(StatusCode::OK, body))
}

/// `POST /oauth/device_authorization` (RFC 8628 section 3.1).
async fn device_authorization(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    form: Result<OAuthForm, OAuthResponseError>,
) -> Result<Response, OAuthResponseError> {
    let form = form?;
    let scope = form.scope()?;
    let auth = form.client_auth()?;
    let device = state.oauth.device_authorization(peer, auth, scope).await?;
    Ok(answer(
        StatusCode::OK,
        json!({
            "device_code": device.device_code.expose_secret(),
            "user_code": device.user_code,
            "verification_uri": device.verification_uri,
            "verification_uri_complete": device.verification_uri_complete,
            "expires_in": device.expires_in,
            "interval": device.interval,
        }),
    ))
}

/// `GET|POST /oauth/userinfo` (OpenID Connect Core section 5.3), bearer token in the header.
async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthResponseError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let info = state.oauth.userinfo(token).await?;
    let mut body = json!({ "sub": info.sub });
    if let Some(name) = info.name {
        body["name"] = name.into();
    }
    if let Some(login) = info.preferred_username {
        body["preferred_username"] = login.into();
    }
    Ok(answer(StatusCode::OK, body))
}

/// `GET /oauth/jwks` (RFC 7517 section 5).
async fn jwks(State(state): State<AppState>) -> Result<Response, OAuthResponseError> {
    let set = state.oauth.jwks().await?;
    let mut response = axum::Json(set).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// The metadata document (RFC 8414 section 3; OpenID Connect Discovery section 4).
async fn metadata(State(state): State<AppState>) -> Response {
    axum::Json(state.oauth.metadata()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20app:s%2Bcret");
        let (id, secret) = decode_basic(&encoded).expect("decoded");
        assert_eq!((id.as_str(), secret.as_str()), ("my app", "s+cret"));
        let raw = base64::engine::general_purpose::STANDARD.encode("app:a=b");
        assert!(decode_basic(&raw).is_none());
        assert!(decode_basic("!!!").is_none());
        assert!(
            decode_basic(&base64::engine::general_purpose::STANDARD.encode("nocolon")).is_none()
        );
    }

    #[test]
    fn forms_refuse_repeats_and_long_values() {
        assert!(OAuthForm::parse(&Bytes::from_static(b"a=1&b=2"), None).is_ok());
        assert!(OAuthForm::parse(&Bytes::from_static(b"a=1&a=1"), None).is_err());
        let long = format!("a={}", "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(OAuthForm::parse(&Bytes::from(long), None).is_err());
    }
}
