//! hangar-guest: the guest agent that runs inside every sandbox, its wire protocol, and the
//! host-side client.
//!
//! The crate owns three things:
//! - [`protocol`]: the framed, transport-agnostic message format (requests, inputs, events)
//!   spoken over any byte stream (a unix socket for runc sandboxes today, a virtio-serial port
//!   for VMs later).
//! - [`agent`] (and the `hangar-guest` binary that wires it): the small static process the
//!   node's driver places in a sandbox. It runs commands and PTYs, moves files, forwards a
//!   connection to a port on the guest's loopback, watches files (credential capture),
//!   reports readiness, and acts as init when it is PID 1 ([`agent::init`]).
//! - [`client`]: [`GuestClient`], what the node agent uses to talk to it, with a deadline on
//!   every wait.
//!
//! **Architecture Invariant:** this crate knows nothing of sandboxes, drivers, the store or the
//! API. It does not decide *where* the socket lives (the driver passes the path), does not
//! switch users, does not multiplex operations on one connection, and never links anything
//! that needs glibc's NSS (the agent reads `/etc/passwd` itself) so the binary stays static.

pub mod agent;
pub mod client;
mod error;
pub mod protocol;

pub use client::{
    AgentInfo, ExecOutput, ExecStream, GuestClient, PtyReader, PtyWriter, WatchStream,
};
pub use error::GuestError;
pub use protocol::{
    read_frame, write_frame, ErrorCode, Event, ExecRequest, ExitStatus, Input, PtyRequest,
    PutFileRequest, Request, WatchRequest, WatchedFile,
};

/// The crate version, reported by the agent in [`Event::Ready`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
