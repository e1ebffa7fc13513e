//! The agent: serves the [`crate::protocol`] on a listening socket, one operation per
//! connection, connections concurrently.
//!
//! Commands run as the agent's user with a clean default environment (`PATH`, `HOME` and
//! `USER`/`LOGNAME` from `/etc/passwd`, `LANG=C.UTF-8`, plus `TERM=xterm-256color` on a PTY)
//! overridden by the request's `env`, in the request's `cwd` or else `HOME` or `/`. Each command
//! is a session leader (`setsid`), so its pid is also its process group and session id; a PTY
//! command also gets the terminal as its controlling terminal.
//!
//! After a command exits, the agent forwards remaining output until its pipes (or terminal)
//! close, for at most [`OUTPUT_GRACE`] (a background job that keeps them open loses later
//! output), then sends `Exit`. A timeout, a client disconnect while the command runs, or the
//! agent's own SIGTERM/SIGINT SIGKILLs the command's process group and session.
//!
//! `Forward` turns the connection into a byte pipe to a TCP port on the guest's loopback;
//! `Watch` reports credential files as a CLI writes them (inotify, one instance per
//! connection, released when the client goes away). See [`crate::protocol`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::process::Child;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::protocol::{write_frame, ErrorCode, Event, ExitStatus, FrameReader, Input, Request};
use crate::GuestError;

mod env;
mod exec;
mod files;
mod forward;
pub mod init;
mod procs;
mod pty;
mod watch;

pub use env::{DEFAULT_PATH, DEFAULT_TERM};
use procs::ProcessTable;

/// Socket path used when neither `--listen` nor `HANGAR_GUEST_LISTEN` is given.
pub const DEFAULT_SOCKET_PATH: &str = "/run/hangar/agent.sock";

/// Environment variable naming the socket path (the `--listen` flag wins).
pub const LISTEN_ENV: &str = "HANGAR_GUEST_LISTEN";

/// How long output is still forwarded after a command exits.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Bytes read from a pipe or terminal per `Stdout`/`Stderr` event, at most.
const CHUNK_BYTES: usize = 32 * 1024;

/// The agent's shared state: what it needs across connections.
#[derive(Debug, Clone, Default)]
pub struct Agent {
    procs: Arc<ProcessTable>,
}

impl Agent {
    /// A fresh agent with no running commands.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves one connection to the end of its operation. Transport-agnostic: any byte stream
    /// works (a unix socket today, a virtio-serial port later). Never fails: problems are
    /// reported to the peer as [`Event::Error`] where possible.
    pub async fn serve_connection<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(stream);
        let mut reader = FrameReader::new(rd);
        let request = match reader.next_payload().await {
            Ok(Some(payload)) => serde_json::from_slice::<Request>(&payload).map_err(|e| {
                (
                    ErrorCode::InvalidRequest,
                    format!("cannot decode request: {e}"),
                )
            }),
            Ok(None) => return,
            Err(e) => Err((ErrorCode::Protocol, e.to_string())),
        };
        let request = match request {
            Ok(r) => r,
            Err((code, message)) => {
                send_error(&mut wr, code, message).await;
                return;
            }
        };
        match request {
            Request::Ping => {
                let ready = Event::Ready {
                    version: crate::VERSION.to_owned(),
                    pid: std::process::id(),
                };
                let _ = write_frame(&mut wr, &ready).await;
            }
            Request::Exec(req) => {
                let inputs = InputReader::spawn(reader);
                exec::run(req, inputs, &mut wr, &self.procs).await;
            }
            Request::Pty(req) => {
                let inputs = InputReader::spawn(reader);
                pty::run(req, inputs, &mut wr, &self.procs).await;
            }
            Request::PutFile(req) => {
                let event = match files::put(req).await {
                    Ok(()) => Event::Done,
                    Err((code, message)) => Event::Error { code, message },
                };
                let _ = write_frame(&mut wr, &event).await;
            }
            Request::GetFile { path } => {
                let event = match files::get(path).await {
                    Ok((data, mode)) => Event::File { data, mode },
                    Err((code, message)) => Event::Error { code, message },
                };
                let _ = write_frame(&mut wr, &event).await;
            }
            Request::Forward { port } => {
                // Bytes the client sent after its request belong to the forwarded stream.
                let (rd, leftover) = reader.into_parts();
                forward::run(port, rd, leftover, &mut wr).await;
            }
            Request::Watch(req) => {
                let inputs = InputReader::spawn(reader);
                watch::run(req, inputs, &mut wr).await;
            }
        }
        let _ = wr.shutdown().await;
    }

    /// Accepts connections until `shutdown` completes, serving each on its own task; then
    /// SIGKILLs every command still running.
    ///
    /// Errors: [`GuestError::Io`] if `accept` fails in a way that is not per-connection.
    pub async fn serve(
        &self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GuestError> {
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let agent = self.clone();
                        tokio::spawn(async move { agent.serve_connection(stream).await });
                    }
                    // Out of descriptors or memory: back off instead of spinning.
                    Err(e) if is_transient_accept_error(&e) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => break Err(GuestError::Io(e)),
                },
            }
        };
        self.procs.kill_all();
        result
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    ) || e.kind() == io::ErrorKind::Interrupted
}

/// Binds the agent's socket at `path`: creates the parent directory, removes a stale socket
/// left by an earlier run, binds, and restricts the socket to its owner (mode 0600).
///
/// Errors: [`GuestError::Bind`] (including when `path` exists and is not a socket).
pub fn bind(path: &Path) -> Result<UnixListener, GuestError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let fail = |source: io::Error| GuestError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(fail)?,
        Ok(_) => {
            return Err(fail(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "path exists and is not a socket",
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(listener)
}

/// Runs the agent on `path` until SIGTERM or SIGINT: binds, prints
/// `hangar-guest <version> listening on <path>` to stderr, serves, and on the signal kills
/// running commands and removes the socket.
///
/// Errors: [`GuestError::Bind`], [`GuestError::Io`]. Must run inside a tokio runtime with IO,
/// time and signal drivers enabled.
pub async fn run(path: PathBuf) -> Result<(), GuestError> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listener = bind(&path)?;
    eprintln!(
        "hangar-guest {} listening on {}",
        crate::VERSION,
        path.display()
    );
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let result = Agent::new().serve(listener, shutdown).await;
    let _ = std::fs::remove_file(&path);
    result
}

async fn send_error<W: AsyncWrite + Unpin>(wr: &mut W, code: ErrorCode, message: String) {
    let _ = write_frame(wr, &Event::Error { code, message }).await;
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Client inputs decoded on their own task (so reading them never races a cancelled
/// `select!` branch). `recv` returning `None` means the client went away.
struct InputReader {
    rx: mpsc::Receiver<Input>,
    _task: AbortOnDrop,
}

impl InputReader {
    fn spawn<R: AsyncRead + Unpin + Send + 'static>(mut reader: FrameReader<R>) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            // Ends on EOF or a broken frame; undecodable inputs (from a newer client) are
            // skipped.
            while let Ok(Some(payload)) = reader.next_payload().await {
                if let Ok(input) = serde_json::from_slice::<Input>(&payload) {
                    if tx.send(input).await.is_err() {
                        break;
                    }
                }
            }
        });
        Self {
            rx,
            _task: AbortOnDrop(task),
        }
    }
}

/// A spawned command: its process (a session leader) and the output events its reader tasks
/// produce (the channel closes when all readers reach end of file).
struct Running {
    child: Child,
    pid: i32,
    output: mpsc::Receiver<Event>,
}

/// Drives a running command to its end: forwards output, hands inputs to `on_input`, enforces
/// the timeout, kills everything if the client disconnects, and finally sends `Exit`.
async fn supervise<W: AsyncWrite + Unpin>(
    mut run: Running,
    timeout: Option<Duration>,
    mut inputs: InputReader,
    wr: &mut W,
    mut on_input: impl FnMut(Input),
) {
    let deadline = timeout.map(|t| Instant::now() + t);
    let expiry = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let mut output_open = true;
    let (status, timed_out) = loop {
        tokio::select! {
            event = run.output.recv(), if output_open => match event {
                Some(event) => {
                    if send_until(wr, &event, deadline).await.is_err() {
                        return abandon(run).await;
                    }
                }
                None => output_open = false,
            },
            input = inputs.rx.recv() => match input {
                Some(input) => on_input(input),
                None => return abandon(run).await,
            },
            status = run.child.wait() => break (status, false),
            () = &mut expiry => {
                procs::kill_tree(run.pid);
                break (run.child.wait().await, true);
            }
        }
    };
    let grace_end = Instant::now() + OUTPUT_GRACE;
    while output_open {
        match tokio::time::timeout_at(grace_end, run.output.recv()).await {
            Ok(Some(event)) => {
                if send_until(wr, &event, Some(grace_end)).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => output_open = false,
        }
    }
    let last = match status {
        Ok(status) => Event::Exit(exit_status(status, timed_out)),
        Err(e) => Event::Error {
            code: ErrorCode::Io,
            message: format!("wait for pid {}: {e}", run.pid),
        },
    };
    let _ = write_frame(wr, &last).await;
}

/// The client is gone (or stuck): kill the command's session and reap it.
async fn abandon(mut run: Running) {
    procs::kill_tree(run.pid);
    let _ = run.child.wait().await;
}

/// Writes one event, giving up at `deadline` (a client that stops reading must not keep a
/// timed-out command alive).
async fn send_until<W: AsyncWrite + Unpin>(
    wr: &mut W,
    event: &Event,
    deadline: Option<Instant>,
) -> Result<(), ()> {
    let write = write_frame(wr, event);
    match deadline {
        Some(d) => match tokio::time::timeout_at(d, write).await {
            Ok(r) => r.map_err(drop),
            Err(_) => Err(()),
        },
        None => write.await.map_err(drop),
    }
}

fn exit_status(status: std::process::ExitStatus, timed_out: bool) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus {
        code: status.code(),
        signal: status.signal(),
        timed_out,
    }
}

/// Reads a pipe or terminal into `Stdout`/`Stderr` events until end of file or an error.
async fn pump<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<Event>, make: fn(Vec<u8>) -> Event) {
    use tokio::io::AsyncReadExt;
    loop {
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if tx.send(make(buf)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The (code, message) pair for a failed spawn of `program`.
fn spawn_error(program: &str, e: &io::Error) -> (ErrorCode, String) {
    (ErrorCode::from_io(e), format!("{program}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ExecRequest, PutFileRequest};
    use tokio::io::DuplexStream;

    /// Starts `serve_connection` on one end of an in-memory pipe, sends `request`, returns the
    /// other end as a frame reader plus its write half.
    async fn open(
        request: &Request,
    ) -> (
        FrameReader<tokio::io::ReadHalf<DuplexStream>>,
        tokio::io::WriteHalf<DuplexStream>,
    ) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move { Agent::new().serve_connection(theirs).await });
        let (rd, mut wr) = tokio::io::split(ours);
        write_frame(&mut wr, request).await.expect("send request");
        (FrameReader::new(rd), wr)
    }

    async fn next(r: &mut FrameReader<tokio::io::ReadHalf<DuplexStream>>) -> Option<Event> {
        tokio::time::timeout(Duration::from_secs(10), r.next::<Event>())
            .await
            .expect("event within 10 s")
            .expect("valid frame")
    }

    #[tokio::test]
    async fn ping_over_any_stream() {
        let (mut r, _w) = open(&Request::Ping).await;
        match next(&mut r).await {
            Some(Event::Ready { version, pid }) => {
                assert_eq!(version, crate::VERSION);
                assert_eq!(pid, std::process::id());
            }
            other => panic!("expected Ready, got {other:?}"),
        }
        assert_eq!(next(&mut r).await, None);
    }

    #[tokio::test]
    async fn garbage_request_is_answered_with_an_error() {
        let (ours, theirs) = tokio::io::duplex(1024);
        tokio::spawn(async move { Agent::new().serve_connection(theirs).await });
        let (rd, mut wr) = tokio::io::split(ours);
        wr.write_all(&[0, 0, 0, 2, b'{', b'}'])
            .await
            .expect("write");
        let mut r = FrameReader::new(rd);
        assert!(matches!(
            next(&mut r).await,
            Some(Event::Error {
                code: ErrorCode::InvalidRequest,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn oversized_frame_is_a_protocol_error() {
        let (ours, theirs) = tokio::io::duplex(1024);
        tokio::spawn(async move { Agent::new().serve_connection(theirs).await });
        let (rd, mut wr) = tokio::io::split(ours);
        wr.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        let mut r = FrameReader::new(rd);
        assert!(matches!(
            next(&mut r).await,
            Some(Event::Error {
                code: ErrorCode::Protocol,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn exec_empty_argv_is_invalid() {
        let (mut r, _w) = open(&Request::Exec(ExecRequest::default())).await;
        assert!(matches!(
            next(&mut r).await,
            Some(Event::Error {
                code: ErrorCode::InvalidRequest,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn exec_env_and_cwd_defaults() {
        let req = ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "printf '%s|%s|%s' \"$PATH\" \"$FOO\" \"$(pwd)\"".into(),
            ],
            env: vec![("FOO".into(), "bar".into())],
            cwd: Some("/".into()),
            ..Default::default()
        };
        let (mut r, _w) = open(&Request::Exec(req)).await;
        assert!(matches!(next(&mut r).await, Some(Event::Started { .. })));
        let mut out = Vec::new();
        loop {
            match next(&mut r).await {
                Some(Event::Stdout(d)) => out.extend(d),
                Some(Event::Exit(s)) => {
                    assert_eq!(s.code, Some(0));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{DEFAULT_PATH}|bar|/")
        );
    }

    #[tokio::test]
    async fn put_file_rejects_relative_paths() {
        let req = PutFileRequest {
            path: "relative/file".into(),
            mode: 0o644,
            data: vec![],
        };
        let (mut r, _w) = open(&Request::PutFile(req)).await;
        assert!(matches!(
            next(&mut r).await,
            Some(Event::Error {
                code: ErrorCode::InvalidRequest,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn bind_replaces_stale_socket_but_not_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("sub/agent.sock");
        let first = bind(&sock).expect("first bind");
        drop(first);
        // The socket file is still there (stale); binding again must succeed.
        assert!(sock.exists());
        let _second = bind(&sock).expect("rebind over stale socket");
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(bind(&file), Err(GuestError::Bind { .. })));
        assert_eq!(std::fs::read(&file).expect("still there"), b"x");
    }
}
