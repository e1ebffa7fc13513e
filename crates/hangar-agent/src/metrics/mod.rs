//! The metrics collector: one [`Collection`] (a [`NodeSample`] and a [`SandboxSample`] per
//! running sandbox) per call of [`Collector::collect`], which the control plane calls every
//! interval (10 s by default) and sends on as a heartbeat.
//!
//! - Host figures: [`host`] (`/proc/stat`, `/proc/meminfo`, `/proc/net/dev` of physical
//!   interfaces, statvfs of the data directory).
//! - Sandbox figures: [`sandbox`] (the sandbox's cgroup found through `/proc/<init pid>/cgroup`,
//!   v1 or v2; `/proc/<pid>/net/dev` of its network namespace; the size of its writable
//!   layer).
//!
//! **Rates come from deltas:** CPU percentages and bytes per second are the difference
//! between this reading and the previous one of the same host or sandbox (same init pid)
//! divided by the time between them, so the first reading of each has them `None` (`null`
//! on the wire). Counters that went backwards give no rate either.
//!
//! **Disk is sampled less often:** walking a writable layer costs a syscall per file, so each
//! sandbox's size is measured again only when [`CollectorConfig::disk_refresh`] has passed
//! (60 s by default); in between the last figure is reported.
//!
//! Nothing here reads the clock: the caller passes `now`.

pub mod host;
pub mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_core::metrics::rate_per_second;
use hangar_core::{NodeSample, SandboxId, SandboxSample, Timestamp};
use hangar_runtime::{Driver, RuntimeStatus};

use crate::{Node, NodeError};
use host::HostCounters;
use sandbox::{CgroupMounts, SandboxCgroup};

/// Errors of a collection.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A `/proc` file could not be read or parsed.
    #[error("reading {what}")]
    Proc {
        /// Which file.
        what: &'static str,
        /// Why.
        #[source]
        source: procfs::ProcError,
    },
    /// A filesystem call failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime could not list its sandboxes.
    #[error("listing the runtime's sandboxes")]
    Node(#[from] NodeError),
    /// The collection task panicked or was cancelled.
    #[error("collection task ended abnormally")]
    Task,
}

impl MetricsError {
    fn proc(what: &'static str) -> impl FnOnce(procfs::ProcError) -> MetricsError {
        move |source| MetricsError::Proc { what, source }
    }
}

/// Collector settings.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// The data directory: its filesystem is the node's disk figure.
    pub data_dir: PathBuf,
    /// How often a sandbox's writable layer is measured again (default 60 s).
    pub disk_refresh: Duration,
}

impl CollectorConfig {
    /// Defaults over `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            disk_refresh: Duration::from_secs(60),
        }
    }
}

/// One running sandbox as the collector needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningSandbox {
    /// Its id.
    pub id: SandboxId,
    /// Its first process, in the host's pid namespace.
    pub pid: u32,
    /// Its writable layer on the host, if any.
    pub writable_layer: Option<PathBuf>,
}

/// What one collection found.
#[derive(Clone, Debug, PartialEq)]
pub struct Collection {
    /// The host.
    pub node: NodeSample,
    /// Each running sandbox whose figures could be read.
    pub sandboxes: Vec<(SandboxId, SandboxSample)>,
}

/// What is remembered of a sandbox between readings.
#[derive(Debug)]
struct Tracked {
    pid: u32,
    cgroup: SandboxCgroup,
    cpu: Option<(u64, Timestamp)>,
    net: Option<((u64, u64), Timestamp)>,
    disk_bytes: u64,
    disk_at: Option<Timestamp>,
}

#[derive(Debug)]
struct State {
    config: CollectorConfig,
    mounts: CgroupMounts,
    host: Option<(HostCounters, Timestamp)>,
    sandboxes: HashMap<SandboxId, Tracked>,
}

/// Collects host and sandbox figures; keeps the previous readings that rates need. Cheap to
/// clone (clones share the readings).
#[derive(Clone, Debug)]
pub struct Collector {
    state: Arc<Mutex<State>>,
}

impl Collector {
    /// A collector with no previous readings. Reads `/proc/self/mountinfo` to find the cgroup
    /// mounts. Errors: [`MetricsError::Proc`].
    pub fn new(config: CollectorConfig) -> Result<Collector, MetricsError> {
        Ok(Collector {
            state: Arc::new(Mutex::new(State {
                config,
                mounts: CgroupMounts::read()?,
                host: None,
                sandboxes: HashMap::new(),
            })),
        })
    }

    /// Lists the node's running sandboxes (one runtime call) and reads every figure on a
    /// blocking thread. A sandbox that stops while being read is left out.
    pub async fn collect(&self, node: &Node, now: Timestamp) -> Result<Collection, MetricsError> {
        let driver = node.driver();
        let running: Vec<RunningSandbox> = node
            .driver()
            .list()
            .await
            .map_err(NodeError::from)?
            .into_iter()
            .filter_map(|s| match (s.name.parse::<SandboxId>(), s.status) {
                (Ok(id), RuntimeStatus::Running { pid }) => Some(RunningSandbox {
                    id,
                    pid,
                    writable_layer: driver.writable_layer(id),
                }),
                _ => None,
            })
            .collect();
        let collector = self.clone();
        tokio::task::spawn_blocking(move || collector.sample(&running, now))
            .await
            .map_err(|_| MetricsError::Task)?
    }

    /// Reads the host and the given sandboxes now (blocking file reads; see
    /// [`Collector::collect`]). Forgets sandboxes that are no longer listed.
    pub fn sample(
        &self,
        running: &[RunningSandbox],
        now: Timestamp,
    ) -> Result<Collection, MetricsError> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let counters = HostCounters::read(&state.config.data_dir)?;
        let previous = state.host.replace((counters, now));
        let node = NodeSample {
            at: now,
            cpu_percent: previous.and_then(|(before, _)| host::cpu_percent(&before, &counters)),
            cpu_count: counters.cpu_count,
            memory_used_bytes: counters.memory_used_bytes,
            memory_total_bytes: counters.memory_total_bytes,
            disk_used_bytes: counters.disk_used_bytes,
            disk_total_bytes: counters.disk_total_bytes,
            net_rx_bytes_per_second: rate_per_second(
                previous.map(|(c, at)| (c.net_rx_bytes, at)),
                (counters.net_rx_bytes, now),
            ),
            net_tx_bytes_per_second: rate_per_second(
                previous.map(|(c, at)| (c.net_tx_bytes, at)),
                (counters.net_tx_bytes, now),
            ),
            sandboxes_running: u32::try_from(running.len()).unwrap_or(u32::MAX),
        };
        state
            .sandboxes
            .retain(|id, _| running.iter().any(|r| r.id == *id));
        let mut sandboxes = Vec::with_capacity(running.len());
        for r in running {
            match sample_sandbox(state, r, now) {
                Ok(sample) => sandboxes.push((r.id, sample)),
                Err(err) => {
                    tracing::debug!(sandbox = %r.id, error = %err, "sandbox not sampled");
                    state.sandboxes.remove(&r.id);
                }
            }
        }
        Ok(Collection { node, sandboxes })
    }
}

fn sample_sandbox(
    state: &mut State,
    r: &RunningSandbox,
    now: Timestamp,
) -> Result<SandboxSample, MetricsError> {
    if state.sandboxes.get(&r.id).is_none_or(|t| t.pid != r.pid) {
        // New, or restarted with a new init process: no previous reading applies.
        let cgroup = SandboxCgroup::of_pid(&state.mounts, r.pid)?;
        state.sandboxes.insert(
            r.id,
            Tracked {
                pid: r.pid,
                cgroup,
                cpu: None,
                net: None,
                disk_bytes: 0,
                disk_at: None,
            },
        );
    }
    let refresh_ms = i64::try_from(state.config.disk_refresh.as_millis()).unwrap_or(i64::MAX);
    let Some(tracked) = state.sandboxes.get_mut(&r.id) else {
        return Err(MetricsError::Task);
    };
    let counters = tracked.cgroup.read();
    let net = sandbox::net_bytes(r.pid)?;
    let cpu_percent = counters.cpu_usage_ns.and_then(|ns| {
        let (before, at) = tracked.cpu?;
        let elapsed_ms = now.unix_ms() - at.unix_ms();
        (elapsed_ms > 0 && ns >= before)
            .then(|| (ns - before) as f64 / (elapsed_ms as f64 * 1e6) * 100.0)
    });
    let rx = rate_per_second(tracked.net.map(|((rx, _), at)| (rx, at)), (net.0, now));
    let tx = rate_per_second(tracked.net.map(|((_, tx), at)| (tx, at)), (net.1, now));
    tracked.cpu = counters.cpu_usage_ns.map(|ns| (ns, now));
    tracked.net = Some((net, now));
    let due = tracked
        .disk_at
        .is_none_or(|at| now.unix_ms() - at.unix_ms() >= refresh_ms);
    if due {
        if let Some(dir) = &r.writable_layer {
            tracked.disk_bytes = sandbox::dir_bytes(dir);
        }
        tracked.disk_at = Some(now);
    }
    Ok(SandboxSample {
        at: now,
        cpu_percent,
        memory_bytes: counters.memory_bytes,
        memory_limit_bytes: counters.memory_limit_bytes,
        disk_bytes: tracked.disk_bytes,
        net_rx_bytes_per_second: rx,
        net_tx_bytes_per_second: tx,
        pids: counters.pids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reading_has_no_rates_second_has() {
        let dir = std::env::temp_dir();
        let collector = Collector::new(CollectorConfig::new(dir)).expect("collector");
        let me = RunningSandbox {
            id: "00000000-0000-7000-8000-000000000001".parse().expect("id"),
            pid: std::process::id(),
            writable_layer: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        };
        let t0 = Timestamp::from_unix_ms(1_800_000_000_000);
        let first = collector
            .sample(std::slice::from_ref(&me), t0)
            .expect("first");
        assert_eq!(first.node.cpu_percent, None);
        assert_eq!(first.node.net_rx_bytes_per_second, None);
        assert_eq!(first.node.sandboxes_running, 1);
        let (_, s) = &first.sandboxes[0];
        assert_eq!(s.cpu_percent, None);
        assert!(s.disk_bytes > 0 && s.memory_bytes > 0, "{s:?}");
        // Burn some CPU in this process, then read again "one second later".
        let start = std::time::Instant::now();
        let mut x = 0_u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let second = collector.sample(&[me], t0.plus_ms(1_000)).expect("second");
        assert!(x > 0);
        let (_, s) = &second.sandboxes[0];
        assert!(s.cpu_percent.is_some_and(|c| c > 5.0), "{s:?}");
        assert!(second.node.net_rx_bytes_per_second.is_some());
        // Forgotten when no longer listed.
        let third = collector.sample(&[], t0.plus_ms(2_000)).expect("third");
        assert!(third.sandboxes.is_empty());
        assert_eq!(third.node.sandboxes_running, 0);
    }
}
