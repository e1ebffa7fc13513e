//! `hangar sandbox shell`: an interactive terminal over the API's PTY WebSocket.
//! The local terminal is put in raw mode (restored on exit, also on error); keystrokes,
//! including Ctrl-C, go to the sandbox's terminal; window size changes are sent as resizes.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures::{SinkExt, StreamExt};
use hangar_server::api::dto::{PtyClientMessage, PtyServerMessage};
use hangar_server::error::Problem;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::Message;

use crate::client::ApiClient;

/// Deadline for the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct RawMode;

impl RawMode {
    fn enable() -> Option<Self> {
        if std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok() {
            Some(Self)
        } else {
            None
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Runs the terminal session; returns the remote command's exit code (128+signal if killed).
pub async fn run(api: &ApiClient, id: &str, argv: &[String]) -> anyhow::Result<i32> {
    let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
    let mut url = reqwest::Url::parse(&format!("{}/api/v1/sandboxes/{id}/pty", api.base()))
        .context("building the terminal URL")?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| anyhow!("cannot use scheme {scheme}"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("rows", &rows.to_string());
        q.append_pair("cols", &cols.to_string());
        if !argv.is_empty() {
            q.append_pair("argv", &serde_json::to_string(argv)?);
        }
    }
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        AUTHORIZATION,
        format!("Bearer {}", api.token())
            .parse()
            .context("token is not a valid header value")?,
    );
    let (socket, _) = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Err(_) => anyhow::bail!("terminal did not open within {CONNECT_TIMEOUT:?}"),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let body = resp.body().clone().unwrap_or_default();
            return Err(match serde_json::from_slice::<Problem>(&body) {
                Ok(p) => anyhow!("{} ({}): {}", p.title, p.status, p.detail),
                Err(_) => anyhow!("terminal refused: {}", resp.status()),
            });
        }
        Ok(Err(e)) => return Err(e).context("opening the terminal"),
        Ok(Ok(pair)) => pair,
    };
    let (mut sink, mut stream) = socket.split();
    let raw = RawMode::enable();
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut stdin_open = true;
    let mut code = 1;
    loop {
        tokio::select! {
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
            _ = async { match winch.as_mut() { Some(w) => { w.recv().await; } None => std::future::pending().await } } => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    let msg = serde_json::to_string(&PtyClientMessage::Resize { rows, cols })?;
                    let _ = sink.send(Message::Text(msg.into())).await;
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    let mut out = std::io::stdout();
                    out.write_all(&data)?;
                    out.flush()?;
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<PtyServerMessage>(&text) {
                    Ok(PtyServerMessage::Exit { code: c, signal }) => {
                        code = c.unwrap_or_else(|| 128 + signal.unwrap_or(0));
                    }
                    Ok(PtyServerMessage::Error { message }) => {
                        drop(raw);
                        return Err(anyhow!("terminal: {message}"));
                    }
                    Err(_) => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(raw);
    Ok(code)
}
