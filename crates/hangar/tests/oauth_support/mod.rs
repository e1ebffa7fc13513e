//! Helpers of the OAuth tests: registering clients through the admin API, getting codes by
//! calling the service's `approve` (the browser pages are not part of these tests), and
//! talking to the OAuth endpoints with reqwest.

#![allow(dead_code)]

use anyhow::Context;
use hangar_oauth::authorize::AuthorizationRequest;
use hangar_oauth::pkce::CodeChallenge;
use hangar_testkit::TestPlane;
use reqwest::Method;
use serde_json::{json, Value};

/// A PKCE verifier (RFC 7636 appendix B).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// The redirect URI every test client registers first.
pub const REDIRECT: &str = "https://app.test/cb";

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// `client_secret` (confidential clients).
    pub secret: Option<String>,
}

/// Registers a client through the admin API.
pub async fn register(
    tp: &TestPlane,
    public: bool,
    scope: &str,
    grant_types: &[&str],
) -> anyhow::Result<Client> {
    let (status, body) = tp
        .request(
            Method::POST,
            "/api/v1/oauth/clients",
            Some(&tp.admin_token),
            Some(json!({
                "name": "Test app",
                "redirect_uris": [REDIRECT, "http://127.0.0.1:9/cb"],
                "scope": scope,
                "public": public,
                "grant_types": grant_types,
            })),
        )
        .await?;
    anyhow::ensure!(status == 201, "register answered {status}: {body}");
    Ok(Client {
        id: body["client_id"].as_str().context("client_id")?.to_owned(),
        secret: body["client_secret"].as_str().map(str::to_owned),
    })
}

/// The admin's principal, as the browser pages would have it after sign-in.
pub async fn admin(tp: &TestPlane) -> anyhow::Result<hangar_identity::Principal> {
    Ok(tp
        .plane
        .state
        .accounts
        .authenticate(Some(&format!("Bearer {}", tp.admin_token)))
        .await?)
}

/// Validates an authorization request with `pairs` and approves it as the admin; returns
/// the redirect URL's query pairs.
pub async fn approve(
    tp: &TestPlane,
    pairs: &[(&str, &str)],
) -> anyhow::Result<Vec<(String, String)>> {
    let request = AuthorizationRequest::from_pairs(pairs.iter().copied());
    let validated = tp
        .plane
        .state
        .oauth
        .validate_authorization_request(&request)
        .await
        .map_err(|e| anyhow::anyhow!("authorization request refused: {e:?}"))?;
    let principal = admin(tp).await?;
    let url = tp.plane.state.oauth.approve(&principal, &validated).await?;
    let url = reqwest::Url::parse(&url)?;
    Ok(url.query_pairs().into_owned().collect())
}

/// A code for `client` with PKCE (S256 of [`VERIFIER`]), `state=st`, redirect [`REDIRECT`].
pub async fn code(tp: &TestPlane, client: &Client, scope: &str) -> anyhow::Result<String> {
    let challenge = CodeChallenge::s256_of(VERIFIER);
    let query = approve(
        tp,
        &[
            ("response_type", "code"),
            ("client_id", &client.id),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "st"),
            ("nonce", "n-123"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .await?;
    let get = |k: &str| {
        query
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    anyhow::ensure!(get("state").as_deref() == Some("st"), "state echoed");
    anyhow::ensure!(get("iss").as_deref() == Some(tp.base.as_str()), "iss");
    get("code").context("code in the redirect")
}

/// An answer of an OAuth endpoint.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The `error` member.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

/// POSTs a form to `path`, authenticating as `client` with HTTP Basic when it has a secret
/// and `basic` is set, else with `client_id` (+ `client_secret`) in the body.
pub async fn post_form(
    tp: &TestPlane,
    path: &str,
    client: Option<&Client>,
    basic: bool,
    form: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let http = reqwest::Client::new();
    let mut pairs: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut req = http.post(format!("{}{path}", tp.base));
    if let Some(c) = client {
        match (&c.secret, basic) {
            (Some(secret), true) => req = req.basic_auth(&c.id, Some(secret)),
            (Some(secret), false) => {
                pairs.push(("client_id".into(), c.id.clone()));
                pairs.push(("client_secret".into(), secret.clone()));
            }
            (None, _) => pairs.push(("client_id".into(), c.id.clone())),
        }
    }
    send(req.form(&pairs)).await
}

/// Sends a request and collects the answer.
pub async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    })
}

/// Exchanges a code (with [`VERIFIER`] and [`REDIRECT`]).
pub async fn exchange(tp: &TestPlane, client: &Client, code: &str) -> anyhow::Result<Answer> {
    post_form(
        tp,
        "/oauth/token",
        Some(client),
        true,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// `GET path` with a bearer token: status and JSON.
pub async fn api_get(tp: &TestPlane, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    tp.request(Method::GET, path, Some(token), None).await
}
