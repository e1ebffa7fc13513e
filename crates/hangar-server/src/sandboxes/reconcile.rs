//! The reconciler: brings the store and the runtime into agreement, at start and then
//! periodically.
//!
//! - Runtime containers, sandbox directories and network leftovers (veths on the node's
//!   bridge) with no live record are orphans: removed.
//! - A `running` (or `stopping`) sandbox whose process the runtime no longer runs is marked
//!   `failed` (`vanished`) with the reason.
//! - Work interrupted by a restart is finished: `creating`/`starting` become `running` if the
//!   sandbox is alive, else `failed` (`interrupted`); `stopping` is stopped; `destroying`
//!   is destroyed.
//! - Failed sandboxes whose retention has run out have their resources released.
//!
//! Sandboxes with a background task in progress in this process are left to that task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hangar_core::{FailureKind, Sandbox, SandboxId, SandboxState};
use hangar_runtime::RuntimeStatus;
use serde::Serialize;

use super::{SandboxError, SandboxService};

/// What one reconciler pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Runtime containers or directories removed because no live record claims them.
    pub orphans_removed: Vec<String>,
    /// Sandboxes marked failed because the runtime lost them.
    pub vanished: Vec<SandboxId>,
    /// Interrupted boots, stops and removals finished.
    pub resumed: Vec<SandboxId>,
    /// Failed sandboxes whose resources were released (retention over).
    pub released: Vec<SandboxId>,
}

/// Readiness check used for interrupted boots.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);

impl SandboxService {
    /// Runs one reconciler pass. Reads the runtime first and the store second, so a sandbox
    /// created in between is seen in the store and never taken for an orphan.
    pub async fn reconcile_once(self: &Arc<Self>) -> Result<ReconcileReport, SandboxError> {
        let mut report = ReconcileReport::default();
        let inventory = self.node.inventory().await?;
        let records: HashMap<SandboxId, Sandbox> = self
            .store
            .sandboxes()
            .list_on_node(self.node.id())
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();

        // Orphans: runtime objects and directories that no record keeps.
        let keeps = |id: &SandboxId| records.get(id).is_some_and(holds_resources);
        for rt in &inventory.runtime {
            let claimed = rt
                .name
                .parse::<SandboxId>()
                .ok()
                .is_some_and(|id| keeps(&id) || self.is_busy(id));
            if !claimed {
                match self.node.remove_orphan(&rt.name).await {
                    Ok(()) => report.orphans_removed.push(rt.name.clone()),
                    Err(e) => tracing::warn!(name = %rt.name, error = %e, "orphan removal failed"),
                }
            }
        }
        // Network leftovers (a veth whose sandbox is gone) go the same way: destroy is
        // idempotent and removes veth, namespace and lease.
        let mut candidates = inventory.dirs.clone();
        candidates.extend(
            inventory
                .network
                .iter()
                .filter(|id| !inventory.dirs.contains(id)),
        );
        for id in &candidates {
            if keeps(id) || self.is_busy(*id) {
                continue;
            }
            let name = id.to_string();
            if report.orphans_removed.contains(&name) {
                continue;
            }
            match self.node.destroy(*id).await {
                Ok(()) => report.orphans_removed.push(name),
                Err(e) => tracing::warn!(sandbox = %id, error = %e, "orphan removal failed"),
            }
        }

        let runtime: HashMap<String, RuntimeStatus> = inventory
            .runtime
            .iter()
            .map(|r| (r.name.clone(), r.status))
            .collect();
        for sandbox in records.values() {
            let id = sandbox.id;
            if self.is_busy(id) {
                continue;
            }
            let status = runtime
                .get(&id.to_string())
                .copied()
                .unwrap_or(RuntimeStatus::Missing);
            match sandbox.state {
                SandboxState::Running => {
                    if !matches!(status, RuntimeStatus::Running { .. })
                        && self.check_vanished(sandbox).await
                    {
                        report.vanished.push(id);
                    }
                }
                SandboxState::Creating | SandboxState::Starting => {
                    if self.node.is_alive(id, ALIVE_TIMEOUT).await {
                        if self
                            .transition(
                                id,
                                sandbox.state,
                                SandboxState::Running,
                                Default::default(),
                            )
                            .await
                            .is_ok()
                        {
                            report.resumed.push(id);
                        }
                    } else if self
                        .fail(
                            id,
                            sandbox.state,
                            FailureKind::Interrupted,
                            "the control plane restarted during boot and the sandbox was not alive"
                                .to_owned(),
                        )
                        .await
                    {
                        report.resumed.push(id);
                    }
                }
                SandboxState::Stopping => {
                    self.finish_stop(id).await;
                    report.resumed.push(id);
                }
                SandboxState::Destroying => {
                    self.finish_destroy(id).await;
                    report.resumed.push(id);
                }
                SandboxState::Stopped => {
                    if matches!(status, RuntimeStatus::Running { .. }) {
                        // A stopped sandbox must not run; finish the stop.
                        if let Err(e) = self.node.stop(id, Duration::ZERO).await {
                            tracing::warn!(sandbox = %id, error = %e, "could not stop");
                        }
                    }
                }
                SandboxState::Failed => {
                    if sandbox
                        .release_due()
                        .is_some_and(|due| due <= self.clock.now())
                    {
                        self.release(id).await;
                        report.released.push(id);
                    }
                }
                SandboxState::Destroyed => {}
            }
        }
        if !report.orphans_removed.is_empty() {
            self.observers
                .metrics
                .orphans_removed(report.orphans_removed.len() as u64);
            for name in &report.orphans_removed {
                self.observers
                    .events
                    .orphan_removed(self.node.id(), name)
                    .await;
            }
        }
        if report != ReconcileReport::default() {
            tracing::info!(?report, "reconciled");
        }
        Ok(report)
    }

    /// Runs [`Self::reconcile_once`] every `interval` until the task is dropped.
    pub async fn reconcile_forever(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.reconcile_once().await {
                tracing::warn!(error = %e, "reconciler pass failed");
            }
        }
    }
}

/// Does a record in this state still own node resources (container, directory)?
fn holds_resources(sandbox: &Sandbox) -> bool {
    match sandbox.state {
        SandboxState::Destroyed => false,
        SandboxState::Failed => sandbox.released_at.is_none(),
        _ => true,
    }
}
