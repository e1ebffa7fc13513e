//! The HTTP client the verbs use: bearer auth, problem+json errors, deadlines on every call.

use std::time::Duration;

use anyhow::{anyhow, Context};
use hangar_server::error::Problem;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cli::ClientOpts;
use crate::config::default_data_dir;

/// Deadline for one API call (exec calls add their own timeout to it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one hangar API.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// An API error with its problem document.
#[derive(Debug, thiserror::Error)]
#[error("{} ({}): {}", problem.title, problem.status, problem.detail)]
pub struct ApiFailure {
    /// The problem document.
    pub problem: Problem,
}

impl ApiClient {
    /// From the shared client options; the token falls back to the local admin token file.
    pub fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        let token = match &opts.token {
            Some(t) => t.trim().to_owned(),
            None => {
                let path = default_data_dir().join("admin-token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|_| {
                        anyhow!("no token: set HANGAR_TOKEN or --token (or run as the user of `hangar up`)")
                    })?
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: opts.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sends a request and decodes the JSON answer; a problem+json answer becomes
    /// [`ApiFailure`]. `extra` lengthens the deadline (for exec).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        extra: Duration,
    ) -> anyhow::Result<T> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .timeout(REQUEST_TIMEOUT + extra);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the answer")?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT {
                return serde_json::from_slice(b"null").context("empty answer");
            }
            return serde_json::from_slice(&bytes).context("decoding the answer");
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err(ApiFailure { problem }.into()),
            Err(_) => Err(anyhow!(
                "{status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(500)
                    .collect::<String>()
            )),
        }
    }

    /// GET.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call::<(), T>(Method::GET, path, None, Duration::ZERO)
            .await
    }

    /// POST with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Some(body), Duration::ZERO)
            .await
    }
}
