//! Errors of the sandbox service, mapped to HTTP by the API layer.

use hangar_core::{LimitsError, SandboxState};

/// What can go wrong with a sandbox operation.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No such sandbox for this user (another user's sandbox is also "not found").
    #[error("sandbox not found")]
    NotFound,
    /// The image is not on the node.
    #[error("unknown image {name:?}")]
    UnknownImage {
        /// The name or digest asked for.
        name: String,
    },
    /// Limits outside the accepted bounds.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A request field is out of range or malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation is not allowed in the sandbox's current state.
    #[error("sandbox is {state}; cannot {action}")]
    WrongState {
        /// Its state.
        state: SandboxState,
        /// What was asked (`exec`, `stop`, `start`, `open a terminal in`, ...).
        action: &'static str,
    },
    /// The command to run does not exist in the sandbox.
    #[error("command not found in sandbox: {command}")]
    CommandNotFound {
        /// argv\[0\].
        command: String,
    },
    /// Nothing listens on that port inside the sandbox.
    #[error("nothing listens on port {port} in the sandbox")]
    PortClosed {
        /// The port.
        port: u16,
    },
    /// The sandbox's guest agent did not answer; it may have just died.
    #[error("sandbox is not reachable")]
    Unreachable(#[source] hangar_guest::GuestError),
    /// The guest agent refused or failed the request.
    #[error("sandbox agent: {0}")]
    Guest(#[source] hangar_guest::GuestError),
    /// The store failed.
    #[error("store")]
    Store(#[from] hangar_store::StoreError),
    /// The node failed.
    #[error("node")]
    Node(#[from] hangar_agent::NodeError),
}
