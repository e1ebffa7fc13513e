//! hangar's domain model.
//!
//! Owns: typed ids ([`ids`]), the sandbox lifecycle state machine with checked transitions
//! ([`sandbox`]), boot stages, resource limits and retention policies, health samples and the
//! node health rule ([`metrics`]), the operational events admins see ([`event`]), and the
//! domain errors.
//!
//! **Architecture Invariant:** this crate does no I/O and never reads the clock or an RNG:
//! timestamps and fresh ids are passed in by the edge crates (`hangar-server`, `hangar-agent`).
//! That keeps every rule here testable with plain values.

pub mod connect;
pub mod event;
pub mod ids;
pub mod metrics;
pub mod sandbox;
pub mod time;

pub use connect::{
    ConnectFlow, ConnectPrompt, ConnectSession, ConnectState, CredentialStatus,
    InvalidConnectTransition, InvalidProviderId, ProviderId,
};
pub use event::{Event, EventKind, Severity, UnknownEventValue, ALL_EVENT_KINDS, ALL_SEVERITIES};
pub use ids::{
    BrowserSessionId, ConnectSessionId, EventId, GrantId, NodeId, SandboxId, TokenId, UserId,
};
pub use metrics::{Heartbeat, NodeSample, NodeState, Resolution, Retention, SandboxSample, Since};
pub use sandbox::{
    BootEvent, BootStage, DriverKind, Failure, FailureKind, InvalidTransition, Limits, LimitsError,
    NetworkPolicy, RetentionPolicy, Sandbox, SandboxState,
};
pub use time::Timestamp;
