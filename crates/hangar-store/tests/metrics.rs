//! Health history: heartbeats, downsampling and retention, each test run against SQLite and
//! PostgreSQL (`name::sqlite`, `name::postgres`).

use std::time::Duration;

use hangar_core::{NodeId, NodeSample, Resolution, Retention, SandboxId, SandboxSample, Timestamp};
use hangar_store::testing::TestDb;
use hangar_store::NodeRecord;
use uuid::Uuid;

/// Aligned to 10 minutes since the epoch.
const T0: i64 = 1_800_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_ms)
}

fn node_record(id: NodeId, heartbeat: Timestamp) -> NodeRecord {
    NodeRecord {
        id,
        name: "n1".into(),
        address: None,
        drivers: vec!["runc".into()],
        last_heartbeat_at: heartbeat,
        created_at: at(0),
    }
}

fn node_sample(t: Timestamp, cpu: f64, running: u32) -> NodeSample {
    NodeSample {
        at: t,
        cpu_percent: Some(cpu),
        cpu_count: 2,
        memory_used_bytes: 1_000,
        memory_total_bytes: 4_000,
        disk_used_bytes: 10,
        disk_total_bytes: 100,
        net_rx_bytes_per_second: Some(10.0),
        net_tx_bytes_per_second: None,
        sandboxes_running: running,
    }
}

fn sandbox_sample(t: Timestamp, cpu: Option<f64>, memory: u64, pids: u32) -> SandboxSample {
    SandboxSample {
        at: t,
        cpu_percent: cpu,
        memory_bytes: memory,
        memory_limit_bytes: Some(1 << 30),
        disk_bytes: u64::from(pids) * 100,
        net_rx_bytes_per_second: cpu.map(|c| c * 2.0),
        net_tx_bytes_per_second: None,
        pids,
    }
}

/// One heartbeat every 10 s from `start_s` for `count` intervals; the sandbox's CPU is the
/// interval index (the first reading has none), memory 1000 * index, pids index % 7.
async fn heartbeats(
    store: &hangar_store::Store,
    node: NodeId,
    sandbox: SandboxId,
    start_s: i64,
    count: i64,
) {
    for i in 0..count {
        let t = at((start_s + i * 10) * 1000);
        let cpu = (start_s + i > 0).then_some((start_s / 10 + i) as f64);
        let n = u64::try_from(start_s / 10 + i).expect("positive");
        store
            .metrics()
            .record_heartbeat(
                &node_record(node, t),
                &node_sample(t, 50.0, 1),
                &[(sandbox, sandbox_sample(t, cpu, 1000 * n, (n % 7) as u32))],
            )
            .await
            .expect("heartbeat");
    }
}

async fn heartbeats_record_node_and_samples_once(db: TestDb) {
    let store = db.store().await;
    let node = NodeId::from_uuid(Uuid::now_v7());
    let sandbox = SandboxId::from_uuid(Uuid::now_v7());
    heartbeats(&store, node, sandbox, 0, 3).await;
    // A retried heartbeat (same `at`) adds nothing.
    heartbeats(&store, node, sandbox, 20, 1).await;
    let record = store.nodes().get(node).await.expect("get").expect("node");
    assert_eq!(record.last_heartbeat_at, at(20_000));
    let metrics = store.metrics();
    let rows = metrics
        .sandbox_series(sandbox, Resolution::Raw, at(0), at(60_000))
        .await
        .expect("series");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].cpu_percent, None, "the first reading has no rate");
    assert_eq!(rows[2], sandbox_sample(at(20_000), Some(2.0), 2000, 2));
    let latest = metrics
        .latest_node(node)
        .await
        .expect("latest")
        .expect("one");
    assert_eq!(latest, node_sample(at(20_000), 50.0, 1));
    let other = SandboxId::from_uuid(Uuid::now_v7());
    let latest = metrics
        .latest_sandboxes(&[sandbox, other], at(10_000))
        .await
        .expect("latest");
    assert_eq!(latest, vec![(sandbox, rows[2].clone())]);
    assert!(metrics
        .latest_sandboxes(&[sandbox], at(30_000))
        .await
        .expect("latest")
        .is_empty());
}

async fn downsampling_aggregates_and_is_idempotent(db: TestDb) {
    let store = db.store().await;
    let node = NodeId::from_uuid(Uuid::now_v7());
    let sandbox = SandboxId::from_uuid(Uuid::now_v7());
    // 21 minutes of raw samples: indexes 0..126.
    heartbeats(&store, node, sandbox, 0, 126).await;
    let metrics = store.metrics();
    let retention = Retention::default();
    let now = at(21 * 60_000 + 5_000);
    let first = metrics
        .downsample(now, &retention)
        .await
        .expect("downsample");
    assert!(first.aggregated > 0);

    let minutes = metrics
        .sandbox_series(sandbox, Resolution::Minute, at(0), now)
        .await
        .expect("minutes");
    assert_eq!(minutes.len(), 21, "one row per finished minute");
    // Minute 0 holds indexes 0..6: CPU of 1..=5 (index 0 has none) averages 3; memory
    // averages 2500; pids peak at 5; disk peaks with pids.
    assert_eq!(minutes[0].at, at(0));
    assert_eq!(minutes[0].cpu_percent, Some(3.0));
    assert_eq!(minutes[0].memory_bytes, 2500);
    assert_eq!(minutes[0].pids, 5);
    assert_eq!(minutes[0].disk_bytes, 500);
    assert_eq!(minutes[0].net_rx_bytes_per_second, Some(6.0));
    assert_eq!(minutes[0].net_tx_bytes_per_second, None);
    assert_eq!(minutes[0].memory_limit_bytes, Some(1 << 30));
    // Minute 1 holds indexes 6..12: CPU averages 8.5.
    assert_eq!(minutes[1].at, at(60_000));
    assert_eq!(minutes[1].cpu_percent, Some(8.5));

    let tens = metrics
        .sandbox_series(sandbox, Resolution::TenMinutes, at(0), now)
        .await
        .expect("tens");
    assert_eq!(tens.len(), 2, "two finished 10-minute buckets");
    let mean: f64 = minutes[10..20]
        .iter()
        .map(|m| m.cpu_percent.expect("cpu"))
        .sum::<f64>()
        / 10.0;
    assert_eq!(tens[1].at, at(600_000));
    assert_eq!(tens[1].cpu_percent, Some(mean));
    assert_eq!(
        tens[1].pids,
        minutes[10..20].iter().map(|m| m.pids).max().expect("max")
    );
    let node_minutes = metrics
        .node_series(node, Resolution::Minute, at(0), now)
        .await
        .expect("node minutes");
    assert_eq!(node_minutes.len(), 21);
    assert_eq!(node_minutes[3].cpu_percent, Some(50.0));
    assert_eq!(node_minutes[3].sandboxes_running, 1);

    // Running again changes nothing.
    let counts = metrics.row_counts().await.expect("counts");
    metrics.downsample(now, &retention).await.expect("again");
    assert_eq!(metrics.row_counts().await.expect("counts"), counts);
    let again = metrics
        .sandbox_series(sandbox, Resolution::Minute, at(0), now)
        .await
        .expect("minutes");
    assert_eq!(again, minutes);

    // A late sample of the last finished minute reaches its aggregate on the next run.
    let late = at(20 * 60_000 + 59_000);
    metrics
        .insert_sandbox_samples(&[(sandbox, sandbox_sample(late, Some(1000.0), 0, 0))])
        .await
        .expect("late");
    metrics.downsample(now, &retention).await.expect("late run");
    let last = metrics
        .sandbox_series(sandbox, Resolution::Minute, at(20 * 60_000), now)
        .await
        .expect("last minute");
    assert!(last[0].cpu_percent.expect("cpu") > minutes[20].cpu_percent.expect("cpu"));
}

async fn retention_deletes_by_age_per_resolution(db: TestDb) {
    let store = db.store().await;
    let node = NodeId::from_uuid(Uuid::now_v7());
    let sandbox = SandboxId::from_uuid(Uuid::now_v7());
    heartbeats(&store, node, sandbox, 0, 126).await;
    let metrics = store.metrics();
    let retention = Retention {
        raw: Duration::from_secs(5 * 60),
        minute: Duration::from_secs(15 * 60),
        ten_minutes: Duration::from_secs(3600),
    };
    let now = at(21 * 60_000);
    // The job has kept up (it runs every minute); now the shorter retention is applied.
    metrics
        .downsample(now, &Retention::default())
        .await
        .expect("downsample");
    let pruned = metrics.prune(now, &retention).await.expect("prune");
    assert!(pruned.deleted > 0);
    let raw = metrics
        .sandbox_series(sandbox, Resolution::Raw, at(0), now)
        .await
        .expect("raw");
    assert_eq!(
        raw.first().map(|s| s.at),
        Some(at(16 * 60_000)),
        "raw: last 5 min"
    );
    let minutes = metrics
        .sandbox_series(sandbox, Resolution::Minute, at(0), now)
        .await
        .expect("minutes");
    assert_eq!(minutes.first().map(|s| s.at), Some(at(6 * 60_000)));
    let counts = metrics.row_counts().await.expect("counts");
    assert_eq!(
        counts[0],
        (30, 30),
        "(sandbox, node) raw rows after pruning"
    );
    assert_eq!(counts[1], (15, 15));
    assert_eq!(counts[2], (2, 2));
    // Idempotent; and far in the future everything is gone.
    assert_eq!(
        metrics.prune(now, &retention).await.expect("again").deleted,
        0
    );
    metrics
        .prune(at(10 * 3_600_000), &retention)
        .await
        .expect("all");
    assert_eq!(metrics.row_counts().await.expect("counts"), [(0, 0); 3]);
}

hangar_store::test_both_backends!(
    heartbeats_record_node_and_samples_once,
    downsampling_aggregates_and_is_idempotent,
    retention_deletes_by_age_per_resolution,
);
