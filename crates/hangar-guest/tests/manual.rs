//! Checks run by hand (`cargo test -p hangar-guest --test manual -- --ignored --nocapture`):
//! exec round-trip figures, and the static binary in an empty chroot.

mod common;

use std::time::{Duration, Instant};

use common::Agent;
use hangar_guest::protocol::ErrorCode;
use hangar_guest::{ExecRequest, GuestError, PutFileRequest};

const DEADLINE: Duration = Duration::from_secs(10);

/// Prints p50/p95/max of `exec_collect(["true"])` over 200 runs (after 10 warm-up runs).
/// Prints figures; asserts nothing about them.
#[tokio::test]
#[ignore = "prints timings; run by hand"]
async fn exec_round_trip_figures() {
    let agent = Agent::start().await;
    let client = agent.client();
    let req = ExecRequest {
        argv: vec!["true".into()],
        ..Default::default()
    };
    for _ in 0..10 {
        client
            .exec_collect(req.clone(), DEADLINE)
            .await
            .expect("warm-up");
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        let out = client
            .exec_collect(req.clone(), DEADLINE)
            .await
            .expect("exec");
        samples.push(t.elapsed());
        assert!(out.status.success());
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "exec `true` round trip over {} runs: p50 {:?}, p95 {:?}, max {:?}",
        samples.len(),
        pick(0.50),
        pick(0.95),
        samples[samples.len() - 1]
    );
    let t = Instant::now();
    for _ in 0..200 {
        client.ping(DEADLINE).await.expect("ping");
    }
    println!("ping round trip: mean {:?}", t.elapsed() / 200);
}

/// Runs the binary named by `HANGAR_GUEST_STATIC_BIN` (a `+crt-static` build) in a chroot that
/// holds only that binary and `/etc/passwd`. Root only; skipped with a message otherwise.
#[tokio::test]
#[ignore = "needs root and HANGAR_GUEST_STATIC_BIN"]
async fn static_binary_runs_in_empty_chroot() {
    let Some(bin) = std::env::var_os("HANGAR_GUEST_STATIC_BIN") else {
        eprintln!("skipped: HANGAR_GUEST_STATIC_BIN is not set");
        return;
    };
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::copy(&bin, root.join("hangar-guest")).expect("copy binary");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let sock = root.join("run/agent.sock");
    let mut cmd = tokio::process::Command::new("chroot");
    cmd.arg(&root)
        .args(["/hangar-guest", "--listen", "/run/agent.sock"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // The startup line names the path as seen inside the chroot.
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn chroot");
    let client = hangar_guest::GuestClient::unix(&sock);
    common::wait_until(DEADLINE, || async {
        client.ping(Duration::from_secs(1)).await.is_ok()
    })
    .await;
    let info = client.ping(DEADLINE).await.expect("ping");
    println!("static agent in empty chroot: {info:?}");

    client
        .put_file(
            PutFileRequest {
                path: "/tmp/x/y".into(),
                mode: 0o640,
                data: b"data".to_vec(),
            },
            DEADLINE,
        )
        .await
        .expect("put");
    assert_eq!(
        client.get_file("/tmp/x/y", DEADLINE).await.expect("get"),
        (b"data".to_vec(), 0o640)
    );
    // The only program in there is the agent itself.
    let out = client
        .exec_collect(
            ExecRequest {
                argv: vec!["/hangar-guest".into(), "--version".into()],
                ..Default::default()
            },
            DEADLINE,
        )
        .await
        .expect("exec the agent binary");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hangar-guest {}", hangar_guest::VERSION)
    );
    assert!(matches!(
        client
            .exec(ExecRequest {
                argv: vec!["sh".into()],
                ..Default::default()
            })
            .await,
        Err(GuestError::Remote {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    child.start_kill().expect("kill");
    let _ = tokio::time::timeout(DEADLINE, child.wait()).await;
}
