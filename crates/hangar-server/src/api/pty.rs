//! `GET /api/v1/sandboxes/{id}/pty`: an interactive terminal over a WebSocket.
//!
//! The terminal is opened in the guest before the upgrade, so a bad request (stopped or
//! destroyed sandbox, unknown command) gets an ordinary problem+json answer. After the upgrade:
//! client binary messages are keyboard input; client text messages are
//! [`PtyClientMessage`] (resize, signal, text input); server binary messages are terminal
//! output; a final [`PtyServerMessage`] text message carries the exit status, then the socket
//! closes.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use hangar_guest::client::{PtyReader, PtyWriter};
use hangar_guest::protocol::{Event, Input, PtyRequest};

use super::auth::Caller;
use super::dto::{PtyClientMessage, PtyQuery, PtyServerMessage};
use super::sandboxes::parse_id;
use super::AppState;
use crate::error::{ApiError, Problem};
use hangar_identity::Scope;

/// Opens an interactive terminal (WebSocket upgrade).
#[utoipa::path(get, path = "/api/v1/sandboxes/{id}/pty", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), PtyQuery),
    responses((status = 101, description = "Switching to the WebSocket terminal protocol"),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn pty(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    query: Result<Query<PtyQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::SandboxesWrite)?;
    let id = parse_id(&id)?;
    let Query(query) = query?;
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            // Say first what is wrong with the target (404, 409), then with the request.
            state
                .sandboxes
                .get_running(&caller, id, "open a terminal in")
                .await?;
            return Err(ApiError::bad_request(rejection.body_text()));
        }
    };
    let argv: Vec<String> = match query.argv.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|_| ApiError::bad_request("argv must be a JSON array of strings"))?,
    };
    let req = PtyRequest {
        argv,
        env: Vec::new(),
        cwd: None,
        rows: query.rows.unwrap_or(24).clamp(1, 1000),
        cols: query.cols.unwrap_or(80).clamp(1, 1000),
    };
    let (writer, reader) = state.sandboxes.open_pty(&caller, id, req).await?;
    Ok(ws.on_upgrade(move |socket| pump(socket, writer, reader)))
}

async fn pump(mut socket: WebSocket, mut writer: PtyWriter, mut reader: PtyReader) {
    loop {
        tokio::select! {
            event = reader.next_event() => match event {
                Ok(Some(Event::Stdout(data))) | Ok(Some(Event::Stderr(data))) => {
                    if socket.send(Message::Binary(data.into())).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Event::Exit(status))) => {
                    let msg = PtyServerMessage::Exit { code: status.code, signal: status.signal };
                    finish(&mut socket, &msg).await;
                    return;
                }
                Ok(Some(Event::Error { message, .. })) => {
                    finish(&mut socket, &PtyServerMessage::Error { message }).await;
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let msg = PtyServerMessage::Error { message: "terminal closed".into() };
                    finish(&mut socket, &msg).await;
                    return;
                }
                Err(e) => {
                    finish(&mut socket, &PtyServerMessage::Error { message: e.to_string() }).await;
                    return;
                }
            },
            msg = socket.recv() => {
                let input = match msg {
                    Some(Ok(Message::Binary(data))) => Input::Stdin(data.to_vec()),
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<PtyClientMessage>(&text) {
                        Ok(PtyClientMessage::Resize { rows, cols }) => Input::Resize { rows, cols },
                        Ok(PtyClientMessage::Signal { signal }) => Input::Signal(signal),
                        Ok(PtyClientMessage::Stdin { data }) => Input::Stdin(data.into_bytes()),
                        Err(_) => continue,
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // Client gone: dropping the guest connection ends the terminal.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                };
                if writer.send(input).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn finish(socket: &mut WebSocket, msg: &PtyServerMessage) {
    if let Ok(text) = serde_json::to_string(msg) {
        let _ = socket.send(Message::Text(text.into())).await;
    }
    let _ = socket.send(Message::Close(None)).await;
}
