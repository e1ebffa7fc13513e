//! `Exec`: a command with stdin/stdout/stderr on pipes.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::procs::{self, ProcessTable};
use super::{env, pump, send_error, spawn_error, supervise, AbortOnDrop, InputReader, Running};
use crate::protocol::{write_frame, ErrorCode, Event, ExecRequest, Input};

/// Runs one exec request to completion, writing its events to `wr`.
pub(super) async fn run<W: AsyncWrite + Unpin>(
    req: ExecRequest,
    inputs: InputReader,
    wr: &mut W,
    table: &Arc<ProcessTable>,
) {
    let Some(program) = req.argv.first() else {
        return send_error(wr, ErrorCode::InvalidRequest, "argv is empty".into()).await;
    };
    let user = env::current_user();
    let prepared = env::command_env(user.as_ref(), &req.env, false)
        .and_then(|vars| Ok((env::resolve_cwd(req.cwd.as_deref(), &vars)?, vars)));
    let (cwd, vars) = match prepared {
        Ok(p) => p,
        Err((code, message)) => return send_error(wr, code, message).await,
    };

    let mut cmd = Command::new(program);
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(vars)
        .current_dir(cwd)
        .stdin(if req.stdin.is_some() || !have_dev_null() {
            // Without /dev/null (a bare chroot or initramfs), an empty pipe that is closed at
            // once reads the same: end of file.
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls signal(2) and
    // setsid(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            procs::reset_signal_dispositions();
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let (code, message) = spawn_error(program, &e);
            return send_error(wr, code, message).await;
        }
    };
    drop(cmd);
    let Some(pid) = child.id() else {
        return send_error(wr, ErrorCode::Io, "spawned process has no pid".into()).await;
    };
    let pid = pid as i32;
    let _registration = table.register(pid);

    let (tx, output) = mpsc::channel(8);
    let mut tasks = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        tasks.push(AbortOnDrop(tokio::spawn(pump(
            stdout,
            tx.clone(),
            Event::Stdout,
        ))));
    }
    if let Some(stderr) = child.stderr.take() {
        tasks.push(AbortOnDrop(tokio::spawn(pump(
            stderr,
            tx.clone(),
            Event::Stderr,
        ))));
    }
    drop(tx);
    // With `stdin: None` and no /dev/null, dropping the pipe here closes it.
    if let (Some(mut stdin), Some(data)) = (child.stdin.take(), req.stdin) {
        // Dropping `stdin` at the end closes it. A command that exits without reading makes
        // this fail with EPIPE, which is not an error of the exec.
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
        })));
    }

    if write_frame(wr, &Event::Started { pid: pid as u32 })
        .await
        .is_err()
    {
        procs::kill_tree(pid);
        let _ = child.wait().await;
        return;
    }
    let running = Running { child, pid, output };
    let timeout = req.timeout_ms.map(Duration::from_millis);
    supervise(running, timeout, inputs, wr, |input| {
        // The exec's stdin was fixed by the request; only signals apply.
        if let Input::Signal(n) = input {
            procs::signal_group(pid, n);
        }
    })
    .await;
}

fn have_dev_null() -> bool {
    std::path::Path::new("/dev/null").exists()
}
