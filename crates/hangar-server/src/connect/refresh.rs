//! hangar as the single owner of refresh tokens (design (a) of the connect issue).
//!
//! The CLIs rotate refresh tokens on use; a token copied into several sandboxes logs all but
//! the first refresher out. So sandboxes never hold the real refresh token (delivery puts a
//! placeholder in their copies) and hangar alone refreshes: before the access token expires
//! (`refresh_margin`, well before the CLIs' own refresh windows open) it calls the provider's
//! token endpoint with the sealed refresh token, seals the new pair under the next record
//! version (a compare-and-set on the version, so two writers cannot both win), and rewrites
//! the files in every live sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hangar_connect::refresh::{self, RefreshBody, TokenResponse};
use hangar_connect::ProviderSpec;
use hangar_core::{ConnectFlow, ProviderId, UserId};
use hangar_store::{CredentialRecord, NewSeal, StatusCheck};
use serde::Serialize;

use super::ConnectService;
use crate::credentials::{CredentialFile, CredentialFiles};

/// Deadline of one call to a provider's token endpoint.
pub const TOKEN_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(15);

/// What one refresh pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    /// Credentials refreshed: (owner, provider).
    pub refreshed: Vec<(UserId, ProviderId)>,
    /// Credentials whose refresh failed, with the reason.
    pub failed: Vec<(UserId, ProviderId, String)>,
}

impl ConnectService {
    /// Refreshes every credential whose access token expires within the refresh margin.
    pub async fn refresh_due(&self) -> RefreshReport {
        let mut report = RefreshReport::default();
        let Ok(records) = self.store.credentials().list_all().await else {
            return report;
        };
        let margin = i64::try_from(self.config.refresh_margin.as_millis()).unwrap_or(i64::MAX);
        let horizon = self.clock.now().plus_ms(margin);
        for record in records {
            let due = record
                .access_token_expires_at
                .is_some_and(|at| at <= horizon);
            let Some(spec) = self.providers.get(&record.provider) else {
                continue;
            };
            if !due || spec.refresh.is_none() {
                continue;
            }
            let key = (record.owner, record.provider.clone());
            match self.refresh_one(spec, &record).await {
                Ok(()) => report.refreshed.push(key),
                Err(reason) => {
                    tracing::warn!(owner = %record.owner, provider = %record.provider, %reason, "refresh failed");
                    report.failed.push((key.0, key.1, reason));
                }
            }
        }
        report
    }

    /// Runs [`Self::refresh_due`] every `interval` until dropped.
    pub async fn refresh_forever(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.refresh_due().await;
        }
    }

    async fn refresh_one(
        &self,
        spec: &ProviderSpec,
        record: &CredentialRecord,
    ) -> Result<(), String> {
        let sealed = self
            .vault
            .open_record(record)
            .map_err(|e| format!("opening: {e}"))?;
        let files: BTreeMap<String, Vec<u8>> = sealed
            .files
            .iter()
            .map(|f| (f.path.clone(), f.data.clone()))
            .collect();
        let token = hangar_connect::credential::refresh_token(spec, &files)
            .map_err(|e| e.to_string())?
            .ok_or("the credential holds no refresh token")?;
        let request = refresh::request(spec, token.expose(), None)
            .ok_or("the provider declares no refresh")?;
        let response = self.call_token_endpoint(&request).await;
        let response = match response {
            Ok(r) => r,
            Err(reason) => {
                let check = StatusCheck {
                    at: self.clock.now(),
                    ok: false,
                    output: format!("refresh failed: {reason}"),
                };
                let _ = self
                    .store
                    .credentials()
                    .record_check(record.owner, &record.provider, check)
                    .await;
                return Err(reason);
            }
        };
        let now = self.clock.now();
        let updated = refresh::apply(spec, &files, &response, now).map_err(|e| e.to_string())?;
        let summary = hangar_connect::credential::inspect(spec, ConnectFlow::Browser, &updated)
            .map_err(|e| format!("refreshed files refused: {e}"))?;
        let files = CredentialFiles {
            files: sealed
                .files
                .iter()
                .map(|f| CredentialFile {
                    path: f.path.clone(),
                    mode: f.mode,
                    data: updated
                        .get(&f.path)
                        .cloned()
                        .unwrap_or_else(|| f.data.clone()),
                })
                .collect(),
        };
        let next = record.record_version + 1;
        let resealed = self
            .vault
            .seal(record.owner, &record.provider, next, &files)
            .map_err(|e| format!("sealing: {e}"))?;
        self.store
            .credentials()
            .replace_sealed(
                record.owner,
                &record.provider,
                record.record_version,
                NewSeal {
                    sealed: resealed.to_bytes(),
                    kek_version: resealed.kek_version,
                    record_version: next,
                    access_token_expires_at: summary.access_token_expires_at,
                    refreshed_at: Some(now),
                },
                now,
            )
            .await
            .map_err(|e| format!("storing the refreshed tokens: {e}"))?;
        self.deliver_all(record.owner, Some(spec)).await;
        Ok(())
    }

    async fn call_token_endpoint(
        &self,
        request: &refresh::RefreshRequest,
    ) -> Result<TokenResponse, String> {
        let builder = self.http.post(&request.url).timeout(TOKEN_ENDPOINT_TIMEOUT);
        let builder = match &request.body {
            RefreshBody::Form(pairs) => builder.form(pairs),
            RefreshBody::Json(value) => builder.json(value),
        };
        let response = builder
            .send()
            .await
            .map_err(|e| format!("token endpoint unreachable: {}", e.without_url()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the token response: {}", e.without_url()))?;
        if !status.is_success() {
            // RFC 6749 section 5.2: only the error code is shown (never the body wholesale).
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            return Err(format!("token endpoint answered {status}: {code}"));
        }
        serde_json::from_slice(&body).map_err(|_| "token response is not a token".to_owned())
    }
}
