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
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

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

#[derive(Default)]
struct Inner {
    /// device_auth_id -> (user_code, approved)
    device: HashMap<String, (String, bool)>,
    /// authorization code -> (code_challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    /// live refresh tokens; used ones are removed
    refresh: HashMap<String, ()>,
    issued: Vec<IssuedTokens>,
    requests: Vec<String>,
    counter: u64,
}

/// The stand-in's state, shared with its handlers.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running stand-in; stops when dropped.
pub struct OpenAiAuthStandIn {
    shared: Shared,
    /// PEM of the test CA that signed the server certificate (give it to the CLI).
    pub ca_pem: String,
    handle: axum_server::Handle,
}

impl Drop for OpenAiAuthStandIn {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl OpenAiAuthStandIn {
    /// Starts the stand-in on `127.0.0.1:443` inside the network namespace at `netns` (for
    /// example `/proc/PID/ns/net` of a sandbox's first process). Fails if the namespace cannot
    /// be entered or the port is taken.
    pub async fn start_in_netns(netns: &Path) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (ca_pem, cert_pem, key_pem) = certificates()?;
        let listener = listen_in_netns(netns, SocketAddr::from(([127, 0, 0, 1], 443)))?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .context("TLS configuration")?;
        let shared = Shared::default();
        let app = Router::new()
            .route("/api/accounts/deviceauth/usercode", post(user_code))
            .route("/api/accounts/deviceauth/token", post(device_token))
            .route("/oauth/token", post(token))
            .fallback(unknown)
            .with_state(shared.clone());
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Ok(Self {
            shared,
            ca_pem,
            handle,
        })
    }

    /// The person approves `user_code` on the verification page. False if no device
    /// authorization carries that code.
    pub fn approve(&self, user_code: &str) -> bool {
        let mut inner = self.shared.lock();
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
        self.shared.lock().issued.clone()
    }

    /// Every request seen, as `METHOD PATH -> STATUS`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }
}

/// Binds `addr` from a thread that entered the network namespace at `netns`; the socket stays
/// in that namespace whichever thread uses it later.
fn listen_in_netns(netns: &Path, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let netns = netns.to_owned();
    std::thread::spawn(move || -> anyhow::Result<std::net::TcpListener> {
        let ns = std::fs::File::open(&netns).with_context(|| format!("open {netns:?}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netns thread panicked"))?
}

/// A throw-away CA and a server certificate for [`HOST`] signed by it: (CA PEM, cert PEM,
/// key PEM).
fn certificates() -> anyhow::Result<(String, String, String)> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hangar test CA (stand-in)");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, HOST);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT-shaped token with `claims` (unsigned: the CLI reads claims, it does not verify).
pub fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(
            json!({"alg": "RS256", "typ": "JWT", "kid": "stand-in"})
                .to_string()
                .as_bytes()
        ),
        b64url(claims.to_string().as_bytes()),
        b64url(b"stand-in-signature")
    )
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"error": code}))).into_response()
}

fn log(shared: &Shared, what: String) {
    shared.lock().requests.push(what);
}

async fn unknown(State(shared): State<Shared>, uri: Uri, body: String) -> Response {
    log(
        &shared,
        format!("UNKNOWN {uri} ({} bytes) -> 404", body.len()),
    );
    oauth_error(StatusCode::NOT_FOUND, "not_found")
}

async fn user_code(State(shared): State<Shared>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if req["client_id"] != CLIENT_ID {
        log(&shared, "POST usercode (wrong client) -> 400".into());
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
    inner.requests.push("POST usercode -> 200".into());
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
        .requests
        .push(format!("POST deviceauth/token -> {}", status.as_u16()));
    if status != StatusCode::OK {
        return oauth_error(status, "authorization_pending");
    }
    inner.device.remove(id);
    let verifier = random_token(43);
    let challenge = b64url(&sha2::Sha256::digest(verifier.as_bytes()));
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

fn random_token(len: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

// A stand-in server stamps its tokens with the wall clock, as the provider does.
#[allow(clippy::disallowed_methods)]
fn issue(inner: &mut Inner) -> Value {
    inner.counter += 1;
    let n = inner.counter;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600;
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
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let params: HashMap<String, String> = if json_body {
        serde_json::from_str::<HashMap<String, Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect()
    } else {
        url_form(&body)
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let mut inner = shared.lock();
    let answer = if get("client_id") != CLIENT_ID {
        Err((StatusCode::UNAUTHORIZED, "invalid_client"))
    } else {
        match get("grant_type") {
            "authorization_code" => match inner.codes.remove(get("code")) {
                Some((challenge, redirect_uri))
                    if redirect_uri == get("redirect_uri")
                        && b64url(&sha2::Sha256::digest(get("code_verifier").as_bytes()))
                            == challenge =>
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
            inner.requests.push(format!(
                "POST oauth/token {grant} -> {} {code}",
                status.as_u16()
            ));
            oauth_error(status, code)
        }
    }
}

/// Parses an `application/x-www-form-urlencoded` body (percent-decoding, `+` as space).
fn url_form(body: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}
