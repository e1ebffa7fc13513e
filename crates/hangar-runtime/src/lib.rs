//! Runs sandboxes on one machine.
//!
//! Owns: the [`driver::Driver`] trait and its implementations (runc now; qemu and firecracker
//! later, each behind a cargo feature), and the [`image`] store where golden root filesystems
//! are built and kept, content-addressed and immutable.
//!
//! **Architecture Invariant:** this crate knows nothing of users, tokens or the store; it is
//! told what to run and reports what it sees. It never decides a sandbox's lifecycle state.

pub mod driver;
pub mod image;
#[cfg(feature = "runc")]
pub mod net;
pub mod process;
#[cfg(feature = "runc")]
pub mod runc;

pub use driver::{AnyDriver, Driver, DriverError, RuntimeSandbox, RuntimeStatus, SandboxSpec};
