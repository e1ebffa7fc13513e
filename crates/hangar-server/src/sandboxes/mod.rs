//! The sandbox service: every sandbox operation the API (and tests, and the bench) can ask
//! for, one method per operation. Handlers parse and call exactly one of these.
//!
//! Lifecycle work that takes time (boot, stop, destroy) runs in background tasks; the call
//! returns at once with the record in its new state. Every state change is a compare-and-set in
//! the store, so a racing reconciler, a second request or a crash can never move a sandbox
//! through an illegal transition or out of a terminal state.

mod boot;
mod error;
mod reconcile;
mod service;

pub use boot::{ReadyHook, READY_HOOK_DEADLINE};
pub use error::SandboxError;
pub use reconcile::ReconcileReport;
pub use service::{CreateSandbox, ExecInput, SandboxConfig, SandboxService};
