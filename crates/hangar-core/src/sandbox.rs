//! The sandbox lifecycle: states, checked transitions, boot stages, limits and retention.
//!
//! ```text
//!            +-----------+   agent ready   +---------+   stop    +----------+
//!  create -> | creating  | --------------> | running | --------> | stopping |
//!            +-----------+                 +---------+           +----------+
//!                 |                          ^    |                   |
//!        deadline | error          agent ready|    | vanished          v
//!                 v                          |    v              +---------+
//!            +--------+  <---- deadline --- +----------+  <----  | stopped |
//!            | failed |                     | starting |  start  +---------+
//!            +--------+                     +----------+
//!   every state but destroyed/destroying --rm--> destroying --> destroyed
//! ```
//!
//! Every change goes through [`SandboxState::transition`], which the store applies as a
//! compare-and-set, so two racing actors can never both win.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{NodeId, SandboxId, UserId};
use crate::time::Timestamp;

/// Where a sandbox is in its life. Stored as the lower-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Recorded; the node is preparing the root filesystem and starting the process.
    Creating,
    /// A stopped sandbox is booting again on its kept filesystem.
    Starting,
    /// The guest agent answered; exec, PTY and file operations are allowed.
    Running,
    /// A planned stop is in progress.
    Stopping,
    /// No processes; the writable layer is kept so `start` resumes with the same files.
    Stopped,
    /// A planned removal is in progress.
    Destroying,
    /// Removed. Final.
    Destroyed,
    /// Boot missed its deadline, boot failed, or the sandbox vanished from the runtime.
    /// Never resumed or reused; it can only be destroyed.
    Failed,
}

/// All states, in declaration order (for exhaustive tables in tests and docs).
pub const ALL_STATES: [SandboxState; 8] = [
    SandboxState::Creating,
    SandboxState::Starting,
    SandboxState::Running,
    SandboxState::Stopping,
    SandboxState::Stopped,
    SandboxState::Destroying,
    SandboxState::Destroyed,
    SandboxState::Failed,
];

/// A transition that the lifecycle does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("sandbox cannot go from {from} to {to}")]
pub struct InvalidTransition {
    /// The state the sandbox was in.
    pub from: SandboxState,
    /// The state that was asked for.
    pub to: SandboxState,
}

impl SandboxState {
    /// The stored and displayed name (`creating`, `running`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Destroying => "destroying",
            Self::Destroyed => "destroyed",
            Self::Failed => "failed",
        }
    }

    /// Checks `self -> to` against the lifecycle; the one place that knows which changes are
    /// legal. Returns `to` so callers can write `state = state.transition(to)?`.
    pub fn transition(self, to: SandboxState) -> Result<SandboxState, InvalidTransition> {
        use SandboxState::*;
        let ok = match (self, to) {
            (Creating, Running | Failed) => true,
            (Starting, Running | Failed) => true,
            (Running, Stopping | Failed) => true,
            (Stopping, Stopped) => true,
            (Stopped, Starting) => true,
            (Destroying, Destroyed) => true,
            (Destroying | Destroyed, Destroying) => false,
            (_, Destroying) => true,
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }

    /// Booting: the node is bringing the sandbox up and a readiness deadline is running.
    pub const fn is_booting(self) -> bool {
        matches!(self, Self::Creating | Self::Starting)
    }

    /// Exec, PTY and file operations are allowed only here.
    pub const fn can_exec(self) -> bool {
        matches!(self, Self::Running)
    }

    /// A planned stop may begin.
    pub fn can_stop(self) -> bool {
        self.transition(Self::Stopping).is_ok()
    }

    /// A stopped sandbox may boot again. `failed` and `destroyed` never can.
    pub fn can_start(self) -> bool {
        self.transition(Self::Starting).is_ok()
    }

    /// A planned removal may begin.
    pub fn can_destroy(self) -> bool {
        self.transition(Self::Destroying).is_ok()
    }

    /// No further change except removal of a failed record's resources.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Destroyed | Self::Failed)
    }

    /// The runtime should have a live container in this state.
    pub const fn expects_live_process(self) -> bool {
        matches!(self, Self::Running | Self::Stopping)
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name did not match any state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sandbox state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for SandboxState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_STATES
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// The steps of one boot, in order. Each is recorded with its time as it is reached, so a
/// failure can say how far the boot got.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BootStage {
    /// The record exists and the node accepted the work.
    Created,
    /// The root filesystem (overlay for runc, disk overlay for VMs) is mounted or prepared.
    RootfsReady,
    /// The sandbox's first process (container init or VM) has started.
    ProcessStarted,
    /// The guest agent answered a ping over its channel.
    AgentReady,
}

impl BootStage {
    /// The stored and displayed name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::RootfsReady => "rootfs_ready",
            Self::ProcessStarted => "process_started",
            Self::AgentReady => "agent_ready",
        }
    }
}

impl fmt::Display for BootStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One boot stage reached, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BootEvent {
    /// The stage reached.
    pub stage: BootStage,
    /// When it was reached.
    pub at: Timestamp,
}

/// Why a sandbox is `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest agent did not answer before the readiness deadline.
    BootTimeout,
    /// The driver reported an error while booting.
    BootError,
    /// The runtime no longer has the sandbox, or its process died, outside a planned stop.
    Vanished,
    /// The control plane restarted while the sandbox was booting and it was not alive after.
    Interrupted,
}

/// What went wrong, with enough to act on: the stage reached and the console's last lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// The last boot stage reached before the failure, if any.
    pub stage_reached: Option<BootStage>,
    /// A one-line human description.
    pub message: String,
    /// The last lines of the sandbox's console log (oldest first), at most a few dozen.
    pub console_tail: Vec<String>,
}

/// Which machine technology runs the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// An OCI container run by runc.
    Runc,
    /// A QEMU virtual machine.
    Qemu,
    /// A Firecracker microVM.
    Firecracker,
}

impl DriverKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Qemu => "qemu",
            Self::Firecracker => "firecracker",
        }
    }
}

impl FromStr for DriverKind {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "runc" => Ok(Self::Runc),
            "qemu" => Ok(Self::Qemu),
            "firecracker" => Ok(Self::Firecracker),
            other => Err(UnknownState(other.to_owned())),
        }
    }
}

/// Resource limits for one sandbox, enforced by the node (cgroups for runc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU quota in thousandths of a core (1000 = one full core).
    pub cpu_millis: u32,
    /// Memory limit in MiB (RAM, no swap).
    pub memory_mib: u32,
    /// Maximum number of processes and threads.
    pub pids_max: u32,
}

/// Limits outside what any node could honour.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be between {min} and {max}, got {value}")]
pub struct LimitsError {
    /// The offending field (`cpu_millis`, `memory_mib`, `pids_max`).
    pub field: &'static str,
    /// The value asked for.
    pub value: u64,
    /// Smallest value accepted.
    pub min: u64,
    /// Largest value accepted.
    pub max: u64,
}

impl Limits {
    /// Bounds accepted by [`Limits::validate`]: (field, min, max).
    pub const BOUNDS: [(&'static str, u64, u64); 3] = [
        ("cpu_millis", 50, 256_000),
        ("memory_mib", 32, 1_048_576),
        ("pids_max", 16, 1_000_000),
    ];

    /// Checks every field against [`Limits::BOUNDS`]. A node may further refuse limits beyond
    /// its own capacity.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let values = [
            u64::from(self.cpu_millis),
            u64::from(self.memory_mib),
            u64::from(self.pids_max),
        ];
        for ((field, min, max), value) in Self::BOUNDS.into_iter().zip(values) {
            if value < min || value > max {
                return Err(LimitsError {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    /// Two cores, 2 GiB, 1024 processes: enough for the AI CLIs and a build.
    fn default() -> Self {
        Self {
            cpu_millis: 2000,
            memory_mib: 2048,
            pids_max: 1024,
        }
    }
}

/// What happens to a sandbox's resources (writable layer, console log, container) when it
/// fails. A per-sandbox policy, never a global switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "on_failure", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetentionPolicy {
    /// Release everything as soon as the sandbox fails (the default). The record stays.
    #[default]
    Delete,
    /// Keep the failed sandbox's files for inspection for `ttl_s` seconds, then release them.
    Keep {
        /// How long to keep, in seconds (at most 7 days).
        ttl_s: u32,
    },
}

impl RetentionPolicy {
    /// Longest retention accepted, in seconds (7 days).
    pub const MAX_TTL_S: u32 = 7 * 24 * 3600;

    /// When a sandbox failing at `failed_at` must have its resources released.
    pub fn release_at(self, failed_at: Timestamp) -> Timestamp {
        match self {
            Self::Delete => failed_at,
            Self::Keep { ttl_s } => failed_at.plus_ms(i64::from(ttl_s) * 1000),
        }
    }
}

/// How a sandbox reaches the network. Stored and sent as `none` / `egress`.
///
/// Either way the sandbox has its own network namespace; nothing outside it can open a
/// connection into the sandbox (the node reaches the guest agent over a unix socket).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// Loopback only: the namespace holds `lo` and nothing else.
    #[default]
    None,
    /// Outbound connections to the internet, source-NATed to the node's address. The node's
    /// own services, other sandboxes and denied ranges (cloud metadata) stay unreachable.
    Egress,
}

impl NetworkPolicy {
    /// The stored and displayed name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Egress => "egress",
        }
    }
}

impl fmt::Display for NetworkPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkPolicy {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "egress" => Ok(Self::Egress),
            other => Err(UnknownState(other.to_owned())),
        }
    }
}

/// One sandbox as the control plane records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// Its id.
    pub id: SandboxId,
    /// The user who owns it; nobody else can see it.
    pub owner: UserId,
    /// The node that runs it.
    pub node: NodeId,
    /// The image name asked for (`default`).
    pub image: String,
    /// The content digest of the image actually used (`sha256:...`).
    pub image_digest: String,
    /// The driver that runs it.
    pub driver: DriverKind,
    /// Its limits.
    pub limits: Limits,
    /// How it reaches the network.
    pub network: NetworkPolicy,
    /// Its state.
    pub state: SandboxState,
    /// Stages of the latest boot, in the order reached.
    pub boot: Vec<BootEvent>,
    /// Why it failed, when `state` is `failed`.
    pub failure: Option<Failure>,
    /// What to do with its resources if it fails.
    pub retention: RetentionPolicy,
    /// How long a boot may take before the sandbox is `failed`, in milliseconds.
    pub readiness_timeout_ms: u64,
    /// When its node-side resources were released (failed or destroyed sandboxes).
    pub released_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
}

impl Sandbox {
    /// The last boot stage reached, if any.
    pub fn stage_reached(&self) -> Option<BootStage> {
        self.boot.iter().map(|e| e.stage).max()
    }

    /// When the node-side resources of a failed sandbox must be released, or `None` if it is
    /// not failed or they already were.
    pub fn release_due(&self) -> Option<Timestamp> {
        if self.state != SandboxState::Failed || self.released_at.is_some() {
            return None;
        }
        Some(self.retention.release_at(self.updated_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxState::*;

    /// The full table of legal transitions; every other pair must be refused.
    const LEGAL: &[(SandboxState, SandboxState)] = &[
        (Creating, Running),
        (Creating, Failed),
        (Creating, Destroying),
        (Starting, Running),
        (Starting, Failed),
        (Starting, Destroying),
        (Running, Stopping),
        (Running, Failed),
        (Running, Destroying),
        (Stopping, Stopped),
        (Stopping, Destroying),
        (Stopped, Starting),
        (Stopped, Destroying),
        (Failed, Destroying),
        (Destroying, Destroyed),
    ];

    #[test]
    fn transition_table_is_exact() {
        for from in ALL_STATES {
            for to in ALL_STATES {
                let expected = LEGAL.contains(&(from, to));
                let got = from.transition(to);
                assert_eq!(got.is_ok(), expected, "{from} -> {to}");
                if !expected {
                    assert_eq!(got, Err(InvalidTransition { from, to }));
                }
            }
        }
    }

    #[test]
    fn network_policy_names_round_trip() {
        for policy in [NetworkPolicy::None, NetworkPolicy::Egress] {
            assert_eq!(policy.as_str().parse::<NetworkPolicy>(), Ok(policy));
            let json = serde_json::to_string(&policy).expect("json");
            assert_eq!(json, format!("\"{}\"", policy.as_str()));
        }
        assert!("open".parse::<NetworkPolicy>().is_err());
        assert!(serde_json::from_str::<NetworkPolicy>("\"Egress\"").is_err());
        assert_eq!(NetworkPolicy::default(), NetworkPolicy::None);
    }

    #[test]
    fn failed_and_destroyed_never_resume() {
        for st in [Failed, Destroyed] {
            assert!(!st.can_start());
            assert!(st.transition(Running).is_err());
            assert!(st.transition(Starting).is_err());
        }
        assert!(!Destroyed.can_destroy());
        assert!(Failed.can_destroy());
    }

    #[test]
    fn planned_stop_never_ends_failed() {
        assert!(Stopping.transition(Failed).is_err());
        assert!(Destroying.transition(Failed).is_err());
    }

    #[test]
    fn state_names_round_trip() {
        for st in ALL_STATES {
            assert_eq!(st.as_str().parse::<SandboxState>(), Ok(st));
            let json = serde_json::to_string(&st).expect("serialize");
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        assert!("zombie".parse::<SandboxState>().is_err());
    }

    #[test]
    fn limits_are_bounded() {
        assert!(Limits::default().validate().is_ok());
        let absurd = Limits {
            memory_mib: u32::MAX,
            ..Limits::default()
        };
        let err = absurd.validate().expect_err("absurd memory");
        assert_eq!(err.field, "memory_mib");
        let tiny = Limits {
            cpu_millis: 1,
            ..Limits::default()
        };
        assert_eq!(tiny.validate().expect_err("tiny cpu").field, "cpu_millis");
    }

    #[test]
    fn retention_release_time() {
        let t = Timestamp::from_unix_ms(1_000);
        assert_eq!(RetentionPolicy::Delete.release_at(t), t);
        assert_eq!(
            RetentionPolicy::Keep { ttl_s: 60 }.release_at(t),
            Timestamp::from_unix_ms(61_000)
        );
        let json = serde_json::to_string(&RetentionPolicy::Keep { ttl_s: 5 }).expect("json");
        assert_eq!(json, r#"{"on_failure":"keep","ttl_s":5}"#);
    }

    #[test]
    fn boot_stages_are_ordered() {
        assert!(BootStage::Created < BootStage::RootfsReady);
        assert!(BootStage::RootfsReady < BootStage::ProcessStarted);
        assert!(BootStage::ProcessStarted < BootStage::AgentReady);
    }
}
