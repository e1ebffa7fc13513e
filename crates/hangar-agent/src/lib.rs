//! The node: what runs sandboxes on one machine.
//!
//! Owns: booting a sandbox as a sequence of stages reported as they are reached (the driver
//! prepares the root filesystem and starts the first process; the node then waits for the guest
//! agent to answer), stopping and destroying, the runtime inventory the reconciler compares with
//! the store, the images present on the node, and the health figures of the host and its
//! sandboxes ([`metrics`]).
//!
//! `hangar up` runs a [`Node`] in the control-plane process (the local node). `hangar agent`
//! will serve the same operations to a remote control plane.
//!
//! **Architecture Invariant:** the node never decides lifecycle states and never touches the
//! store: it reports stages and results, and the control plane records them. Every wait here
//! has a deadline.

pub mod metrics;

use std::time::Duration;

use hangar_core::{BootStage, NodeId, SandboxId};
use hangar_guest::client::GuestClient;
use hangar_runtime::image::{Image, ImageError, ImageStore};
use hangar_runtime::{AnyDriver, Driver, DriverError, RuntimeSandbox, RuntimeStatus, SandboxSpec};
use tokio::sync::mpsc;

/// How often the node asks a booting sandbox's guest agent whether it is ready.
pub const READY_POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Deadline for one readiness ping (connect + answer).
pub const READY_PING_TIMEOUT: Duration = Duration::from_millis(500);

/// Errors from node operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The image is not on this node.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The stage receiver is gone (the control plane stopped listening).
    #[error("boot observer went away")]
    ObserverGone,
}

/// One machine's sandboxes: a driver and an image store.
#[derive(Debug)]
pub struct Node {
    id: NodeId,
    name: String,
    driver: AnyDriver,
    images: ImageStore,
}

impl Node {
    /// A node named `name` with the given driver and images.
    pub fn new(id: NodeId, name: String, driver: AnyDriver, images: ImageStore) -> Self {
        Self {
            id,
            name,
            driver,
            images,
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's name (its host name by default).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver this node runs sandboxes with.
    pub fn driver(&self) -> &AnyDriver {
        &self.driver
    }

    /// The node's image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// Resolves an image name (`default`) or digest (`sha256:...`) on this node.
    pub fn resolve_image(&self, name_or_digest: &str) -> Result<Image, NodeError> {
        Ok(self.images.resolve(name_or_digest)?)
    }

    /// Boots the sandbox and sends each stage to `stages` as it is reached:
    /// `rootfs_ready`, `process_started`, `agent_ready`. Returns once the guest agent
    /// answered. Has no deadline of its own: the caller wraps it in the sandbox's readiness
    /// deadline, and dropping the future abandons the boot (the caller then stops it).
    pub async fn boot(
        &self,
        spec: &SandboxSpec,
        stages: mpsc::Sender<BootStage>,
    ) -> Result<(), NodeError> {
        self.driver.prepare_rootfs(spec).await?;
        stages
            .send(BootStage::RootfsReady)
            .await
            .map_err(|_| NodeError::ObserverGone)?;
        self.driver.start_process(spec).await?;
        stages
            .send(BootStage::ProcessStarted)
            .await
            .map_err(|_| NodeError::ObserverGone)?;
        let guest = self.driver.guest(spec.id);
        loop {
            if guest.ping(READY_PING_TIMEOUT).await.is_ok() {
                break;
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        }
        stages
            .send(BootStage::AgentReady)
            .await
            .map_err(|_| NodeError::ObserverGone)?;
        Ok(())
    }

    /// Is the sandbox alive: the runtime has its process running and its guest agent answers
    /// within `timeout`?
    pub async fn is_alive(&self, id: SandboxId, timeout: Duration) -> bool {
        matches!(
            self.driver.status(id).await,
            Ok(RuntimeStatus::Running { .. })
        ) && self.driver.guest(id).ping(timeout).await.is_ok()
    }

    /// The channel to the sandbox's guest agent.
    pub fn guest(&self, id: SandboxId) -> GuestClient {
        self.driver.guest(id)
    }

    /// Planned stop: SIGTERM, SIGKILL after `grace`; the writable layer is kept.
    pub async fn stop(&self, id: SandboxId, grace: Duration) -> Result<(), NodeError> {
        Ok(self.driver.stop(id, grace).await?)
    }

    /// Removes everything the sandbox has on the node.
    pub async fn destroy(&self, id: SandboxId) -> Result<(), NodeError> {
        Ok(self.driver.destroy(id).await?)
    }

    /// What the runtime says about one sandbox.
    pub async fn status(&self, id: SandboxId) -> Result<RuntimeStatus, NodeError> {
        Ok(self.driver.status(id).await?)
    }

    /// The runtime's inventory: containers and sandbox directories.
    pub async fn inventory(&self) -> Result<Inventory, NodeError> {
        Ok(Inventory {
            runtime: self.driver.list().await?,
            dirs: self.driver.list_dirs()?,
            network: self.driver.list_network().await?,
        })
    }

    /// Removes a runtime object hangar did not make or no longer knows (by runtime name).
    pub async fn remove_orphan(&self, name: &str) -> Result<(), NodeError> {
        match name.parse::<SandboxId>() {
            Ok(id) => self.destroy(id).await,
            Err(_) => Ok(self.driver.remove_foreign(name).await?),
        }
    }

    /// The last `lines` lines of the sandbox's console log.
    pub fn console_tail(&self, id: SandboxId, lines: usize) -> Vec<String> {
        self.driver.console_tail(id, lines)
    }
}

/// What the runtime holds on a node, for the reconciler.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Containers (or VMs) the runtime knows.
    pub runtime: Vec<RuntimeSandbox>,
    /// Sandbox directories on disk.
    pub dirs: Vec<SandboxId>,
    /// Sandboxes with host network objects (veths on the node's bridge).
    pub network: Vec<SandboxId>,
}
