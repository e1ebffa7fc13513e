//! `Pty`: a command on a new pseudo-terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::Arc;

use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWrite;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::procs::{self, ProcessTable};
use super::{env, send_error, spawn_error, supervise, AbortOnDrop, InputReader, Running};
use crate::protocol::{write_frame, ErrorCode, Event, Input, PtyRequest};

/// The terminal's EOF character (Ctrl-D), written for [`Input::CloseStdin`].
const EOF_CHAR: u8 = 0x04;

/// Runs one PTY request to completion, writing its events to `wr`.
pub(super) async fn run<W: AsyncWrite + Unpin>(
    req: PtyRequest,
    inputs: InputReader,
    wr: &mut W,
    table: &Arc<ProcessTable>,
) {
    let user = env::current_user();
    let prepared = env::command_env(user.as_ref(), &req.env, true)
        .and_then(|vars| Ok((env::resolve_cwd(req.cwd.as_deref(), &vars)?, vars)));
    let (cwd, vars) = match prepared {
        Ok(p) => p,
        Err((code, message)) => return send_error(wr, code, message).await,
    };
    let (master, slave) = match open_pty(req.rows, req.cols) {
        Ok(pair) => pair,
        Err(e) => return send_error(wr, ErrorCode::Io, format!("open pty: {e}")).await,
    };

    let (program, login) = match req.argv.first() {
        Some(p) => (p.clone(), false),
        None => (login_shell(&vars), true),
    };
    let mut cmd = Command::new(&program);
    if login {
        // A leading '-' in argv[0] asks the shell to act as a login shell.
        let base = program.rsplit('/').next().unwrap_or(&program);
        cmd.arg0(format!("-{base}"));
    } else {
        cmd.args(&req.argv[1..]);
    }
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    let (stdin, stdout) = match (stdio(&slave), stdio(&slave)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            return send_error(wr, ErrorCode::Io, format!("dup pty: {e}")).await
        }
    };
    cmd.env_clear()
        .envs(vars)
        .current_dir(cwd)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::from(slave));
    // SAFETY: runs in the forked child before exec; signal(2), setsid(2) and ioctl(2) are
    // async-signal-safe. fd 0 is the terminal's slave side (set up by the spawner).
    unsafe {
        cmd.pre_exec(|| {
            procs::reset_signal_dispositions();
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // The command keeps the only copies of the slave side, so the master reads EIO once it
    // (and whatever inherited the terminal) is gone.
    drop(cmd);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let (code, message) = spawn_error(&program, &e);
            return send_error(wr, code, message).await;
        }
    };
    let Some(pid) = child.id() else {
        return send_error(wr, ErrorCode::Io, "spawned process has no pid".into()).await;
    };
    let pid = pid as i32;
    let _registration = table.register(pid);
    // SAFETY: `master` is an open descriptor owned by the OwnedFd, which the AsyncFd owns and
    // never replaces until it is dropped.
    let master = match unsafe { AsyncFd::register(master) } {
        Ok(m) => Arc::new(m),
        Err(e) => {
            procs::kill_tree(pid);
            let e = io::Error::from(e);
            return send_error(wr, ErrorCode::Io, format!("register pty: {e}")).await;
        }
    };

    let (tx, output) = mpsc::channel(8);
    let _reader = AbortOnDrop(tokio::spawn(read_master(Arc::clone(&master), tx)));
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
    let _writer = AbortOnDrop(tokio::spawn(write_master(Arc::clone(&master), stdin_rx)));

    if write_frame(wr, &Event::Started { pid: pid as u32 })
        .await
        .is_err()
    {
        procs::kill_tree(pid);
        let mut child = child;
        let _ = child.wait().await;
        return;
    }
    let running = Running { child, pid, output };
    supervise(running, None, inputs, wr, |input| match input {
        Input::Stdin(data) => {
            let _ = stdin_tx.send(data);
        }
        Input::CloseStdin => {
            let _ = stdin_tx.send(vec![EOF_CHAR]);
        }
        Input::Resize { rows, cols } => {
            let _ = set_winsize(master.get_ref().as_raw_fd(), rows, cols);
        }
        Input::Signal(n) => {
            let foreground = nix::unistd::tcgetpgrp(master.get_ref().as_fd())
                .map(|p| p.as_raw())
                .unwrap_or(pid);
            procs::signal_group(foreground, n);
        }
    })
    .await;
}

/// `$SHELL` from the command's environment, else `/bin/bash` if present, else `/bin/sh`.
fn login_shell(vars: &[(String, String)]) -> String {
    if let Some(shell) = env::get(vars, "SHELL").filter(|s| !s.is_empty()) {
        return shell.to_owned();
    }
    if let Ok(shell) = std::env::var("SHELL") {
        if !shell.is_empty() {
            return shell;
        }
    }
    if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

/// Opens a pseudo-terminal pair sized `rows` x `cols`: (master, non-blocking; slave). Both are
/// close-on-exec from the start, so concurrent spawns never inherit them.
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let slave_path = nix::pty::ptsname_r(&master)?;
    // SAFETY: `into_raw_fd` hands over sole ownership of a valid, open descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(slave_path)?;
    set_winsize(master.as_raw_fd(), rows, cols)?;
    let flags = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((master, OwnedFd::from(slave)))
}

/// TIOCSWINSZ: sets the terminal size (the kernel sends SIGWINCH to the foreground group).
fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Terminal output to `Stdout` events until EIO (every slave descriptor closed).
async fn read_master(master: Arc<AsyncFd<OwnedFd>>, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; super::CHUNK_BYTES];
    loop {
        let Ok(mut guard) = master.readable().await else {
            return;
        };
        match guard
            .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(io::Error::from))
        {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => {
                if tx.send(Event::Stdout(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Err(_would_block) => continue,
        }
    }
}

/// Client keystrokes to the terminal, in order.
async fn write_master(master: Arc<AsyncFd<OwnedFd>>, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(data) = rx.recv().await {
        let mut written = 0;
        while written < data.len() {
            let Ok(mut guard) = master.writable().await else {
                return;
            };
            match guard.try_io(|fd| {
                nix::unistd::write(fd.get_ref(), &data[written..]).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => written += n,
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}
