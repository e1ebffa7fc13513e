//! `GET /api/v1/stream`: live updates as server-sent events (WHATWG HTML "Server-sent
//! events"; a browser's `EventSource` sends the `hangar_session` cookie, scripts a bearer
//! token).
//!
//! Named events, each `data:` one JSON document:
//! - `sandbox`: a [`SandboxView`] (as `GET /api/v1/sandboxes/{id}`) whenever a sandbox's
//!   state or boot stages change; the owner's own, or every one for an admin;
//! - `event`: an [`EventView`] as it is recorded (admins only);
//! - `node_sample`: [`NodeSampleEvent`] (admins only);
//! - `sandbox_sample`: [`SandboxSampleEvent`] (owner and admins);
//! - `resync`: [`ResyncEvent`], the stream fell behind and lost messages: refetch;
//! - a `: keep-alive` comment every 15 s.
//!
//! The stream ends when the server shuts down ([`crate::live::LiveBus::close`]).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use hangar_identity::Scope;

use super::auth::Caller;
use super::dto::{EventView, NodeSampleEvent, ResyncEvent, SandboxSampleEvent, SandboxView};
use super::AppState;
use crate::error::{ApiError, Problem};
use crate::live::{Delivery, LiveMessage, Subscription, Viewer};

/// Interval of the `: keep-alive` comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Live updates (server-sent events): `sandbox`, `event` (admins), `node_sample` (admins),
/// `sandbox_sample`, `resync`. Each user sees only their own sandboxes; admins see all.
#[utoipa::path(get, path = "/api/v1/stream", tag = "live",
    responses(
        (status = 200, description = "text/event-stream of named events: `sandbox` \
            (SandboxView), `event` (EventView, admins), `node_sample` ({node_id, sample}, \
            admins), `sandbox_sample` ({sandbox_id, sample}), `resync` ({missed}: refetch); \
            a keep-alive comment every 15 s",
            content_type = "text/event-stream", body = String),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    caller.require(Scope::SandboxesRead)?;
    let viewer = Viewer {
        user: caller.user,
        admin: crate::accounts::require_admin(&caller).is_ok(),
    };
    let subscription = state.live.subscribe(viewer);
    let events = futures::stream::unfold(
        (subscription, state),
        |(mut subscription, state): (Subscription, AppState)| async move {
            let delivery = subscription.next().await?;
            let event = sse_event(&state, delivery);
            Some((Ok(event), (subscription, state)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The wire form of one delivery.
fn sse_event(state: &AppState, delivery: Delivery) -> SseEvent {
    let (name, data) = match delivery {
        Delivery::Lagged(missed) => ("resync", json(&ResyncEvent { missed })),
        Delivery::Message(LiveMessage::Sandbox(sandbox)) => {
            let sandbox = (*sandbox).clone();
            let address = state.sandboxes.network_address(&sandbox);
            (
                "sandbox",
                json(&SandboxView::from(sandbox).with_address(address)),
            )
        }
        Delivery::Message(LiveMessage::Event(event)) => ("event", json(&EventView::from(&*event))),
        Delivery::Message(LiveMessage::NodeSample { node_id, sample }) => (
            "node_sample",
            json(&NodeSampleEvent {
                node_id,
                sample: (*sample).clone(),
            }),
        ),
        Delivery::Message(LiveMessage::SandboxSample {
            sandbox_id, sample, ..
        }) => (
            "sandbox_sample",
            json(&SandboxSampleEvent {
                sandbox_id,
                sample: (*sample).clone(),
            }),
        ),
    };
    SseEvent::default().event(name).data(data)
}

/// JSON text of a DTO (these serialize infallibly: strings, numbers, ids, times).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
