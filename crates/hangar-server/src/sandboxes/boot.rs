//! One boot of a sandbox (`creating` or `starting` -> `running`), under its readiness
//! deadline. Stages are recorded as the node reports them; missing the deadline makes the
//! sandbox `failed` with the stage reached and the console's last lines.

use std::sync::Arc;
use std::time::Duration;

use hangar_core::{BootEvent, FailureKind, SandboxState};
use hangar_runtime::SandboxSpec;
use hangar_store::StateChange;
use tokio::sync::mpsc;

use super::SandboxService;

/// How long the ready hook (credential delivery) may take before the boot goes on without it.
pub const READY_HOOK_DEADLINE: Duration = Duration::from_secs(10);

/// Work to do in a freshly booted sandbox after its guest agent answered and before it is
/// marked `running` (the connect service delivers the owner's credentials here).
#[async_trait::async_trait]
pub trait ReadyHook: Send + Sync + std::fmt::Debug {
    /// Called once per boot; errors are the hook's to log. Bounded by [`READY_HOOK_DEADLINE`].
    async fn on_agent_ready(&self, sandbox: hangar_core::SandboxId);
}

impl SandboxService {
    /// Starts the boot of `spec` in the background; `from` is `creating` or `starting`.
    pub(super) fn spawn_boot(
        self: &Arc<Self>,
        spec: SandboxSpec,
        from: SandboxState,
        readiness: Duration,
    ) {
        let this = Arc::clone(self);
        let id = spec.id;
        self.spawn_task(
            id,
            async move { this.run_boot(spec, from, readiness).await },
        );
    }

    async fn run_boot(self: Arc<Self>, spec: SandboxSpec, from: SandboxState, readiness: Duration) {
        let id = spec.id;
        let (tx, mut rx) = mpsc::channel(4);
        let node = Arc::clone(&self.node);
        let boot = async move { node.boot(&spec, tx).await };
        let record = async {
            while let Some(stage) = rx.recv().await {
                let now = self.clock.now();
                let event = BootEvent { stage, at: now };
                match self
                    .store
                    .sandboxes()
                    .record_boot_event(id, from, event, now)
                    .await
                {
                    Ok(sandbox) => {
                        self.published(sandbox);
                    }
                    Err(e) => tracing::debug!(sandbox = %id, error = %e, "boot stage not recorded"),
                }
            }
        };
        let outcome = tokio::time::timeout(readiness, async { tokio::join!(boot, record).0 }).await;
        match outcome {
            Ok(Ok(())) => {
                // Credentials and other per-user files go in before anyone can use the sandbox;
                // the hook has its own deadline and never fails the boot.
                if let Some(hook) = self.ready_hook() {
                    if tokio::time::timeout(READY_HOOK_DEADLINE, hook.on_agent_ready(id))
                        .await
                        .is_err()
                    {
                        tracing::warn!(sandbox = %id, "ready hook missed its deadline");
                    }
                }
                match self
                    .transition(id, from, SandboxState::Running, StateChange::default())
                    .await
                {
                    Ok(running) => {
                        if from == SandboxState::Creating {
                            let ms = running.updated_at.unix_ms() - running.created_at.unix_ms();
                            #[allow(clippy::cast_precision_loss)] // ms fit f64 exactly
                            self.observers
                                .metrics
                                .observe_create_to_ready(ms.max(0) as f64 / 1000.0);
                        }
                    }
                    // Destroyed or failed meanwhile: the other actor owns the cleanup.
                    Err(e) => {
                        tracing::debug!(sandbox = %id, error = %e, "boot outcome not recorded")
                    }
                }
            }
            Ok(Err(e)) => {
                self.fail(id, from, FailureKind::BootError, e.to_string())
                    .await;
            }
            Err(_) => {
                self.fail(
                    id,
                    from,
                    FailureKind::BootTimeout,
                    format!("guest agent not ready within {} ms", readiness.as_millis()),
                )
                .await;
            }
        }
    }
}
