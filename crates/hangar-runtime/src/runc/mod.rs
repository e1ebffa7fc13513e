//! The runc driver: each sandbox is an OCI container run by `runc` (cgroupfs driver, its own
//! `--root` so `runc list` shows only hangar's containers).
//!
//! On disk, per sandbox, under the driver's state directory:
//! ```text
//! <state>/<sandbox-id>/
//!     config.json      OCI runtime spec (the directory is the bundle)
//!     rootfs/          overlay mount point (image below, upper/ above)
//!     upper/ work/     the sandbox's writable layer; kept across stop/start
//!     run/agent.sock   the guest agent's socket (run/ is bind-mounted at /run/hangar)
//!     console.log      the first process's stdout and stderr
//!     net/             egress only: lease, netns (bind-mounted nsfs), resolv.conf, hosts
//! ```
//! `runc run --detach` leaves no shim process behind: an idle sandbox costs only its own
//! processes and the kernel's bookkeeping.

mod bundle;
mod overlay;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_core::{DriverKind, NetworkPolicy, SandboxId};
use hangar_guest::client::GuestClient;
use serde::Deserialize;
use tokio::process::Command;

pub use bundle::{
    build_spec, host_nofile_limit, BundlePaths, NetworkPaths, GUEST_AGENT_PATH, GUEST_SOCKET_DIR,
    GUEST_SOCKET_PATH,
};
pub use overlay::is_mounted;

use crate::driver::{Driver, DriverError, RuntimeSandbox, RuntimeStatus, SandboxSpec};
use crate::net::{NetworkConfig, NodeNetwork};
use crate::process::{file_tail, run_with_deadline};

/// How the runc driver is set up on a node.
#[derive(Debug, Clone)]
pub struct RuncConfig {
    /// Per-sandbox directories live here (`DATA_DIR/sandboxes`).
    pub state_dir: PathBuf,
    /// runc's own state (`runc --root`), private to hangar (`DATA_DIR/runc`).
    pub runc_root: PathBuf,
    /// The runc binary (`runc` on PATH by default).
    pub runc_binary: PathBuf,
    /// The static guest agent binary on the host, bind-mounted into every sandbox.
    pub guest_agent: PathBuf,
    /// Deadline for each runc invocation (and each network step).
    pub command_timeout: Duration,
    /// The node's sandbox network; `None`: only `none` (loopback-only) sandboxes run here.
    pub network: Option<NetworkConfig>,
}

impl RuncConfig {
    /// The conventional layout under a data directory, with `runc` from PATH and a 30 s
    /// per-command deadline.
    pub fn under(data_dir: &Path, guest_agent: PathBuf) -> Self {
        Self {
            state_dir: data_dir.join("sandboxes"),
            runc_root: data_dir.join("runc"),
            runc_binary: PathBuf::from("runc"),
            guest_agent,
            command_timeout: Duration::from_secs(30),
            network: None,
        }
    }
}

/// Runs sandboxes as runc containers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RuncDriver {
    config: RuncConfig,
    net: Option<Arc<NodeNetwork>>,
}

/// `runc state` / `runc list --format json` entries (only the fields hangar reads).
#[derive(Debug, Deserialize)]
struct RuncState {
    id: String,
    pid: Option<u32>,
    status: String,
}

impl RuncDriver {
    /// Checks that the host can run the driver (root, runc present, guest agent present) and
    /// creates its directories. [`DriverError::Unavailable`] says what is missing.
    pub fn new(config: RuncConfig) -> Result<Self, DriverError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(DriverError::Unavailable {
                kind: "runc",
                reason: "the runc driver needs root".into(),
            });
        }
        if !config.guest_agent.is_file() {
            return Err(DriverError::Unavailable {
                kind: "runc",
                reason: format!("guest agent not found at {}", config.guest_agent.display()),
            });
        }
        for dir in [&config.state_dir, &config.runc_root] {
            fs::create_dir_all(dir).map_err(|source| DriverError::Io {
                op: "create",
                path: dir.clone(),
                source,
            })?;
        }
        let net = match &config.network {
            Some(net) => Some(Arc::new(NodeNetwork::new(
                net.clone(),
                &config.state_dir,
                config.command_timeout,
            )?)),
            None => None,
        };
        Ok(Self { config, net })
    }

    /// Sets up the node's sandbox network (bridge, forwarding, firewall) if one is
    /// configured; idempotent. Call at start so a broken setup fails fast; the first egress
    /// sandbox would do it otherwise.
    pub async fn setup_network(&self) -> Result<(), DriverError> {
        if let Some(net) = &self.net {
            net.setup_node().await?;
        }
        Ok(())
    }

    /// The node's sandbox network, if configured.
    pub fn network(&self) -> Option<&NodeNetwork> {
        self.net.as_deref()
    }

    /// Removes the sandbox's network (veth, namespace, lease); nothing to do without one.
    async fn detach_network(&self, id: SandboxId) -> Result<(), DriverError> {
        let dir = self.sandbox_dir(id);
        match &self.net {
            Some(net) => Ok(net.detach(id, &dir).await?),
            None => Ok(()),
        }
    }

    /// The driver's configuration.
    pub fn config(&self) -> &RuncConfig {
        &self.config
    }

    /// The sandbox's directory (also its OCI bundle).
    pub fn sandbox_dir(&self, id: SandboxId) -> PathBuf {
        self.config.state_dir.join(id.to_string())
    }

    fn runc(&self) -> Command {
        let mut cmd = Command::new(&self.config.runc_binary);
        cmd.arg("--root").arg(&self.config.runc_root);
        cmd
    }

    async fn runc_state(&self, name: &str) -> Result<Option<RuncState>, DriverError> {
        let mut cmd = self.runc();
        cmd.args(["state", name]);
        match run_with_deadline(cmd, self.config.command_timeout).await {
            Ok(out) => {
                serde_json::from_slice(&out.stdout)
                    .map(Some)
                    .map_err(|e| DriverError::Parse {
                        command: "runc state".into(),
                        reason: e.to_string(),
                    })
            }
            Err(DriverError::Command { stderr, .. }) if stderr.contains("does not exist") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn status_of(state: &RuncState) -> RuntimeStatus {
        match (state.status.as_str(), state.pid) {
            ("running", Some(pid)) if pid > 0 => RuntimeStatus::Running { pid },
            _ => RuntimeStatus::NotRunning,
        }
    }

    async fn kill(&self, name: &str, signal: &str) {
        let mut cmd = self.runc();
        cmd.args(["kill", name, signal]);
        // The container may already be gone; the following state check decides.
        let _ = run_with_deadline(cmd, self.config.command_timeout).await;
    }

    async fn delete(&self, name: &str) -> Result<(), DriverError> {
        let mut cmd = self.runc();
        cmd.args(["delete", "--force", name]);
        match run_with_deadline(cmd, self.config.command_timeout).await {
            Ok(_) => Ok(()),
            Err(DriverError::Command { stderr, .. }) if stderr.contains("does not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops and deletes the runc container `name` (an id hangar did or did not make).
    async fn remove_container(&self, name: &str, grace: Duration) -> Result<(), DriverError> {
        if let Some(state) = self.runc_state(name).await? {
            if matches!(Self::status_of(&state), RuntimeStatus::Running { .. }) && !grace.is_zero()
            {
                self.kill(name, "TERM").await;
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    match self.runc_state(name).await? {
                        Some(s) if matches!(Self::status_of(&s), RuntimeStatus::Running { .. }) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        _ => break,
                    }
                }
            }
            self.delete(name).await?;
        }
        Ok(())
    }

    fn create_dir(path: &Path) -> Result<(), DriverError> {
        fs::create_dir_all(path).map_err(|source| DriverError::Io {
            op: "create",
            path: path.to_owned(),
            source,
        })
    }
}

impl Driver for RuncDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Runc
    }

    async fn prepare_rootfs(&self, spec: &SandboxSpec) -> Result<(), DriverError> {
        let dir = self.sandbox_dir(spec.id);
        let (upper, work, merged, run) = (
            dir.join("upper"),
            dir.join("work"),
            dir.join("rootfs"),
            dir.join("run"),
        );
        for d in [&upper, &work, &merged, &run] {
            Self::create_dir(d)?;
        }
        // The agent runs as the image's user and must create its socket here.
        let user = &spec.image.config.user;
        nix::unistd::chown(
            &run,
            Some(nix::unistd::Uid::from_raw(user.uid)),
            Some(nix::unistd::Gid::from_raw(user.gid)),
        )
        .map_err(|errno| DriverError::Io {
            op: "chown",
            path: run.clone(),
            source: errno.into(),
        })?;
        // A stale socket from a previous boot would answer nothing; remove it.
        let _ = fs::remove_file(run.join("agent.sock"));
        overlay::mount_overlay(&spec.image.rootfs, &upper, &work, &merged)
    }

    async fn start_process(&self, spec: &SandboxSpec) -> Result<(), DriverError> {
        let dir = self.sandbox_dir(spec.id);
        let name = spec.id.to_string();
        // A leftover container from an interrupted boot would block `runc run`. runc keeps a
        // directory per container under its root: checking it spares a `runc state` call on
        // every boot.
        if self.config.runc_root.join(&name).exists() {
            self.remove_container(&name, Duration::ZERO).await?;
        }
        let rootfs = dir.join("rootfs");
        let socket_dir = dir.join("run");
        let attachment = match spec.network {
            NetworkPolicy::None => None,
            NetworkPolicy::Egress => {
                let net = self.net.as_ref().ok_or(DriverError::NoEgress)?;
                Some(net.attach(spec.id, &dir).await?)
            }
        };
        let oci = build_spec(
            spec,
            BundlePaths {
                rootfs: &rootfs,
                guest_agent: &self.config.guest_agent,
                socket_dir: &socket_dir,
                nofile_limit: host_nofile_limit(),
                network: attachment.as_ref().map(|a| NetworkPaths {
                    netns: &a.netns,
                    resolv_conf: &a.resolv_conf,
                    hosts: &a.hosts,
                }),
            },
        )?;
        let config_path = dir.join("config.json");
        oci.save(&config_path).map_err(|e| DriverError::Io {
            op: "write",
            path: config_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let log_path = self.console_log_path(spec.id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| DriverError::Io {
                op: "open",
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| DriverError::Io {
            op: "open",
            path: log_path.clone(),
            source,
        })?;
        let mut cmd = self.runc();
        cmd.args(["run", "--detach", "--bundle"])
            .arg(&dir)
            .arg(&name)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own process group: a Ctrl-C to hangar must not reach the sandbox.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| DriverError::Command {
            command: "runc run".into(),
            code: None,
            stderr: e.to_string(),
        })?;
        let timeout = self.config.command_timeout;
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(DriverError::Command {
                    command: "runc run".into(),
                    code: None,
                    stderr: e.to_string(),
                })
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(DriverError::Timeout {
                    command: "runc run".into(),
                    after: timeout,
                });
            }
        };
        if !status.success() {
            return Err(DriverError::Command {
                command: "runc run".into(),
                code: status.code(),
                stderr: self.console_tail(spec.id, 5).join("\n"),
            });
        }
        Ok(())
    }

    fn guest(&self, id: SandboxId) -> GuestClient {
        GuestClient::unix(self.sandbox_dir(id).join("run").join("agent.sock"))
    }

    async fn stop(&self, id: SandboxId, grace: Duration) -> Result<(), DriverError> {
        self.remove_container(&id.to_string(), grace).await?;
        self.detach_network(id).await?;
        overlay::unmount(&self.sandbox_dir(id).join("rootfs"))
    }

    async fn destroy(&self, id: SandboxId) -> Result<(), DriverError> {
        self.remove_container(&id.to_string(), Duration::ZERO)
            .await?;
        self.detach_network(id).await?;
        let dir = self.sandbox_dir(id);
        let merged = dir.join("rootfs");
        overlay::unmount(&merged)?;
        // Never walk into a still-mounted root: that would reach into the image.
        if overlay::is_mounted(&merged) {
            return Err(DriverError::Io {
                op: "unmount",
                path: merged,
                source: std::io::Error::other("still mounted"),
            });
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DriverError::Io {
                op: "remove",
                path: dir,
                source,
            }),
        }
    }

    async fn status(&self, id: SandboxId) -> Result<RuntimeStatus, DriverError> {
        Ok(match self.runc_state(&id.to_string()).await? {
            Some(state) => Self::status_of(&state),
            None => RuntimeStatus::Missing,
        })
    }

    async fn list(&self) -> Result<Vec<RuntimeSandbox>, DriverError> {
        let mut cmd = self.runc();
        cmd.args(["list", "--format", "json"]);
        let out = run_with_deadline(cmd, self.config.command_timeout).await?;
        let states: Option<Vec<RuncState>> =
            serde_json::from_slice(&out.stdout).map_err(|e| DriverError::Parse {
                command: "runc list".into(),
                reason: e.to_string(),
            })?;
        Ok(states
            .unwrap_or_default()
            .iter()
            .map(|s| RuntimeSandbox {
                name: s.id.clone(),
                status: Self::status_of(s),
            })
            .collect())
    }

    async fn remove_foreign(&self, name: &str) -> Result<(), DriverError> {
        self.remove_container(name, Duration::ZERO).await
    }

    fn list_dirs(&self) -> Result<Vec<SandboxId>, DriverError> {
        let entries = fs::read_dir(&self.config.state_dir).map_err(|source| DriverError::Io {
            op: "read",
            path: self.config.state_dir.clone(),
            source,
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect())
    }

    fn console_tail(&self, id: SandboxId, lines: usize) -> Vec<String> {
        file_tail(&self.console_log_path(id), lines)
    }

    fn console_log_path(&self, id: SandboxId) -> PathBuf {
        self.sandbox_dir(id).join("console.log")
    }

    fn writable_layer(&self, id: SandboxId) -> Option<PathBuf> {
        Some(self.sandbox_dir(id).join("upper"))
    }

    fn egress_available(&self) -> bool {
        self.net.is_some()
    }

    fn network_address(&self, id: SandboxId) -> Option<Ipv4Addr> {
        self.net.as_ref().and_then(|n| n.address(id))
    }

    async fn list_network(&self) -> Result<Vec<SandboxId>, DriverError> {
        match &self.net {
            Some(net) => Ok(net.leftovers().await?),
            None => Ok(Vec::new()),
        }
    }
}
