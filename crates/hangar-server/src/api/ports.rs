//! `GET /api/v1/sandboxes/{id}/ports/{port}/ws`: a WebSocket bridged to a TCP port on the
//! sandbox's loopback, through the guest agent (what websockify does, without a process in the
//! sandbox). Binary messages carry the bytes both ways; the `binary` subprotocol is accepted,
//! as noVNC asks for it. Used by the remote-browser viewer (VNC on port 5900) and for reaching
//! a CLI's localhost callback or a dev server.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::auth::Caller;
use super::sandboxes::parse_id;
use super::AppState;
use crate::error::{ApiError, Problem};
use hangar_identity::Scope;

/// Bytes read from the sandbox per WebSocket message, at most.
const CHUNK: usize = 64 * 1024;

/// Bridges a WebSocket to TCP `port` inside the sandbox.
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/ports/{port}/ws", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"),
        ("port" = u16, Path, description = "TCP port on the sandbox's loopback")),
    responses((status = 101, description = "Switching to a binary WebSocket carrying the TCP bytes"),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 502, description = "Nothing listens on the port", body = Problem)))]
pub async fn port_ws(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, port)): Path<(String, String)>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let id = parse_id(&id)?;
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request("port must be a number between 1 and 65535"))?;
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            state
                .sandboxes
                .get_running(&caller, id, "forward a port of")
                .await?;
            return Err(ApiError::bad_request(rejection.body_text()));
        }
    };
    let stream = state.sandboxes.forward(&caller, id, port).await?;
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |socket| bridge(socket, stream)))
}

/// Copies bytes between a WebSocket (binary messages) and a stream until either side ends.
pub(super) async fn bridge(mut socket: WebSocket, stream: UnixStream) {
    let (mut from_sandbox, mut to_sandbox) = stream.into_split();
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            n = from_sandbox.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if socket.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if to_sandbox.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if to_sandbox.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = to_sandbox.shutdown().await;
                    return;
                }
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
