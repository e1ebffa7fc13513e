//! The guest agent wire protocol.
//!
//! # Transport and framing
//!
//! Any reliable byte stream (`AsyncRead + AsyncWrite`): a unix socket for runc sandboxes, a
//! virtio-serial port for VMs later. Each message is one frame: a `u32` big-endian payload
//! length, then that many bytes of payload. A length above [`MAX_FRAME_BYTES`] (16 MiB) is a
//! protocol error and the connection is dropped.
//!
//! # Payloads
//!
//! UTF-8 JSON objects tagged by a `"type"` field in `snake_case`, for example:
//!
//! ```text
//! {"type":"ping"}
//! {"type":"exec","argv":["sh","-c","echo hi"],"env":[["K","V"]],"cwd":null,"timeout_ms":5000,"stdin":null}
//! {"type":"stdin","data":"aGkK"}            {"type":"resize","rows":40,"cols":100}
//! {"type":"signal","signal":15}              {"type":"close_stdin"}
//! {"type":"ready","version":"0.1.0","pid":1}  {"type":"started","pid":42}
//! {"type":"stdout","data":"aGkK"}            {"type":"exit","code":0,"signal":null,"timed_out":false}
//! {"type":"file","data":"...","mode":420}     {"type":"done"}
//! {"type":"error","code":"not_found","message":"..."}
//! {"type":"forward","port":5900}             {"type":"forwarding"}
//! {"type":"watch","paths":[".codex/auth.json"],"settle_ms":300,"timeout_ms":600000,"max_bytes":1048576}
//! {"type":"watching","paths":["/root/.codex/auth.json"]}
//! {"type":"files","files":[{"path":"/root/.codex/auth.json","mode":384,"data":"e30="}]}
//! ```
//!
//! Byte payloads (`stdin`, `stdout`, `stderr`, file data) are standard base64 (RFC 4648 §4, with
//! padding) in a `"data"` string. Because of the 4/3 expansion, file contents are limited to
//! [`MAX_FILE_BYTES`] (12 MiB less 64 KiB) so that a whole file fits in one frame. Fields added later carry
//! serde defaults; an agent ignores [`Input`] messages it cannot decode.
//!
//! # Conversation
//!
//! One operation per connection. The client connects, sends one [`Request`], may then send
//! [`Input`] messages, and reads [`Event`]s until the agent closes the connection:
//!
//! | Request   | Events                                                                     |
//! |-----------|----------------------------------------------------------------------------|
//! | `Ping`    | `Ready`                                                                    |
//! | `Exec`    | `Started`, any number of `Stdout`/`Stderr`, exactly one `Exit`             |
//! | `Pty`     | `Started`, any number of `Stdout` (the terminal's output), one `Exit`      |
//! | `PutFile` | `Done`                                                                     |
//! | `GetFile` | `File`                                                                     |
//! | `Forward` | `Forwarding`, then the connection is a raw byte pipe (no more frames)      |
//! | `Watch`   | `Watching`, any number of `Files`, then one `Error` (`Timeout` at the end) |
//!
//! Any request may instead be answered by a single `Error` (for example `NotFound` when `argv[0]`
//! does not exist: the command did not run). Closing the connection while a command runs kills
//! its process group (and its session).
//!
//! **Forward** (`{"type":"forward","port":P}`): the agent connects to `127.0.0.1:P` inside the
//! guest (falling back to `[::1]:P` when that is refused), within [`FORWARD_CONNECT_TIMEOUT`].
//! Refused on both: `Error` `NotFound`; deadline passed: `Error` `Timeout`; `P = 0`:
//! `InvalidRequest`. On success it sends `Forwarding`, and from the byte after that frame on,
//! both directions carry the TCP stream's bytes verbatim. Bytes the client sent after its
//! request frame are delivered to the TCP peer first. An end of stream in one direction is
//! passed on as a half-close (`shutdown(SHUT_WR)`) of the other side; the pipe ends when both
//! directions have ended or either fails, and has no deadline of its own (the caller owns its
//! life).
//!
//! **Watch** ([`WatchRequest`]): the agent resolves the paths (relative ones against the agent
//! user's home), answers `Watching` with the resolved absolute paths, watches them with inotify
//! (on the nearest existing ancestor directory while a path is missing, re-armed as directories
//! appear), and each time all of them exist and no relevant change was seen for `settle_ms`,
//! sends `Files` with every file's contents and mode, in request order, unless they are
//! byte-for-byte (and mode-for-mode) what the previous `Files` carried. It ends with `Error`
//! `Timeout` after `timeout_ms`, `Error` `InvalidRequest` when a file is above `max_bytes`
//! (or is not a regular file), or silently when the client closes the connection (which also
//! releases the inotify instance). The client sends nothing after the request.
//!
//! A future multiplexed transport for VMs (one virtio-serial port shared by many operations)
//! will wrap these messages with a stream id; this version does not multiplex.

use std::io;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::GuestError;

/// Largest frame payload accepted or sent, in bytes (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest file moved by `PutFile` / `GetFile`, in bytes: 12 MiB less 64 KiB, so that its
/// base64 (4/3 larger) plus the JSON around it fits in one [`MAX_FRAME_BYTES`] frame.
pub const MAX_FILE_BYTES: usize = 12 * 1024 * 1024 - 64 * 1024;

/// Size of the frame header (the big-endian `u32` length), in bytes.
const HEADER_BYTES: usize = 4;

/// How long the agent tries to connect to the target of a `Forward` before answering
/// `Error` `Timeout` (5 s).
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// [`WatchRequest::settle_ms`] when the field is absent: 300 ms.
pub const DEFAULT_WATCH_SETTLE_MS: u64 = 300;

/// [`WatchRequest::timeout_ms`] when the field is absent: 10 minutes.
pub const DEFAULT_WATCH_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// [`WatchRequest::max_bytes`] when the field is absent: 1 MiB.
pub const DEFAULT_WATCH_MAX_BYTES: u64 = 1024 * 1024;

/// Directory under the agent user's home whose `*.env` files (`NAME=value` lines; blank
/// lines and `#` comments skipped) the agent adds to the environment of every command it
/// starts, in file-name order, below the request's own `env`. hangar delivers credentials
/// that CLIs read from environment variables (`CLAUDE_CODE_OAUTH_TOKEN`, `GEMINI_API_KEY`)
/// there, one file per provider, mode 0600.
pub const CREDENTIAL_ENV_DIR: &str = ".hangar/env";

/// Largest `*.env` file under [`CREDENTIAL_ENV_DIR`] the agent reads (64 KiB); larger ones
/// are skipped.
pub const MAX_ENV_FILE_BYTES: u64 = 64 * 1024;

/// Most paths one `Watch` may list.
pub const MAX_WATCH_PATHS: usize = 64;

/// One operation, the first message on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Readiness probe; answered by [`Event::Ready`].
    Ping,
    /// Run a command with pipes.
    Exec(ExecRequest),
    /// Run a command on a new pseudo-terminal.
    Pty(PtyRequest),
    /// Write a file atomically.
    PutFile(PutFileRequest),
    /// Read a regular file (at most [`MAX_FILE_BYTES`]).
    GetFile {
        /// Absolute path inside the guest.
        path: String,
    },
    /// Connect to `127.0.0.1:port` in the guest and turn the connection into a raw byte pipe
    /// to it after [`Event::Forwarding`] (see the module docs).
    Forward {
        /// TCP port on the guest's loopback (1-65535).
        port: u16,
    },
    /// Watch files until they exist and settle, report their contents, and report again on
    /// every settled change (see the module docs).
    Watch(WatchRequest),
}

/// Files to watch for a `Watch` request (credential capture).
///
/// Wire shape: `{"type":"watch","paths":["/abs/or/relative"],"settle_ms":300,
/// "timeout_ms":600000,"max_bytes":1048576}`; every field but `paths` may be left out (the
/// defaults are those of [`WatchRequest::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Files to watch: absolute, or relative to the agent user's home directory (from
    /// `/etc/passwd`, else `/`). 1 to [`MAX_WATCH_PATHS`] entries, none with a `..` component
    /// or without a file name. Neither the files nor their parent directories need to exist.
    pub paths: Vec<String>,
    /// Quiet time, in milliseconds, after the last change to any of the files (or to the
    /// directories leading to them) before they are read and reported.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// How long the whole watch lasts, in milliseconds from the request; then the agent
    /// answers `Error` `Timeout` and stops. Must be above 0.
    #[serde(default = "default_watch_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest size of each file, in bytes (1 to [`MAX_FILE_BYTES`]); a larger file ends the
    /// watch with `Error` `InvalidRequest`, as do files whose sizes add up to more than
    /// [`MAX_FILE_BYTES`].
    #[serde(default = "default_watch_max_bytes")]
    pub max_bytes: u64,
}

impl Default for WatchRequest {
    /// No paths; [`DEFAULT_WATCH_SETTLE_MS`], [`DEFAULT_WATCH_TIMEOUT_MS`],
    /// [`DEFAULT_WATCH_MAX_BYTES`].
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            settle_ms: DEFAULT_WATCH_SETTLE_MS,
            timeout_ms: DEFAULT_WATCH_TIMEOUT_MS,
            max_bytes: DEFAULT_WATCH_MAX_BYTES,
        }
    }
}

fn default_settle_ms() -> u64 {
    DEFAULT_WATCH_SETTLE_MS
}

fn default_watch_timeout_ms() -> u64 {
    DEFAULT_WATCH_TIMEOUT_MS
}

fn default_watch_max_bytes() -> u64 {
    DEFAULT_WATCH_MAX_BYTES
}

/// One file in an [`Event::Files`] report.
///
/// Wire shape: `{"path":"/root/.codex/auth.json","mode":384,"data":"<base64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedFile {
    /// The resolved absolute path (as listed in [`Event::Watching`]).
    pub path: String,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Contents, at most [`WatchRequest::max_bytes`].
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

/// A command to run with stdin/stdout/stderr on pipes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` unless it contains a `/`.
    pub argv: Vec<String>,
    /// Variables set on top of the agent's default environment (later entries win).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; defaults to the user's home, then `/`.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the process group with SIGKILL after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Bytes written to the command's stdin, which is then closed; `None` means `/dev/null`.
    /// Bounded by the frame limit (about [`MAX_FILE_BYTES`]).
    #[serde(default, with = "b64_opt")]
    pub stdin: Option<Vec<u8>>,
}

/// A command to run on a new pseudo-terminal (its controlling terminal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyRequest {
    /// Program and arguments; empty means a login shell (`$SHELL`, else `/bin/bash`, else
    /// `/bin/sh`).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Variables set on top of the default environment (which adds `TERM=xterm-256color`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; defaults to the user's home, then `/`.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Initial terminal height in character cells.
    #[serde(default = "default_rows")]
    pub rows: u16,
    /// Initial terminal width in character cells.
    #[serde(default = "default_cols")]
    pub cols: u16,
}

impl Default for PtyRequest {
    fn default() -> Self {
        Self {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: None,
            rows: default_rows(),
            cols: default_cols(),
        }
    }
}

fn default_rows() -> u16 {
    24
}

fn default_cols() -> u16 {
    80
}

/// A file to write: parent directories are created, the file is written to a temporary name in
/// the same directory and renamed over `path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutFileRequest {
    /// Absolute path inside the guest.
    pub path: String,
    /// Permission bits (`0o7777` mask), applied regardless of the umask.
    pub mode: u32,
    /// Contents, at most [`MAX_FILE_BYTES`].
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

/// Client-to-agent messages after an `Exec` or `Pty` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// PTY: bytes written to the terminal (Ctrl-C is the byte `0x03`). Exec: ignored (its stdin
    /// is fixed by [`ExecRequest::stdin`]).
    Stdin(Vec<u8>),
    /// PTY: writes the EOF character (`0x04`). Exec: ignored.
    CloseStdin,
    /// PTY: set the window size (TIOCSWINSZ; the foreground job gets SIGWINCH). Exec: ignored.
    Resize {
        /// Height in character cells.
        rows: u16,
        /// Width in character cells.
        cols: u16,
    },
    /// Send this signal number: exec to the command's process group, PTY to the terminal's
    /// foreground process group. Unknown numbers are ignored.
    Signal(i32),
}

/// Agent-to-client messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Answer to `Ping`.
    Ready {
        /// The agent's crate version.
        version: String,
        /// The agent's process id (in the guest's pid namespace).
        pid: u32,
    },
    /// The command was spawned; `pid` is its process (and process group / session) id.
    Started {
        /// Process id in the guest's pid namespace.
        pid: u32,
    },
    /// A chunk of standard output (for a PTY: of terminal output), sent as it is read.
    Stdout(Vec<u8>),
    /// A chunk of standard error (exec only).
    Stderr(Vec<u8>),
    /// The command ended; the last event of an exec or PTY.
    Exit(ExitStatus),
    /// Answer to `GetFile`.
    File {
        /// Contents.
        data: Vec<u8>,
        /// Permission bits (`0o7777` mask).
        mode: u32,
    },
    /// Answer to `PutFile`.
    Done,
    /// Answer to `Forward`: the agent is connected to the port; every later byte on the
    /// connection, both ways, belongs to the forwarded TCP stream.
    Forwarding,
    /// First answer to `Watch`: the request is valid and the watch is armed.
    Watching {
        /// The watched paths, resolved to absolute paths, in request order.
        paths: Vec<String>,
    },
    /// A `Watch` report: all the files exist and have settled.
    Files {
        /// Every watched file, in request order.
        files: Vec<WatchedFile>,
    },
    /// The request failed; the last event on the connection.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code when the command exited normally.
    #[serde(default)]
    pub code: Option<i32>,
    /// Signal number when the command was killed by a signal.
    #[serde(default)]
    pub signal: Option<i32>,
    /// True when the agent killed the command because `timeout_ms` expired (then `signal` is
    /// `Some(9)`).
    #[serde(default)]
    pub timed_out: bool,
}

impl ExitStatus {
    /// True for a normal exit with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Kinds of failure reported in [`Event::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `argv[0]`, the working directory or the file does not exist.
    NotFound,
    /// The agent's user may not do this (EACCES / EPERM).
    PermissionDenied,
    /// The request is malformed (empty argv, relative path, too large, not a regular file).
    InvalidRequest,
    /// Another system error in the guest.
    Io,
    /// The client broke the protocol (bad frame, unknown request type).
    Protocol,
    /// A deadline set by the request passed (`Watch`'s `timeout_ms`, `Forward`'s connect
    /// deadline). Only sent for those operations, so older clients never see it.
    Timeout,
}

impl ErrorCode {
    /// The code for a local I/O error.
    pub fn from_io(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Self::NotFound,
            io::ErrorKind::PermissionDenied => Self::PermissionDenied,
            io::ErrorKind::InvalidInput => Self::InvalidRequest,
            _ => Self::Io,
        }
    }
}

// Input and Event hold bare byte vectors in tuple variants, which serde's internally tagged
// representation cannot carry; they go through these flat mirrors instead (borrowed to
// serialize, owned to deserialize).

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InputRef<'a> {
    Stdin {
        #[serde(serialize_with = "b64::serialize")]
        data: &'a [u8],
    },
    CloseStdin,
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal {
        signal: i32,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InputOwned {
    Stdin {
        #[serde(deserialize_with = "b64::deserialize")]
        data: Vec<u8>,
    },
    CloseStdin,
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal {
        signal: i32,
    },
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Input::Stdin(data) => InputRef::Stdin { data },
            Input::CloseStdin => InputRef::CloseStdin,
            Input::Resize { rows, cols } => InputRef::Resize {
                rows: *rows,
                cols: *cols,
            },
            Input::Signal(signal) => InputRef::Signal { signal: *signal },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match InputOwned::deserialize(d)? {
            InputOwned::Stdin { data } => Input::Stdin(data),
            InputOwned::CloseStdin => Input::CloseStdin,
            InputOwned::Resize { rows, cols } => Input::Resize { rows, cols },
            InputOwned::Signal { signal } => Input::Signal(signal),
        })
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventRef<'a> {
    Ready {
        version: &'a str,
        pid: u32,
    },
    Started {
        pid: u32,
    },
    Stdout {
        #[serde(serialize_with = "b64::serialize")]
        data: &'a [u8],
    },
    Stderr {
        #[serde(serialize_with = "b64::serialize")]
        data: &'a [u8],
    },
    Exit(&'a ExitStatus),
    File {
        #[serde(serialize_with = "b64::serialize")]
        data: &'a [u8],
        mode: u32,
    },
    Done,
    Forwarding,
    Watching {
        paths: &'a [String],
    },
    Files {
        files: &'a [WatchedFile],
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventOwned {
    Ready {
        version: String,
        pid: u32,
    },
    Started {
        pid: u32,
    },
    Stdout {
        #[serde(deserialize_with = "b64::deserialize")]
        data: Vec<u8>,
    },
    Stderr {
        #[serde(deserialize_with = "b64::deserialize")]
        data: Vec<u8>,
    },
    Exit(ExitStatus),
    File {
        #[serde(deserialize_with = "b64::deserialize")]
        data: Vec<u8>,
        mode: u32,
    },
    Done,
    Forwarding,
    Watching {
        paths: Vec<String>,
    },
    Files {
        files: Vec<WatchedFile>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Ready { version, pid } => EventRef::Ready { version, pid: *pid },
            Event::Started { pid } => EventRef::Started { pid: *pid },
            Event::Stdout(data) => EventRef::Stdout { data },
            Event::Stderr(data) => EventRef::Stderr { data },
            Event::Exit(status) => EventRef::Exit(status),
            Event::File { data, mode } => EventRef::File { data, mode: *mode },
            Event::Done => EventRef::Done,
            Event::Forwarding => EventRef::Forwarding,
            Event::Watching { paths } => EventRef::Watching { paths },
            Event::Files { files } => EventRef::Files { files },
            Event::Error { code, message } => EventRef::Error {
                code: *code,
                message,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match EventOwned::deserialize(d)? {
            EventOwned::Ready { version, pid } => Event::Ready { version, pid },
            EventOwned::Started { pid } => Event::Started { pid },
            EventOwned::Stdout { data } => Event::Stdout(data),
            EventOwned::Stderr { data } => Event::Stderr(data),
            EventOwned::Exit(status) => Event::Exit(status),
            EventOwned::File { data, mode } => Event::File { data, mode },
            EventOwned::Done => Event::Done,
            EventOwned::Forwarding => Event::Forwarding,
            EventOwned::Watching { paths } => Event::Watching { paths },
            EventOwned::Files { files } => Event::Files { files },
            EventOwned::Error { code, message } => Event::Error { code, message },
        })
    }
}

/// Base64 (standard alphabet, padded) for byte fields.
mod b64 {
    use super::*;

    pub fn serialize<S: Serializer, T: AsRef<[u8]> + ?Sized>(
        v: &T,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v.as_ref()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Base64 for optional byte fields (`null` for `None`).
mod b64_opt {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => super::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Encodes `msg` as one frame (header included).
///
/// Errors: [`GuestError::FrameTooLarge`] when the JSON is above [`MAX_FRAME_BYTES`].
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, GuestError> {
    let mut buf = vec![0u8; HEADER_BYTES];
    serde_json::to_writer(&mut buf, msg).map_err(GuestError::Json)?;
    let len = buf.len() - HEADER_BYTES;
    if len > MAX_FRAME_BYTES {
        return Err(GuestError::FrameTooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    let header = u32::try_from(len).map_err(|_| GuestError::FrameTooLarge {
        len,
        max: MAX_FRAME_BYTES,
    })?;
    buf[..HEADER_BYTES].copy_from_slice(&header.to_be_bytes());
    Ok(buf)
}

/// Writes `msg` as one frame and flushes.
///
/// Not cancel-safe: dropping the future mid-write leaves the stream unusable.
/// Errors: [`GuestError::FrameTooLarge`], [`GuestError::Io`].
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), GuestError>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize + ?Sized,
{
    let buf = encode_frame(msg)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it; `Ok(None)` on a clean end of stream (before any header
/// byte).
///
/// Not cancel-safe (use [`FrameReader`] inside `select!`). Errors: [`GuestError::FrameTooLarge`],
/// [`GuestError::Protocol`] for a stream that ends mid-frame, [`GuestError::Json`],
/// [`GuestError::Io`].
pub async fn read_frame<T, R>(r: &mut R) -> Result<Option<T>, GuestError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(truncated());
        }
        got += n;
    }
    let len = checked_len(header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated()
        } else {
            GuestError::Io(e)
        }
    })?;
    serde_json::from_slice(&payload)
        .map(Some)
        .map_err(GuestError::Json)
}

fn checked_len(header: [u8; HEADER_BYTES]) -> Result<usize, GuestError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(GuestError::FrameTooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(len)
}

fn truncated() -> GuestError {
    GuestError::Protocol {
        reason: "stream ended in the middle of a frame".into(),
    }
}

/// A buffered frame reader whose [`FrameReader::next_payload`] and [`FrameReader::next`] are
/// cancel-safe: bytes already read stay in the buffer if the future is dropped.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a byte stream.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The next frame's raw payload, or `Ok(None)` on a clean end of stream.
    ///
    /// Errors: [`GuestError::FrameTooLarge`], [`GuestError::Protocol`] (ends mid-frame),
    /// [`GuestError::Io`].
    pub async fn next_payload(&mut self) -> Result<Option<BytesMut>, GuestError> {
        loop {
            if self.buf.len() >= HEADER_BYTES {
                let mut header = [0u8; HEADER_BYTES];
                header.copy_from_slice(&self.buf[..HEADER_BYTES]);
                let len = checked_len(header)?;
                if self.buf.len() >= HEADER_BYTES + len {
                    self.buf.advance(HEADER_BYTES);
                    return Ok(Some(self.buf.split_to(len)));
                }
                self.buf.reserve(HEADER_BYTES + len - self.buf.len());
            } else {
                self.buf.reserve(HEADER_BYTES);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(truncated());
            }
        }
    }

    /// Gives back the byte stream and the bytes already read from it past the last frame
    /// returned (for switching a connection from frames to raw bytes without losing any).
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// The next frame decoded as `T`, or `Ok(None)` on a clean end of stream.
    ///
    /// Errors: as [`FrameReader::next_payload`], plus [`GuestError::Json`].
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, GuestError> {
        match self.next_payload().await? {
            Some(payload) => serde_json::from_slice(&payload)
                .map(Some)
                .map_err(GuestError::Json),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<T>(v: &T) -> T
    where
        T: Serialize + DeserializeOwned,
    {
        let bytes = serde_json::to_vec(v).expect("serialize");
        serde_json::from_slice(&bytes).expect("deserialize")
    }

    #[test]
    fn wire_shapes_are_flat_and_tagged() {
        assert_eq!(
            serde_json::to_value(Event::Stdout(b"hi\n".to_vec())).expect("json"),
            json!({"type": "stdout", "data": "aGkK"})
        );
        assert_eq!(
            serde_json::to_value(Input::Signal(15)).expect("json"),
            json!({"type": "signal", "signal": 15})
        );
        assert_eq!(
            serde_json::to_value(Event::Exit(ExitStatus {
                code: Some(3),
                signal: None,
                timed_out: false
            }))
            .expect("json"),
            json!({"type": "exit", "code": 3, "signal": null, "timed_out": false})
        );
        assert_eq!(
            serde_json::to_value(Request::GetFile { path: "/x".into() }).expect("json"),
            json!({"type": "get_file", "path": "/x"})
        );
        assert_eq!(
            serde_json::to_value(Event::Error {
                code: ErrorCode::NotFound,
                message: "m".into()
            })
            .expect("json"),
            json!({"type": "error", "code": "not_found", "message": "m"})
        );
    }

    #[test]
    fn every_message_round_trips() {
        let requests = [
            Request::Ping,
            Request::Exec(ExecRequest {
                argv: vec!["sh".into(), "-c".into(), "true".into()],
                env: vec![("A".into(), "b".into())],
                cwd: Some("/tmp".into()),
                timeout_ms: Some(5),
                stdin: Some(vec![0, 1, 255]),
            }),
            Request::Pty(PtyRequest::default()),
            Request::PutFile(PutFileRequest {
                path: "/a".into(),
                mode: 0o600,
                data: b"x".to_vec(),
            }),
            Request::GetFile { path: "/b".into() },
            Request::Forward { port: 5900 },
            Request::Watch(WatchRequest {
                paths: vec![".codex/auth.json".into(), "/x".into()],
                settle_ms: 1,
                timeout_ms: 2,
                max_bytes: 3,
            }),
        ];
        for r in &requests {
            assert_eq!(&round_trip(r), r);
        }
        let inputs = [
            Input::Stdin(vec![3]),
            Input::CloseStdin,
            Input::Resize { rows: 1, cols: 2 },
            Input::Signal(2),
        ];
        for i in &inputs {
            assert_eq!(&round_trip(i), i);
        }
        let events = [
            Event::Ready {
                version: "v".into(),
                pid: 1,
            },
            Event::Started { pid: 2 },
            Event::Stdout(vec![]),
            Event::Stderr(vec![9; 100]),
            Event::Exit(ExitStatus::default()),
            Event::File {
                data: b"f".to_vec(),
                mode: 0o755,
            },
            Event::Done,
            Event::Forwarding,
            Event::Watching {
                paths: vec!["/a".into()],
            },
            Event::Files {
                files: vec![WatchedFile {
                    path: "/a".into(),
                    mode: 0o600,
                    data: vec![0, 255],
                }],
            },
            Event::Error {
                code: ErrorCode::Timeout,
                message: "m".into(),
            },
        ];
        for e in &events {
            assert_eq!(&round_trip(e), e);
        }
    }

    #[test]
    fn forward_and_watch_wire_shapes() {
        assert_eq!(
            serde_json::to_value(Request::Forward { port: 5900 }).expect("json"),
            json!({"type": "forward", "port": 5900})
        );
        assert_eq!(
            serde_json::to_value(Event::Forwarding).expect("json"),
            json!({"type": "forwarding"})
        );
        assert_eq!(
            serde_json::to_value(Request::Watch(WatchRequest {
                paths: vec![".codex/auth.json".into()],
                settle_ms: 300,
                timeout_ms: 60_000,
                max_bytes: 4096,
            }))
            .expect("json"),
            json!({"type": "watch", "paths": [".codex/auth.json"], "settle_ms": 300,
                   "timeout_ms": 60_000, "max_bytes": 4096})
        );
        assert_eq!(
            serde_json::to_value(Event::Watching {
                paths: vec!["/root/a".into()]
            })
            .expect("json"),
            json!({"type": "watching", "paths": ["/root/a"]})
        );
        assert_eq!(
            serde_json::to_value(Event::Files {
                files: vec![WatchedFile {
                    path: "/root/a".into(),
                    mode: 0o600,
                    data: b"hi\n".to_vec(),
                }]
            })
            .expect("json"),
            json!({"type": "files", "files": [{"path": "/root/a", "mode": 384, "data": "aGkK"}]})
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::Timeout).expect("json"),
            json!("timeout")
        );
        // Only `paths` is required.
        let r: Request = serde_json::from_value(json!({"type": "watch", "paths": ["a"]}))
            .expect("minimal watch");
        assert_eq!(
            r,
            Request::Watch(WatchRequest {
                paths: vec!["a".into()],
                ..Default::default()
            })
        );
        let port: Result<Request, _> =
            serde_json::from_value(json!({"type": "forward", "port": 70000}));
        assert!(port.is_err(), "ports are u16");
    }

    #[tokio::test]
    async fn frame_reader_hands_back_what_it_read_ahead() {
        let mut bytes = encode_frame(&Event::Forwarding).expect("encode");
        bytes.extend_from_slice(b"RFB 003.008\n");
        let mut reader = FrameReader::new(&bytes[..]);
        assert_eq!(
            reader.next::<Event>().await.expect("read"),
            Some(Event::Forwarding)
        );
        let (rest, buffered) = reader.into_parts();
        let mut all = buffered.to_vec();
        all.extend_from_slice(rest);
        assert_eq!(all, b"RFB 003.008\n");
    }

    #[test]
    fn optional_fields_default() {
        let r: Request = serde_json::from_value(json!({"type": "exec", "argv": ["true"]}))
            .expect("minimal exec");
        assert_eq!(
            r,
            Request::Exec(ExecRequest {
                argv: vec!["true".into()],
                ..Default::default()
            })
        );
        let r: Request = serde_json::from_value(json!({"type": "pty"})).expect("minimal pty");
        assert_eq!(r, Request::Pty(PtyRequest::default()));
    }

    #[test]
    fn bad_base64_is_rejected() {
        let r: Result<Input, _> = serde_json::from_value(json!({"type": "stdin", "data": "!!"}));
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_and_eof_is_none() {
        let (mut a, b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write_frame(&mut a, &Request::Ping).await?;
            write_frame(&mut a, &Event::Stdout(vec![7; 1000])).await
        });
        let mut reader = FrameReader::new(b);
        assert_eq!(
            reader.next::<Request>().await.expect("read"),
            Some(Request::Ping)
        );
        assert_eq!(
            reader.next::<Event>().await.expect("read"),
            Some(Event::Stdout(vec![7; 1000]))
        );
        writer.await.expect("join").expect("write");
        assert_eq!(reader.next::<Event>().await.expect("eof"), None);
    }

    #[tokio::test]
    async fn read_frame_handles_eof_and_truncation() {
        let mut empty: &[u8] = &[];
        assert!(read_frame::<Request, _>(&mut empty)
            .await
            .expect("eof")
            .is_none());
        let mut short: &[u8] = &[0, 0, 0, 10, b'{'];
        assert!(matches!(
            read_frame::<Request, _>(&mut short).await,
            Err(GuestError::Protocol { .. })
        ));
        let mut half_header: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame::<Request, _>(&mut half_header).await,
            Err(GuestError::Protocol { .. })
        ));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_both_ways() {
        let too_big = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        let mut r: &[u8] = &too_big;
        assert!(matches!(
            read_frame::<Request, _>(&mut r).await,
            Err(GuestError::FrameTooLarge { .. })
        ));
        let mut reader = FrameReader::new(&too_big[..]);
        assert!(matches!(
            reader.next::<Request>().await,
            Err(GuestError::FrameTooLarge { .. })
        ));
        let huge = Event::Stdout(vec![0; MAX_FRAME_BYTES]);
        assert!(matches!(
            encode_frame(&huge),
            Err(GuestError::FrameTooLarge { .. })
        ));
        // The largest file still fits in one frame.
        let file = Event::File {
            data: vec![0; MAX_FILE_BYTES],
            mode: 0o644,
        };
        assert!(encode_frame(&file).is_ok());
        let put = Request::PutFile(PutFileRequest {
            path: "/a/long/path/name/for/good/measure".into(),
            mode: 0o644,
            data: vec![0; MAX_FILE_BYTES],
        });
        assert!(encode_frame(&put).is_ok());
    }
}
