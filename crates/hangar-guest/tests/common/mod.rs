//! Shared helpers: start the real `hangar-guest` binary on a socket in a temporary directory,
//! and poll for conditions with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hangar_guest::GuestClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

/// Path of the agent binary cargo built for these tests.
pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_hangar-guest");

/// Deadline for the agent to come up.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running agent process; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub sock: PathBuf,
    pub stderr: BufReader<ChildStderr>,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `hangar-guest --listen <tmp>/agent.sock` and waits for its startup line and a
    /// successful ping.
    pub async fn start() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("run/agent.sock");
        let mut cmd = Command::new(AGENT_BIN);
        cmd.arg("--listen").arg(&sock);
        Self::start_with(cmd, dir, sock).await
    }

    /// Starts the agent from a prepared command (which must make it listen on `sock`).
    pub async fn start_with(mut cmd: Command, dir: tempfile::TempDir, sock: PathBuf) -> Agent {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn hangar-guest");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
        let mut line = String::new();
        tokio::time::timeout(START_DEADLINE, stderr.read_line(&mut line))
            .await
            .expect("startup line within deadline")
            .expect("read stderr");
        assert_eq!(
            line.trim_end(),
            format!(
                "hangar-guest {} listening on {}",
                hangar_guest::VERSION,
                sock.display()
            )
        );
        let agent = Agent {
            child,
            sock,
            stderr,
            dir,
        };
        let client = agent.client();
        wait_until(START_DEADLINE, || async {
            client.ping(Duration::from_secs(1)).await.is_ok()
        })
        .await;
        agent
    }

    pub fn client(&self) -> GuestClient {
        GuestClient::unix(&self.sock)
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True while `pid` exists and is not a zombie (a zombie has finished running; whether it is
/// reaped depends on who its parent is).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].split_whitespace().next(), Some("Z" | "X")),
            None => false,
        },
        Err(_) => false,
    }
}

/// Waits until none of `pids` is alive.
pub async fn wait_gone(pids: &[u32], deadline: Duration) {
    wait_until(deadline, || async { pids.iter().all(|p| !alive(*p)) }).await;
}

/// Pids of live processes in session `sid` whose command name is `comm`.
pub fn session_members_named(sid: u32, comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let session = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(3))
                .and_then(|s| s.parse::<u32>().ok());
            name.trim_end() == comm && session == Some(sid) && alive(*pid)
        })
        .collect()
}

/// argv for `sh -c script`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Number of open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of inotify instances process `pid` holds open.
pub fn inotify_count(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().contains("inotify"))
                .unwrap_or(false)
        })
        .count()
}
