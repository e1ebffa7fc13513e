//! **A stand-in, not Anthropic.** A stand-in for the OAuth endpoints Claude Code signs in
//! with (the constants and requests of the pinned `@anthropic-ai/claude-code` binary:
//! `CLAUDE_AI_AUTHORIZE_URL`, `TOKEN_URL`, `MANUAL_REDIRECT_URL`, `BASE_API_URL`):
//!
//! - the authorization endpoints `https://claude.com/cai/oauth/authorize` and
//!   `https://platform.claude.com/oauth/authorize` are where the person signs in:
//!   [`AnthropicAuthStandIn::authorize`] plays that part — it checks the URL the CLI printed
//!   (client id, `response_type=code`, S256 challenge, the manual redirect URI, state) and
//!   returns what the callback page shows for pasting, `code#state`;
//! - `POST https://platform.claude.com/v1/oauth/token`, JSON `{grant_type:
//!   "authorization_code", code, redirect_uri, client_id, code_verifier, state}` →
//!   `{access_token, refresh_token, expires_in, scope, token_type, account, organization}`;
//!   `grant_type=refresh_token` rotates the refresh token and refuses reuse with
//!   `invalid_grant`. Codes are single use and bound to the client, redirect URI, verifier and
//!   state;
//! - `GET https://api.anthropic.com/api/oauth/profile` and `/api/oauth/claude_cli/roles` with
//!   the bearer access token → the account the CLI records in `~/.claude.json`.
//!
//! Anything else is answered 404 and logged. It listens like [`crate::openai_auth`]: TLS on
//! `127.0.0.1:443` in the sandbox's network namespace, under a throw-away CA, for [`HOSTS`].

use std::collections::HashMap;
use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::standin::{
    oauth_error, pkce_s256, query_pairs, random_token, token_params, Ledger, StandIn, StandInState,
};

/// The host names the CLI reaches (or shows) during sign-in.
pub const HOSTS: &[&str] = &[
    "claude.com",
    "claude.ai",
    "platform.claude.com",
    "api.anthropic.com",
];
/// Claude Code's public OAuth client id (providers/claude_code.toml).
pub const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
/// Where the provider's page shows the code to paste (the CLI's `MANUAL_REDIRECT_URL`).
pub const MANUAL_REDIRECT_URL: &str = "https://platform.claude.com/oauth/code/callback";
/// The account the stand-in signs in.
pub const EMAIL: &str = "dev@example.test";

/// The stand-in's state (its fields are its own).
#[derive(Default)]
pub struct Inner {
    /// code -> (challenge, redirect_uri, state)
    codes: HashMap<String, (String, String, String)>,
    /// live refresh tokens; used ones are removed
    live: Vec<String>,
    ledger: Ledger,
}

impl StandInState for Inner {
    fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
}

type Shared = crate::standin::Shared<Inner>;

/// A running stand-in; stops when dropped. Its CA, requests and issued tokens are on
/// [`StandIn`].
pub struct AnthropicAuthStandIn(StandIn<Inner>);

impl std::ops::Deref for AnthropicAuthStandIn {
    type Target = StandIn<Inner>;
    fn deref(&self) -> &StandIn<Inner> {
        &self.0
    }
}

impl AnthropicAuthStandIn {
    /// Starts the stand-in on `127.0.0.1:443` inside the network namespace at `netns`.
    pub async fn start_in_netns(netns: &Path) -> anyhow::Result<Self> {
        let routes = Router::new()
            .route("/v1/oauth/token", post(token))
            .route("/api/oauth/profile", get(profile))
            .route("/api/oauth/claude_cli/roles", get(roles));
        Ok(Self(StandIn::start(netns, HOSTS, routes).await?))
    }

    /// The person signs in at the authorization URL the CLI printed; returns what the
    /// callback page shows for pasting (`code#state`). Fails when the URL is not a valid
    /// request from the CLI's client.
    pub fn authorize(&self, url: &str) -> anyhow::Result<String> {
        let parsed = reqwest::Url::parse(url)?;
        let endpoint = format!("{}{}", parsed.host_str().unwrap_or(""), parsed.path());
        anyhow::ensure!(
            endpoint == "claude.com/cai/oauth/authorize"
                || endpoint == "platform.claude.com/oauth/authorize",
            "not an authorization endpoint of Claude Code: {url}"
        );
        let q = query_pairs(parsed.query().unwrap_or(""));
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
        anyhow::ensure!(get("client_id") == CLIENT_ID, "client_id: {url}");
        anyhow::ensure!(get("response_type") == "code", "response_type: {url}");
        anyhow::ensure!(get("code_challenge_method") == "S256", "PKCE: {url}");
        anyhow::ensure!(!get("code_challenge").is_empty(), "PKCE: {url}");
        anyhow::ensure!(
            get("redirect_uri") == MANUAL_REDIRECT_URL,
            "redirect_uri: {url}"
        );
        anyhow::ensure!(!get("state").is_empty(), "state: {url}");
        let code = random_token(32);
        let mut inner = self.state().lock();
        inner.codes.insert(
            code.clone(),
            (
                get("code_challenge").to_owned(),
                get("redirect_uri").to_owned(),
                get("state").to_owned(),
            ),
        );
        inner
            .ledger
            .requests
            .push("GET authorize (the person) -> code".into());
        Ok(format!("{code}#{}", get("state")))
    }
}

async fn token(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let params = token_params(&headers, &body);
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let grant = get("grant_type").to_owned();
    let mut inner = shared.lock();
    let answer = if get("client_id") != CLIENT_ID {
        Err((StatusCode::UNAUTHORIZED, "invalid_client"))
    } else {
        match grant.as_str() {
            "authorization_code" => match inner.codes.remove(get("code")) {
                Some((challenge, redirect_uri, state))
                    if redirect_uri == get("redirect_uri")
                        && state == get("state")
                        && pkce_s256(get("code_verifier")) == challenge =>
                {
                    Ok(())
                }
                _ => Err((StatusCode::BAD_REQUEST, "invalid_grant")),
            },
            "refresh_token" => {
                let presented = get("refresh_token").to_owned();
                match inner.live.iter().position(|r| *r == presented) {
                    Some(i) => {
                        inner.live.remove(i);
                        Ok(())
                    }
                    None => Err((StatusCode::BAD_REQUEST, "invalid_grant")),
                }
            }
            _ => Err((StatusCode::BAD_REQUEST, "unsupported_grant_type")),
        }
    };
    match answer {
        Ok(()) => {
            let access = format!("sk-ant-oat01-stand-in-{}", random_token(32));
            let refresh = format!("sk-ant-ort01-stand-in-{}", random_token(32));
            inner.ledger.access.push(access.clone());
            inner.ledger.refresh.push(refresh.clone());
            inner.live.push(refresh.clone());
            inner
                .ledger
                .requests
                .push(format!("POST token {grant} -> 200"));
            let body = json!({
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": 28800,
                "token_type": "Bearer",
                "scope": "user:inference user:profile user:sessions:claude_code user:mcp_servers user:file_upload",
                "account": {"uuid": "00000000-0000-4000-8000-00000000a11c", "email_address": EMAIL},
                "organization": {"uuid": "00000000-0000-4000-8000-0000000000c0", "name": "Stand-in org"},
            });
            let mut resp = Json(body).into_response();
            resp.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err((status, code)) => {
            inner
                .ledger
                .requests
                .push(format!("POST token {grant} -> {} {code}", status.as_u16()));
            oauth_error(status, code)
        }
    }
}

fn bearer_ok(shared: &Shared, headers: &HeaderMap, what: &str) -> bool {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let mut inner = shared.lock();
    let ok = inner.ledger.access.contains(&bearer);
    inner
        .ledger
        .requests
        .push(format!("GET {what} -> {}", if ok { 200 } else { 401 }));
    ok
}

async fn profile(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !bearer_ok(&shared, &headers, "profile") {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    Json(json!({
        "account": {
            "uuid": "00000000-0000-4000-8000-00000000a11c",
            "email": EMAIL,
            "full_name": "Stand-in Developer",
            "display_name": "Stand-in",
            "has_claude_pro": true,
            "has_claude_max": false,
        },
        "organization": {
            "uuid": "00000000-0000-4000-8000-0000000000c0",
            "name": "Stand-in org",
            "organization_type": "claude_pro",
            "billing_type": "stripe_subscription",
            "rate_limit_tier": "default_claude_ai",
        },
    }))
    .into_response()
}

async fn roles(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if !bearer_ok(&shared, &headers, "roles") {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    Json(json!({
        "organization_role": "admin",
        "workspace_role": Value::Null,
        "organization_name": "Stand-in org",
    }))
    .into_response()
}
