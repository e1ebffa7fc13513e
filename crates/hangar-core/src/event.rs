//! Operational events: what happened that an admin should see later (a sandbox that failed and
//! at which boot stage, one the runtime lost, what the reconciler removed, how a connect
//! session ended, a node going silent or coming back). Kept in the store, bounded by count and
//! age, listed newest first by `GET /api/v1/events` and pushed live to admins.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{BootStage, ConnectSessionId, EventId, NodeId, SandboxId, Timestamp, UserId};

/// What kind of thing happened. The stored and wire name is the snake_case one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A sandbox became `failed` during a boot (deadline, driver error, interrupted by a
    /// restart); `stage` is the boot stage it reached.
    SandboxFailed,
    /// A running sandbox was found gone from the runtime (or its process exited) outside a
    /// planned stop, and was marked `failed`.
    SandboxVanished,
    /// The reconciler acted on its own: removed an orphan (a container, directory or network
    /// leftover no live record claims).
    ReconcilerAction,
    /// A connect session ended (`completed`, `failed`, `cancelled` or `expired`).
    ConnectSession,
    /// A node sent no heartbeat within the configured silence.
    NodeUnreachable,
    /// A node that was unreachable sent a heartbeat again.
    NodeRecovered,
}

/// Every kind, in declaration order.
pub const ALL_EVENT_KINDS: [EventKind; 6] = [
    EventKind::SandboxFailed,
    EventKind::SandboxVanished,
    EventKind::ReconcilerAction,
    EventKind::ConnectSession,
    EventKind::NodeUnreachable,
    EventKind::NodeRecovered,
];

impl EventKind {
    /// The stored and wire name (`sandbox_failed`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SandboxFailed => "sandbox_failed",
            Self::SandboxVanished => "sandbox_vanished",
            Self::ReconcilerAction => "reconciler_action",
            Self::ConnectSession => "connect_session",
            Self::NodeUnreachable => "node_unreachable",
            Self::NodeRecovered => "node_recovered",
        }
    }
}

/// How much an event matters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Expected outcomes (a connect session completed, a node recovered).
    Info,
    /// Something was off and was handled (an orphan removed, a session expired).
    Warning,
    /// Something failed (a sandbox failed or vanished, a node is unreachable).
    Error,
}

/// Every severity, lowest first.
pub const ALL_SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Error];

impl Severity {
    /// The stored and wire name (`info`, `warning`, `error`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// A stored name that is not one of the known kinds or severities.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownEventValue {
    /// `event kind` or `severity`.
    pub what: &'static str,
    /// The text found.
    pub value: String,
}

impl FromStr for EventKind {
    type Err = UnknownEventValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_EVENT_KINDS
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventValue {
                what: "event kind",
                value: s.to_owned(),
            })
    }
}

impl FromStr for Severity {
    type Err = UnknownEventValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_SEVERITIES
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventValue {
                what: "severity",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded event. The optional ids say what it is about; `message` is human text
/// (never a secret: it is built from states, stages, kinds and names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its id (UUID v7).
    pub id: EventId,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
    /// How much it matters.
    pub severity: Severity,
    /// What happened, for people (one line).
    pub message: String,
    /// The sandbox it is about, if any.
    pub sandbox_id: Option<SandboxId>,
    /// The node it is about (or the sandbox's node), if any.
    pub node_id: Option<NodeId>,
    /// The user it concerns (the sandbox's or session's owner), if any.
    pub user_id: Option<UserId>,
    /// The connect session it is about, if any.
    pub connect_session_id: Option<ConnectSessionId>,
    /// For sandbox failures: the boot stage the sandbox had reached.
    pub stage: Option<BootStage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in ALL_EVENT_KINDS {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serialize"),
                serde_json::json!(kind.as_str())
            );
        }
        for severity in ALL_SEVERITIES {
            assert_eq!(severity.as_str().parse::<Severity>(), Ok(severity));
            assert_eq!(
                serde_json::to_value(severity).expect("serialize"),
                serde_json::json!(severity.as_str())
            );
        }
        assert!("sandbox_exploded".parse::<EventKind>().is_err());
        assert!("fatal".parse::<Severity>().is_err());
    }
}
