//! The terminal WebSocket: output, resize, Ctrl-C, exit status.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hangar_testkit::{images, TestPlane};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(tp: &TestPlane, token: &str, id: &str, query: &str) -> anyhow::Result<Ws> {
    let url = format!(
        "{}/api/v1/sandboxes/{id}/pty?{query}",
        tp.base.replacen("http", "ws", 1)
    );
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await??;
    Ok(ws)
}

/// Reads terminal output until it contains `needle` (or the deadline passes).
async fn read_until(
    ws: &mut Ws,
    seen: &mut String,
    needle: &str,
    deadline: Duration,
) -> anyhow::Result<()> {
    let end = Instant::now() + deadline;
    while !seen.contains(needle) {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => anyhow::bail!("no {needle:?} within {deadline:?}; got {seen:?}"),
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) => seen.push_str(&format!("<{t}>")),
            Ok(Some(Ok(_))) => {}
            Ok(other) => anyhow::bail!("socket ended: {other:?}; got {seen:?}"),
        }
    }
    Ok(())
}

async fn send(ws: &mut Ws, text: &str) -> anyhow::Result<()> {
    ws.send(Message::Binary(text.as_bytes().to_vec().into()))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_resizes_interrupts_and_reports_exit() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;

    let mut ws = open(&tp, &t, &id, "rows=30&cols=90").await?;
    let mut seen = String::new();
    send(&mut ws, "stty size\n").await?;
    read_until(&mut ws, &mut seen, "30 90", Duration::from_secs(10)).await?;

    let resize = json!({"type": "resize", "rows": 40, "cols": 100}).to_string();
    ws.send(Message::Text(resize.into())).await?;
    send(&mut ws, "stty size\n").await?;
    read_until(&mut ws, &mut seen, "40 100", Duration::from_secs(10)).await?;

    // Ctrl-C ends the foreground command, not the shell.
    send(&mut ws, "sleep 30\n").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut ws, "\u{3}").await?;
    send(&mut ws, "echo after-$?\n").await?;
    read_until(&mut ws, &mut seen, "after-130", Duration::from_secs(10)).await?;

    send(&mut ws, "exit 7\n").await?;
    read_until(
        &mut ws,
        &mut seen,
        "\"type\":\"exit\"",
        Duration::from_secs(10),
    )
    .await?;
    let exit_json = seen.rsplit('<').next().unwrap_or("").trim_end_matches('>');
    let exit: Value = serde_json::from_str(exit_json)?;
    assert_eq!(exit["code"], 7, "{seen}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_runs_a_given_command() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let argv = serde_json::to_string(&["sh", "-c", "tty >/dev/null && echo is-a-tty; exit 3"])?;
    let mut q = String::from("argv=");
    for b in argv.bytes() {
        if b.is_ascii_alphanumeric() {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    let mut ws = open(&tp, &t, &id, &q).await?;
    let mut seen = String::new();
    read_until(
        &mut ws,
        &mut seen,
        "\"type\":\"exit\"",
        Duration::from_secs(10),
    )
    .await?;
    assert!(seen.contains("is-a-tty"), "{seen}");
    assert!(seen.contains("\"code\":3"), "{seen}");
    tp.shutdown().await
}
