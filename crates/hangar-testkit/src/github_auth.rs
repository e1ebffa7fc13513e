//! **A stand-in for GitHub's OAuth app endpoints**, not GitHub: GitHub cannot be reached from
//! the test machines. It follows GitHub's published contract ("Authorizing OAuth apps", web
//! application flow, and the REST endpoints `GET /user` and `GET /user/emails`) closely enough
//! for hangar's GitHub sign-in to run unchanged against it, served over plain HTTP on
//! `127.0.0.1:0`:
//!
//! - `GET /login/oauth/authorize?client_id&redirect_uri&scope&state&code_challenge&
//!   code_challenge_method=S256`: the person "approves" at once (GitHub would show its consent
//!   page); redirects (302) to `redirect_uri?code=...&state=...`. An unknown client or a
//!   redirect URI other than the registered one answers 400 on this page, as GitHub does.
//! - `POST /login/oauth/access_token` (form: `client_id`, `client_secret`, `code`,
//!   `redirect_uri`, `code_verifier`): with `Accept: application/json`, `{"access_token",
//!   "token_type":"bearer","scope"}`; a bad code, secret or verifier answers **200** with
//!   `{"error":"bad_verification_code"}` / `incorrect_client_credentials`, as GitHub does.
//!   Codes are single-use.
//! - `GET /user` and `GET /user/emails` with `Authorization: Bearer <token>` (or `token
//!   <token>`) and a `User-Agent` (GitHub refuses requests without one): the test user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::standin::{pkce_s256, query_pairs, random_token};

/// The GitHub user the stand-in signs in.
#[derive(Debug, Clone)]
pub struct GithubUser {
    /// The numeric id (hangar's subject).
    pub id: u64,
    /// The login (hangar's wanted account name).
    pub login: String,
    /// The primary, verified email.
    pub email: String,
}

#[derive(Debug, Default)]
struct Inner {
    codes: HashMap<String, (String, Option<String>)>,
    tokens: HashMap<String, ()>,
}

#[derive(Debug, Clone)]
struct Shared {
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    user: GithubUser,
    inner: Arc<Mutex<Inner>>,
}

/// A running stand-in.
#[derive(Debug)]
pub struct GithubStandIn {
    /// `http://127.0.0.1:PORT`: authorize at `{base}/login/oauth/authorize`, token at
    /// `{base}/login/oauth/access_token`, API root `{base}/api`.
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GithubStandIn {
    /// Starts the stand-in with one registered OAuth app and one user.
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        user: GithubUser,
    ) -> anyhow::Result<Self> {
        let shared = Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            user,
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/user", get(get_user))
            .route("/api/user/emails", get(emails))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, server })
    }
}

async fn authorize(State(s): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let q = query_pairs(query.as_deref().unwrap_or(""));
    if q.get("client_id") != Some(&s.client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    if q.get("redirect_uri") != Some(&s.redirect_uri) {
        return (StatusCode::BAD_REQUEST, "redirect_uri mismatch").into_response();
    }
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (Some(c), Some(m)) if m == "S256" => Some(c.clone()),
        (None, None) => None,
        _ => return (StatusCode::BAD_REQUEST, "bad PKCE parameters").into_response(),
    };
    let code = random_token(20);
    let state = q.get("state").cloned().unwrap_or_default();
    if let Ok(mut inner) = s.inner.lock() {
        inner
            .codes
            .insert(code.clone(), (s.redirect_uri.clone(), challenge));
    }
    let mut target = reqwest::Url::parse(&s.redirect_uri).unwrap_or_else(|_| {
        reqwest::Url::parse("http://invalid.test/").unwrap_or_else(|_| unreachable!())
    });
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    Redirect::to(target.as_str()).into_response()
}

async fn access_token(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let p = query_pairs(&body);
    let json_accepted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if !json_accepted {
        // GitHub's default is form-encoded; hangar must ask for JSON.
        return (StatusCode::NOT_ACCEPTABLE, "send Accept: application/json").into_response();
    }
    let error =
        |code: &str| Json(json!({"error": code, "error_description": code})).into_response();
    if p.get("client_id") != Some(&s.client_id) || p.get("client_secret") != Some(&s.client_secret)
    {
        return error("incorrect_client_credentials");
    }
    let Some(code) = p.get("code") else {
        return error("bad_verification_code");
    };
    let issued = s.inner.lock().ok().and_then(|mut i| i.codes.remove(code));
    let Some((redirect_uri, challenge)) = issued else {
        return error("bad_verification_code");
    };
    if p.get("redirect_uri").is_some_and(|r| *r != redirect_uri) {
        return error("redirect_uri_mismatch");
    }
    if let Some(challenge) = challenge {
        let ok = p
            .get("code_verifier")
            .is_some_and(|v| pkce_s256(v) == challenge);
        if !ok {
            return error("bad_verification_code");
        }
    }
    let token = format!("gho_{}", random_token(36));
    if let Ok(mut inner) = s.inner.lock() {
        inner.tokens.insert(token.clone(), ());
    }
    Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}))
        .into_response()
}

fn authorized(s: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if !headers.contains_key(header::USER_AGENT) {
        return Err(Box::new(
            (StatusCode::FORBIDDEN, "requests must have a User-Agent").into_response(),
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or_default();
    let known = s
        .inner
        .lock()
        .map(|i| i.tokens.contains_key(token))
        .unwrap_or(false);
    if known {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Bad credentials"})),
            )
                .into_response(),
        ))
    }
}

async fn get_user(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let u = &s.user;
    Json(json!({
        "login": u.login, "id": u.id, "node_id": "MDQ6VXNlcjE=", "type": "User",
        "name": "The Octocat", "email": null,
    }))
    .into_response()
}

async fn emails(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let list: Vec<Value> = vec![
        json!({"email": "old@github.test", "primary": false, "verified": true, "visibility": null}),
        json!({"email": "unverified@github.test", "primary": false, "verified": false, "visibility": null}),
        json!({"email": s.user.email, "primary": true, "verified": true, "visibility": "private"}),
    ];
    Json(list).into_response()
}
