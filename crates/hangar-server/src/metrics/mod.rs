//! Health: heartbeats, node health, sample history. [`MetricsService`] has one method per
//! operation: [`MetricsService::heartbeat`] (the API's `POST /nodes/{id}/heartbeat`, what a
//! remote `hangar agent` calls) and [`MetricsService::record_heartbeat`] (the same domain
//! operation, called in process for the local node by [`MetricsService::collect_once`]),
//! [`MetricsService::list_nodes`], [`MetricsService::node_sandboxes`],
//! [`MetricsService::node_history`], [`MetricsService::sandbox_history`], and the periodic
//! [`MetricsService::maintain_once`] (downsampling + retention).
//!
//! Live views: every recorded heartbeat publishes its node sample (admins) and each sandbox's
//! sample (its owner and admins) on the live bus behind `GET /api/v1/stream`;
//! [`MetricsService::watch_nodes_forever`] compares successive [`MetricsService::node_states`]
//! and records `node_unreachable` / `node_recovered` events once per change.
//!
//! **Rule:** a node is `unreachable` when its last heartbeat (the control plane's receive
//! time) is older than `unreachable_after` ([`hangar_core::NodeState::of`]).

pub mod history;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hangar_agent::metrics::{Collector, CollectorConfig, MetricsError as CollectError};
use hangar_agent::Node;
use hangar_core::metrics::pick_step;
use hangar_core::{
    Heartbeat, NodeId, NodeSample, NodeState, Resolution, Retention, Sandbox, SandboxId,
    SandboxSample, SandboxState, Since, Timestamp,
};
use hangar_identity::{Principal, Scope};
use hangar_store::{NodeRecord, Store, StoreError};

use crate::accounts::{require_admin, AccountError};
use crate::clock::Clock;
use history::{bucket, point_count, Series, MAX_POINTS};

/// Settings (`[metrics]` and `[nodes]` in the config file).
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// How often the local node is sampled (default 10 s); also the raw history's step.
    pub interval: Duration,
    /// How often a sandbox's writable layer is measured again (default 60 s).
    pub disk_refresh: Duration,
    /// Silence after which a node is `unreachable` (default 30 s).
    pub unreachable_after: Duration,
    /// How long each resolution of the history is kept.
    pub retention: Retention,
    /// How often downsampling and retention run (default 60 s).
    pub maintain_every: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            disk_refresh: Duration::from_secs(60),
            unreachable_after: Duration::from_secs(30),
            retention: Retention::default(),
            maintain_every: Duration::from_secs(60),
        }
    }
}

/// Errors of metrics operations.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// No such node, or no such sandbox the caller may see.
    #[error("not found")]
    NotFound,
    /// Not allowed (not an admin, or a missing scope).
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A query parameter is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The collector failed.
    #[error("collecting")]
    Collect(#[from] CollectError),
    /// The store.
    #[error("store")]
    Store(#[from] StoreError),
}

/// A node with its health.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The record.
    pub record: NodeRecord,
    /// `ready` or `unreachable`, now.
    pub state: NodeState,
    /// Its newest sample, if any.
    pub latest: Option<NodeSample>,
}

/// A sandbox of a node with its newest sample.
#[derive(Clone, Debug)]
pub struct SandboxStatus {
    /// The record.
    pub sandbox: Sandbox,
    /// Its newest sample within the silence window, if any.
    pub latest: Option<SandboxSample>,
    /// Not failed and, if running, sampled within the silence window.
    pub healthy: bool,
}

/// The health service. See the module doc.
#[derive(Debug)]
pub struct MetricsService {
    store: Store,
    clock: Arc<dyn Clock>,
    config: MetricsConfig,
    node: Arc<Node>,
    collector: Collector,
    observers: crate::telemetry::Observers,
}

impl MetricsService {
    /// The service for the local `node`, whose data directory is `data_dir`; samples are
    /// published on `observers.live` and node state changes recorded in `observers.events`.
    /// Errors: [`MetricsError::Collect`] if the cgroup mounts cannot be read.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: MetricsConfig,
        node: Arc<Node>,
        data_dir: std::path::PathBuf,
        observers: crate::telemetry::Observers,
    ) -> Result<Arc<Self>, MetricsError> {
        let collector = Collector::new(CollectorConfig {
            data_dir,
            disk_refresh: config.disk_refresh,
        })?;
        Ok(Arc::new(Self {
            store,
            clock,
            config,
            node,
            collector,
            observers,
        }))
    }

    /// The settings.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// `POST /api/v1/nodes/{id}/heartbeat`: an admin (a remote agent's token) reports for
    /// node `id`. Errors: [`MetricsError::Account`] (403), [`MetricsError::Invalid`].
    pub async fn heartbeat(
        &self,
        caller: &Principal,
        node_id: NodeId,
        heartbeat: Heartbeat,
    ) -> Result<(), MetricsError> {
        require_admin(caller)?;
        if heartbeat.name.is_empty() || heartbeat.name.len() > 253 {
            return Err(MetricsError::Invalid {
                field: "name",
                reason: "1-253 characters".into(),
            });
        }
        self.record_heartbeat(node_id, heartbeat).await
    }

    /// Records a heartbeat of node `node_id` received now: registers or refreshes the node
    /// (`last_heartbeat_at = now`) and stores its sample and those of its sandboxes, in one
    /// transaction. Samples of sandboxes the store does not place on this node are dropped.
    pub async fn record_heartbeat(
        &self,
        node_id: NodeId,
        heartbeat: Heartbeat,
    ) -> Result<(), MetricsError> {
        let now = self.clock.now();
        let created_at = self
            .store
            .nodes()
            .get(node_id)
            .await?
            .map_or(now, |n| n.created_at);
        // Owners of the sandboxes the store places on this node.
        let placed: HashMap<SandboxId, hangar_core::UserId> = if heartbeat.sandboxes.is_empty() {
            HashMap::new()
        } else {
            self.store
                .sandboxes()
                .list_on_node(node_id)
                .await?
                .into_iter()
                .map(|s| (s.id, s.owner))
                .collect()
        };
        let sandboxes: Vec<_> = heartbeat
            .sandboxes
            .into_iter()
            .filter(|(id, _)| placed.contains_key(id))
            .collect();
        let record = NodeRecord {
            id: node_id,
            name: heartbeat.name,
            address: heartbeat.address,
            drivers: heartbeat.drivers,
            last_heartbeat_at: now,
            created_at,
        };
        self.store
            .metrics()
            .record_heartbeat(&record, &heartbeat.node, &sandboxes)
            .await?;
        let live = &self.observers.live;
        live.publish_node_sample(node_id, &heartbeat.node);
        for (id, sample) in &sandboxes {
            if let Some(owner) = placed.get(id) {
                live.publish_sandbox_sample(*id, *owner, sample);
            }
        }
        Ok(())
    }

    /// Samples the local node once and records it as its heartbeat.
    pub async fn collect_once(&self) -> Result<(), MetricsError> {
        let now = self.clock.now();
        let collection = self.collector.collect(&self.node, now).await?;
        self.record_heartbeat(
            self.node.id(),
            Heartbeat {
                name: self.node.name().to_owned(),
                address: None,
                drivers: vec![hangar_runtime::Driver::kind(self.node.driver())
                    .as_str()
                    .to_owned()],
                node: collection.node,
                sandboxes: collection.sandboxes,
            },
        )
        .await
    }

    /// Runs [`Self::collect_once`] every `interval` (the first right away) until the task is
    /// dropped. Failures are logged; the loop goes on.
    pub async fn collect_forever(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.collect_once().await {
                tracing::warn!(error = %crate::error::chain(&err), "metrics collection failed");
            }
        }
    }

    /// Downsampling then retention, once. Idempotent.
    pub async fn maintain_once(&self) -> Result<(), MetricsError> {
        let now = self.clock.now();
        let metrics = self.store.metrics();
        let rolled = metrics.downsample(now, &self.config.retention).await?;
        let pruned = metrics.prune(now, &self.config.retention).await?;
        tracing::debug!(
            aggregated = rolled.aggregated,
            deleted = pruned.deleted,
            "metrics history maintained"
        );
        Ok(())
    }

    /// Runs [`Self::maintain_once`] every `every` until the task is dropped.
    pub async fn maintain_forever(self: Arc<Self>, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.maintain_once().await {
                tracing::warn!(error = %crate::error::chain(&err), "metrics maintenance failed");
            }
        }
    }

    /// Compares every node's state now with `previous` (updated in place) and records a
    /// `node_unreachable` or `node_recovered` event for each change. A node seen for the
    /// first time records nothing.
    pub async fn watch_nodes_once(
        &self,
        previous: &mut HashMap<NodeId, NodeState>,
    ) -> Result<(), MetricsError> {
        for (node, state) in self.node_states().await? {
            match (previous.insert(node.id, state), state) {
                (Some(NodeState::Ready), NodeState::Unreachable) => {
                    self.observers
                        .events
                        .node_unreachable(node.id, &node.name, self.config.unreachable_after)
                        .await;
                }
                (Some(NodeState::Unreachable), NodeState::Ready) => {
                    self.observers
                        .events
                        .node_recovered(node.id, &node.name)
                        .await;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs [`Self::watch_nodes_once`] every `every` until the task is dropped.
    pub async fn watch_nodes_forever(self: Arc<Self>, every: Duration) {
        let mut previous = HashMap::new();
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.watch_nodes_once(&mut previous).await {
                tracing::warn!(error = %crate::error::chain(&err), "node watch failed");
            }
        }
    }

    /// Every node and its state now.
    pub async fn node_states(&self) -> Result<Vec<(NodeRecord, NodeState)>, MetricsError> {
        let now = self.clock.now();
        Ok(self
            .store
            .nodes()
            .list()
            .await?
            .into_iter()
            .map(|n| {
                let state = NodeState::of(n.last_heartbeat_at, now, self.config.unreachable_after);
                (n, state)
            })
            .collect())
    }

    /// `GET /api/v1/nodes` (admin): every node, its state and newest sample.
    pub async fn list_nodes(&self, caller: &Principal) -> Result<Vec<NodeStatus>, MetricsError> {
        require_admin(caller)?;
        let mut out = Vec::new();
        for (record, state) in self.node_states().await? {
            let latest = self.store.metrics().latest_node(record.id).await?;
            out.push(NodeStatus {
                record,
                state,
                latest,
            });
        }
        Ok(out)
    }

    /// `GET /api/v1/nodes/{id}/sandboxes` (admin): the node's sandboxes that are not
    /// destroyed, with their newest sample (within the silence window) and health.
    pub async fn node_sandboxes(
        &self,
        caller: &Principal,
        node_id: NodeId,
    ) -> Result<Vec<SandboxStatus>, MetricsError> {
        require_admin(caller)?;
        self.store
            .nodes()
            .get(node_id)
            .await?
            .ok_or(MetricsError::NotFound)?;
        let now = self.clock.now();
        let silence_ms = i64::try_from(self.config.unreachable_after.as_millis()).unwrap_or(0);
        let sandboxes: Vec<Sandbox> = self
            .store
            .sandboxes()
            .list_on_node(node_id)
            .await?
            .into_iter()
            .filter(|s| s.state != SandboxState::Destroyed)
            .collect();
        let ids: Vec<SandboxId> = sandboxes.iter().map(|s| s.id).collect();
        let latest: std::collections::HashMap<_, _> = self
            .store
            .metrics()
            .latest_sandboxes(&ids, now.plus_ms(-silence_ms))
            .await?
            .into_iter()
            .collect();
        Ok(sandboxes
            .into_iter()
            .map(|sandbox| {
                let latest = latest.get(&sandbox.id).cloned();
                let healthy = sandbox.state != SandboxState::Failed
                    && (sandbox.state != SandboxState::Running || latest.is_some());
                SandboxStatus {
                    sandbox,
                    latest,
                    healthy,
                }
            })
            .collect())
    }

    /// `GET /api/v1/nodes/{id}/metrics` (admin). Errors: [`MetricsError::NotFound`],
    /// [`MetricsError::Invalid`] (bad `since`/`step`, too many points).
    pub async fn node_history(
        &self,
        caller: &Principal,
        node_id: NodeId,
        since: Option<&str>,
        step: Option<&str>,
    ) -> Result<Series, MetricsError> {
        require_admin(caller)?;
        let window = self.window(since, step)?;
        self.store
            .nodes()
            .get(node_id)
            .await?
            .ok_or(MetricsError::NotFound)?;
        let rows = self
            .store
            .metrics()
            .node_series(node_id, window.resolution, window.from, window.until)
            .await?;
        Ok(bucket(&rows, window.since, window.until, window.step))
    }

    /// `GET /api/v1/sandboxes/{id}/metrics`: the owner's sandbox, or any for an admin.
    /// Errors: [`MetricsError::NotFound`] (also for another user's sandbox),
    /// [`MetricsError::Invalid`].
    pub async fn sandbox_history(
        &self,
        caller: &Principal,
        sandbox_id: SandboxId,
        since: Option<&str>,
        step: Option<&str>,
    ) -> Result<Series, MetricsError> {
        caller
            .require(Scope::SandboxesRead)
            .map_err(AccountError::from)?;
        let window = self.window(since, step)?;
        let visible = if require_admin(caller).is_ok() {
            self.store.sandboxes().get(sandbox_id).await?
        } else {
            self.store
                .sandboxes()
                .get_owned(caller.user, sandbox_id)
                .await?
        };
        visible.ok_or(MetricsError::NotFound)?;
        let rows = self
            .store
            .metrics()
            .sandbox_series(sandbox_id, window.resolution, window.from, window.until)
            .await?;
        Ok(bucket(&rows, window.since, window.until, window.step))
    }

    /// Parses `since` (default `1h`) and `step` and picks the resolution.
    fn window(&self, since: Option<&str>, step: Option<&str>) -> Result<Window, MetricsError> {
        let now = self.clock.now();
        let since = match since {
            None | Some("") => Since::Ago(Duration::from_secs(3600)),
            Some(text) => Since::parse(text).map_err(|e| MetricsError::Invalid {
                field: "since",
                reason: e.to_string(),
            })?,
        }
        .resolve(now);
        if since >= now {
            return Err(MetricsError::Invalid {
                field: "since",
                reason: "must be in the past".into(),
            });
        }
        let step = match step {
            None | Some("") => None,
            Some(text) => Some(text.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                MetricsError::Invalid {
                    field: "step",
                    reason: "a whole number of seconds, at least 1".into(),
                }
            })?),
        };
        let span =
            Duration::from_millis(u64::try_from(now.unix_ms() - since.unix_ms()).unwrap_or(0));
        let raw_step = u32::try_from(self.config.interval.as_secs())
            .unwrap_or(10)
            .max(1);
        let (resolution, step) = pick_step(span, span, step, raw_step, &self.config.retention);
        if point_count(since, now, step) > MAX_POINTS {
            return Err(MetricsError::Invalid {
                field: "step",
                reason: format!("more than {MAX_POINTS} points; use a larger step"),
            });
        }
        let until = now.plus_ms(1);
        // Aggregate rows are stamped with their bucket start: include the bucket holding
        // `since`.
        let from = match resolution {
            Resolution::Raw => history::aligned_start(since, step),
            other => history::aligned_start(since, step)
                .min(since.unix_ms() - since.unix_ms().rem_euclid(other.seconds() * 1000)),
        };
        Ok(Window {
            since,
            until,
            from: Timestamp::from_unix_ms(from),
            resolution,
            step,
        })
    }
}

struct Window {
    since: Timestamp,
    until: Timestamp,
    from: Timestamp,
    resolution: Resolution,
    step: u32,
}
