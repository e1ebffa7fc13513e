//! PTY sessions through the real agent binary.

mod common;

use std::time::{Duration, Instant};

use common::{session_members_named, wait_gone, wait_until, Agent};
use hangar_guest::{Event, ExitStatus, Input, PtyReader, PtyRequest};

const DEADLINE: Duration = Duration::from_secs(10);

fn shell() -> PtyRequest {
    PtyRequest {
        argv: vec!["sh".into()],
        // A fixed prompt that the typed commands never echo.
        env: vec![("PS1".into(), "PROMPT> ".into())],
        ..Default::default()
    }
}

/// Reads terminal output until it contains `needle`; returns everything read. Panics on Exit
/// or after `DEADLINE`.
async fn read_until(reader: &mut PtyReader, needle: &str) -> String {
    let end = Instant::now() + DEADLINE;
    let mut seen = String::new();
    while !seen.contains(needle) {
        let left = end.saturating_duration_since(Instant::now());
        match reader.next_event_within(left).await {
            Ok(Some(Event::Stdout(d))) => seen.push_str(&String::from_utf8_lossy(&d)),
            other => panic!("waiting for {needle:?}, got {other:?}; output so far: {seen:?}"),
        }
    }
    seen
}

/// Reads until `Exit` and returns it.
async fn read_exit(reader: &mut PtyReader) -> ExitStatus {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match reader.next_event_within(left).await.expect("event") {
            Some(Event::Stdout(_)) => {}
            Some(Event::Exit(s)) => return s,
            other => panic!("expected Exit, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn resize_then_stty_size_then_exit_code() {
    let agent = Agent::start().await;
    let (mut writer, mut reader) = agent.client().pty(shell()).await.expect("pty");
    read_until(&mut reader, "PROMPT> ").await;
    writer
        .send(Input::Resize {
            rows: 40,
            cols: 100,
        })
        .await
        .expect("resize");
    writer
        .send(Input::Stdin(b"stty size\n".to_vec()))
        .await
        .expect("type");
    read_until(&mut reader, "40 100").await;
    writer
        .send(Input::Stdin(b"echo \"term=$TERM\"\n".to_vec()))
        .await
        .expect("type");
    read_until(&mut reader, "term=xterm-256color").await;
    writer
        .send(Input::Stdin(b"exit 7\n".to_vec()))
        .await
        .expect("type");
    let status = read_exit(&mut reader).await;
    assert_eq!(status.code, Some(7));
    assert_eq!(reader.next_event().await.expect("after exit"), None);
}

#[tokio::test]
async fn initial_size_is_applied() {
    let agent = Agent::start().await;
    let req = PtyRequest {
        argv: vec!["stty".into(), "size".into()],
        rows: 33,
        cols: 111,
        ..Default::default()
    };
    let (_writer, mut reader) = agent.client().pty(req).await.expect("pty");
    read_until(&mut reader, "33 111").await;
    assert_eq!(read_exit(&mut reader).await.code, Some(0));
}

#[tokio::test]
async fn ctrl_c_interrupts_the_foreground_job() {
    let agent = Agent::start().await;
    let (mut writer, mut reader) = agent.client().pty(shell()).await.expect("pty");
    let session = reader.pid();
    read_until(&mut reader, "PROMPT> ").await;
    writer
        .send(Input::Stdin(b"sleep 30\n".to_vec()))
        .await
        .expect("type");
    let mut sleepers = Vec::new();
    wait_until(DEADLINE, || {
        sleepers = session_members_named(session, "sleep");
        let found = !sleepers.is_empty();
        async move { found }
    })
    .await;
    writer.send(Input::Stdin(vec![0x03])).await.expect("ctrl-c");
    wait_gone(&sleepers, DEADLINE).await;
    // The shell is back and still works.
    writer
        .send(Input::Stdin(b"echo back-$((6*7))\n".to_vec()))
        .await
        .expect("type");
    read_until(&mut reader, "back-42").await;
    writer.send(Input::CloseStdin).await.expect("ctrl-d");
    assert_eq!(read_exit(&mut reader).await.code, Some(0));
}

#[tokio::test]
async fn signal_input_goes_to_the_foreground_group() {
    let agent = Agent::start().await;
    let (mut writer, mut reader) = agent.client().pty(shell()).await.expect("pty");
    let session = reader.pid();
    read_until(&mut reader, "PROMPT> ").await;
    writer
        .send(Input::Stdin(b"sleep 30; echo rc=$?\n".to_vec()))
        .await
        .expect("type");
    let mut sleepers = Vec::new();
    wait_until(DEADLINE, || {
        sleepers = session_members_named(session, "sleep");
        let found = !sleepers.is_empty();
        async move { found }
    })
    .await;
    writer.send(Input::Signal(15)).await.expect("signal");
    // SIGTERM reached the sleep (128 + 15), not the shell, which goes on.
    read_until(&mut reader, "rc=143").await;
    writer
        .send(Input::Stdin(b"exit 0\n".to_vec()))
        .await
        .expect("type");
    assert_eq!(read_exit(&mut reader).await.code, Some(0));
}

#[tokio::test]
async fn hanging_up_kills_the_session() {
    let agent = Agent::start().await;
    let (mut writer, mut reader) = agent.client().pty(shell()).await.expect("pty");
    let session = reader.pid();
    read_until(&mut reader, "PROMPT> ").await;
    // A background job in its own process group, and a foreground one.
    writer
        .send(Input::Stdin(b"sleep 31 & sleep 32\n".to_vec()))
        .await
        .expect("type");
    let mut sleepers = Vec::new();
    wait_until(DEADLINE, || {
        sleepers = session_members_named(session, "sleep");
        let found = sleepers.len() == 2;
        async move { found }
    })
    .await;
    drop(writer);
    drop(reader);
    let mut all = sleepers.clone();
    all.push(session);
    wait_gone(&all, DEADLINE).await;
}

#[tokio::test]
async fn login_shell_by_default() {
    let agent = Agent::start().await;
    let req = PtyRequest {
        env: vec![("SHELL".into(), "/bin/sh".into())],
        ..Default::default()
    };
    let (mut writer, mut reader) = agent.client().pty(req).await.expect("pty");
    // "$0" of a login shell starts with '-'.
    writer
        .send(Input::Stdin(b"echo \"zero=$0\"; exit 5\n".to_vec()))
        .await
        .expect("type");
    read_until(&mut reader, "zero=-sh").await;
    assert_eq!(read_exit(&mut reader).await.code, Some(5));
}

#[tokio::test]
async fn missing_pty_command_is_not_found() {
    let agent = Agent::start().await;
    let req = PtyRequest {
        argv: vec!["hangar-no-such-command".into()],
        ..Default::default()
    };
    assert!(matches!(
        agent.client().pty(req).await,
        Err(hangar_guest::GuestError::Remote {
            code: hangar_guest::ErrorCode::NotFound,
            ..
        })
    ));
}
