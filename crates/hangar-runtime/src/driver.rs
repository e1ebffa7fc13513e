//! The one trait every driver implements, and the enum that dispatches to them.
//!
//! A boot is split into the driver-specific steps whose completion is a boot stage
//! ([`Driver::prepare_rootfs`] -> `rootfs_ready`, [`Driver::start_process`] ->
//! `process_started`); waiting for the guest agent (`agent_ready`) is driver-independent and
//! lives with the node. Every method returns within a bounded time: subprocesses run under
//! [`crate::process::run_with_deadline`].

use std::path::PathBuf;
use std::time::Duration;

use std::net::Ipv4Addr;

use hangar_core::{DriverKind, Limits, NetworkPolicy, SandboxId};
use hangar_guest::client::GuestClient;

use crate::image::Image;

/// What a driver needs to boot one sandbox.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// The sandbox; also names its container and directory.
    pub id: SandboxId,
    /// The resolved image (its read-only root filesystem and configuration).
    pub image: Image,
    /// CPU, memory and pids limits.
    pub limits: Limits,
    /// `none`: loopback only; `egress`: the node's sandbox network (needs it configured).
    pub network: NetworkPolicy,
}

/// What the runtime says about one sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeStatus {
    /// Its first process is alive (`pid` in the host's pid namespace).
    Running {
        /// Host pid of the sandbox's first process.
        pid: u32,
    },
    /// The runtime knows it but its process is not running (created, stopped, paused).
    NotRunning,
    /// The runtime has no such sandbox.
    Missing,
}

/// One sandbox the runtime knows about (from its own bookkeeping, not hangar's store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSandbox {
    /// The runtime's name for it; a [`SandboxId`] when hangar made it.
    pub name: String,
    /// Its status.
    pub status: RuntimeStatus,
}

/// Errors from a driver. Context lives in fields; messages stay short.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A host command (runc, mount, ...) failed.
    #[error("{command} failed (exit {code:?}): {stderr}")]
    Command {
        /// The command line, secrets never included.
        command: String,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// A host command did not finish before its deadline and was killed.
    #[error("{command} did not finish within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The deadline it missed.
        after: Duration,
    },
    /// A filesystem operation on the sandbox's directory failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`create`, `mount overlay on`, `write`...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The OCI runtime spec could not be built.
    #[error("building the OCI runtime spec")]
    Spec(#[source] oci_spec::OciSpecError),
    /// The runtime's output could not be understood.
    #[error("unexpected output from {command}: {reason}")]
    Parse {
        /// The command whose output it was.
        command: String,
        /// What was wrong.
        reason: String,
    },
    /// Sandbox networking failed (node setup, lease, namespace, veth, firewall).
    #[cfg(feature = "runc")]
    #[error("sandbox network")]
    Network(#[from] crate::net::NetError),
    /// The sandbox asked for egress but this node has no sandbox network configured.
    #[error("this node offers no network egress")]
    NoEgress,
    /// The driver is not available on this node (binary missing, not root, feature off).
    #[error("driver {kind} unavailable: {reason}")]
    Unavailable {
        /// Which driver.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// How a node runs sandboxes. Implemented by each driver; dispatched by [`AnyDriver`].
///
/// All methods are idempotent where that is meaningful: preparing an already prepared rootfs,
/// stopping a stopped sandbox or destroying a missing one succeed.
#[allow(async_fn_in_trait)]
pub trait Driver {
    /// Which driver this is.
    fn kind(&self) -> DriverKind;

    /// Prepares the sandbox's root filesystem (runc: mounts the overlay with the image below
    /// and the sandbox's own writable layer above). Keeps an existing writable layer, so a
    /// stopped sandbox starts again with its files.
    async fn prepare_rootfs(&self, spec: &SandboxSpec) -> Result<(), DriverError>;

    /// Starts the sandbox's first process (the guest agent, or the image's `init`). Returns
    /// once the runtime reports it started; readiness is awaited separately.
    async fn start_process(&self, spec: &SandboxSpec) -> Result<(), DriverError>;

    /// The channel to the sandbox's guest agent.
    fn guest(&self, id: SandboxId) -> GuestClient;

    /// Stops the sandbox's processes (SIGTERM, then SIGKILL after `grace`) and releases what
    /// a stopped sandbox does not need, keeping its writable layer.
    async fn stop(&self, id: SandboxId, grace: Duration) -> Result<(), DriverError>;

    /// Removes everything the sandbox has on this node: processes, mounts, files, logs.
    async fn destroy(&self, id: SandboxId) -> Result<(), DriverError>;

    /// What the runtime says about the sandbox right now.
    async fn status(&self, id: SandboxId) -> Result<RuntimeStatus, DriverError>;

    /// Every sandbox the runtime knows, made by hangar or not.
    async fn list(&self) -> Result<Vec<RuntimeSandbox>, DriverError>;

    /// Removes a runtime object that hangar did not make, by its runtime name (orphan
    /// removal for names that are not sandbox ids).
    async fn remove_foreign(&self, name: &str) -> Result<(), DriverError>;

    /// Every sandbox that has a directory on this node (for orphan removal).
    fn list_dirs(&self) -> Result<Vec<SandboxId>, DriverError>;

    /// The last `lines` lines of the sandbox's console log, oldest first; empty if none.
    fn console_tail(&self, id: SandboxId, lines: usize) -> Vec<String>;

    /// Where the sandbox's console log (its first process's stdout and stderr) is kept.
    fn console_log_path(&self, id: SandboxId) -> PathBuf;

    /// The directory holding the sandbox's writable layer (runc: the overlay's `upper/`),
    /// whose size is the sandbox's disk use; `None` if the driver keeps none on the host.
    fn writable_layer(&self, id: SandboxId) -> Option<PathBuf>;

    /// Whether sandboxes with [`NetworkPolicy::Egress`] can run here.
    fn egress_available(&self) -> bool;

    /// The sandbox's address on the node's sandbox network, while it holds one (egress).
    fn network_address(&self, id: SandboxId) -> Option<Ipv4Addr>;

    /// Sandboxes that still have host network objects (veths on the bridge), for orphan
    /// removal; empty when the node has no sandbox network.
    async fn list_network(&self) -> Result<Vec<SandboxId>, DriverError>;
}

/// Enum dispatch over the compiled-in drivers (no `dyn`, so async methods stay plain).
#[derive(Debug, Clone)]
pub enum AnyDriver {
    /// OCI containers via runc.
    #[cfg(feature = "runc")]
    Runc(crate::runc::RuncDriver),
}

macro_rules! dispatch {
    ($self:ident, $d:ident => $body:expr) => {
        match $self {
            #[cfg(feature = "runc")]
            AnyDriver::Runc($d) => $body,
        }
    };
}

impl Driver for AnyDriver {
    fn kind(&self) -> DriverKind {
        dispatch!(self, d => d.kind())
    }
    async fn prepare_rootfs(&self, spec: &SandboxSpec) -> Result<(), DriverError> {
        dispatch!(self, d => d.prepare_rootfs(spec).await)
    }
    async fn start_process(&self, spec: &SandboxSpec) -> Result<(), DriverError> {
        dispatch!(self, d => d.start_process(spec).await)
    }
    fn guest(&self, id: SandboxId) -> GuestClient {
        dispatch!(self, d => d.guest(id))
    }
    async fn stop(&self, id: SandboxId, grace: Duration) -> Result<(), DriverError> {
        dispatch!(self, d => d.stop(id, grace).await)
    }
    async fn destroy(&self, id: SandboxId) -> Result<(), DriverError> {
        dispatch!(self, d => d.destroy(id).await)
    }
    async fn status(&self, id: SandboxId) -> Result<RuntimeStatus, DriverError> {
        dispatch!(self, d => d.status(id).await)
    }
    async fn list(&self) -> Result<Vec<RuntimeSandbox>, DriverError> {
        dispatch!(self, d => d.list().await)
    }
    async fn remove_foreign(&self, name: &str) -> Result<(), DriverError> {
        dispatch!(self, d => d.remove_foreign(name).await)
    }
    fn list_dirs(&self) -> Result<Vec<SandboxId>, DriverError> {
        dispatch!(self, d => d.list_dirs())
    }
    fn console_tail(&self, id: SandboxId, lines: usize) -> Vec<String> {
        dispatch!(self, d => d.console_tail(id, lines))
    }
    fn console_log_path(&self, id: SandboxId) -> PathBuf {
        dispatch!(self, d => d.console_log_path(id))
    }
    fn writable_layer(&self, id: SandboxId) -> Option<PathBuf> {
        dispatch!(self, d => d.writable_layer(id))
    }
    fn egress_available(&self) -> bool {
        dispatch!(self, d => d.egress_available())
    }
    fn network_address(&self, id: SandboxId) -> Option<Ipv4Addr> {
        dispatch!(self, d => d.network_address(id))
    }
    async fn list_network(&self) -> Result<Vec<SandboxId>, DriverError> {
        dispatch!(self, d => d.list_network().await)
    }
}
