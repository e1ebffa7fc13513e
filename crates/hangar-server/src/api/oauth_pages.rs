//! The browser pages of the authorization server: the authorization endpoint with its consent
//! page (RFC 6749 section 4.1.1-4.1.2, RFC 9207 `iss`) and the device verification page
//! (RFC 8628 section 3.3). Handlers parse, call one [`crate::oauth::OAuthService`] operation
//! and render; the rules live in `hangar-oauth`.
//!
//! | route | does |
//! |---|---|
//! | `GET /oauth/authorize?...` | errors about the client or redirect URI: hangar's error page (400); other errors: 303 to the client with `error`, `state`, `iss`; not signed in: 303 to `/login?return_to=`; else the consent page |
//! | `POST /oauth/authorize` | form `request` (the original query), `decision` = `allow`/`deny`: 303 to the client with `code`, `state`, `iss` or `error=access_denied` |
//! | `GET /oauth/device[?user_code=]` | not signed in: 303 to `/login`; else the code form, or the request to approve |
//! | `POST /oauth/device` | form `user_code`, `decision`: the device gets tokens (or `access_denied`) at its next poll |
//!
//! The pages need the browser session (`hangar_session`), never a bearer token; the POSTs
//! must be same-origin (CSRF), and every page forbids framing (clickjacking, RFC 9700
//! section 4.16) and caching.

use axum::extract::{Form, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use hangar_identity::Principal;
use hangar_oauth::{AuthorizationRequest, AuthorizeError, ScopeSet};
use serde::Deserialize;
use std::fmt::Write as _;

use super::AppState;
use crate::signin::pages::{encode_query_value, escape};
use crate::signin::routes::{check_same_origin, session_cookie};

/// The authorization and device pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/authorize", get(authorize).post(decide))
        .route("/oauth/device", get(device).post(device_decide))
}

/// Longest query an authorization request may have, in bytes.
const MAX_REQUEST: usize = 8 * 1024;

/// What a scope lets an app do, as the consent page says it.
fn describe(scope: &str) -> &'static str {
    match scope {
        "sandboxes:read" => "see your sandboxes",
        "sandboxes:write" => {
            "create, start, stop and delete your sandboxes, and run commands in them"
        }
        "credentials:read" => "see which CLI accounts you have connected",
        "credentials:write" => "remove your connected CLI accounts",
        "connect" => "connect CLI accounts for you",
        "admin" => "administer hangar (users, OAuth clients)",
        "openid" => "know who you are",
        "profile" => "see your account name",
        "email" => "see your email address",
        "offline_access" => "keep access while you are away",
        _ => "an unknown permission",
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · hangar</title><style>body{{font-family:system-ui,sans-serif;\
         max-width:30rem;margin:4rem auto;padding:0 1rem;color:#1d2330}}h1{{font-size:1.4rem}}\
         button,input{{display:block;width:100%;box-sizing:border-box;padding:.6rem;\
         margin:.4rem 0;font-size:1rem}}.error{{color:#a1111b}}code{{font-size:1.1rem}}\
         </style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    crate::signin::routes::html(status, html)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization failed",
        &format!(
            "<h1>This request cannot go on</h1><p class=\"error\">{}</p>",
            escape(message)
        ),
    )
}

/// Found: back to the client (or to the sign-in page). 303 so a POST becomes a GET.
fn see_other(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The person behind the request's session cookie, if any (bearer tokens do not sign a
/// browser in). An unknown or expired session is no session; any other failure (the store)
/// is logged and also answered by the sign-in page.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let cookie = session_cookie(headers)?;
    match state.signin.authenticate_session(&cookie).await {
        Ok(person) => Some(person),
        Err(crate::accounts::AccountError::Unauthenticated(_)) => None,
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "session check failed");
            None
        }
    }
}

fn to_login(return_to: &str) -> Response {
    see_other(&format!(
        "/login?return_to={}",
        encode_query_value(return_to)
    ))
}

fn parse_request(query: &str) -> AuthorizationRequest {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    AuthorizationRequest::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Validates `query`; the error response if it does not hold.
async fn validated(
    state: &AppState,
    query: &str,
) -> Result<hangar_oauth::ValidatedAuthorization, Response> {
    if query.len() > MAX_REQUEST {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "the authorization request is too long",
        ));
    }
    match state
        .oauth
        .validate_authorization_request(&parse_request(query))
        .await
    {
        Ok(v) => Ok(v),
        Err(e @ AuthorizeError::Redirect { .. }) => match e.redirect_url(state.oauth.issuer()) {
            Some(url) => Err(see_other(&url)),
            None => Err(error_page(StatusCode::BAD_REQUEST, &e.error().to_string())),
        },
        Err(e) => Err(error_page(StatusCode::BAD_REQUEST, &e.error().to_string())),
    }
}

fn scope_list(scopes: &ScopeSet) -> String {
    let mut out = String::from("<ul>");
    for scope in scopes.iter() {
        let _ = write!(
            out,
            "<li>{} <small>(<code>{}</code>)</small></li>",
            escape(describe(scope.as_str())),
            escape(scope.as_str())
        );
    }
    out.push_str("</ul>");
    out
}

/// `GET /oauth/authorize`.
async fn authorize(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let request = match validated(&state, &query).await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let Some(person) = signed_in(&state, &headers).await else {
        return to_login(&format!("/oauth/authorize?{query}"));
    };
    let body = format!(
        "<h1>Allow {app}?</h1>\
         <p><strong>{app}</strong> asks to act on your hangar account \
         (<strong>{name}</strong>). It will be able to:</p>{scopes}\
         <p><small>It will be sent back to <code>{redirect}</code>. You can revoke it any time \
         in your account's linked apps.</small></p>\
         <form method=\"post\" action=\"/oauth/authorize\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        app = escape(&request.client_name),
        name = escape(&person.name),
        scopes = scope_list(&request.scopes),
        redirect = escape(&request.redirect_uri),
        request = escape(&query),
    );
    page(StatusCode::OK, "Authorize", &body)
}

/// The consent form.
#[derive(Debug, Deserialize)]
struct Decision {
    /// The authorization request's query, as the consent page was rendered for.
    #[serde(default)]
    request: String,
    /// `allow` or `deny`.
    #[serde(default)]
    decision: String,
}

/// A same-origin check for a cookie-authenticated form post: the error page if it fails.
fn cross_origin(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    check_same_origin(&Method::POST, headers, &state.signin.config().public_url)
        .err()
        .map(|_| {
            error_page(
                StatusCode::FORBIDDEN,
                "this form must be sent from hangar's own page",
            )
        })
}

/// `POST /oauth/authorize`.
async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Decision>,
) -> Response {
    if let Some(response) = cross_origin(&state, &headers) {
        return response;
    }
    let request = match validated(&state, &form.request).await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let Some(person) = signed_in(&state, &headers).await else {
        return to_login(&format!("/oauth/authorize?{}", form.request));
    };
    match form.decision.as_str() {
        "allow" => match state.oauth.approve(&person, &request).await {
            Ok(url) => see_other(&url),
            Err(e) => error_page(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        "deny" => see_other(&state.oauth.deny(&request)),
        _ => error_page(StatusCode::BAD_REQUEST, "choose allow or deny"),
    }
}

/// `?user_code=` of the device page.
#[derive(Debug, Default, Deserialize)]
struct DeviceQuery {
    #[serde(default)]
    user_code: Option<String>,
}

fn code_form(message: Option<&str>) -> Response {
    let mut body = String::from("<h1>Connect a device</h1>");
    if let Some(m) = message {
        let _ = write!(body, "<p class=\"error\">{}</p>", escape(m));
    }
    body.push_str(
        "<form method=\"get\" action=\"/oauth/device\">\
         <label for=\"user_code\">Enter the code your device shows</label>\
         <input id=\"user_code\" name=\"user_code\" autocomplete=\"off\" required \
         placeholder=\"XXXX-XXXX\"><button type=\"submit\">Continue</button></form>",
    );
    page(StatusCode::OK, "Connect a device", &body)
}

/// `GET /oauth/device`.
async fn device(
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    headers: HeaderMap,
) -> Response {
    let code = query.user_code.unwrap_or_default();
    let Some(person) = signed_in(&state, &headers).await else {
        let back = if code.is_empty() {
            "/oauth/device".to_owned()
        } else {
            format!("/oauth/device?user_code={}", encode_query_value(&code))
        };
        return to_login(&back);
    };
    if code.trim().is_empty() {
        return code_form(None);
    }
    let Ok(view) = state.oauth.device_request(&code).await else {
        return code_form(Some("That code is not valid or has expired."));
    };
    let body = format!(
        "<h1>Connect {app}?</h1>\
         <p>A device signing in as <strong>{app}</strong> asks to act on your hangar account \
         (<strong>{name}</strong>). Only continue if it shows the code <code>{code}</code>. \
         It will be able to:</p>{scopes}\
         <form method=\"post\" action=\"/oauth/device\">\
         <input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        app = escape(&view.client_name),
        name = escape(&person.name),
        code = escape(code.trim()),
        scopes = scope_list(&view.scopes),
    );
    page(StatusCode::OK, "Connect a device", &body)
}

/// The device consent form.
#[derive(Debug, Deserialize)]
struct DeviceDecision {
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    decision: String,
}

/// `POST /oauth/device`.
async fn device_decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DeviceDecision>,
) -> Response {
    if let Some(response) = cross_origin(&state, &headers) {
        return response;
    }
    let Some(person) = signed_in(&state, &headers).await else {
        return to_login("/oauth/device");
    };
    let outcome = match form.decision.as_str() {
        "allow" => state
            .oauth
            .approve_device(&person, &form.user_code)
            .await
            .map(|v| {
                format!(
                    "{} is connected. You can return to your device.",
                    v.client_name
                )
            }),
        "deny" => state
            .oauth
            .deny_device(&person, &form.user_code)
            .await
            .map(|()| "Denied. The device gets no access.".to_owned()),
        _ => return code_form(Some("Choose allow or deny.")),
    };
    match outcome {
        Ok(message) => page(
            StatusCode::OK,
            "Connect a device",
            &format!("<h1>Done</h1><p>{}</p>", escape(&message)),
        ),
        Err(_) => code_form(Some("That code is not valid or has expired.")),
    }
}
