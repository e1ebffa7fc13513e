//! The real agent binary driven by the real client: ping, exec, files, and the agent's own
//! lifecycle.

mod common;

use std::time::{Duration, Instant};

use common::{alive, sh, wait_gone, Agent};
use hangar_guest::protocol::ErrorCode;
use hangar_guest::{Event, ExecRequest, GuestError, Input, PutFileRequest};

const DEADLINE: Duration = Duration::from_secs(10);

fn exec(argv: Vec<String>) -> ExecRequest {
    ExecRequest {
        argv,
        ..Default::default()
    }
}

#[tokio::test]
async fn ping_reports_version_and_agent_pid() {
    let agent = Agent::start().await;
    let info = agent.client().ping(DEADLINE).await.expect("ping");
    assert_eq!(info.version, hangar_guest::VERSION);
    assert_eq!(Some(info.pid), agent.child.id());
}

#[tokio::test]
async fn exec_returns_exact_output_and_exit_code() {
    let agent = Agent::start().await;
    let out = agent
        .client()
        .exec_collect(exec(sh("echo out; echo err >&2; exit 3")), DEADLINE)
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code, Some(3));
    assert_eq!(out.status.signal, None);
    assert!(!out.status.timed_out);
}

#[tokio::test]
async fn exec_writes_stdin_then_closes_it() {
    let agent = Agent::start().await;
    let client = agent.client();
    let req = ExecRequest {
        argv: vec!["cat".into()],
        stdin: Some(b"hello\nworld\n".to_vec()),
        ..Default::default()
    };
    let out = client.exec_collect(req, DEADLINE).await.expect("exec");
    assert_eq!(out.stdout, b"hello\nworld\n");
    assert!(out.status.success());

    // Without stdin the command reads /dev/null: cat ends at once instead of hanging.
    let out = client
        .exec_collect(exec(vec!["cat".into()]), DEADLINE)
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"");
    assert!(out.status.success());
}

#[tokio::test]
async fn exec_streams_output_before_exit() {
    let agent = Agent::start().await;
    let mut stream = agent
        .client()
        .exec(exec(sh("echo a; sleep 1; echo b")))
        .await
        .expect("exec");
    let first = stream.next_event_within(DEADLINE).await.expect("event");
    let got_a = Instant::now();
    assert_eq!(first, Some(Event::Stdout(b"a\n".to_vec())));
    // The command is still running when `a` arrives.
    assert!(alive(stream.pid()));
    let mut rest = Vec::new();
    let exited = loop {
        match stream.next_event_within(DEADLINE).await.expect("event") {
            Some(Event::Stdout(d)) => rest.extend(d),
            Some(Event::Exit(s)) => break s,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(got_a.elapsed() >= Duration::from_millis(500));
    assert_eq!(rest, b"b\n");
    assert!(exited.success());
    assert_eq!(stream.next_event().await.expect("after exit"), None);
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_process_group() {
    let agent = Agent::start().await;
    let req = ExecRequest {
        argv: sh("sleep 30 & echo $!; wait"),
        timeout_ms: Some(300),
        ..Default::default()
    };
    let started = Instant::now();
    let mut stream = agent.client().exec(req).await.expect("exec");
    let shell = stream.pid();
    let mut stdout = Vec::new();
    let status = loop {
        match stream.next_event_within(DEADLINE).await.expect("event") {
            Some(Event::Stdout(d)) => stdout.extend(d),
            Some(Event::Exit(s)) => break s,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(status.timed_out);
    assert_eq!(status.signal, Some(9));
    assert_eq!(status.code, None);
    let sleeper: u32 = String::from_utf8_lossy(&stdout)
        .trim()
        .parse()
        .expect("background pid on stdout");
    wait_gone(&[shell, sleeper], DEADLINE).await;
}

#[tokio::test]
async fn exec_timeout_on_a_plain_command() {
    let agent = Agent::start().await;
    let req = ExecRequest {
        argv: vec!["sleep".into(), "30".into()],
        timeout_ms: Some(300),
        ..Default::default()
    };
    let mut stream = agent.client().exec(req).await.expect("exec");
    let pid = stream.pid();
    let event = stream.next_event_within(DEADLINE).await.expect("event");
    let Some(Event::Exit(status)) = event else {
        panic!("expected Exit, got {event:?}");
    };
    assert!(status.timed_out);
    assert_eq!(status.signal, Some(9));
    wait_gone(&[pid], DEADLINE).await;
}

#[tokio::test]
async fn missing_command_is_not_found_and_does_not_run() {
    let agent = Agent::start().await;
    let client = agent.client();
    let err = client
        .exec(exec(vec!["hangar-no-such-command".into()]))
        .await
        .expect_err("must not start");
    assert!(
        matches!(
            err,
            GuestError::Remote {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    let err = client
        .exec_collect(exec(vec!["/no/such/binary".into()]), DEADLINE)
        .await
        .expect_err("must not start");
    assert!(matches!(
        err,
        GuestError::Remote {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    let req = ExecRequest {
        argv: vec!["true".into()],
        cwd: Some("/no/such/dir".into()),
        ..Default::default()
    };
    assert!(matches!(
        client.exec(req).await,
        Err(GuestError::Remote {
            code: ErrorCode::NotFound,
            ..
        })
    ));
}

#[tokio::test]
async fn non_executable_file_is_permission_denied() {
    let agent = Agent::start().await;
    let client = agent.client();
    let path = agent.dir.path().join("not-executable");
    let path = path.to_str().expect("utf-8 path");
    client
        .put_file(
            PutFileRequest {
                path: path.into(),
                mode: 0o644,
                data: b"#!/bin/sh\necho hi\n".to_vec(),
            },
            DEADLINE,
        )
        .await
        .expect("put");
    assert!(matches!(
        client.exec(exec(vec![path.into()])).await,
        Err(GuestError::Remote {
            code: ErrorCode::PermissionDenied,
            ..
        })
    ));
}

#[tokio::test]
async fn exec_env_and_cwd() {
    let agent = Agent::start().await;
    let req = ExecRequest {
        argv: sh("echo \"$(pwd) $GREETING $LANG\""),
        env: vec![("GREETING".into(), "hi".into())],
        cwd: Some("/tmp".into()),
        ..Default::default()
    };
    let out = agent
        .client()
        .exec_collect(req, DEADLINE)
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"/tmp hi C.UTF-8\n");
}

#[tokio::test]
async fn signal_input_reaches_the_process_group() {
    let agent = Agent::start().await;
    let mut stream = agent
        .client()
        .exec(exec(vec!["sleep".into(), "30".into()]))
        .await
        .expect("exec");
    stream.send(Input::Signal(15)).await.expect("send");
    let event = stream.next_event_within(DEADLINE).await.expect("event");
    let Some(Event::Exit(status)) = event else {
        panic!("expected Exit, got {event:?}");
    };
    assert_eq!(status.signal, Some(15));
    assert!(!status.timed_out);
}

#[tokio::test]
async fn large_output_arrives_whole() {
    let agent = Agent::start().await;
    let out = agent
        .client()
        .exec_collect(
            exec(sh("head -c 3000000 /dev/zero; head -c 1000 /dev/zero >&2")),
            DEADLINE,
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.iter().all(|b| *b == 0));
    assert_eq!(out.stderr.len(), 1000);
}

#[tokio::test]
async fn concurrent_execs_do_not_mix() {
    let agent = Agent::start().await;
    let client = agent.client();
    let runs = (0..16).map(|i| {
        let client = client.clone();
        async move {
            let out = client
                .exec_collect(
                    exec(sh(&format!("sleep 0.5; echo {i}; exit {i}"))),
                    DEADLINE,
                )
                .await
                .expect("exec");
            (i, out)
        }
    });
    let started = Instant::now();
    for (i, out) in spawn_all(runs).await {
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
        assert_eq!(out.status.code, Some(i));
    }
    // Served concurrently, not one after another (16 x 0.5 s = 8 s).
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// Runs the futures as concurrent tasks and collects their outputs in order.
async fn spawn_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn exec_collect_deadline_is_a_timeout_and_kills() {
    let agent = Agent::start().await;
    let client = agent.client();
    let marker = agent.dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", marker.display());
    let deadline = Duration::from_millis(500);
    let err = client
        .exec_collect(exec(sh(&script)), deadline)
        .await
        .expect_err("deadline");
    assert!(matches!(err, GuestError::Timeout { after } if after == deadline));
    let pid: u32 = std::fs::read_to_string(&marker)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_gone(&[pid], DEADLINE).await;
}

#[tokio::test]
async fn client_disconnect_kills_the_command() {
    let agent = Agent::start().await;
    let mut stream = agent
        .client()
        .exec(exec(sh("sleep 30 & echo $!; wait")))
        .await
        .expect("exec");
    let shell = stream.pid();
    let event = stream.next_event_within(DEADLINE).await.expect("event");
    let Some(Event::Stdout(d)) = event else {
        panic!("expected Stdout, got {event:?}");
    };
    let sleeper: u32 = String::from_utf8_lossy(&d).trim().parse().expect("pid");
    assert!(alive(shell) && alive(sleeper));
    drop(stream);
    wait_gone(&[shell, sleeper], DEADLINE).await;
}

#[tokio::test]
async fn put_and_get_file_round_trip() {
    let agent = Agent::start().await;
    let client = agent.client();
    let path = agent.dir.path().join("deep/er/creds.json");
    let path = path.to_str().expect("utf-8 path");
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    client
        .put_file(
            PutFileRequest {
                path: path.into(),
                mode: 0o600,
                data: data.clone(),
            },
            DEADLINE,
        )
        .await
        .expect("put");
    let (got, mode) = client.get_file(path, DEADLINE).await.expect("get");
    assert_eq!(got, data);
    assert_eq!(mode, 0o600);
    let on_disk = std::fs::metadata(path).expect("stat");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&on_disk.permissions()) & 0o7777,
        0o600
    );

    client
        .put_file(
            PutFileRequest {
                path: path.into(),
                mode: 0o755,
                data: b"#!/bin/sh\necho replaced\n".to_vec(),
            },
            DEADLINE,
        )
        .await
        .expect("overwrite");
    let out = client
        .exec_collect(exec(vec![path.into()]), DEADLINE)
        .await
        .expect("run the file");
    assert_eq!(out.stdout, b"replaced\n");

    assert!(matches!(
        client.get_file("/no/such/file", DEADLINE).await,
        Err(GuestError::Remote {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    assert!(matches!(
        client.get_file("/", DEADLINE).await,
        Err(GuestError::Remote {
            code: ErrorCode::InvalidRequest,
            ..
        })
    ));
}

#[tokio::test]
async fn sigterm_stops_the_agent_cleanly() {
    let mut agent = Agent::start().await;
    let mut stream = agent
        .client()
        .exec(exec(vec!["sleep".into(), "30".into()]))
        .await
        .expect("exec");
    let sleeper = stream.pid();
    let agent_pid = agent.child.id().expect("agent pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = tokio::time::timeout(DEADLINE, agent.child.wait())
        .await
        .expect("agent exits within deadline")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(!agent.sock.exists(), "socket removed");
    wait_gone(&[sleeper], DEADLINE).await;
    // The client sees the end of the stream, not a hang.
    assert!(stream.next_event_within(DEADLINE).await.is_err());
}

#[tokio::test]
async fn stale_socket_is_replaced_on_restart() {
    let mut first = Agent::start().await;
    let sock = first.sock.clone();
    first.child.start_kill().expect("kill");
    tokio::time::timeout(DEADLINE, first.child.wait())
        .await
        .expect("killed agent exits within deadline")
        .expect("wait");
    assert!(sock.exists(), "SIGKILL leaves the socket file behind");
    let mut cmd = tokio::process::Command::new(common::AGENT_BIN);
    cmd.env(hangar_guest::agent::LISTEN_ENV, &sock);
    let dir = tempfile::tempdir().expect("tempdir");
    let second = Agent::start_with(cmd, dir, sock).await;
    second.client().ping(DEADLINE).await.expect("ping");
}

#[tokio::test]
async fn commands_start_with_default_signal_state() {
    // Start the agent with SIGHUP, SIGINT and SIGQUIT ignored, as a shell does for background
    // jobs; it also ignores SIGPIPE itself (Rust runtime). None of that may reach commands.
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' HUP INT QUIT; exec \"$0\" --listen \"$1\"")
        .arg(common::AGENT_BIN)
        .arg(&sock);
    let agent = Agent::start_with(cmd, dir, sock).await;
    let agent_ignores = ignored_signals(agent.child.id().expect("pid"));
    // (SIGINT is handled by the agent, so only HUP and QUIT stay ignored.)
    assert_eq!(
        agent_ignores & 0b101,
        0b101,
        "precondition: HUP, QUIT ignored"
    );

    let client = agent.client();
    let out = client
        .exec_collect(
            exec(vec![
                "grep".into(),
                "^SigIgn".into(),
                "/proc/self/status".into(),
            ]),
            DEADLINE,
        )
        .await
        .expect("exec");
    let line = String::from_utf8_lossy(&out.stdout);
    let mask = u64::from_str_radix(line.trim().trim_start_matches("SigIgn:").trim(), 16)
        .expect("hex mask");
    // Signals 32 and 33 belong to glibc and cannot be reset; everything else must be default.
    assert_eq!(mask & !GLIBC_INTERNAL, 0, "{line}");
    let out = client
        .exec_collect(exec(sh("yes | head -n 1")), DEADLINE)
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"y\n");
    assert_eq!(out.stderr, b"", "yes must die of SIGPIPE quietly");
}

/// Bits of signals 32 and 33 in a /proc signal mask (bit n-1 is signal n).
const GLIBC_INTERNAL: u64 = (1 << 31) | (1 << 32);

fn ignored_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("SigIgn line");
    u64::from_str_radix(line.trim(), 16).expect("hex mask")
}
