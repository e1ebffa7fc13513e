//! [`ConnectService`]: one method per connect operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_connect::{ProviderRegistry, ProviderSpec};
use hangar_core::{
    ConnectFlow, ConnectSession, ConnectSessionId, ConnectState, CredentialStatus, ProviderId,
};
use hangar_identity::{Principal, TokenHash, ViewerToken};
use hangar_store::{ConnectChange, Store, StoreError};
use rand::rngs::OsRng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ConnectError;
use crate::clock::Clock;
use crate::credentials::CredentialVault;
use crate::sandboxes::SandboxService;

/// The VNC server's port in browser sandboxes (x11vnc on the sandbox's loopback).
pub const BROWSER_VNC_PORT: u16 = 5900;

/// Settings of the connect service.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// How long the person has to sign in (default 15 min); then the session is `expired`.
    pub sign_in_timeout: Duration,
    /// The image of browser sandboxes (default `browser`).
    pub browser_image: String,
    /// The command that runs the login inside the browser desktop for the browser flow
    /// (default `/usr/local/bin/hangar-browser-session`); empty runs the login directly.
    pub browser_session: Vec<String>,
    /// Deadline for delivering credentials into one sandbox (default 10 s).
    pub delivery_timeout: Duration,
    /// Deadline for the CLI's status command (default 30 s).
    pub status_timeout: Duration,
    /// Quiet time after the CLI's last write before its files are taken (default 300 ms).
    pub settle: Duration,
    /// Refresh an access token when it expires within this (default 15 min: before the CLIs'
    /// own 5-minute refresh window opens).
    pub refresh_margin: Duration,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            sign_in_timeout: ConnectSession::DEFAULT_SIGN_IN_TIMEOUT,
            browser_image: "browser".to_owned(),
            browser_session: vec!["/usr/local/bin/hangar-browser-session".to_owned()],
            delivery_timeout: Duration::from_secs(10),
            status_timeout: Duration::from_secs(30),
            settle: Duration::from_millis(300),
            refresh_margin: Duration::from_secs(15 * 60),
        }
    }
}

/// A validated start request.
#[derive(Debug, Clone)]
pub struct StartConnect {
    /// The provider (`claude_code`, `codex`, `gemini_cli`, ...).
    pub provider: String,
    /// The flow; the provider's first offered flow when `None` (browser first).
    pub flow: Option<ConnectFlow>,
}

/// The connect service. Shared as `Arc<ConnectService>`.
#[derive(Debug)]
pub struct ConnectService {
    pub(super) store: Store,
    pub(super) sandboxes: Arc<SandboxService>,
    pub(super) vault: Arc<CredentialVault>,
    pub(super) providers: Arc<ProviderRegistry>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) config: ConnectConfig,
    /// The task driving each open session.
    tasks: Mutex<HashMap<ConnectSessionId, JoinHandle<()>>>,
    /// Where text typed by the person (a paste code) goes, per open session.
    pub(super) inputs: Mutex<HashMap<ConnectSessionId, mpsc::Sender<Vec<u8>>>>,
    /// HTTP client for providers' token endpoints.
    pub(super) http: reqwest::Client,
    /// Browser sandboxes of open sessions, known before the session records them.
    pub(super) browser: Mutex<HashMap<ConnectSessionId, hangar_core::SandboxId>>,
    /// Where session outcomes are recorded (events) and counted (metrics).
    observers: crate::telemetry::Observers,
    /// Orders deliveries and removals per owner (see [`super::delivery::DeliveryLocks`]).
    pub(super) deliveries: super::delivery::DeliveryLocks,
}

impl ConnectService {
    /// A service over the given parts.
    pub fn new(
        store: Store,
        sandboxes: Arc<SandboxService>,
        vault: Arc<CredentialVault>,
        providers: Arc<ProviderRegistry>,
        clock: Arc<dyn Clock>,
        config: ConnectConfig,
        observers: crate::telemetry::Observers,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sandboxes,
            vault,
            providers,
            clock,
            config,
            tasks: Mutex::new(HashMap::new()),
            inputs: Mutex::new(HashMap::new()),
            browser: Mutex::new(HashMap::new()),
            observers,
            deliveries: Default::default(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        })
    }

    /// The providers this service knows.
    pub fn providers(&self) -> &ProviderRegistry {
        &self.providers
    }

    pub(super) fn provider(&self, name: &str) -> Result<&ProviderSpec, ConnectError> {
        ProviderId::new(name)
            .ok()
            .and_then(|id| self.providers.get(&id))
            .ok_or_else(|| ConnectError::UnknownProvider {
                provider: name.to_owned(),
            })
    }

    /// Starts a connect session (`starting`) and its task; returns at once. A browser-flow
    /// session also gets a viewer token (returned here only, stored hashed).
    pub async fn start(
        self: &Arc<Self>,
        principal: &Principal,
        req: StartConnect,
    ) -> Result<(ConnectSession, Option<ViewerToken>), ConnectError> {
        let spec = self.provider(&req.provider)?.clone();
        let flow = match req.flow {
            Some(flow) => flow,
            None => spec.offered_flows().map(|(f, _)| f).next().ok_or_else(|| {
                ConnectError::UnknownProvider {
                    provider: req.provider.clone(),
                }
            })?,
        };
        spec.flow(flow).ok_or(ConnectError::UnsupportedFlow {
            provider: req.provider.clone(),
            flow,
        })?;
        let session = ConnectSession::new(
            ConnectSessionId::from_uuid(uuid::Uuid::now_v7()),
            principal.user,
            spec.id.clone(),
            flow,
            self.clock.now(),
            self.config.sign_in_timeout,
        );
        self.store.connect_sessions().insert(&session).await?;
        let viewer = if flow == ConnectFlow::Browser {
            let token = ViewerToken::generate(&mut OsRng);
            self.store
                .connect_sessions()
                .set_viewer_token_hash(session.id, &token.hash().to_hex())
                .await?;
            Some(token)
        } else {
            None
        };
        let (tx, rx) = mpsc::channel(4);
        self.inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.id, tx);
        let this = Arc::clone(self);
        let owner = principal.clone();
        let run_session = session.clone();
        let handle = tokio::spawn(async move { this.run(owner, run_session, spec, rx).await });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.id, handle);
        Ok((session, viewer))
    }

    /// The session a viewer token was issued for. A wrong token and a missing session are
    /// both [`ConnectError::NotFound`].
    pub async fn authorize_viewer(
        &self,
        id: ConnectSessionId,
        token: &str,
    ) -> Result<ConnectSession, ConnectError> {
        if !ViewerToken::is_viewer_token(token) {
            return Err(ConnectError::NotFound);
        }
        self.store
            .connect_sessions()
            .get_by_viewer_token(id, &TokenHash::of(token).to_hex())
            .await?
            .ok_or(ConnectError::NotFound)
    }

    /// A byte stream to the VNC server of an open browser-flow session's sandbox.
    pub async fn vnc_stream(
        &self,
        session: &ConnectSession,
    ) -> Result<tokio::net::UnixStream, ConnectError> {
        let sandbox = match (session.flow, session.browser_sandbox) {
            (ConnectFlow::Browser, Some(sb)) if !session.state.is_terminal() => sb,
            _ => {
                return Err(ConnectError::WrongState {
                    state: session.state,
                    action: "show the remote browser of",
                })
            }
        };
        let owner = Principal::with_all_scopes(session.owner, String::new(), false);
        self.sandboxes
            .forward(&owner, sandbox, BROWSER_VNC_PORT)
            .await
            .map_err(|e| ConnectError::Invalid {
                field: "viewer",
                reason: format!("the remote browser does not answer: {e}"),
            })
    }

    /// One of the caller's sessions.
    pub async fn get(
        &self,
        principal: &Principal,
        id: ConnectSessionId,
    ) -> Result<ConnectSession, ConnectError> {
        self.store
            .connect_sessions()
            .get_owned(principal.user, id)
            .await?
            .ok_or(ConnectError::NotFound)
    }

    /// The caller's sessions, newest first.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<ConnectSession>, ConnectError> {
        Ok(self
            .store
            .connect_sessions()
            .list_owned(principal.user)
            .await?)
    }

    /// Sends text the person typed (a paste code) to the session's login command.
    pub async fn submit_code(
        &self,
        principal: &Principal,
        id: ConnectSessionId,
        code: &str,
    ) -> Result<(), ConnectError> {
        let session = self.get(principal, id).await?;
        if session.state != ConnectState::AwaitingUser {
            return Err(ConnectError::WrongState {
                state: session.state,
                action: "take a code",
            });
        }
        let code = code.trim();
        if code.is_empty() || code.len() > 4096 || code.contains(['\n', '\r']) {
            return Err(ConnectError::Invalid {
                field: "code",
                reason: "one line of at most 4096 characters".into(),
            });
        }
        let tx = self
            .inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let tx = tx.ok_or(ConnectError::WrongState {
            state: session.state,
            action: "take a code",
        })?;
        let mut line = code.as_bytes().to_vec();
        line.push(b'\n');
        tx.send_timeout(line, Duration::from_secs(5))
            .await
            .map_err(|_| ConnectError::WrongState {
                state: session.state,
                action: "take a code",
            })
    }

    /// Cancels an open session: its task stops, its browser sandbox is destroyed.
    pub async fn cancel(
        &self,
        principal: &Principal,
        id: ConnectSessionId,
    ) -> Result<ConnectSession, ConnectError> {
        let session = self.get(principal, id).await?;
        if !session.state.can_cancel() {
            return Err(ConnectError::WrongState {
                state: session.state,
                action: "cancel",
            });
        }
        let cancelled = self
            .store
            .connect_sessions()
            .transition(
                id,
                session.state,
                ConnectState::Cancelled,
                ConnectChange::default(),
                self.clock.now(),
            )
            .await
            .map_err(|e| match e {
                StoreError::ConnectConflict { actual, .. } => ConnectError::WrongState {
                    state: actual.unwrap_or(session.state),
                    action: "cancel",
                },
                other => other.into(),
            })?;
        self.ended(&cancelled).await;
        if let Some(task) = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        {
            task.abort();
        }
        self.finish(principal, &cancelled).await;
        Ok(cancelled)
    }

    /// After a restart: open sessions have lost their task (and the person their login
    /// command), so each is ended — `expired` if past its deadline, else `failed` — and its
    /// browser sandbox destroyed. Returns how many were ended.
    pub async fn recover(&self) -> Result<usize, ConnectError> {
        let open = self.store.connect_sessions().list_open().await?;
        let now = self.clock.now();
        let mut ended = 0;
        for session in open {
            let busy = self
                .tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&session.id)
                .is_some_and(|t| !t.is_finished());
            if busy {
                continue;
            }
            let (to, failure) = if session.is_overdue(now) {
                (ConnectState::Expired, None)
            } else {
                (
                    ConnectState::Failed,
                    Some("the control plane restarted during the sign-in; start again".to_owned()),
                )
            };
            let change = ConnectChange {
                failure,
                ..ConnectChange::default()
            };
            if let Ok(ended_session) = self
                .store
                .connect_sessions()
                .transition(session.id, session.state, to, change, now)
                .await
            {
                self.ended(&ended_session).await;
                let owner = Principal::with_all_scopes(ended_session.owner, String::new(), false);
                self.finish(&owner, &ended_session).await;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Per provider: connected since, last status check, token expiry, last refresh.
    pub async fn status(
        &self,
        principal: &Principal,
    ) -> Result<Vec<CredentialStatus>, ConnectError> {
        Ok(self.store.credentials().status(principal.user).await?)
    }

    /// Removes a credential from the vault and from the caller's live sandboxes.
    pub async fn remove_credential(
        &self,
        principal: &Principal,
        provider: &str,
    ) -> Result<(), ConnectError> {
        let spec = self.provider(provider)?.clone();
        if !self
            .store
            .credentials()
            .delete(principal.user, &spec.id)
            .await?
        {
            return Err(ConnectError::NoCredential {
                provider: provider.to_owned(),
            });
        }
        self.remove_from_sandboxes(principal.user, &spec).await;
        Ok(())
    }

    /// Records a session that this service just moved to a terminal state (called once per
    /// session, right after the compare-and-set that ended it): counted by provider and
    /// outcome, and recorded as a `connect_session` event.
    pub(super) async fn ended(&self, session: &ConnectSession) {
        self.observers
            .metrics
            .connect_session_ended(session.provider.as_str(), session.state);
        self.observers.events.connect_session_ended(session).await;
    }

    /// Drops the session's input channel and destroys its browser sandbox (planned teardown).
    pub(super) async fn finish(&self, principal: &Principal, session: &ConnectSession) {
        self.inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session.id);
        let pending = self
            .browser
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session.id);
        if let Some(sandbox) = session.browser_sandbox.or(pending) {
            if let Err(e) = self.sandboxes.destroy(principal, sandbox).await {
                tracing::debug!(session = %session.id, error = %e, "browser sandbox not destroyed");
            }
        }
    }
}
