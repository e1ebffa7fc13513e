//! The agent as PID 1 of a fresh pid namespace (`unshare --pid --fork --mount-proc`, root
//! only): it must reap orphans, relay SIGTERM, and exit with the agent's status. Skipped, with
//! a message, when not root or when `unshare` is missing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{sh, wait_until, Agent, AGENT_BIN};
use hangar_guest::{ExecRequest, GuestClient};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(10);

fn unshare_available() -> bool {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root for pid namespaces");
        return false;
    }
    let ok = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: `unshare --pid --fork --mount-proc` is unavailable");
    }
    ok
}

/// Starts the agent as PID 1 of a new pid namespace.
async fn start_as_pid1() -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("run/agent.sock");
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        AGENT_BIN,
        "--listen",
    ])
    .arg(&sock);
    Agent::start_with(cmd, dir, sock).await
}

/// Host pids of the children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

async fn run(client: &GuestClient, script: &str) -> String {
    let req = ExecRequest {
        argv: sh(script),
        ..Default::default()
    };
    let out = client.exec_collect(req, DEADLINE).await.expect("exec");
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn as_pid1_reaps_orphans_and_relays_sigterm() {
    if !unshare_available() {
        return;
    }
    let mut agent = start_as_pid1().await;
    let client = agent.client();
    let info = client.ping(DEADLINE).await.expect("ping");
    assert_eq!(info.pid, 2, "the agent is init's first child");
    assert_eq!(run(&client, "cat /proc/1/comm").await, "hangar-guest");

    // An orphan: its shell exits at once, so it is reparented to PID 1...
    let orphan = run(&client, "sleep 1 >/dev/null 2>&1 & echo $!").await;
    let ppid = run(&client, &format!("grep PPid /proc/{orphan}/status")).await;
    assert_eq!(ppid.split_whitespace().nth(1), Some("1"), "{ppid}");
    // ...and once it ends it must be reaped: a zombie would stay in /proc.
    let check = format!("test -e /proc/{orphan} && echo present || echo gone");
    wait_until(DEADLINE, || {
        let (client, check) = (&client, &check);
        async move { run(client, check).await == "gone" }
    })
    .await;

    // SIGTERM to PID 1 reaches the agent, which exits 0, and PID 1 with it.
    let unshare = agent.child.id().expect("unshare pid");
    let init = *children(unshare).first().expect("namespace init");
    kill(Pid::from_raw(init as i32), Signal::SIGTERM).expect("sigterm");
    let status = tokio::time::timeout(DEADLINE, agent.child.wait())
        .await
        .expect("init exits within deadline")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(!Path::new(&agent.sock).exists(), "socket removed");
}

#[tokio::test]
async fn as_pid1_exits_with_the_agents_status() {
    if !unshare_available() {
        return;
    }
    let mut agent = start_as_pid1().await;
    let unshare = agent.child.id().expect("unshare pid");
    let init = *children(unshare).first().expect("namespace init");
    let agent_pid = *children(init).first().expect("agent under init");
    kill(Pid::from_raw(agent_pid as i32), Signal::SIGKILL).expect("sigkill");
    let status = tokio::time::timeout(DEADLINE, agent.child.wait())
        .await
        .expect("init exits within deadline")
        .expect("wait");
    assert_eq!(status.code(), Some(128 + 9));
}
