//! What the providers' stand-ins share: TLS under a throw-away test CA, serving on
//! `127.0.0.1:443` inside a sandbox's network namespace, and the small OAuth pieces (PKCE
//! S256 per RFC 7636 §4.2, RFC 6749 §5.2 error bodies, JWT-shaped tokens, form parsing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

/// Serves `app` with TLS on `127.0.0.1:443` inside the network namespace at `netns` (for
/// example `/proc/PID/ns/net` of a sandbox's first process), under a certificate for every
/// name in `hosts` signed by a fresh test CA. Returns the CA's PEM (give it to the client
/// under test) and the handle that stops the server. Fails if the namespace cannot be
/// entered or the port is taken.
pub async fn serve_tls_in_netns(
    netns: &Path,
    hosts: &[&str],
    app: Router,
) -> anyhow::Result<(String, axum_server::Handle)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, cert_pem, key_pem) = certificates(hosts)?;
    let listener = listen_in_netns(netns, SocketAddr::from(([127, 0, 0, 1], 443)))?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert_pem.into_bytes(),
        key_pem.into_bytes(),
    )
    .await
    .context("TLS configuration")?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls).handle(handle.clone());
    tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    Ok((ca_pem, handle))
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

/// A throw-away CA and a server certificate for `hosts` signed by it: (CA PEM, cert PEM,
/// key PEM).
fn certificates(hosts: &[&str]) -> anyhow::Result<(String, String, String)> {
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
    let mut params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())?;
    if let Some(first) = hosts.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, *first);
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// Base64url without padding (RFC 4648 §5).
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    b64url(&sha2::Sha256::digest(verifier.as_bytes()))
}

/// A JWT-shaped token with `claims` (unsigned: the CLIs read claims, they do not verify).
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

/// An RFC 6749 §5.2 error response.
pub fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"error": code}))).into_response()
}

/// `len` random alphanumeric characters.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Seconds since the Unix epoch, by the wall clock (a stand-in stamps its tokens the way
/// the provider does).
#[allow(clippy::disallowed_methods)]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The parameters of a token request: a JSON object's string members when the body is
/// `application/json`, else the `application/x-www-form-urlencoded` pairs (RFC 6749 §4.1.3).
pub fn token_params(headers: &HeaderMap, body: &str) -> HashMap<String, String> {
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json_body {
        serde_json::from_str::<HashMap<String, Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect()
    } else {
        query_pairs(body)
    }
}

/// The pairs of a URL query or form body (percent-decoding, `+` as space).
pub fn query_pairs(query: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// What every stand-in records for the test to check.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every request seen, as `METHOD PATH -> STATUS`, oldest first.
    pub requests: Vec<String>,
    /// Access tokens issued, oldest first.
    pub access: Vec<String>,
    /// Refresh tokens issued, oldest first.
    pub refresh: Vec<String>,
}

/// A stand-in's state: its [`Ledger`] plus whatever its protocol keeps.
pub trait StandInState: Default + Send + 'static {
    /// The ledger inside the state.
    fn ledger(&mut self) -> &mut Ledger;
}

/// State shared between a stand-in and its handlers (a poisoned lock is taken over: a test
/// server keeps answering).
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: StandInState> Shared<T> {
    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one request line in the ledger.
    pub fn log(&self, line: String) {
        self.lock().ledger().requests.push(line);
    }
}

/// A running stand-in: `routes` served as [`serve_tls_in_netns`] describes, with state `T`;
/// stops when dropped.
pub struct StandIn<T> {
    state: Shared<T>,
    ca_pem: String,
    handle: axum_server::Handle,
}

impl<T> Drop for StandIn<T> {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl<T: StandInState> StandIn<T> {
    /// Starts `routes` (with fresh state) inside the network namespace at `netns`, under a
    /// certificate for `hosts`; unknown paths are answered 404 and logged.
    pub async fn start(
        netns: &Path,
        hosts: &[&str],
        routes: Router<Shared<T>>,
    ) -> anyhow::Result<Self> {
        let state = Shared::<T>::default();
        let app = routes
            .fallback(|State(s): State<Shared<T>>, uri: Uri| async move {
                s.log(format!("UNKNOWN {} -> 404", uri.path()));
                oauth_error(StatusCode::NOT_FOUND, "not_found")
            })
            .with_state(state.clone());
        let (ca_pem, handle) = serve_tls_in_netns(netns, hosts, app).await?;
        Ok(Self {
            state,
            ca_pem,
            handle,
        })
    }

    /// The state (for the person's part, played by the test).
    pub fn state(&self) -> &Shared<T> {
        &self.state
    }

    /// PEM of the test CA that signed the server certificate (give it to the CLI).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every request seen, as `METHOD PATH -> STATUS`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().ledger().requests.clone()
    }

    /// The access tokens issued so far, oldest first.
    pub fn access_tokens(&self) -> Vec<String> {
        self.state.lock().ledger().access.clone()
    }

    /// The refresh tokens issued so far, oldest first.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state.lock().ledger().refresh.clone()
    }
}
