//! **A stand-in, not Google.** A stand-in for Google's OAuth 2.0 endpoints as the Gemini CLI
//! uses them for "Login with Google" (Google's published contract for installed apps,
//! <https://developers.google.com/identity/protocols/oauth2/native-app>, and the CLI's own
//! `authWithUserCode` in `@google/gemini-cli`'s bundle at the pinned version):
//!
//! - the authorization endpoint `https://accounts.google.com/o/oauth2/v2/auth` is where the
//!   person signs in: [`GoogleAuthStandIn::authorize`] plays that part — it checks the URL the
//!   CLI printed (client id, `response_type=code`, S256 challenge, `access_type=offline`,
//!   state) and returns the code that Google's `codeassist.google.com/authcode` page shows;
//! - `POST https://oauth2.googleapis.com/token`, form `grant_type=authorization_code&code
//!   &code_verifier&redirect_uri&client_id&client_secret` → `{access_token, expires_in,
//!   refresh_token, scope, token_type, id_token}`; `grant_type=refresh_token` answers a new
//!   access token (Google keeps the refresh token). Codes are single use and bound to the
//!   client, the redirect URI and the verifier;
//! - `GET https://www.googleapis.com/oauth2/v2/userinfo` with the bearer access token → the
//!   account (the CLI caches its email in `google_accounts.json`).
//!
//! Anything else (the Code Assist API the CLI calls after signing in) is answered 404 and
//! logged. It listens like [`crate::openai_auth`]: TLS on `127.0.0.1:443` in the sandbox's
//! network namespace, under a throw-away CA, for the hosts in [`HOSTS`].

use std::collections::HashMap;
use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::standin::{
    jwt, oauth_error, pkce_s256, query_pairs, random_token, token_params, unix_now, Ledger,
    StandIn, StandInState,
};

/// The host names the CLI reaches (or shows) during sign-in.
pub const HOSTS: &[&str] = &[
    "accounts.google.com",
    "oauth2.googleapis.com",
    "www.googleapis.com",
    "cloudcode-pa.googleapis.com",
];
/// The Gemini CLI's public OAuth client (providers/gemini_cli.toml).
pub const CLIENT_ID: &str =
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com";
/// Its client secret, public by design for installed apps.
pub const CLIENT_SECRET: &str = "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";
/// The account the stand-in signs in.
pub const EMAIL: &str = "dev@example.test";

/// The stand-in's state (its fields are its own).
#[derive(Default)]
pub struct Inner {
    /// code -> (challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
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
pub struct GoogleAuthStandIn(StandIn<Inner>);

impl std::ops::Deref for GoogleAuthStandIn {
    type Target = StandIn<Inner>;
    fn deref(&self) -> &StandIn<Inner> {
        &self.0
    }
}

impl GoogleAuthStandIn {
    /// Starts the stand-in on `127.0.0.1:443` inside the network namespace at `netns`.
    pub async fn start_in_netns(netns: &Path) -> anyhow::Result<Self> {
        let routes = Router::new()
            .route("/token", post(token))
            .route("/oauth2/v2/userinfo", get(userinfo));
        Ok(Self(StandIn::start(netns, HOSTS, routes).await?))
    }

    /// The person signs in at the authorization URL the CLI printed; returns the code the
    /// provider's page shows for pasting. Fails when the URL is not a valid request from the
    /// CLI's client (wrong host or client, no S256 challenge, not offline, no state).
    pub fn authorize(&self, url: &str) -> anyhow::Result<String> {
        let parsed = reqwest::Url::parse(url)?;
        anyhow::ensure!(
            parsed.host_str() == Some("accounts.google.com")
                && parsed.path() == "/o/oauth2/v2/auth",
            "not Google's authorization endpoint: {url}"
        );
        let q = query_pairs(parsed.query().unwrap_or(""));
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
        anyhow::ensure!(get("client_id") == CLIENT_ID, "client_id: {url}");
        anyhow::ensure!(get("response_type") == "code", "response_type: {url}");
        anyhow::ensure!(get("code_challenge_method") == "S256", "PKCE: {url}");
        anyhow::ensure!(!get("code_challenge").is_empty(), "PKCE: {url}");
        anyhow::ensure!(get("access_type") == "offline", "access_type: {url}");
        anyhow::ensure!(!get("state").is_empty(), "state: {url}");
        let code = format!("4/0stand-in-{}", random_token(24));
        let mut inner = self.state().lock();
        inner.codes.insert(
            code.clone(),
            (
                get("code_challenge").to_owned(),
                get("redirect_uri").to_owned(),
            ),
        );
        inner
            .ledger
            .requests
            .push("GET authorize (the person) -> code".into());
        Ok(code)
    }
}

async fn token(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let params = token_params(&headers, &body);
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let grant = get("grant_type").to_owned();
    let mut inner = shared.lock();
    let answer = if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        Err((StatusCode::UNAUTHORIZED, "invalid_client"))
    } else {
        match grant.as_str() {
            "authorization_code" => match inner.codes.remove(get("code")) {
                Some((challenge, redirect_uri))
                    if redirect_uri == get("redirect_uri")
                        && pkce_s256(get("code_verifier")) == challenge =>
                {
                    Ok(true)
                }
                _ => Err((StatusCode::BAD_REQUEST, "invalid_grant")),
            },
            "refresh_token"
                if inner
                    .ledger
                    .refresh
                    .iter()
                    .any(|r| r == get("refresh_token")) =>
            {
                Ok(false)
            }
            "refresh_token" => Err((StatusCode::BAD_REQUEST, "invalid_grant")),
            _ => Err((StatusCode::BAD_REQUEST, "unsupported_grant_type")),
        }
    };
    match answer {
        Ok(new_refresh) => {
            let access = format!("ya29.stand-in-{}", random_token(32));
            inner.ledger.access.push(access.clone());
            let mut body = json!({
                "access_token": access,
                "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile openid",
                "token_type": "Bearer",
                "id_token": jwt(&json!({
                    "iss": "https://accounts.google.com",
                    "aud": CLIENT_ID,
                    "sub": "1000000000001",
                    "email": EMAIL,
                    "email_verified": true,
                    "iat": unix_now(),
                    "exp": unix_now() + 3599,
                })),
            });
            if new_refresh {
                let refresh = format!("1//stand-in-{}", random_token(32));
                inner.ledger.refresh.push(refresh.clone());
                body["refresh_token"] = Value::String(refresh);
            }
            inner
                .ledger
                .requests
                .push(format!("POST token {grant} -> 200"));
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

async fn userinfo(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let mut inner = shared.lock();
    if !inner.ledger.access.contains(&bearer) {
        inner.ledger.requests.push("GET userinfo -> 401".into());
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    inner.ledger.requests.push("GET userinfo -> 200".into());
    Json(json!({
        "id": "1000000000001",
        "email": EMAIL,
        "verified_email": true,
        "name": "Stand-in Developer",
    }))
    .into_response()
}
