//! `hangar bench --metrics`: what health costs.
//!
//! 1. Collector CPU: `--sandboxes` running busybox sandboxes (use 50), then 20 collections of
//!    the local node (`MetricsService::collect_once`: `runc list`, /proc and cgroup reads,
//!    writable layers, the store write). CPU = this process's user+system time plus its
//!    children's (the `runc list` it spawns) over each collection, as % of one core over the
//!    default 10 s interval. The bench process does nothing else meanwhile.
//! 2. A week of history: 8 days of 10-minute rows and a day of 1-minute rows for one
//!    sandbox, then `GET /api/v1/sandboxes/{id}/metrics?since=7d` 50 times over loopback
//!    HTTP (p50/p95).
//! 3. Store cost: a node with 100 sandboxes heartbeating every 10 s for one simulated day
//!    into a fresh SQLite file through the repository, downsampling and retention run every
//!    simulated minute; the file size (after a WAL checkpoint) and rows per resolution.

use std::path::Path;
use std::time::{Duration, Instant};

use hangar_core::{NodeId, NodeSample, Resolution, Retention, SandboxId, SandboxSample, Timestamp};
use hangar_server::clock::Clock;
use hangar_server::local::LocalPlane;
use hangar_store::{NodeRecord, Store};

use crate::bench::{create_and_wait, report};
use crate::client::ApiClient;

/// This process's CPU time so far, own threads and waited-for children.
fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(|who| getrusage(who).ok())
        .map(|u| tv(u.user_time()) + tv(u.system_time()))
        .sum()
}

/// Runs the three measurements against `plane` (whose API `api` serves).
pub async fn run(
    plane: &LocalPlane,
    api: &ApiClient,
    sandboxes: usize,
    work: &Path,
) -> anyhow::Result<()> {
    let metrics = plane.state.metrics.clone();
    println!("metrics bench: {sandboxes} running sandboxes");
    let mut ids = Vec::new();
    for _ in 0..sandboxes {
        let (id, _, _) = create_and_wait(api, "busybox").await?;
        ids.push(id);
    }
    // Two warm-up collections (first readings, first disk walks), then measure.
    metrics.collect_once().await?;
    metrics.collect_once().await?;
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..20 {
        let (c0, w0) = (cpu_time(), Instant::now());
        metrics.collect_once().await?;
        cpu.push(cpu_time().saturating_sub(c0));
        wall.push(w0.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report("collection wall time", &wall);
    report("collection CPU time (incl. runc list)", &cpu);
    let mean = cpu.iter().sum::<Duration>() / u32::try_from(cpu.len()).unwrap_or(1);
    println!(
        "collector CPU at {sandboxes} sandboxes: {:.3}% of one core at the 10 s interval",
        mean.as_secs_f64() / 10.0 * 100.0
    );

    // A week of history for one sandbox, through the API.
    let sandbox: SandboxId = ids.first().map_or_else(
        || Ok(SandboxId::from_uuid(uuid::Uuid::now_v7())),
        |id| id.parse(),
    )?;
    let now = hangar_server::clock::SystemClock.now();
    let row = |at_ms: i64, i: i64| SandboxSample {
        at: Timestamp::from_unix_ms(at_ms),
        cpu_percent: Some((i % 100) as f64),
        memory_bytes: 64 << 20,
        memory_limit_bytes: Some(256 << 20),
        disk_bytes: 4096,
        net_rx_bytes_per_second: Some(100.0),
        net_tx_bytes_per_second: Some(50.0),
        pids: 3,
    };
    let store = plane.state.store.metrics();
    let start = now.unix_ms() - 8 * 86_400_000;
    let tens: Vec<_> = (0..8 * 144)
        .map(|i| row((start / 600_000 + i) * 600_000, i))
        .collect();
    store
        .put_sandbox_rows(sandbox, Resolution::TenMinutes, &tens)
        .await?;
    let minutes: Vec<_> = (0..1441)
        .map(|i| row((now.unix_ms() / 60_000 - 1440 + i) * 60_000, i))
        .collect();
    store
        .put_sandbox_rows(sandbox, Resolution::Minute, &minutes)
        .await?;
    let mut loads = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let v: serde_json::Value = api
            .get(&format!("/api/v1/sandboxes/{sandbox}/metrics?since=7d"))
            .await?;
        loads.push(t.elapsed());
        anyhow::ensure!(
            v["t"].as_array().is_some_and(|t| t.len() >= 1008),
            "short week"
        );
    }
    report("a week of history for one sandbox (HTTP)", &loads);
    for id in &ids {
        let _ = plane.state.sandboxes.node().destroy(id.parse()?).await;
    }

    store_cost(work).await
}

/// Writes one simulated day of a 100-sandbox node into a fresh SQLite file.
async fn store_cost(work: &Path) -> anyhow::Result<()> {
    const SANDBOXES: usize = 100;
    let path = work.join("metrics-cost.db");
    let _ = std::fs::remove_file(&path);
    let store = Store::connect(&Store::sqlite_url(&path)).await?;
    let node = NodeId::from_uuid(uuid::Uuid::now_v7());
    let ids: Vec<SandboxId> = (0..SANDBOXES)
        .map(|_| SandboxId::from_uuid(uuid::Uuid::now_v7()))
        .collect();
    let retention = Retention::default();
    let t0 = 1_800_000_000_000_i64;
    let started = Instant::now();
    for step in 0..8640_i64 {
        let at = Timestamp::from_unix_ms(t0 + step * 10_000);
        let node_sample = NodeSample {
            at,
            cpu_percent: Some((step % 100) as f64 + 0.25),
            cpu_count: 16,
            memory_used_bytes: 20_000_000_000 + (step as u64 % 1000) * 1_000_000,
            memory_total_bytes: 64_000_000_000,
            disk_used_bytes: 300_000_000_000,
            disk_total_bytes: 1_000_000_000_000,
            net_rx_bytes_per_second: Some(123_456.7),
            net_tx_bytes_per_second: Some(54_321.2),
            sandboxes_running: 100,
        };
        let samples: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    *id,
                    SandboxSample {
                        at,
                        cpu_percent: Some(((step + i as i64) % 200) as f64 * 0.37),
                        memory_bytes: 100_000_000 + (step as u64 * 4096 + i as u64) % 50_000_000,
                        memory_limit_bytes: Some(2 << 30),
                        disk_bytes: 50_000_000 + i as u64 * 1000,
                        net_rx_bytes_per_second: Some((step % 37) as f64 * 101.3),
                        net_tx_bytes_per_second: Some((step % 29) as f64 * 11.7),
                        pids: 5 + (step % 7) as u32,
                    },
                )
            })
            .collect();
        let record = NodeRecord {
            id: node,
            name: "bench".into(),
            address: None,
            drivers: vec!["runc".into()],
            last_heartbeat_at: at,
            created_at: Timestamp::from_unix_ms(t0),
        };
        store
            .metrics()
            .record_heartbeat(&record, &node_sample, &samples)
            .await?;
        if step % 6 == 5 {
            let now = at.plus_ms(10_000);
            store.metrics().downsample(now, &retention).await?;
            store.metrics().prune(now, &retention).await?;
        }
    }
    let counts = store.metrics().row_counts().await?;
    store.close().await;
    // Fold the WAL into the file before measuring it.
    let store = Store::connect(&Store::sqlite_url(&path)).await?;
    store.close().await;
    let bytes = std::fs::metadata(&path)?.len();
    let rows: u64 = counts.iter().map(|(s, n)| s + n).sum();
    println!(
        "store cost, 100 sandboxes, 1 simulated day (written in {:.0} s): {bytes} bytes \
         ({:.1} MiB) in SQLite; rows raw {:?}, 1-minute {:?}, 10-minute {:?} (sandbox, node); \
         {:.0} bytes per stored row",
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1_048_576.0,
        counts[0],
        counts[1],
        counts[2],
        bytes as f64 / rows.max(1) as f64
    );
    let per_day_ten = (counts[2].0 + counts[2].1) as f64 * bytes as f64 / rows.max(1) as f64;
    println!(
        "steady state with the default retention (raw 1 h, 1-minute 1 d, 10-minute 30 d): \
         about {:.1} MiB; each further day adds about {:.2} MiB of 10-minute rows until day 30",
        (bytes as f64 + 29.0 * per_day_ten) / 1_048_576.0,
        per_day_ten / 1_048_576.0
    );
    Ok(())
}
