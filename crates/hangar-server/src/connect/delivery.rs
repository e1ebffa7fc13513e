//! Delivery of sealed credentials into live sandboxes, their removal, the CLI's status check,
//! and the ready hook that delivers into every sandbox as it boots.

use std::sync::{Arc, Weak};
use std::time::Duration;

use hangar_connect::ProviderSpec;
use hangar_connect::StatusSpec;
use hangar_core::{Sandbox, SandboxId, SandboxState, UserId};
use hangar_guest::protocol::{ExecRequest, PutFileRequest};
use hangar_store::{CredentialRecord, StatusCheck};

use super::ConnectService;
use crate::sandboxes::ReadyHook;

/// How long the runtime has to confirm a sandbox alive before delivery skips it.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most characters of a status command's output kept.
const STATUS_OUTPUT_MAX: usize = 2000;
/// Stripes of [`DeliveryLocks`]: owners hashed onto this many locks.
const DELIVERY_LOCK_STRIPES: usize = 64;

/// Orders the writes into one owner's sandboxes: a delivery, a removal or a boot-time
/// delivery holds its owner's lock from reading the credential records to the last file
/// written. Without it a delivery that read an older record (the one a sign-in just stored)
/// could land after the delivery of a refresh and put the old access token back. Owners are
/// striped onto [`DELIVERY_LOCK_STRIPES`] locks, so memory stays fixed; two owners sharing a
/// stripe only wait for each other.
#[derive(Debug)]
pub(super) struct DeliveryLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for DeliveryLocks {
    fn default() -> Self {
        Self {
            stripes: (0..DELIVERY_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl DeliveryLocks {
    /// Waits for `owner`'s lock. Every holder's writes have the delivery deadline, so the wait
    /// is bounded by the deliveries ahead of it.
    pub(super) async fn lock(&self, owner: UserId) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(owner);
        let stripe = usize::try_from(hash % DELIVERY_LOCK_STRIPES as u64).unwrap_or(0);
        self.stripes[stripe].lock().await
    }
}

impl ConnectService {
    /// Writes the credential files (and the provider's extra files) of `records` into
    /// `sandbox`, under its user's home. Every write has the delivery deadline.
    pub(super) async fn deliver_to(
        &self,
        sandbox: &Sandbox,
        records: &[CredentialRecord],
    ) -> Result<(), String> {
        let home = self
            .sandboxes
            .user_home(sandbox)
            .ok_or("the sandbox's image is gone")?;
        let guest = self.sandboxes.node().guest(sandbox.id);
        for record in records {
            let Some(spec) = self.providers.get(&record.provider) else {
                continue;
            };
            let files = self
                .vault
                .open_record(record)
                .map_err(|e| format!("opening {}: {e}", record.provider))?;
            // Sandboxes get the access token but never the real refresh token.
            let by_path: std::collections::BTreeMap<String, Vec<u8>> = files
                .files
                .iter()
                .map(|f| (f.path.clone(), f.data.clone()))
                .collect();
            let copies = hangar_connect::refresh::with_placeholder_refresh_token(spec, &by_path)
                .map_err(|e| format!("preparing {}: {e}", record.provider))?;
            // Extra files go with the provider's credential files; an environment-variable
            // credential (only the env file) does not select the file login they configure.
            let env_only = files
                .files
                .iter()
                .all(|f| f.path == super::run::env_file_path(spec));
            let extra = spec.extra_files.iter().filter(|_| !env_only);
            let writes = files
                .files
                .iter()
                .map(|f| {
                    let data = copies.get(&f.path).cloned().unwrap_or_default();
                    (f.path.as_str(), f.mode, data)
                })
                .chain(extra.map(|x| (x.path.as_str(), x.mode, x.contents.clone().into_bytes())));
            for (path, mode, data) in writes {
                guest
                    .put_file(
                        PutFileRequest {
                            path: format!("{}/{}", home.trim_end_matches('/'), path),
                            mode,
                            data,
                        },
                        self.config.delivery_timeout,
                    )
                    .await
                    .map_err(|e| format!("writing {path}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The owner's sandboxes that are `running` and that the runtime confirms alive.
    pub(super) async fn live_sandboxes(&self, owner: UserId) -> Vec<Sandbox> {
        let Ok(all) = self.store.sandboxes().list_owned(owner, false).await else {
            return Vec::new();
        };
        let mut live = Vec::new();
        for sandbox in all {
            if sandbox.state == SandboxState::Running
                && self
                    .sandboxes
                    .node()
                    .is_alive(sandbox.id, ALIVE_TIMEOUT)
                    .await
            {
                live.push(sandbox);
            }
        }
        live
    }

    /// Delivers the owner's credentials (one provider's, or all) into every live sandbox.
    /// Returns the sandboxes that got them.
    pub(super) async fn deliver_all(
        &self,
        owner: UserId,
        provider: Option<&ProviderSpec>,
    ) -> Vec<SandboxId> {
        let _ordered = self.deliveries.lock(owner).await;
        let records = match provider {
            Some(spec) => match self.store.credentials().get(owner, &spec.id).await {
                Ok(Some(r)) => vec![r],
                _ => return Vec::new(),
            },
            None => self
                .store
                .credentials()
                .list_for_owner(owner)
                .await
                .unwrap_or_default(),
        };
        let mut delivered = Vec::new();
        for sandbox in self.live_sandboxes(owner).await {
            match self.deliver_to(&sandbox, &records).await {
                Ok(()) => delivered.push(sandbox.id),
                Err(e) => tracing::warn!(sandbox = %sandbox.id, error = %e, "delivery failed"),
            }
        }
        delivered
    }

    /// Runs the provider's status command in the first of `sandboxes` and records what it
    /// said. A provider without one (`file_only`) records that the files are in place.
    pub(super) async fn check_status(
        &self,
        owner: UserId,
        spec: &ProviderSpec,
        sandboxes: &[SandboxId],
    ) {
        let Some(&sandbox) = sandboxes.first() else {
            return;
        };
        let check = match &spec.status {
            StatusSpec::FileOnly => StatusCheck {
                at: self.clock.now(),
                ok: true,
                output: "no status command; credential files delivered and well formed".into(),
            },
            StatusSpec::Command {
                argv,
                logged_in_regex,
            } => {
                let guest = self.sandboxes.node().guest(sandbox);
                let timeout_ms =
                    u64::try_from(self.config.status_timeout.as_millis()).unwrap_or(30_000);
                let req = ExecRequest {
                    argv: argv.clone(),
                    env: spec
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    cwd: None,
                    timeout_ms: Some(timeout_ms),
                    stdin: None,
                };
                match guest
                    .exec_collect(req, self.config.status_timeout + Duration::from_secs(5))
                    .await
                {
                    Ok(out) => {
                        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                        text.push_str(&String::from_utf8_lossy(&out.stderr));
                        let matches = logged_in_regex
                            .as_ref()
                            .is_none_or(|re| re.regex().is_match(&text));
                        StatusCheck {
                            at: self.clock.now(),
                            ok: out.status.code == Some(0) && matches,
                            output: text.trim().chars().take(STATUS_OUTPUT_MAX).collect(),
                        }
                    }
                    Err(e) => StatusCheck {
                        at: self.clock.now(),
                        ok: false,
                        output: format!("status command failed: {e}"),
                    },
                }
            }
        };
        if let Err(e) = self
            .store
            .credentials()
            .record_check(owner, &spec.id, check)
            .await
        {
            tracing::debug!(error = %e, "status check not recorded");
        }
    }

    /// Removes a provider's files from the owner's live sandboxes.
    pub(super) async fn remove_from_sandboxes(&self, owner: UserId, spec: &ProviderSpec) {
        let _ordered = self.deliveries.lock(owner).await;
        for sandbox in self.live_sandboxes(owner).await {
            let Some(home) = self.sandboxes.user_home(&sandbox) else {
                continue;
            };
            let mut argv = vec!["rm".to_owned(), "-f".to_owned()];
            argv.extend(
                spec.files
                    .iter()
                    .map(|f| f.path.clone())
                    .chain(std::iter::once(super::run::env_file_path(spec)))
                    .map(|p| format!("{}/{}", home.trim_end_matches('/'), p)),
            );
            let req = ExecRequest {
                argv,
                ..ExecRequest::default()
            };
            if let Err(e) = self
                .sandboxes
                .node()
                .guest(sandbox.id)
                .exec_collect(req, self.config.delivery_timeout)
                .await
            {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "credential removal failed");
            }
        }
    }

    /// The hook the sandbox service runs after every boot: delivers the owner's credentials.
    pub fn ready_hook(self: &Arc<Self>) -> Arc<dyn ReadyHook> {
        Arc::new(DeliverOnBoot(Arc::downgrade(self)))
    }
}

/// Delivers a booting sandbox's owner's credentials (holds the service weakly: the sandbox
/// service owns the hook and the connect service owns the sandbox service).
#[derive(Debug)]
struct DeliverOnBoot(Weak<ConnectService>);

#[async_trait::async_trait]
impl ReadyHook for DeliverOnBoot {
    async fn on_agent_ready(&self, sandbox: SandboxId) {
        let Some(service) = self.0.upgrade() else {
            return;
        };
        let Ok(Some(record)) = service.store.sandboxes().get(sandbox).await else {
            return;
        };
        let _ordered = service.deliveries.lock(record.owner).await;
        let records = service
            .store
            .credentials()
            .list_for_owner(record.owner)
            .await
            .unwrap_or_default();
        if records.is_empty() {
            return;
        }
        if let Err(e) = service.deliver_to(&record, &records).await {
            tracing::warn!(sandbox = %sandbox, error = %e, "delivery at boot failed");
        }
    }
}
