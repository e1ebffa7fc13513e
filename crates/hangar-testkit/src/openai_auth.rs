//! **A stand-in, not OpenAI.** A stand-in for `https://auth.openai.com`, the authorization
//! server the Codex CLI signs in with, for tests that run the real `codex login --device-auth`
//! in a real sandbox. auth.openai.com cannot be reached from the test machines, so this serves
//! the parts of its contract the CLI uses, as the CLI's own code uses them (codex-rs
//! `login/src/device_code_auth.rs` and `login/src/server.rs`, release line of the pinned
//! `@openai/codex`):
//!
//! - `POST /api/accounts/deviceauth/usercode`, JSON `{client_id}` → `{device_auth_id,
//!   user_code, interval}` (`interval` in seconds, as a string);
//! - `POST /api/accounts/deviceauth/token`, JSON `{device_auth_id, user_code}` → 403 while the
//!   person has not approved the code, then `{authorization_code, code_challenge,
//!   code_verifier}` once (the server holds the PKCE pair in this flow);
//! - `POST /oauth/token`, form `grant_type=authorization_code&code&redirect_uri&client_id
//!   &code_verifier` (RFC 6749 §4.1.3 with RFC 7636 §4.5) → `{id_token, access_token,
//!   refresh_token}`; codes are single use and bound to the client, the redirect URI
//!   (`{issuer}/deviceauth/callback`) and the verifier (S256). `grant_type=refresh_token`
//!   rotates the refresh token and refuses reuse with `invalid_grant`, as the provider does.
//!
//! The person's part (opening `/codex/device` and typing the code) is [`OpenAiAuthStandIn::approve`].
//!
//! It listens with TLS on `127.0.0.1:443` inside a network namespace the test names (the
//! sandbox's own), under a certificate for `auth.openai.com` from a throw-away test CA; the
//! test points the sandbox's name resolution at it (`/etc/hosts`) and gives the CLI that CA
//! (`SSL_CERT_FILE`) inside the test sandbox only.

use std::collections::HashMap;
use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::standin::{
    jwt, oauth_error, pkce_s256, random_token, token_params, unix_now, Ledger, StandIn,
    StandInState,
};

/// The issuer the Codex CLI has built in.
pub const ISSUER: &str = "https://auth.openai.com";
/// The Codex CLI's public OAuth client id (providers/codex.toml).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// The host name the stand-in's certificate is for.
pub const HOST: &str = "auth.openai.com";

/// One issued token set, as the test may check it.
#[derive(Clone, Debug)]
pub struct IssuedTokens {
    /// The access token (a JWT-shaped string).
    pub access_token: String,
    /// The refresh token (opaque, single use).
    pub refresh_token: String,
}

/// The stand-in's state (its fields are its own).
#[derive(Default)]
pub struct Inner {
    /// device_auth_id -> (user_code, approved)
    device: HashMap<String, (String, bool)>,
    /// authorization code -> (code_challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    /// live refresh tokens; used ones are removed
    refresh: HashMap<String, ()>,
    issued: Vec<IssuedTokens>,
    ledger: Ledger,
    counter: u64,
}

/// The stand-in's state, shared with its handlers.
impl StandInState for Inner {
    fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
}

type Shared = crate::standin::Shared<Inner>;

/// A running stand-in; stops when dropped. Its CA, requests and issued tokens are on
/// [`StandIn`].
pub struct OpenAiAuthStandIn(StandIn<Inner>);

impl std::ops::Deref for OpenAiAuthStandIn {
    type Target = StandIn<Inner>;
    fn deref(&self) -> &StandIn<Inner> {
        &self.0
    }
}

impl OpenAiAuthStandIn {
    /// Starts the stand-in on `127.0.0.1:443` inside the network namespace at `netns` (for
    /// example `/proc/PID/ns/net` of a sandbox's first process). Fails if the namespace cannot
    /// be entered or the port is taken.
    pub async fn start_in_netns(netns: &Path) -> anyhow::Result<Self> {
        let routes = Router::new()
            .route("/api/accounts/deviceauth/usercode", post(user_code))
            .route("/api/accounts/deviceauth/token", post(device_token))
            .route("/oauth/token", post(token));
        Ok(Self(StandIn::start(netns, &[HOST], routes).await?))
    }

    /// The person approves `user_code` on the verification page. False if no device
    /// authorization carries that code.
    pub fn approve(&self, user_code: &str) -> bool {
        let mut inner = self.state().lock();
        let mut found = false;
        for (code, approved) in inner.device.values_mut() {
            if code == user_code {
                *approved = true;
                found = true;
            }
        }
        found
    }

    /// Every token set issued so far, oldest first.
    pub fn issued(&self) -> Vec<IssuedTokens> {
        self.state().lock().issued.clone()
    }
}

async fn user_code(State(shared): State<Shared>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if req["client_id"] != CLIENT_ID {
        shared.log("POST usercode (wrong client) -> 400".into());
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client");
    }
    let mut inner = shared.lock();
    inner.counter += 1;
    let n = inner.counter;
    let device_auth_id = format!("deviceauth_{n}_{}", random_token(8));
    let code = format!("STND-{:05}", 10_000 + n);
    inner
        .device
        .insert(device_auth_id.clone(), (code.clone(), false));
    inner.ledger.requests.push("POST usercode -> 200".into());
    Json(json!({"device_auth_id": device_auth_id, "user_code": code, "interval": "1"}))
        .into_response()
}

async fn device_token(State(shared): State<Shared>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = req["device_auth_id"].as_str().unwrap_or_default();
    let code = req["user_code"].as_str().unwrap_or_default();
    let mut inner = shared.lock();
    let status = match inner.device.get(id) {
        Some((c, _)) if c != code => StatusCode::BAD_REQUEST,
        Some((_, true)) => StatusCode::OK,
        Some((_, false)) => StatusCode::FORBIDDEN,
        None => StatusCode::NOT_FOUND,
    };
    inner
        .ledger
        .requests
        .push(format!("POST deviceauth/token -> {}", status.as_u16()));
    if status != StatusCode::OK {
        return oauth_error(status, "authorization_pending");
    }
    inner.device.remove(id);
    let verifier = random_token(43);
    let challenge = pkce_s256(&verifier);
    let authorization_code = random_token(24);
    inner.codes.insert(
        authorization_code.clone(),
        (challenge.clone(), format!("{ISSUER}/deviceauth/callback")),
    );
    Json(json!({
        "authorization_code": authorization_code,
        "code_challenge": challenge,
        "code_verifier": verifier,
    }))
    .into_response()
}

fn issue(inner: &mut Inner) -> Value {
    inner.counter += 1;
    let n = inner.counter;
    let exp = unix_now() + 3600;
    let claims = json!({
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "email": "dev@example.test",
        "exp": exp,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "acct-stand-in",
            "chatgpt_plan_type": "plus",
        },
    });
    let mut access_claims = claims.clone();
    access_claims["jti"] = json!(format!("access-{n}"));
    let tokens = IssuedTokens {
        access_token: jwt(&access_claims),
        refresh_token: format!("rt-stand-in-{n}-{}", random_token(16)),
    };
    inner.refresh.insert(tokens.refresh_token.clone(), ());
    inner.issued.push(tokens.clone());
    json!({
        "id_token": jwt(&claims),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": 3600,
    })
}

/// `/oauth/token`: form or JSON bodies, as the CLI sends either depending on the grant.
async fn token(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let params = token_params(&headers, &body);
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let mut inner = shared.lock();
    let answer = if get("client_id") != CLIENT_ID {
        Err((StatusCode::UNAUTHORIZED, "invalid_client"))
    } else {
        match get("grant_type") {
            "authorization_code" => match inner.codes.remove(get("code")) {
                Some((challenge, redirect_uri))
                    if redirect_uri == get("redirect_uri")
                        && pkce_s256(get("code_verifier")) == challenge =>
                {
                    Ok(issue(&mut inner))
                }
                _ => Err((StatusCode::BAD_REQUEST, "invalid_grant")),
            },
            "refresh_token" => match inner.refresh.remove(get("refresh_token")) {
                Some(()) => Ok(issue(&mut inner)),
                None => Err((StatusCode::BAD_REQUEST, "invalid_grant")),
            },
            _ => Err((StatusCode::BAD_REQUEST, "unsupported_grant_type")),
        }
    };
    let grant = get("grant_type").to_owned();
    match answer {
        Ok(body) => {
            inner
                .ledger
                .requests
                .push(format!("POST oauth/token {grant} -> 200"));
            let mut resp = Json(body).into_response();
            resp.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err((status, code)) => {
            inner.ledger.requests.push(format!(
                "POST oauth/token {grant} -> {} {code}",
                status.as_u16()
            ));
            oauth_error(status, code)
        }
    }
}
