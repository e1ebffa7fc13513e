//! Host subprocesses with a deadline, and small file helpers shared by drivers.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::driver::DriverError;

/// Output of a finished host command.
#[derive(Debug)]
pub struct CommandOutput {
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Runs `cmd` to completion in its own process group, killing the group if it is still running
/// after `deadline`. Non-zero exit is [`DriverError::Command`] with the tail of stderr;
/// missing the deadline is [`DriverError::Timeout`].
pub async fn run_with_deadline(
    mut cmd: Command,
    deadline: Duration,
) -> Result<CommandOutput, DriverError> {
    let label = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| DriverError::Command {
        command: label.clone(),
        code: None,
        stderr: e.to_string(),
    })?;
    let pid = child.id();
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            if out.status.success() {
                Ok(CommandOutput {
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            } else {
                Err(DriverError::Command {
                    command: label,
                    code: out.status.code(),
                    stderr: tail_text(&out.stderr, 10),
                })
            }
        }
        Ok(Err(e)) => Err(DriverError::Command {
            command: label,
            code: None,
            stderr: e.to_string(),
        }),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The child is its own group leader (process_group(0)).
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(DriverError::Timeout {
                command: label,
                after: deadline,
            })
        }
    }
}

fn describe(cmd: &Command) -> String {
    let std = cmd.as_std();
    let mut parts = vec![std.get_program().to_string_lossy().into_owned()];
    parts.extend(std.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// The last `lines` lines of `bytes` as text (lossy UTF-8), joined by newlines.
pub fn tail_text(bytes: &[u8], lines: usize) -> String {
    tail_lines(&String::from_utf8_lossy(bytes), lines).join("\n")
}

fn tail_lines(text: &str, lines: usize) -> Vec<String> {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].iter().map(|l| (*l).to_owned()).collect()
}

/// The last `lines` lines of the file at `path` (reads at most its last 64 KiB), oldest first.
/// A missing or unreadable file gives an empty list.
pub fn file_tail(path: &Path, lines: usize) -> Vec<String> {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(WINDOW);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    // When the window cut a line in half, drop the partial first line.
    let text = if start > 0 {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    } else {
        &text
    };
    tail_lines(text, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_in_order() {
        assert_eq!(tail_text(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_text(b"only", 5), "only");
    }

    #[test]
    fn file_tail_reads_end_of_large_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("console.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&path, text).expect("write");
        assert_eq!(file_tail(&path, 2), vec!["line 19998", "line 19999"]);
        assert!(file_tail(&dir.path().join("missing"), 3).is_empty());
    }

    #[tokio::test]
    async fn deadline_kills_the_command() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        let err = run_with_deadline(cmd, Duration::from_millis(200))
            .await
            .expect_err("must time out");
        assert!(matches!(err, DriverError::Timeout { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn failure_carries_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 4"]);
        match run_with_deadline(cmd, Duration::from_secs(5)).await {
            Err(DriverError::Command { code, stderr, .. }) => {
                assert_eq!(code, Some(4));
                assert_eq!(stderr, "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
