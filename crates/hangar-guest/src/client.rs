//! The host-side client: one connection per operation, a deadline on every wait.
//!
//! Connecting is bounded by [`DEFAULT_CONNECT_TIMEOUT`] (see [`GuestClient::with_connect_timeout`]),
//! waiting for a command to start by [`DEFAULT_START_TIMEOUT`], sending an input by
//! [`SEND_TIMEOUT`]; the one-shot calls take a whole-call deadline. A deadline that passes
//! yields [`GuestError::Timeout`] and drops the connection, which makes the agent kill a command
//! that is still running.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::protocol::{
    read_frame, write_frame, ErrorCode, Event, ExecRequest, ExitStatus, FrameReader, Input,
    PtyRequest, PutFileRequest, Request, WatchRequest, WatchedFile,
};
use crate::GuestError;

/// Default bound on connecting to the agent's socket.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default bound on waiting for `Started` after sending `Exec` or `Pty`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on sending one [`Input`].
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What `Ping` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent's crate version.
    pub version: String,
    /// The agent's pid inside the guest.
    pub pid: u32,
}

/// Everything an exec produced, from [`GuestClient::exec_collect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// All of standard output.
    pub stdout: Vec<u8>,
    /// All of standard error.
    pub stderr: Vec<u8>,
    /// How the command ended.
    pub status: ExitStatus,
}

/// A handle on one guest agent, reached through a unix socket. Cheap to clone; holds no
/// connection (each operation opens its own).
#[derive(Debug, Clone)]
pub struct GuestClient {
    path: PathBuf,
    connect_timeout: Duration,
    start_timeout: Duration,
}

impl GuestClient {
    /// A client for the agent listening on the unix socket at `path` (at most 107 bytes, the
    /// `sun_path` limit).
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }

    /// Sets the bound on connecting (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the bound on `exec`/`pty` waiting for the command to start (default
    /// [`DEFAULT_START_TIMEOUT`]).
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connects and pings, all within `timeout`: the readiness probe.
    ///
    /// Errors: [`GuestError::Connect`] (no agent yet), [`GuestError::Timeout`],
    /// [`GuestError::Protocol`].
    pub async fn ping(&self, timeout: Duration) -> Result<AgentInfo, GuestError> {
        within(timeout, async {
            let mut conn = self.open(&Request::Ping).await?;
            match conn.reader.next::<Event>().await? {
                Some(Event::Ready { version, pid }) => Ok(AgentInfo { version, pid }),
                other => Err(unexpected("Ready", other)),
            }
        })
        .await
    }

    /// Starts a command and returns once it runs (the `Started` event is consumed; its pid is
    /// [`ExecStream::pid`]). Waiting for the start is bounded by the start timeout; the
    /// command's own duration is bounded only by [`ExecRequest::timeout_ms`].
    ///
    /// Errors: [`GuestError::Remote`] with `NotFound` when `argv[0]` does not exist (the
    /// command did not run), `InvalidRequest`, `PermissionDenied`; [`GuestError::Connect`],
    /// [`GuestError::Timeout`], [`GuestError::Protocol`].
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecStream, GuestError> {
        let (events, inputs) = self.start(&Request::Exec(req)).await?;
        Ok(ExecStream { events, inputs })
    }

    /// Runs a command to its end and collects its output, all within `deadline` (on expiry
    /// the connection is dropped and the agent kills the command).
    ///
    /// Errors: as [`GuestClient::exec`]; [`GuestError::Timeout`] after `deadline`.
    pub async fn exec_collect(
        &self,
        req: ExecRequest,
        deadline: Duration,
    ) -> Result<ExecOutput, GuestError> {
        within(deadline, async {
            let mut stream = self.exec(req).await?;
            let mut out = ExecOutput::default();
            loop {
                match stream.next_event().await? {
                    Some(Event::Stdout(d)) => out.stdout.extend_from_slice(&d),
                    Some(Event::Stderr(d)) => out.stderr.extend_from_slice(&d),
                    Some(Event::Exit(status)) => {
                        out.status = status;
                        return Ok(out);
                    }
                    other => return Err(unexpected("Stdout, Stderr or Exit", other)),
                }
            }
        })
        .await
    }

    /// Starts a command on a new terminal and returns once it runs. The writer sends
    /// keystrokes, resizes and signals; the reader yields terminal output and the exit.
    /// Dropping the writer hangs up: the agent kills the command's session.
    ///
    /// Errors: as [`GuestClient::exec`].
    pub async fn pty(&self, req: PtyRequest) -> Result<(PtyWriter, PtyReader), GuestError> {
        let (events, inputs) = self.start(&Request::Pty(req)).await?;
        Ok((PtyWriter { inputs }, PtyReader { events }))
    }

    /// Writes a file in the guest (parents created, atomic rename), within `deadline`.
    ///
    /// Errors: [`GuestError::Remote`] (`InvalidRequest` for a relative path or more than
    /// [`crate::protocol::MAX_FILE_BYTES`], `PermissionDenied`, `Io`), [`GuestError::Timeout`],
    /// [`GuestError::FrameTooLarge`], [`GuestError::Connect`], [`GuestError::Protocol`].
    pub async fn put_file(
        &self,
        req: PutFileRequest,
        deadline: Duration,
    ) -> Result<(), GuestError> {
        within(deadline, async {
            let mut conn = self.open(&Request::PutFile(req)).await?;
            match remote(conn.reader.next::<Event>().await?)? {
                Some(Event::Done) => Ok(()),
                other => Err(unexpected("Done", other)),
            }
        })
        .await
    }

    /// Reads a regular file from the guest, within `deadline`: `(contents, mode & 0o7777)`.
    ///
    /// Errors: [`GuestError::Remote`] (`NotFound`, `InvalidRequest` for a non-regular or too
    /// large file, `PermissionDenied`), [`GuestError::Timeout`], [`GuestError::Connect`],
    /// [`GuestError::Protocol`].
    pub async fn get_file(
        &self,
        path: &str,
        deadline: Duration,
    ) -> Result<(Vec<u8>, u32), GuestError> {
        within(deadline, async {
            let request = Request::GetFile {
                path: path.to_owned(),
            };
            let mut conn = self.open(&request).await?;
            match remote(conn.reader.next::<Event>().await?)? {
                Some(Event::File { data, mode }) => Ok((data, mode)),
                other => Err(unexpected("File", other)),
            }
        })
        .await
    }

    /// Opens a byte pipe to TCP port `port` on the guest's loopback (`127.0.0.1`, or `[::1]`
    /// when that is refused) and returns the connection once the agent answered `Forwarding`:
    /// from then on it carries only the TCP stream's bytes, both ways. `shutdown()` on it
    /// half-closes the TCP connection; an end of stream on it means the TCP peer closed its
    /// side. The reply frame is read byte-exactly, so bytes the peer sends first (an RFB
    /// banner) stay in the returned stream. Setting up is bounded by the start timeout (the
    /// agent itself gives up connecting after
    /// [`crate::protocol::FORWARD_CONNECT_TIMEOUT`]); the pipe itself has no deadline.
    ///
    /// Errors: [`GuestError::Remote`] with `NotFound` (nothing listens on the port), `Timeout`
    /// (the agent's connect deadline passed), `InvalidRequest` (port 0) or `Io`;
    /// [`GuestError::Connect`], [`GuestError::Timeout`], [`GuestError::Protocol`].
    pub async fn forward(&self, port: u16) -> Result<UnixStream, GuestError> {
        within(self.start_timeout, async {
            let mut stream = self.connect().await?;
            write_frame(&mut stream, &Request::Forward { port }).await?;
            // `read_frame` reads exactly the header and the payload, nothing past them.
            match remote(read_frame::<Event, _>(&mut stream).await?)? {
                Some(Event::Forwarding) => Ok(stream),
                other => Err(unexpected("Forwarding", other)),
            }
        })
        .await
    }

    /// Starts watching files (see [`WatchRequest`]) and returns once the agent armed the
    /// watch (its `Watching` answer, bounded by the start timeout). Read reports with
    /// [`WatchStream::next_files`]; dropping the stream ends the watch in the agent.
    ///
    /// Errors: [`GuestError::Remote`] with `InvalidRequest` (no paths, a `..` component,
    /// `timeout_ms` 0, `max_bytes` out of range), `PermissionDenied` or `Io` (inotify
    /// unavailable or out of instances); [`GuestError::Connect`], [`GuestError::Timeout`],
    /// [`GuestError::Protocol`].
    pub async fn watch(&self, req: WatchRequest) -> Result<WatchStream, GuestError> {
        within(self.start_timeout, async {
            let mut conn = self.open(&Request::Watch(req)).await?;
            match remote(conn.reader.next::<Event>().await?)? {
                Some(Event::Watching { paths }) => Ok(WatchStream {
                    reader: conn.reader,
                    _writer: conn.writer,
                    paths,
                    ended: false,
                }),
                other => Err(unexpected("Watching", other)),
            }
        })
        .await
    }

    /// Connects, bounded by the connect timeout.
    async fn connect(&self) -> Result<UnixStream, GuestError> {
        within(self.connect_timeout, async {
            UnixStream::connect(&self.path)
                .await
                .map_err(|source| GuestError::Connect {
                    path: self.path.clone(),
                    source,
                })
        })
        .await
    }

    /// Connects (bounded by the connect timeout) and sends `request`.
    async fn open(&self, request: &Request) -> Result<Conn, GuestError> {
        let stream = self.connect().await?;
        let (rd, mut writer) = stream.into_split();
        write_frame(&mut writer, request).await?;
        Ok(Conn {
            reader: FrameReader::new(rd),
            writer,
        })
    }

    /// Sends an `Exec` or `Pty` request and waits (start timeout) for `Started`.
    async fn start(&self, request: &Request) -> Result<(Events, Inputs), GuestError> {
        within(self.start_timeout, async {
            let mut conn = self.open(request).await?;
            match remote(conn.reader.next::<Event>().await?)? {
                Some(Event::Started { pid }) => Ok((
                    Events {
                        reader: conn.reader,
                        pid,
                        finished: false,
                    },
                    Inputs {
                        writer: conn.writer,
                        broken: false,
                    },
                )),
                other => Err(unexpected("Started", other)),
            }
        })
        .await
    }
}

/// A running exec: its events and a way to signal it. Dropping it hangs up, which kills the
/// command if it still runs.
#[derive(Debug)]
pub struct ExecStream {
    events: Events,
    inputs: Inputs,
}

impl ExecStream {
    /// The command's pid in the guest (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.events.pid
    }

    /// The next `Stdout`, `Stderr` or `Exit` event; `Ok(None)` after `Exit`. Waits as long as
    /// the command runs (bound it with [`ExecRequest::timeout_ms`] or
    /// [`ExecStream::next_event_within`]). Cancel-safe.
    ///
    /// Errors: [`GuestError::Remote`] for an agent `Error` event, [`GuestError::Protocol`] when
    /// the connection ends before `Exit`, [`GuestError::Io`].
    pub async fn next_event(&mut self) -> Result<Option<Event>, GuestError> {
        self.events.next().await
    }

    /// [`ExecStream::next_event`] bounded by `timeout` ([`GuestError::Timeout`]; the stream
    /// stays usable).
    pub async fn next_event_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Event>, GuestError> {
        within(timeout, self.events.next()).await
    }

    /// Sends an input; for an exec only [`Input::Signal`] has an effect (to the process
    /// group). Bounded by [`SEND_TIMEOUT`].
    ///
    /// Errors: [`GuestError::Timeout`], [`GuestError::Io`]; after a failed send the stream is
    /// broken and every later send fails with [`GuestError::Protocol`].
    pub async fn send(&mut self, input: Input) -> Result<(), GuestError> {
        self.inputs.send(input).await
    }
}

/// The sending side of a PTY session. Dropping it hangs up: the agent kills the command.
#[derive(Debug)]
pub struct PtyWriter {
    inputs: Inputs,
}

impl PtyWriter {
    /// Sends keystrokes ([`Input::Stdin`]; Ctrl-C is `0x03`), a resize, a signal (to the
    /// terminal's foreground process group) or Ctrl-D ([`Input::CloseStdin`]). Bounded by
    /// [`SEND_TIMEOUT`].
    ///
    /// Errors: as [`ExecStream::send`].
    pub async fn send(&mut self, input: Input) -> Result<(), GuestError> {
        self.inputs.send(input).await
    }
}

/// The receiving side of a PTY session.
#[derive(Debug)]
pub struct PtyReader {
    events: Events,
}

impl PtyReader {
    /// The command's pid in the guest (the terminal's session leader).
    pub fn pid(&self) -> u32 {
        self.events.pid
    }

    /// The next `Stdout` (terminal output) or `Exit` event; `Ok(None)` after `Exit`.
    /// Cancel-safe.
    ///
    /// Errors: as [`ExecStream::next_event`].
    pub async fn next_event(&mut self) -> Result<Option<Event>, GuestError> {
        self.events.next().await
    }

    /// [`PtyReader::next_event`] bounded by `timeout`.
    pub async fn next_event_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Event>, GuestError> {
        within(timeout, self.events.next()).await
    }
}

/// A running file watch from [`GuestClient::watch`]. Dropping it closes the connection, which
/// ends the watch in the agent (and frees its inotify instance).
#[derive(Debug)]
pub struct WatchStream {
    reader: FrameReader<OwnedReadHalf>,
    /// Kept open: closing our write side is how the agent learns the client went away.
    _writer: OwnedWriteHalf,
    paths: Vec<String>,
    ended: bool,
}

impl WatchStream {
    /// The watched paths as the agent resolved them (absolute), in request order; the `path`
    /// of every [`WatchedFile`] is one of these.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The next report, waiting at most `deadline`: `Ok(Some(files))` with every watched
    /// file (request order) once all exist and have settled, and again after each settled
    /// change; `Ok(None)` once the watch's own `timeout_ms` has passed (and on every call
    /// after that). Cancel-safe; after [`GuestError::Timeout`] the stream stays usable.
    ///
    /// Errors: [`GuestError::Timeout`] when `deadline` passes with no report;
    /// [`GuestError::Remote`] with `InvalidRequest` (a file above `max_bytes` or not a regular
    /// file) or `Io`, after which the watch is over; [`GuestError::Protocol`] when the agent
    /// closes the connection without a final event; [`GuestError::Io`].
    pub async fn next_files(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<Vec<WatchedFile>>, GuestError> {
        if self.ended {
            return Ok(None);
        }
        let event = within(deadline, async { Ok(self.reader.next::<Event>().await) }).await?;
        match event {
            Ok(Some(Event::Files { files })) => Ok(Some(files)),
            Ok(Some(Event::Error {
                code: ErrorCode::Timeout,
                ..
            })) => {
                self.ended = true;
                Ok(None)
            }
            Ok(other) => {
                self.ended = true;
                Err(unexpected("Files", other))
            }
            Err(e) => {
                self.ended = true;
                Err(e)
            }
        }
    }
}

struct Conn {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

#[derive(Debug)]
struct Events {
    reader: FrameReader<OwnedReadHalf>,
    pid: u32,
    finished: bool,
}

impl Events {
    async fn next(&mut self) -> Result<Option<Event>, GuestError> {
        if self.finished {
            return Ok(None);
        }
        match self.reader.next::<Event>().await {
            Ok(Some(Event::Error { code, message })) => {
                self.finished = true;
                Err(GuestError::Remote { code, message })
            }
            Ok(Some(event)) => {
                self.finished = matches!(event, Event::Exit(_));
                Ok(Some(event))
            }
            Ok(None) => {
                self.finished = true;
                Err(GuestError::Protocol {
                    reason: "agent closed the connection before Exit".into(),
                })
            }
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug)]
struct Inputs {
    writer: OwnedWriteHalf,
    broken: bool,
}

impl Inputs {
    async fn send(&mut self, input: Input) -> Result<(), GuestError> {
        if self.broken {
            return Err(GuestError::Protocol {
                reason: "an earlier send failed; the stream is unusable".into(),
            });
        }
        // A write cut short leaves half a frame behind: mark the stream broken first.
        self.broken = true;
        within(SEND_TIMEOUT, write_frame(&mut self.writer, &input)).await?;
        self.broken = false;
        Ok(())
    }
}

/// Runs `fut` with a deadline of `after`.
async fn within<T>(
    after: Duration,
    fut: impl Future<Output = Result<T, GuestError>>,
) -> Result<T, GuestError> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(GuestError::Timeout { after }))
}

/// Turns an agent `Error` event into [`GuestError::Remote`].
fn remote(event: Option<Event>) -> Result<Option<Event>, GuestError> {
    match event {
        Some(Event::Error { code, message }) => Err(GuestError::Remote { code, message }),
        other => Ok(other),
    }
}

fn unexpected(wanted: &str, got: Option<Event>) -> GuestError {
    let reason = match got {
        Some(Event::Error { code, message }) => {
            return GuestError::Remote { code, message };
        }
        Some(event) => format!("expected {wanted}, got {}", kind(&event)),
        None => format!("connection closed before {wanted}"),
    };
    GuestError::Protocol { reason }
}

fn kind(event: &Event) -> &'static str {
    match event {
        Event::Ready { .. } => "Ready",
        Event::Started { .. } => "Started",
        Event::Stdout(_) => "Stdout",
        Event::Stderr(_) => "Stderr",
        Event::Exit(_) => "Exit",
        Event::File { .. } => "File",
        Event::Done => "Done",
        Event::Forwarding => "Forwarding",
        Event::Watching { .. } => "Watching",
        Event::Files { .. } => "Files",
        Event::Error { .. } => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn connect_error_names_the_path() {
        let client = GuestClient::unix("/definitely/not/here.sock");
        match client.ping(Duration::from_secs(2)).await {
            Err(GuestError::Connect { path, .. }) => {
                assert_eq!(path, Path::new("/definitely/not/here.sock"))
            }
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn silent_agent_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        // Accepts and holds connections, never answers.
        let _holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let client = GuestClient::unix(&sock).with_start_timeout(Duration::from_millis(200));
        let after = Duration::from_millis(200);
        assert!(matches!(
            client.ping(after).await,
            Err(GuestError::Timeout { after: a }) if a == after
        ));
        assert!(matches!(
            client.exec(ExecRequest::default()).await,
            Err(GuestError::Timeout { .. })
        ));
        assert!(matches!(
            client.get_file("/x", after).await,
            Err(GuestError::Timeout { .. })
        ));
    }

    #[tokio::test]
    async fn remote_errors_and_early_close_are_distinguished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let _fake = tokio::spawn(async move {
            // First connection: answer with an error. Second: close without answering.
            if let Ok((mut s, _)) = listener.accept().await {
                let error = Event::Error {
                    code: ErrorCode::NotFound,
                    message: "nope".into(),
                };
                let _ = write_frame(&mut s, &error).await;
            }
            if let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let client = GuestClient::unix(&sock);
        let deadline = Duration::from_secs(5);
        assert!(matches!(
            client.get_file("/x", deadline).await,
            Err(GuestError::Remote {
                code: ErrorCode::NotFound,
                ..
            })
        ));
        assert!(matches!(
            client.get_file("/x", deadline).await,
            Err(GuestError::Protocol { .. }) | Err(GuestError::Io(_))
        ));
    }
}
