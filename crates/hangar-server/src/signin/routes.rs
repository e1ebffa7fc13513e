//! The sign-in routes. Handlers parse, call one [`SigninService`](super::SigninService)
//! operation, and map the outcome to a redirect with the session cookie or to the error page.
//!
//! | route | does |
//! |---|---|
//! | `GET /login?return_to=` | the sign-in page |
//! | `GET /login/{provider}?return_to=` | 303 to the provider's authorization URL |
//! | `GET /login/{provider}/callback` | finish; set `hangar_session`; 303 to `return_to` |
//! | `POST /login/token` | form `token`, `return_to`: a session for a personal access token; a refused token gets the sign-in page again with the error (401) |
//! | `POST /logout` | revoke the session, clear the cookie, 303 to `/login` |
//!
//! Every route here is rate-limited per client address (`tower_governor`; 429 problem+json
//! with `Retry-After`). The POST routes need a same-origin `Origin` (or
//! `Sec-Fetch-Site: same-origin`): see [`check_same_origin`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cookie::{Cookie, SameSite};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use super::pages::{error_page, login_page, CSP};
use super::{check_return_to, Callback, RateLimit, SignedIn, SigninError, SESSION_COOKIE};
use crate::api::AppState;
use crate::error::ApiError;

/// The sign-in routes, rate-limited by `limit`.
pub fn routes(limit: RateLimit) -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/login/token", post(token_form))
        .route("/login/{provider}", get(start))
        .route("/login/{provider}/callback", get(callback))
        .route("/logout", post(logout))
        .layer(rate_limit_layer(limit))
}

#[derive(serde::Deserialize)]
struct ReturnToQuery {
    return_to: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ReturnToQuery>,
) -> Response {
    let return_to = match check_return_to(query.return_to.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(&SigninError::from(e)),
    };
    let signed_in = match session_cookie(&headers) {
        Some(cookie) => state.signin.authenticate_session(&cookie).await.ok(),
        None => None,
    };
    html(
        StatusCode::OK,
        login_page(
            &state.signin.providers(),
            &return_to,
            signed_in.as_ref().map(|p| p.name.as_str()),
            None,
        ),
    )
}

async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<ReturnToQuery>,
) -> Response {
    match state
        .signin
        .begin(&provider, query.return_to.as_deref())
        .await
    {
        Ok(url) => no_store(Redirect::to(url.as_str()).into_response()),
        Err(e) => error_response(&e),
    }
}

async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<Callback>,
) -> Response {
    match state.signin.finish(&provider, &query).await {
        Ok(done) => signed_in(&state, done),
        Err(e) => error_response(&e),
    }
}

#[derive(serde::Deserialize)]
struct TokenForm {
    token: String,
    return_to: Option<String>,
}

async fn token_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    // A cross-site form could sign a victim in as the attacker (login CSRF).
    if let Err(e) = check_same_origin(&Method::POST, &headers, &state.signin.config().public_url) {
        return e.into_response();
    }
    match state
        .signin
        .sign_in_with_token(&form.token, form.return_to.as_deref())
        .await
    {
        Ok(done) => signed_in(&state, done),
        // A refused token: the sign-in page again, with the error (401, nothing created).
        Err(e @ SigninError::InvalidToken) => {
            let return_to = check_return_to(form.return_to.as_deref())
                .unwrap_or_else(|_| super::DEFAULT_RETURN_TO.to_owned());
            html(
                StatusCode::UNAUTHORIZED,
                login_page(
                    &state.signin.providers(),
                    &return_to,
                    None,
                    Some(&e.to_string()),
                ),
            )
        }
        Err(e) => error_response(&e),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let cookie = session_cookie(&headers);
    if cookie.is_some() {
        if let Err(e) =
            check_same_origin(&Method::POST, &headers, &state.signin.config().public_url)
        {
            return e.into_response();
        }
    }
    if let Err(e) = state.signin.logout(cookie.as_deref()).await {
        return error_response(&e);
    }
    let mut response = Redirect::to("/login").into_response();
    set_cookie(
        &mut response,
        &clear_cookie(state.signin.config().secure_cookies()),
    );
    no_store(response)
}

fn signed_in(state: &AppState, done: SignedIn) -> Response {
    let cookie = session_cookie_header(
        done.session.expose_secret(),
        done.max_age,
        state.signin.config().secure_cookies(),
    );
    let mut response = Redirect::to(&done.return_to).into_response();
    set_cookie(&mut response, &cookie);
    no_store(response)
}

/// `Set-Cookie` for a new session: `hangar_session=<token>; HttpOnly; SameSite=Lax; Path=/;
/// Max-Age=<lifetime>` and `Secure` when `secure` (RFC 6265 section 4.1; SameSite per
/// RFC 6265bis).
pub fn session_cookie_header(token: &str, max_age: std::time::Duration, secure: bool) -> String {
    Cookie::build((SESSION_COOKIE, token.to_owned()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// `Set-Cookie` that removes the session cookie (`Max-Age=0`, same attributes).
pub fn clear_cookie(secure: bool) -> String {
    Cookie::build((SESSION_COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The `hangar_session` cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| Cookie::parse(pair.trim().to_owned()).ok())
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// CSRF defence for cookie-authenticated requests: an unsafe method (anything but GET, HEAD,
/// OPTIONS, TRACE) or a WebSocket upgrade must come from hangar's own pages: an `Origin`
/// header equal to `public_url`'s origin (RFC 6454), or, without `Origin`,
/// `Sec-Fetch-Site: same-origin` (Fetch Metadata). Anything else is 403 problem+json
/// `cross_origin`. Safe methods pass.
pub fn check_same_origin(
    method: &Method,
    headers: &HeaderMap,
    public_url: &openidconnect::url::Url,
) -> Result<(), ApiError> {
    let upgrade = headers.contains_key(header::UPGRADE);
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe && !upgrade {
        return Ok(());
    }
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a request authenticated by the session cookie must come from hangar's own pages \
             (Origin does not match the public URL)",
        )
    };
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        Some(Ok(origin)) => {
            let parsed = openidconnect::url::Url::parse(origin).map_err(|_| refused())?;
            if parsed.origin() == public_url.origin() {
                Ok(())
            } else {
                Err(refused())
            }
        }
        Some(Err(_)) => Err(refused()),
        None => {
            let same = headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("same-origin"));
            if same {
                Ok(())
            } else {
                Err(refused())
            }
        }
    }
}

fn error_response(e: &SigninError) -> Response {
    use SigninError::*;
    let status = match e {
        UnknownProvider { .. } => StatusCode::NOT_FOUND,
        BadReturnTo(_) | BadState | StateReplayed | StateExpired | BadCallback { .. } => {
            StatusCode::BAD_REQUEST
        }
        Denied { .. } => StatusCode::FORBIDDEN,
        InvalidToken => StatusCode::UNAUTHORIZED,
        Upstream(_) => StatusCode::BAD_GATEWAY,
        Accounts(_) | Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = if status.is_server_error() && status != StatusCode::BAD_GATEWAY {
        tracing::error!(error = %crate::signin::oidc::error_chain(e), "sign-in failed");
        "something went wrong on hangar's side; see the server log".to_owned()
    } else {
        e.to_string()
    };
    html(status, error_page(&message))
}

/// An HTML page of hangar's own (sign-in, consent, device verification): `body` with the
/// page CSP, no framing, `no-store` and a same-origin referrer policy (so browsers send an
/// `Origin` the CSRF check accepts on the page's forms).
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    no_store(response)
}

/// `Cache-Control: no-store` and `Referrer-Policy: same-origin`: no referrer ever leaves
/// hangar, while the page's own form posts keep their `Origin` (under `no-referrer` browsers
/// send `Origin: null` on a form POST, which [`check_same_origin`] must refuse).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Rate-limit key: the peer's IP address from axum's `ConnectInfo` (the server must be served
/// with `into_make_service_with_connect_info::<SocketAddr>()`, as `hangar up` is). Without it
/// every request shares one bucket. Forwarded headers are never trusted (they are the
/// client's to forge).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddress;

impl KeyExtractor for PeerAddress {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

fn rate_limit_layer(
    limit: RateLimit,
) -> GovernorLayer<PeerAddress, governor::middleware::NoOpMiddleware, axum::body::Body> {
    let config = GovernorConfigBuilder::default()
        .period(limit.replenish_every)
        .burst_size(limit.burst.max(1))
        .key_extractor(PeerAddress)
        .finish()
        .unwrap_or_else(|| unreachable!("burst and period are above zero"));
    let config = Arc::new(config);
    // Forget addresses that are back to a full bucket, now and then.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let weak = Arc::downgrade(&config);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                match weak.upgrade() {
                    Some(config) => config.limiter().retain_recent(),
                    None => break,
                }
            }
        });
    }
    GovernorLayer::new(config).error_handler(|error| {
        let (status, headers) = match error {
            GovernorError::TooManyRequests { headers, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, headers)
            }
            GovernorError::UnableToExtractKey => (StatusCode::INTERNAL_SERVER_ERROR, None),
            GovernorError::Other { code, headers, .. } => (code, headers),
        };
        let mut response = ApiError::new(
            status,
            "rate_limited",
            "too many sign-in requests from this address; retry later",
        )
        .into_response();
        if let Some(headers) = headers {
            for (name, value) in headers.iter() {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_has_the_safe_attributes() {
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        let plain = session_cookie_header("hgr_sess_abc", week, false);
        assert!(plain.starts_with("hangar_session=hgr_sess_abc"), "{plain}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
            assert!(plain.contains(attr), "{plain} lacks {attr}");
        }
        assert!(!plain.contains("Secure"), "{plain}");
        assert!(session_cookie_header("x", week, true).contains("Secure"));
        let clear = clear_cookie(false);
        assert!(
            clear.contains("Max-Age=0") && clear.contains("HttpOnly"),
            "{clear}"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; hangar_session=hgr_sess_x; c=d"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("hgr_sess_x"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn unsafe_cookie_requests_must_be_same_origin() {
        let public = openidconnect::url::Url::parse("https://hangar.example:8443").expect("url");
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(check_same_origin(&Method::GET, &HeaderMap::new(), &public).is_ok());
        let ok = [
            with(&[("origin", "https://hangar.example:8443")]),
            with(&[("sec-fetch-site", "same-origin")]),
        ];
        for h in ok {
            assert!(
                check_same_origin(&Method::POST, &h, &public).is_ok(),
                "{h:?}"
            );
        }
        let bad = [
            HeaderMap::new(),
            with(&[("origin", "https://evil.test")]),
            with(&[("origin", "http://hangar.example:8443")]),
            with(&[("origin", "https://hangar.example")]),
            with(&[("origin", "null")]),
            with(&[("sec-fetch-site", "cross-site")]),
            with(&[
                ("origin", "https://evil.test"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ];
        for h in bad {
            let err = check_same_origin(&Method::DELETE, &h, &public).expect_err("refused");
            assert_eq!(err.status(), StatusCode::FORBIDDEN, "{h:?}");
        }
        // A WebSocket upgrade is a GET but carries the cookie: it must be same-origin too.
        let upgrade = with(&[("upgrade", "websocket"), ("origin", "https://evil.test")]);
        assert!(check_same_origin(&Method::GET, &upgrade, &public).is_err());
    }
}
