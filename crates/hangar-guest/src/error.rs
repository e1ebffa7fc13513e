//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::ErrorCode;

/// Everything that can go wrong talking to, or running, the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// Connecting to the agent's socket failed (missing socket, refused, path too long).
    #[error("connect to guest agent at {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The agent could not bind its listening socket.
    #[error("bind guest agent socket at {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A deadline passed before the operation finished.
    #[error("timed out after {after:?}")]
    Timeout {
        /// The deadline that was exceeded.
        after: Duration,
    },
    /// The agent answered with [`crate::Event::Error`].
    #[error("guest agent: {code:?}: {message}")]
    Remote {
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable detail from the agent.
        message: String,
    },
    /// The peer broke the protocol (unexpected message, truncated frame, early close).
    #[error("protocol error: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// A frame's declared length is above [`crate::protocol::MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared (or encoded) payload length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A payload was not valid JSON for the expected message type.
    #[error("malformed message")]
    Json(#[source] serde_json::Error),
    /// I/O on the transport or the local system.
    #[error("i/o")]
    Io(#[from] io::Error),
}
