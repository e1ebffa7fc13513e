//! The live bus: what changed, pushed to every open `GET /api/v1/stream` (server-sent
//! events) instead of being polled.
//!
//! A [`tokio::sync::broadcast`] channel of [`LiveMessage`]s, bounded ([`LiveBus::CAPACITY`]).
//! Publishers never wait: the sandbox service publishes every sandbox record it writes (state
//! or boot stages changed), the event service every event it records, and the node heartbeat
//! (later) every sample. Each subscriber filters by who it is ([`Viewer`]): a user gets only
//! their own sandboxes and their samples; an admin gets everything, including events and node
//! samples. A subscriber too slow to keep up loses the oldest messages and is told so
//! ([`Delivery::Lagged`]: the stream sends `resync`, the client refetches), never blocking the
//! publishers. [`LiveBus::close`] ends every subscription, so open streams do not hold a
//! graceful shutdown.

use std::sync::Arc;

use hangar_core::{Event, NodeId, Sandbox, SandboxId, UserId};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// One change on the bus. Cheap to clone (shared payloads).
#[derive(Clone, Debug)]
pub enum LiveMessage {
    /// A sandbox record as just written (SSE event `sandbox`). Seen by its owner and admins.
    Sandbox(Arc<Sandbox>),
    /// An event just recorded (SSE event `event`). Seen by admins.
    Event(Arc<Event>),
    /// A node's latest sample (SSE event `node_sample`). Seen by admins.
    NodeSample {
        /// The node.
        node_id: NodeId,
        /// The sample, already in its wire form (`NodeSample` JSON).
        sample: Arc<serde_json::Value>,
    },
    /// A sandbox's latest sample (SSE event `sandbox_sample`). Seen by its owner and admins.
    SandboxSample {
        /// The sandbox.
        sandbox_id: SandboxId,
        /// Its owner (who may see it).
        owner: UserId,
        /// The sample, already in its wire form (`SandboxSample` JSON).
        sample: Arc<serde_json::Value>,
    },
}

/// Who a subscription is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// The signed-in user.
    pub user: UserId,
    /// An admin whose credential carries the `admin` scope: sees everything.
    pub admin: bool,
}

impl LiveMessage {
    /// May `viewer` see this? Owners see their sandboxes and their samples; only admins see
    /// events, node samples and other people's sandboxes.
    pub fn visible_to(&self, viewer: &Viewer) -> bool {
        if viewer.admin {
            return true;
        }
        match self {
            LiveMessage::Sandbox(sandbox) => sandbox.owner == viewer.user,
            LiveMessage::SandboxSample { owner, .. } => *owner == viewer.user,
            LiveMessage::Event(_) | LiveMessage::NodeSample { .. } => false,
        }
    }
}

/// The bus. Cheap to clone (one shared channel).
#[derive(Clone, Debug)]
pub struct LiveBus {
    tx: broadcast::Sender<LiveMessage>,
    closed: Arc<watch::Sender<bool>>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveBus {
    /// Messages a subscriber may fall behind by before it lags.
    pub const CAPACITY: usize = 1024;

    /// A bus holding [`Self::CAPACITY`] messages per subscriber.
    pub fn new() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }

    /// A bus holding `capacity` messages (at least 1) per subscriber.
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (closed, _) = watch::channel(false);
        Self {
            tx,
            closed: Arc::new(closed),
        }
    }

    /// Sends `message` to every subscriber; never waits (nobody listening is fine).
    pub fn publish(&self, message: LiveMessage) {
        let _ = self.tx.send(message);
    }

    /// Publishes a sandbox record as written.
    pub fn publish_sandbox(&self, sandbox: &Sandbox) {
        self.publish(LiveMessage::Sandbox(Arc::new(sandbox.clone())));
    }

    /// Publishes a recorded event.
    pub fn publish_event(&self, event: &Event) {
        self.publish(LiveMessage::Event(Arc::new(event.clone())));
    }

    /// Publishes a node's sample (`NodeSample`, serialized once here; a sample that does not
    /// serialize is logged and dropped).
    pub fn publish_node_sample(&self, node_id: NodeId, sample: &impl Serialize) {
        match serde_json::to_value(sample) {
            Ok(v) => self.publish(LiveMessage::NodeSample {
                node_id,
                sample: Arc::new(v),
            }),
            Err(e) => tracing::warn!(node = %node_id, error = %e, "node sample not published"),
        }
    }

    /// Publishes a sandbox's sample (`SandboxSample`, serialized once here) for its owner and
    /// admins.
    pub fn publish_sandbox_sample(
        &self,
        sandbox_id: SandboxId,
        owner: UserId,
        sample: &impl Serialize,
    ) {
        match serde_json::to_value(sample) {
            Ok(v) => self.publish(LiveMessage::SandboxSample {
                sandbox_id,
                owner,
                sample: Arc::new(v),
            }),
            Err(e) => {
                tracing::warn!(sandbox = %sandbox_id, error = %e, "sandbox sample not published")
            }
        }
    }

    /// A new subscription for `viewer`, receiving what is published from now on.
    pub fn subscribe(&self, viewer: Viewer) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
            viewer,
        }
    }

    /// Open subscriptions.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Ends every subscription now and every later one at once (server shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// What a subscription yields next.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// A message the viewer may see.
    Message(LiveMessage),
    /// The subscriber fell behind and this many messages were lost: refetch.
    Lagged(u64),
}

/// One subscriber's view of the bus.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<LiveMessage>,
    closed: watch::Receiver<bool>,
    viewer: Viewer,
}

impl Subscription {
    /// The next message this viewer may see, a lag notice, or `None` once the bus is
    /// closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if *self.closed.borrow() {
                return None;
            }
            tokio::select! {
                biased;
                _ = self.closed.changed() => continue,
                received = self.rx.recv() => match received {
                    Ok(message) if message.visible_to(&self.viewer) => {
                        return Some(Delivery::Message(message))
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Some(Delivery::Lagged(n))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::{EventId, EventKind, Severity, Timestamp};

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn event(n: u128) -> LiveMessage {
        LiveMessage::Event(Arc::new(Event {
            id: EventId::from_uuid(uuid::Uuid::from_u128(n)),
            at: Timestamp::from_unix_ms(0),
            kind: EventKind::NodeRecovered,
            severity: Severity::Info,
            message: format!("{n}"),
            sandbox_id: None,
            node_id: None,
            user_id: None,
            connect_session_id: None,
            stage: None,
        }))
    }

    fn sample(owner: UserId) -> LiveMessage {
        LiveMessage::SandboxSample {
            sandbox_id: SandboxId::from_uuid(uuid::Uuid::from_u128(9)),
            owner,
            sample: Arc::new(serde_json::json!({"pids": 1})),
        }
    }

    #[test]
    fn owners_see_their_own_and_admins_everything() {
        let alice = Viewer {
            user: user(1),
            admin: false,
        };
        let admin = Viewer {
            user: user(2),
            admin: true,
        };
        assert!(sample(user(1)).visible_to(&alice));
        assert!(!sample(user(3)).visible_to(&alice));
        assert!(!event(1).visible_to(&alice));
        let node = LiveMessage::NodeSample {
            node_id: NodeId::from_uuid(uuid::Uuid::from_u128(4)),
            sample: Arc::new(serde_json::json!({})),
        };
        assert!(!node.visible_to(&alice));
        for m in [sample(user(3)), event(1), node] {
            assert!(m.visible_to(&admin));
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged_and_goes_on() {
        let bus = LiveBus::with_capacity(2);
        let mut sub = bus.subscribe(Viewer {
            user: user(1),
            admin: true,
        });
        for n in 0..5 {
            bus.publish(event(n));
        }
        assert!(matches!(sub.next().await, Some(Delivery::Lagged(3))));
        for n in [3u128, 4] {
            match sub.next().await {
                Some(Delivery::Message(LiveMessage::Event(e))) => {
                    assert_eq!(e.message, n.to_string())
                }
                other => panic!("expected event {n}, got {other:?}"),
            }
        }
        bus.publish(event(5));
        assert!(matches!(sub.next().await, Some(Delivery::Message(_))));
    }

    #[tokio::test]
    async fn closing_ends_open_and_later_subscriptions() {
        let bus = LiveBus::new();
        let viewer = Viewer {
            user: user(1),
            admin: false,
        };
        let mut open = bus.subscribe(viewer);
        let waiting = tokio::spawn(async move { open.next().await.is_none() });
        bus.publish(event(1)); // not visible: the subscription keeps waiting
        bus.close();
        assert!(waiting.await.expect("join"));
        assert!(bus.subscribe(viewer).next().await.is_none());
    }
}
