//! [`EventService`]: records operational events (sandbox failures with their boot stage,
//! sandboxes the runtime lost, reconciler actions, connect-session outcomes, node
//! reachability), pushes each to admins on the live bus, lists them for admins, and keeps the
//! table bounded (by count and age, pruned periodically).
//!
//! Recording never fails the operation that caused it: a store error is logged.

use std::sync::Arc;
use std::time::Duration;

use hangar_core::{
    BootStage, ConnectSession, ConnectSessionId, ConnectState, Event, EventId, EventKind,
    FailureKind, NodeId, Sandbox, SandboxId, Severity, UserId,
};
use hangar_identity::Principal;
use hangar_store::{EventCursor, Store, StoreError};

use crate::accounts::{require_admin, AccountError};
use crate::clock::Clock;
use crate::live::LiveBus;

/// How many events are kept and for how long (defaults: 10 000, 30 days, pruned every 10
/// minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// The most events kept (the newest).
    pub keep: u32,
    /// Events older than this are deleted.
    pub max_age: Duration,
    /// How often [`EventService::prune_forever`] prunes.
    pub prune_interval: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            keep: 10_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
        }
    }
}

/// Largest page of [`EventService::list`].
pub const MAX_PAGE: u32 = 500;

/// Errors of [`EventService::list`].
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not an admin, or the credential lacks the `admin` scope.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// `before` names an event that is not stored (never was, or pruned).
    #[error("no event {id} to page from")]
    UnknownCursor {
        /// The id given.
        id: EventId,
    },
    /// `limit` is outside 1..=[`MAX_PAGE`].
    #[error("limit must be between 1 and {MAX_PAGE}")]
    Limit,
    /// The store.
    #[error("store")]
    Store(#[from] StoreError),
}

/// What an event is about; the service adds id and time.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// How much it matters.
    pub severity: Severity,
    /// One line for people.
    pub message: String,
    /// The sandbox concerned.
    pub sandbox_id: Option<SandboxId>,
    /// The node concerned.
    pub node_id: Option<NodeId>,
    /// The user concerned.
    pub user_id: Option<UserId>,
    /// The connect session concerned.
    pub connect_session_id: Option<ConnectSessionId>,
    /// The boot stage reached (sandbox failures).
    pub stage: Option<BootStage>,
}

impl NewEvent {
    fn new(kind: EventKind, severity: Severity, message: String) -> Self {
        Self {
            kind,
            severity,
            message,
            sandbox_id: None,
            node_id: None,
            user_id: None,
            connect_session_id: None,
            stage: None,
        }
    }
}

/// The event service. Shared as `Arc<EventService>`.
#[derive(Debug)]
pub struct EventService {
    store: Store,
    clock: Arc<dyn Clock>,
    live: LiveBus,
    config: EventsConfig,
}

impl EventService {
    /// A service over `store`, publishing to `live`.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        live: LiveBus,
        config: EventsConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            live,
            config,
        })
    }

    /// Stores `new` (id UUID v7, time now) and publishes it to admins' live streams.
    /// Returns the event, or `None` if it could not be stored (logged).
    pub async fn record(&self, new: NewEvent) -> Option<Event> {
        let event = Event {
            id: EventId::from_uuid(uuid::Uuid::now_v7()),
            at: self.clock.now(),
            kind: new.kind,
            severity: new.severity,
            message: new.message,
            sandbox_id: new.sandbox_id,
            node_id: new.node_id,
            user_id: new.user_id,
            connect_session_id: new.connect_session_id,
            stage: new.stage,
        };
        match self.store.events().insert(&event).await {
            Ok(()) => {
                self.live.publish_event(&event);
                Some(event)
            }
            Err(e) => {
                tracing::warn!(kind = %event.kind, error = %e, "event not recorded");
                None
            }
        }
    }

    /// A sandbox just became `failed` (its record carries the failure): `sandbox_vanished`
    /// when the runtime lost it, else `sandbox_failed` with the boot stage reached.
    pub async fn sandbox_failed(&self, sandbox: &Sandbox) -> Option<Event> {
        let failure = sandbox.failure.as_ref()?;
        let stage = failure.stage_reached;
        let (kind, message) = match failure.kind {
            FailureKind::Vanished => (
                EventKind::SandboxVanished,
                format!("sandbox {} marked failed: {}", sandbox.id, failure.message),
            ),
            _ => (
                EventKind::SandboxFailed,
                format!(
                    "sandbox {} failed at stage {}: {}",
                    sandbox.id,
                    stage.map_or("none", BootStage::as_str),
                    failure.message
                ),
            ),
        };
        self.record(NewEvent {
            sandbox_id: Some(sandbox.id),
            node_id: Some(sandbox.node),
            user_id: Some(sandbox.owner),
            stage,
            ..NewEvent::new(kind, Severity::Error, message)
        })
        .await
    }

    /// The reconciler removed `name` (a container, sandbox directory or network leftover
    /// that no live record claims) on `node`.
    pub async fn orphan_removed(&self, node: NodeId, name: &str) -> Option<Event> {
        self.record(NewEvent {
            node_id: Some(node),
            sandbox_id: name.parse().ok(),
            ..NewEvent::new(
                EventKind::ReconcilerAction,
                Severity::Warning,
                format!("reconciler removed orphan {name} (no live sandbox record claims it)"),
            )
        })
        .await
    }

    /// A connect session reached a terminal state (other states are ignored).
    pub async fn connect_session_ended(&self, session: &ConnectSession) -> Option<Event> {
        let severity = match session.state {
            ConnectState::Completed => Severity::Info,
            ConnectState::Cancelled | ConnectState::Expired => Severity::Warning,
            ConnectState::Failed => Severity::Error,
            ConnectState::Starting | ConnectState::AwaitingUser | ConnectState::Capturing => {
                return None
            }
        };
        let mut message = format!(
            "connect session for {} {}",
            session.provider.as_str(),
            session.state
        );
        if let Some(reason) = &session.failure {
            message.push_str(": ");
            message.push_str(reason);
        }
        self.record(NewEvent {
            user_id: Some(session.owner),
            connect_session_id: Some(session.id),
            sandbox_id: session.browser_sandbox,
            ..NewEvent::new(EventKind::ConnectSession, severity, message)
        })
        .await
    }

    /// A node sent no heartbeat for `silence` (call once, when it is marked unreachable).
    pub async fn node_unreachable(
        &self,
        node: NodeId,
        name: &str,
        silence: Duration,
    ) -> Option<Event> {
        self.record(NewEvent {
            node_id: Some(node),
            ..NewEvent::new(
                EventKind::NodeUnreachable,
                Severity::Error,
                format!(
                    "node {name} unreachable: no heartbeat for {} s",
                    silence.as_secs()
                ),
            )
        })
        .await
    }

    /// An unreachable node sent a heartbeat again (call once, when it is marked ready).
    pub async fn node_recovered(&self, node: NodeId, name: &str) -> Option<Event> {
        self.record(NewEvent {
            node_id: Some(node),
            ..NewEvent::new(
                EventKind::NodeRecovered,
                Severity::Info,
                format!("node {name} is reachable again"),
            )
        })
        .await
    }

    /// Events for an admin, newest first: at most `limit` (1..=[`MAX_PAGE`]), after
    /// `cursor`. Errors: [`EventError::Account`] (403) for anyone else, [`EventError::Limit`],
    /// [`EventError::UnknownCursor`], [`EventError::Store`].
    pub async fn list(
        &self,
        principal: &Principal,
        limit: u32,
        cursor: Option<EventCursor>,
    ) -> Result<Vec<Event>, EventError> {
        require_admin(principal)?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(EventError::Limit);
        }
        match self.store.events().list(limit, cursor).await {
            Err(StoreError::NotFound) => match cursor {
                Some(EventCursor::After(id)) => Err(EventError::UnknownCursor { id }),
                _ => Err(StoreError::NotFound.into()),
            },
            other => Ok(other?),
        }
    }

    /// Deletes events beyond the configured count and age; returns how many.
    pub async fn prune_once(&self) -> Result<u64, StoreError> {
        let max_age_ms = i64::try_from(self.config.max_age.as_millis()).unwrap_or(i64::MAX);
        let older_than = self.clock.now().plus_ms(-max_age_ms);
        self.store
            .events()
            .prune(older_than, self.config.keep)
            .await
    }

    /// Runs [`Self::prune_once`] every `prune_interval` until the task is dropped.
    pub async fn prune_forever(self: Arc<Self>) {
        let mut ticker =
            tokio::time::interval(self.config.prune_interval.max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.prune_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "events pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning events failed"),
            }
        }
    }
}
