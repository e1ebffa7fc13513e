//! WebSocket bridge to a TCP port inside a sandbox (what the remote-browser viewer uses).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hangar_testkit::{images, wait_until, TestPlane};
use reqwest::Method;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn websocket_reaches_a_port_inside_the_sandbox() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    // An echo server on the sandbox's loopback, detached from the exec.
    let (status, out) = tp
        .exec(
            &t,
            &id,
            &[
                "sh",
                "-c",
                "nc -ll -p 5000 -e cat </dev/null >/dev/null 2>&1 &",
            ],
        )
        .await?;
    assert_eq!(status, 200, "{out}");

    let url = format!(
        "{}/api/v1/sandboxes/{id}/ports/5000/ws",
        tp.base.replacen("http", "ws", 1)
    );
    let connect = || async {
        let mut req = url.clone().into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
        req.headers_mut()
            .insert("sec-websocket-protocol", "binary".parse()?);
        anyhow::Ok(tokio_tungstenite::connect_async(req).await)
    };
    // The server may need a moment to listen.
    let (mut ws, resp) = wait_until(Duration::from_secs(10), "echo server", || async {
        Ok(connect().await?.ok())
    })
    .await?;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("binary")
    );
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::Binary(payload.clone().into())).await?;
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Binary(b))) => echoed.extend_from_slice(&b),
            other => anyhow::bail!("unexpected {other:?} after {} bytes", echoed.len()),
        }
    }
    assert_eq!(echoed, payload);
    ws.close(None).await?;

    // Nothing listening, a bad port, another user.
    let (status, body) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{id}/ports/5001/ws"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 400, "not a websocket request: {body}");
    let mut req = format!(
        "{}/api/v1/sandboxes/{id}/ports/5001/ws",
        tp.base.replacen("http", "ws", 1)
    )
    .into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {t}").parse()?);
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 502),
        other => anyhow::bail!("expected 502, got {other:?}"),
    }
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{id}/ports/notaport/ws"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 400);
    let bob = tp.new_user("bob").await?;
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{id}/ports/5000/ws"),
            Some(&bob),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    tp.shutdown().await
}
