//! Running a build step's program: its own process group, a deadline, output streamed line by
//! line to the progress sink, and the last lines kept for the error.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{BuildProgress, ImageError};

/// How many output lines an error carries.
const KEEP_LINES: usize = 20;
/// How long output is still read after the program exited (a grandchild may hold the pipe).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Kills the process group when dropped unless disarmed: a cancelled build leaves nothing
/// running.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` (stdin closed, stdout and stderr piped) in a new process group; each output line
/// goes to `progress.step_message`. After `deadline` the whole group is killed and
/// [`ImageError::Timeout`] returned; a non-zero exit is [`ImageError::CommandFailed`]. Whatever
/// is left of the group when the program exits is killed too.
pub(crate) async fn run_streaming(
    step: &str,
    program: &str,
    mut cmd: Command,
    deadline: Duration,
    progress: &dyn BuildProgress,
) -> Result<(), ImageError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ImageError::Spawn {
        step: step.to_owned(),
        program: program.to_owned(),
        source,
    })?;
    let mut guard = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let mut last: VecDeque<String> = VecDeque::with_capacity(KEEP_LINES);
    let mut out = child.stdout.take().map(|s| lines(s));
    let mut err = child.stderr.take().map(|s| lines(s));
    let mut note = |line: String| {
        progress.step_message(&line);
        if last.len() == KEEP_LINES {
            last.pop_front();
        }
        last.push_back(line);
    };

    let outcome = tokio::time::timeout(deadline, async {
        let mut status = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            if out.is_none() && err.is_none() {
                if let Some(status) = status {
                    return Ok(status);
                }
            }
            let drain = async {
                match drain_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                line = next_line(&mut out) => match line {
                    Some(l) => note(l),
                    None => out = None,
                },
                line = next_line(&mut err) => match line {
                    Some(l) => note(l),
                    None => err = None,
                },
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(|source| ImageError::Spawn {
                        step: step.to_owned(),
                        program: program.to_owned(),
                        source,
                    })?);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                () = drain => {
                    out = None;
                    err = None;
                }
            }
        }
    })
    .await;
    guard.kill();
    let last_lines = || last.iter().cloned().collect::<Vec<_>>();
    match outcome {
        Err(_elapsed) => {
            let _ = child.wait().await;
            Err(ImageError::Timeout {
                step: step.to_owned(),
                program: program.to_owned(),
                deadline,
                last_lines: last_lines(),
            })
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(ImageError::CommandFailed {
            step: step.to_owned(),
            program: program.to_owned(),
            status: status.to_string(),
            last_lines: last_lines(),
        }),
    }
}

type Lines = tokio::io::Split<BufReader<Box<dyn AsyncRead + Unpin + Send>>>;

fn lines(r: impl AsyncRead + Unpin + Send + 'static) -> Lines {
    BufReader::new(Box::new(r) as Box<dyn AsyncRead + Unpin + Send>).split(b'\n')
}

/// The next line of a stream, `None` at its end (or on a read error); pends forever for a
/// stream already closed, so `select!` ignores it.
async fn next_line(lines: &mut Option<Lines>) -> Option<String> {
    match lines {
        Some(l) => match l.next_segment().await {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                // Progress bars redraw with '\r': keep the last state of the line.
                let text = text.trim_end_matches('\r');
                Some(text.rsplit('\r').next().unwrap_or("").to_owned())
            }
            _ => None,
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl BuildProgress for Lines {
        fn step_started(&self, _: usize, _: usize, _: &str, _: bool) {}
        fn step_message(&self, line: &str) {
            self.0.lock().expect("lock").push(line.to_owned());
        }
        fn step_finished(&self, _: usize, _: Duration) {}
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[tokio::test]
    async fn streams_lines_and_reports_failure() {
        let p = Lines::default();
        run_streaming(
            "t",
            "sh",
            sh("echo one; echo two >&2"),
            Duration::from_secs(10),
            &p,
        )
        .await
        .expect("runs");
        let mut seen = p.0.lock().expect("lock").clone();
        seen.sort();
        assert_eq!(seen, ["one", "two"]);

        let err = run_streaming(
            "t",
            "sh",
            sh("echo bad; exit 3"),
            Duration::from_secs(10),
            &p,
        )
        .await
        .expect_err("fails");
        match err {
            ImageError::CommandFailed {
                last_lines, status, ..
            } => {
                assert_eq!(last_lines, ["bad"]);
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn deadline_kills_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("late");
        let script = format!(
            "(sleep 2; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let started = std::time::Instant::now();
        let err = run_streaming(
            "t",
            "sh",
            sh(&script),
            Duration::from_millis(500),
            &Lines::default(),
        )
        .await
        .expect_err("times out");
        assert!(matches!(err, ImageError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "the background child was killed with the group"
        );
    }

    #[tokio::test]
    async fn a_grandchild_holding_the_pipe_does_not_stall() {
        let started = std::time::Instant::now();
        run_streaming(
            "t",
            "sh",
            sh("sleep 30 & echo done"),
            Duration::from_secs(20),
            &Lines::default(),
        )
        .await
        .expect("runs");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
