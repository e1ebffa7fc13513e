//! [`SandboxService`]: one method per sandbox operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_agent::Node;
use hangar_core::{
    BootEvent, BootStage, DriverKind, Failure, FailureKind, Limits, NetworkPolicy, RetentionPolicy,
    Sandbox, SandboxId, SandboxState,
};
use hangar_guest::client::{ExecOutput, PtyReader, PtyWriter};
use hangar_guest::protocol::{ErrorCode, ExecRequest, PtyRequest};
use hangar_guest::GuestError;
use hangar_identity::Principal;
use hangar_runtime::{Driver, RuntimeStatus, SandboxSpec};
use hangar_store::{StateChange, Store, StoreError};
use tokio::task::JoinHandle;

use super::SandboxError;
use crate::clock::Clock;
use crate::telemetry::Observers;

/// Service-wide settings (from the config file / `HANGAR_*` environment).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Readiness deadline when a request gives none (default 30 s).
    pub readiness_timeout: Duration,
    /// Largest readiness deadline a request may ask for (default 10 min).
    pub max_readiness_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL on a planned stop (default 2 s).
    pub stop_grace: Duration,
    /// Limits when a request gives none.
    pub default_limits: Limits,
    /// Exec deadline when a request gives none (default 60 s).
    pub exec_timeout: Duration,
    /// Largest exec deadline a request may ask for (default 1 h).
    pub max_exec_timeout: Duration,
    /// Lines of console log carried in a failure (default 20).
    pub console_tail_lines: usize,
    /// Network policy when a request gives none (default `none`; `hangar up` makes it
    /// `egress` unless the config file says otherwise).
    pub default_network: NetworkPolicy,
    /// The node's sandbox network (bridge, subnet, DNS, deny list); `None`: no egress on
    /// this node, and asking for it is refused.
    pub network: Option<hangar_runtime::net::NetworkConfig>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            readiness_timeout: Duration::from_secs(30),
            max_readiness_timeout: Duration::from_secs(600),
            stop_grace: Duration::from_secs(2),
            default_limits: Limits::default(),
            exec_timeout: Duration::from_secs(60),
            max_exec_timeout: Duration::from_secs(3600),
            console_tail_lines: 20,
            default_network: NetworkPolicy::None,
            network: None,
        }
    }
}

/// A validated create request (the API's DTO converted at the edge).
#[derive(Debug, Clone, Default)]
pub struct CreateSandbox {
    /// Image name or digest; `default` when empty.
    pub image: String,
    /// Limits; the service default when `None`.
    pub limits: Option<Limits>,
    /// Readiness deadline; the service default when `None`.
    pub readiness_timeout: Option<Duration>,
    /// Retention policy on failure.
    pub retention: RetentionPolicy,
    /// Network policy; the service default when `None`.
    pub network: Option<NetworkPolicy>,
}

/// One command to run to completion.
#[derive(Debug, Clone, Default)]
pub struct ExecInput {
    /// argv; argv\[0\] is looked up on the sandbox's PATH.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory; the user's home when `None`.
    pub cwd: Option<String>,
    /// Deadline; the service default when `None`.
    pub timeout: Option<Duration>,
    /// Bytes written to the command's stdin, then closed.
    pub stdin: Option<Vec<u8>>,
}

/// The sandbox service. Shared as `Arc<SandboxService>`.
#[derive(Debug)]
pub struct SandboxService {
    pub(super) store: Store,
    pub(super) node: Arc<Node>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) config: SandboxConfig,
    /// The background task (boot, stop, destroy) working on each sandbox, if any.
    tasks: Mutex<HashMap<SandboxId, JoinHandle<()>>>,
    /// Called after each successful boot, before `running` (set once at wiring).
    ready_hook: std::sync::OnceLock<Arc<dyn super::ReadyHook>>,
    /// Where every written record goes (live bus), failures are recorded (events) and
    /// counted (metrics).
    pub(super) observers: Observers,
}

impl SandboxService {
    /// A service over `store` running sandboxes on `node`. Every record it writes is
    /// published on `observers.live`; every failure is recorded as an event and counted.
    pub fn new(
        store: Store,
        node: Arc<Node>,
        clock: Arc<dyn Clock>,
        config: SandboxConfig,
        observers: Observers,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            node,
            clock,
            config,
            tasks: Mutex::new(HashMap::new()),
            ready_hook: std::sync::OnceLock::new(),
            observers,
        })
    }

    /// Publishes a record just written (state, stages or release changed) on the live bus
    /// and hands it back. Every write of a sandbox record in this service goes through here.
    pub(super) fn published(&self, sandbox: Sandbox) -> Sandbox {
        self.observers.live.publish_sandbox(&sandbox);
        sandbox
    }

    /// Installs the hook run after every successful boot (once; later calls are ignored).
    pub fn set_ready_hook(&self, hook: Arc<dyn super::ReadyHook>) {
        let _ = self.ready_hook.set(hook);
    }

    pub(super) fn ready_hook(&self) -> Option<&Arc<dyn super::ReadyHook>> {
        self.ready_hook.get()
    }

    /// The node sandboxes run on.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The service's settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Records a new sandbox in state `creating` and starts its boot in the background.
    /// Returns at once. Errors: [`SandboxError::UnknownImage`], [`SandboxError::Limits`],
    /// [`SandboxError::Invalid`] (readiness deadline out of range, egress on a node without
    /// a sandbox network).
    pub async fn create(
        self: &Arc<Self>,
        principal: &Principal,
        req: CreateSandbox,
    ) -> Result<Sandbox, SandboxError> {
        let limits = req.limits.unwrap_or(self.config.default_limits);
        limits.validate()?;
        let readiness = req
            .readiness_timeout
            .unwrap_or(self.config.readiness_timeout);
        if readiness < Duration::from_millis(100) || readiness > self.config.max_readiness_timeout {
            return Err(SandboxError::Invalid {
                field: "readiness_timeout_ms",
                reason: format!(
                    "must be between 100 and {}",
                    self.config.max_readiness_timeout.as_millis()
                ),
            });
        }
        if let RetentionPolicy::Keep { ttl_s } = req.retention {
            if ttl_s > RetentionPolicy::MAX_TTL_S {
                return Err(SandboxError::Invalid {
                    field: "retention.ttl_s",
                    reason: format!("must be at most {}", RetentionPolicy::MAX_TTL_S),
                });
            }
        }
        let network = req.network.unwrap_or(self.config.default_network);
        if network == NetworkPolicy::Egress && !self.node.driver().egress_available() {
            return Err(SandboxError::Invalid {
                field: "network",
                reason: "this node has no sandbox network configured; use \"none\"".into(),
            });
        }
        let image_name = if req.image.is_empty() {
            "default".to_owned()
        } else {
            req.image
        };
        let image =
            self.node
                .resolve_image(&image_name)
                .map_err(|_| SandboxError::UnknownImage {
                    name: image_name.clone(),
                })?;
        let now = self.clock.now();
        let sandbox = Sandbox {
            id: SandboxId::from_uuid(uuid::Uuid::now_v7()),
            owner: principal.user,
            node: self.node.id(),
            image: image_name,
            image_digest: image.digest.clone(),
            driver: self.node.driver().kind(),
            limits,
            network,
            state: SandboxState::Creating,
            boot: vec![BootEvent {
                stage: BootStage::Created,
                at: now,
            }],
            failure: None,
            retention: req.retention,
            readiness_timeout_ms: u64::try_from(readiness.as_millis()).unwrap_or(u64::MAX),
            released_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store.sandboxes().insert(&sandbox).await?;
        let sandbox = self.published(sandbox);
        let spec = SandboxSpec {
            id: sandbox.id,
            image,
            limits,
            network,
        };
        self.spawn_boot(spec, SandboxState::Creating, readiness);
        Ok(sandbox)
    }

    /// The sandbox's address on the node's sandbox network while it holds a lease (a
    /// running egress sandbox); read from the driver's lease table, no I/O.
    pub fn network_address(&self, sandbox: &Sandbox) -> Option<std::net::Ipv4Addr> {
        match sandbox.network {
            NetworkPolicy::Egress => self.node.driver().network_address(sandbox.id),
            NetworkPolicy::None => None,
        }
    }

    /// One of the caller's sandboxes. Another user's id is [`SandboxError::NotFound`].
    pub async fn get(&self, principal: &Principal, id: SandboxId) -> Result<Sandbox, SandboxError> {
        self.store
            .sandboxes()
            .get_owned(principal.user, id)
            .await?
            .ok_or(SandboxError::NotFound)
    }

    /// One of the caller's sandboxes, which must be `running` for `action`
    /// ([`SandboxError::WrongState`] otherwise).
    pub async fn get_running(
        &self,
        principal: &Principal,
        id: SandboxId,
        action: &'static str,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = self.get(principal, id).await?;
        if sandbox.state.can_exec() {
            Ok(sandbox)
        } else {
            Err(SandboxError::WrongState {
                state: sandbox.state,
                action,
            })
        }
    }

    /// The caller's sandboxes, newest first; destroyed ones only with `include_destroyed`.
    pub async fn list(
        &self,
        principal: &Principal,
        include_destroyed: bool,
    ) -> Result<Vec<Sandbox>, SandboxError> {
        Ok(self
            .store
            .sandboxes()
            .list_owned(principal.user, include_destroyed)
            .await?)
    }

    /// Runs a command to completion in a running sandbox and returns its output and status.
    /// Errors: [`SandboxError::WrongState`] unless running, [`SandboxError::CommandNotFound`],
    /// [`SandboxError::Unreachable`] if the guest agent does not answer (the sandbox is then
    /// checked and marked failed if the runtime lost it).
    pub async fn exec(
        &self,
        principal: &Principal,
        id: SandboxId,
        input: ExecInput,
    ) -> Result<ExecOutput, SandboxError> {
        let sandbox = self.get_running(principal, id, "exec").await?;
        let argv0 = match input.argv.first() {
            Some(a) if !a.is_empty() => a.clone(),
            _ => {
                return Err(SandboxError::Invalid {
                    field: "argv",
                    reason: "must name a command".into(),
                })
            }
        };
        let timeout = input.timeout.unwrap_or(self.config.exec_timeout);
        if timeout.is_zero() || timeout > self.config.max_exec_timeout {
            return Err(SandboxError::Invalid {
                field: "timeout_ms",
                reason: format!(
                    "must be between 1 and {}",
                    self.config.max_exec_timeout.as_millis()
                ),
            });
        }
        let req = ExecRequest {
            argv: input.argv,
            env: input.env,
            cwd: input.cwd,
            timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            stdin: input.stdin,
        };
        // The agent enforces the command's deadline; ours adds a margin for transport.
        let deadline = timeout + Duration::from_secs(5);
        match self.node.guest(id).exec_collect(req, deadline).await {
            Ok(out) => Ok(out),
            Err(e) => Err(self.guest_error(&sandbox, argv0, e).await),
        }
    }

    /// Opens an interactive terminal in a running sandbox.
    pub async fn open_pty(
        &self,
        principal: &Principal,
        id: SandboxId,
        req: PtyRequest,
    ) -> Result<(PtyWriter, PtyReader), SandboxError> {
        let sandbox = self
            .get_running(principal, id, "open a terminal in")
            .await?;
        let argv0 = req.argv.first().cloned().unwrap_or_default();
        match self.node.guest(id).pty(req).await {
            Ok(pair) => Ok(pair),
            Err(e) => Err(self.guest_error(&sandbox, argv0, e).await),
        }
    }

    /// Opens a raw byte stream to TCP `port` on the sandbox's loopback (through the guest
    /// agent; the sandbox has no network the host could reach). Errors:
    /// [`SandboxError::WrongState`] unless running, [`SandboxError::PortClosed`] when nothing
    /// listens there.
    pub async fn forward(
        &self,
        principal: &Principal,
        id: SandboxId,
        port: u16,
    ) -> Result<tokio::net::UnixStream, SandboxError> {
        let sandbox = self.get_running(principal, id, "forward a port of").await?;
        if port == 0 {
            return Err(SandboxError::Invalid {
                field: "port",
                reason: "must be between 1 and 65535".into(),
            });
        }
        match self.node.guest(id).forward(port).await {
            Ok(stream) => Ok(stream),
            Err(GuestError::Remote {
                code: ErrorCode::NotFound,
                ..
            }) => Err(SandboxError::PortClosed { port }),
            Err(e) => Err(self.guest_error(&sandbox, String::new(), e).await),
        }
    }

    async fn guest_error(&self, sandbox: &Sandbox, argv0: String, e: GuestError) -> SandboxError {
        match e {
            GuestError::Remote {
                code: ErrorCode::NotFound,
                ..
            } => SandboxError::CommandNotFound { command: argv0 },
            GuestError::Connect { .. } => {
                self.check_vanished(sandbox).await;
                SandboxError::Unreachable(e)
            }
            other => SandboxError::Guest(other),
        }
    }

    /// Begins a planned stop: `running -> stopping` now, `stopped` when the processes are gone.
    pub async fn stop(
        self: &Arc<Self>,
        principal: &Principal,
        id: SandboxId,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = self.get(principal, id).await?;
        if !sandbox.state.can_stop() {
            return Err(SandboxError::WrongState {
                state: sandbox.state,
                action: "stop",
            });
        }
        let stopping = self
            .transition(
                id,
                sandbox.state,
                SandboxState::Stopping,
                StateChange::default(),
            )
            .await?;
        let this = Arc::clone(self);
        self.spawn_task(id, async move { this.finish_stop(id).await });
        Ok(stopping)
    }

    /// Boots a stopped sandbox again on its kept files: `stopped -> starting -> running`.
    /// `failed` and `destroyed` sandboxes are never started: make a new one.
    pub async fn start(
        self: &Arc<Self>,
        principal: &Principal,
        id: SandboxId,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = self.get(principal, id).await?;
        if !sandbox.state.can_start() {
            return Err(SandboxError::WrongState {
                state: sandbox.state,
                action: "start",
            });
        }
        let image = self
            .node
            .resolve_image(&sandbox.image_digest)
            .map_err(|_| SandboxError::UnknownImage {
                name: sandbox.image_digest.clone(),
            })?;
        let now = self.clock.now();
        let starting = self
            .transition(
                id,
                SandboxState::Stopped,
                SandboxState::Starting,
                StateChange {
                    reset_boot: true,
                    boot_event: Some(BootEvent {
                        stage: BootStage::Created,
                        at: now,
                    }),
                    ..StateChange::default()
                },
            )
            .await?;
        let spec = SandboxSpec {
            id,
            image,
            limits: sandbox.limits,
            network: sandbox.network,
        };
        let readiness = Duration::from_millis(sandbox.readiness_timeout_ms);
        self.spawn_boot(spec, SandboxState::Starting, readiness);
        Ok(starting)
    }

    /// Begins removal: `-> destroying` now (any boot or stop in progress is abandoned),
    /// `destroyed` when the node has released everything.
    pub async fn destroy(
        self: &Arc<Self>,
        principal: &Principal,
        id: SandboxId,
    ) -> Result<Sandbox, SandboxError> {
        // A boot task may move the state between our read and our write; retry a few times.
        for _ in 0..5 {
            let sandbox = self.get(principal, id).await?;
            if !sandbox.state.can_destroy() {
                return Err(SandboxError::WrongState {
                    state: sandbox.state,
                    action: "destroy",
                });
            }
            match self
                .store
                .sandboxes()
                .transition(
                    id,
                    sandbox.state,
                    SandboxState::Destroying,
                    StateChange::default(),
                    self.clock.now(),
                )
                .await
            {
                Ok(destroying) => {
                    let destroying = self.published(destroying);
                    let previous = self.take_task(id);
                    let this = Arc::clone(self);
                    self.spawn_task(id, async move {
                        if let Some(task) = previous {
                            task.abort();
                            let _ = task.await;
                        }
                        this.finish_destroy(id).await;
                    });
                    return Ok(destroying);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SandboxError::Invalid {
            field: "id",
            reason: "sandbox state keeps changing; try again".into(),
        })
    }

    pub(super) async fn transition(
        &self,
        id: SandboxId,
        from: SandboxState,
        to: SandboxState,
        change: StateChange,
    ) -> Result<Sandbox, SandboxError> {
        let sandbox = self
            .store
            .sandboxes()
            .transition(id, from, to, change, self.clock.now())
            .await?;
        Ok(self.published(sandbox))
    }

    /// Completes a planned stop. On a node error the sandbox stays `stopping` and the
    /// reconciler retries; a planned stop never ends `failed`.
    pub(super) async fn finish_stop(&self, id: SandboxId) {
        if let Err(e) = self.node.stop(id, self.config.stop_grace).await {
            tracing::warn!(sandbox = %id, error = %e, "stop failed; the reconciler will retry");
            return;
        }
        if let Err(e) = self
            .transition(
                id,
                SandboxState::Stopping,
                SandboxState::Stopped,
                StateChange::default(),
            )
            .await
        {
            tracing::debug!(sandbox = %id, error = %e, "stop outcome not recorded");
        }
    }

    /// Completes a removal. On a node error the sandbox stays `destroying` and the reconciler
    /// retries.
    pub(super) async fn finish_destroy(&self, id: SandboxId) {
        if let Err(e) = self.node.destroy(id).await {
            tracing::warn!(sandbox = %id, error = %e, "destroy failed; the reconciler will retry");
            return;
        }
        let now = self.clock.now();
        if let Err(e) = self
            .transition(
                id,
                SandboxState::Destroying,
                SandboxState::Destroyed,
                StateChange {
                    released_at: Some(now),
                    ..StateChange::default()
                },
            )
            .await
        {
            tracing::debug!(sandbox = %id, error = %e, "destroy outcome not recorded");
        }
    }

    /// Marks a sandbox `failed` (from `from`) with the stage it reached and its console tail,
    /// then kills its processes and releases its files as its retention policy says.
    /// Does nothing if the state moved on meanwhile (compare-and-set); returns whether this
    /// call recorded the failure.
    pub(super) async fn fail(
        &self,
        id: SandboxId,
        from: SandboxState,
        kind: FailureKind,
        message: String,
    ) -> bool {
        let stage_reached = match self.store.sandboxes().get(id).await {
            Ok(Some(sb)) => sb.stage_reached(),
            _ => None,
        };
        let failure = Failure {
            kind,
            stage_reached,
            message,
            console_tail: self.node.console_tail(id, self.config.console_tail_lines),
        };
        match self
            .transition(
                id,
                from,
                SandboxState::Failed,
                StateChange {
                    failure: Some(failure),
                    ..StateChange::default()
                },
            )
            .await
        {
            Ok(failed) => {
                tracing::info!(sandbox = %id, ?kind, "sandbox failed");
                self.observers.metrics.sandbox_failed(kind, stage_reached);
                self.observers.events.sandbox_failed(&failed).await;
                // Failed is never resumed: its processes go now, its files per retention.
                if let Err(e) = self.node.stop(id, Duration::ZERO).await {
                    tracing::warn!(sandbox = %id, error = %e, "could not stop failed sandbox");
                }
                if failed
                    .release_due()
                    .is_some_and(|due| due <= self.clock.now())
                {
                    self.release(id).await;
                }
                true
            }
            Err(e) => {
                tracing::debug!(sandbox = %id, error = %e, "failure not recorded");
                false
            }
        }
    }

    /// Releases a failed sandbox's node resources and records when.
    pub(super) async fn release(&self, id: SandboxId) {
        match self.node.destroy(id).await {
            Ok(()) => {
                match self
                    .store
                    .sandboxes()
                    .mark_released(id, self.clock.now())
                    .await
                {
                    Ok(true) => {
                        if let Ok(Some(released)) = self.store.sandboxes().get(id).await {
                            self.published(released);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(sandbox = %id, error = %e, "could not record release")
                    }
                }
            }
            Err(e) => tracing::warn!(sandbox = %id, error = %e, "release failed; will retry"),
        }
    }

    /// If the runtime no longer runs a `running` sandbox, marks it failed (vanished).
    /// Returns whether it did.
    pub(super) async fn check_vanished(&self, sandbox: &Sandbox) -> bool {
        if sandbox.state != SandboxState::Running {
            return false;
        }
        let status = match self.node.status(sandbox.id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "runtime status unknown");
                return false;
            }
        };
        let reason = match status {
            RuntimeStatus::Running { .. } => return false,
            RuntimeStatus::NotRunning => "its process exited outside a planned stop",
            RuntimeStatus::Missing => "it vanished from the runtime",
        };
        self.fail(
            sandbox.id,
            SandboxState::Running,
            FailureKind::Vanished,
            reason.to_owned(),
        )
        .await
    }

    pub(super) fn spawn_task(
        &self,
        id: SandboxId,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let handle = tokio::spawn(fut);
        tasks.insert(id, handle);
    }

    fn take_task(&self, id: SandboxId) -> Option<JoinHandle<()>> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }

    /// Is a background task (boot, stop, destroy) working on this sandbox right now?
    pub(super) fn is_busy(&self, id: SandboxId) -> bool {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|_, h| !h.is_finished());
        tasks.contains_key(&id)
    }

    /// The home directory of the sandbox's user, from its image (`None` if the image is gone).
    pub fn user_home(&self, sandbox: &Sandbox) -> Option<String> {
        self.node
            .resolve_image(&sandbox.image_digest)
            .ok()
            .map(|image| image.config.user.home)
    }

    /// The driver kind sandboxes get on this node.
    pub fn driver_kind(&self) -> DriverKind {
        self.node.driver().kind()
    }
}
