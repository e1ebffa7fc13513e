//! Health with real parts: the collector against real cgroups of real runc sandboxes doing
//! real work, node health from heartbeats, and the history API.

use std::time::Duration;

use hangar_core::{Resolution, SandboxSample, Timestamp};
use hangar_server::metrics::MetricsConfig;
use hangar_testkit::{images, wait_until, TestConfig, TestPlane};
use reqwest::Method;
use serde_json::{json, Value};

fn fast_metrics(unreachable_after: Duration) -> MetricsConfig {
    MetricsConfig {
        interval: Duration::from_secs(1),
        disk_refresh: Duration::from_secs(1),
        unreachable_after,
        ..MetricsConfig::default()
    }
}

async fn plane(unreachable_after: Duration) -> anyhow::Result<TestPlane> {
    TestPlane::start_config(TestConfig {
        metrics: fast_metrics(unreachable_after),
        ..TestConfig::default()
    })
    .await
}

/// The latest sample of `sandbox` as `GET /api/v1/nodes/{node}/sandboxes` shows it.
async fn latest(tp: &TestPlane, node: &str, sandbox: &str) -> anyhow::Result<Option<Value>> {
    let (status, list) = tp
        .request(
            Method::GET,
            &format!("/api/v1/nodes/{node}/sandboxes"),
            Some(&tp.admin_token),
            None,
        )
        .await?;
    anyhow::ensure!(status == 200, "node sandboxes answered {status}: {list}");
    Ok(list
        .as_array()
        .and_then(|l| l.iter().find(|e| e["sandbox"]["id"] == sandbox))
        .map(|e| e["latest"].clone())
        .filter(|l| !l.is_null()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_burner_and_memory_hog_show_in_their_samples() -> anyhow::Result<()> {
    let tp = plane(Duration::from_secs(30)).await?;
    let metrics = tp.plane.state.metrics.clone();
    let collector = tokio::spawn(metrics.clone().collect_forever(metrics.config().interval));
    let node = tp.plane.state.sandboxes.node().id().to_string();
    let user = tp.new_user("metrics-owner").await?;
    let idle = tp.running_sandbox(&user, images::BUSYBOX).await?;
    let burner = tp.running_sandbox(&user, images::BUSYBOX).await?;
    let hog = tp.running_sandbox(&user, images::BUSYBOX).await?;

    let (status, out) = tp
        .exec(
            &user,
            &burner,
            &[
                "sh",
                "-c",
                "(while :; do :; done) </dev/null >/dev/null 2>&1 &",
            ],
        )
        .await?;
    assert_eq!(status, 200, "{out}");
    // sort holds its whole input (one 64 MiB line) until its input ends, an hour later.
    let (status, out) = tp
        .exec(
            &user,
            &hog,
            &[
                "sh",
                "-c",
                "((head -c 67108864 /dev/zero | tr '\\0' a; sleep 3600) | sort) \
                 </dev/null >/dev/null 2>&1 &",
            ],
        )
        .await?;
    assert_eq!(status, 200, "{out}");

    let figures = wait_until(
        Duration::from_secs(30),
        "burner and hog figures",
        || async {
            let (Some(i), Some(b), Some(h)) = (
                latest(&tp, &node, &idle).await?,
                latest(&tp, &node, &burner).await?,
                latest(&tp, &node, &hog).await?,
            ) else {
                return Ok(None);
            };
            let cpu = |v: &Value| v["cpu_percent"].as_f64();
            let mem = |v: &Value| v["memory_bytes"].as_f64().unwrap_or(0.0);
            let ready = cpu(&b).is_some_and(|c| c > 50.0)
                && cpu(&i).is_some()
                && mem(&h) > mem(&i) + 48.0 * 1024.0 * 1024.0;
            Ok(ready.then_some((i, b, h)))
        },
    )
    .await?;
    let (i, b, h) = figures;
    let idle_cpu = i["cpu_percent"].as_f64().unwrap_or(f64::MAX);
    assert!(idle_cpu < 10.0, "idle sandbox CPU {idle_cpu}: {i}");
    assert!(b["pids"].as_u64().unwrap_or(0) >= 2, "burner pids: {b}");
    assert!(h["pids"].as_u64().unwrap_or(0) >= 3, "hog pids: {h}");
    assert_eq!(
        h["memory_limit_bytes"].as_u64(),
        Some(2048 * 1024 * 1024),
        "the default 2 GiB limit is read from the cgroup: {h}"
    );
    assert!(b["disk_bytes"].is_u64() && b["at"].is_string(), "{b}");

    // The node list shows the local node ready with a host sample.
    let (status, nodes) = tp
        .request(Method::GET, "/api/v1/nodes", Some(&tp.admin_token), None)
        .await?;
    assert_eq!(status, 200);
    let me = nodes
        .as_array()
        .and_then(|l| l.iter().find(|n| n["id"] == node.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(me["state"], "ready", "{me}");
    assert_eq!(me["drivers"], json!(["runc"]));
    let host = &me["latest"];
    assert!(host["sandboxes_running"].as_u64() >= Some(3), "{host}");
    assert!(host["memory_total_bytes"].as_u64() > host["memory_used_bytes"].as_u64());
    assert!(
        host["cpu_percent"].as_f64().is_some_and(|c| c > 0.0),
        "{host}"
    );

    // History: aligned arrays with data, for the owner.
    let (status, hist) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{burner}/metrics?since=1h"),
            Some(&user),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{hist}");
    let t = hist["t"].as_array().cloned().unwrap_or_default();
    assert_eq!(hist["step_seconds"], 1);
    assert!(t.len() >= 3599, "{}", t.len());
    for field in [
        "cpu_percent",
        "memory_bytes",
        "memory_limit_bytes",
        "disk_bytes",
        "net_rx_bytes_per_second",
        "net_tx_bytes_per_second",
        "pids",
    ] {
        assert_eq!(
            hist[field].as_array().map(Vec::len),
            Some(t.len()),
            "{field} is aligned with t"
        );
    }
    let busy = hist["cpu_percent"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|v| v.as_f64().is_some_and(|c| c > 50.0))
                .count()
        })
        .unwrap_or(0);
    assert!(busy >= 1, "the burner's history shows it busy");

    // Node history, admin only; tenants walled off; bad input is 400 problem+json.
    let (status, nh) = tp
        .request(
            Method::GET,
            &format!("/api/v1/nodes/{node}/metrics?since=15m&step=60"),
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{nh}");
    assert_eq!(nh["step_seconds"], 60);
    assert_eq!(
        nh["memory_used_bytes"].as_array().map(Vec::len),
        nh["t"].as_array().map(Vec::len)
    );
    let other = tp.new_user("metrics-other").await?;
    for path in [
        "/api/v1/nodes".to_owned(),
        format!("/api/v1/nodes/{node}/sandboxes"),
        format!("/api/v1/nodes/{node}/metrics"),
    ] {
        let (status, _) = tp.request(Method::GET, &path, Some(&other), None).await?;
        assert_eq!(status, 403, "{path}");
    }
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{burner}/metrics"),
            Some(&other),
            None,
        )
        .await?;
    assert_eq!(status, 404, "another user's sandbox");
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{burner}/metrics"),
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(status, 200, "an admin sees any sandbox's history");
    for query in [
        "since=yesterday",
        "since=0h",
        "step=0",
        "step=abc",
        "since=1h&step=-5",
    ] {
        let (status, body) = tp
            .request(
                Method::GET,
                &format!("/api/v1/sandboxes/{burner}/metrics?{query}"),
                Some(&user),
                None,
            )
            .await?;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "invalid_request");
    }
    collector.abort();
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_becomes_unreachable_and_recovers() -> anyhow::Result<()> {
    let silence = Duration::from_secs(2);
    let interval = Duration::from_secs(1);
    let tp = plane(silence).await?;
    let remote = uuid::Uuid::now_v7().to_string();
    let heartbeat = json!({
        "name": "remote-1",
        "address": "10.0.0.9:7000",
        "drivers": ["runc"],
        "node": {
            "at": "2026-11-23T11:20:18.123Z", "cpu_percent": 12.5, "cpu_count": 2,
            "memory_used_bytes": 1, "memory_total_bytes": 2,
            "disk_used_bytes": 1, "disk_total_bytes": 2,
            "net_rx_bytes_per_second": null, "net_tx_bytes_per_second": 0.0,
            "sandboxes_running": 0
        },
        "sandboxes": [{
            "sandbox_id": uuid::Uuid::now_v7().to_string(),
            "sample": {"at": "2026-11-23T11:20:18.123Z", "cpu_percent": null,
                "memory_bytes": 1, "memory_limit_bytes": null, "disk_bytes": 0,
                "net_rx_bytes_per_second": null, "net_tx_bytes_per_second": null, "pids": 1}
        }]
    });
    let path = format!("/api/v1/nodes/{remote}/heartbeat");
    let send = || async {
        tp.request(
            Method::POST,
            &path,
            Some(&tp.admin_token),
            Some(heartbeat.clone()),
        )
        .await
    };
    let state = || async {
        let (status, nodes) = tp
            .request(Method::GET, "/api/v1/nodes", Some(&tp.admin_token), None)
            .await?;
        anyhow::ensure!(status == 200, "nodes answered {status}");
        Ok::<_, anyhow::Error>(
            nodes
                .as_array()
                .and_then(|l| l.iter().find(|n| n["id"] == remote.as_str()))
                .cloned()
                .unwrap_or(Value::Null),
        )
    };

    // The node watcher records each state change once, in the event log.
    let metrics = tp.plane.state.metrics.clone();
    let mut seen = std::collections::HashMap::new();
    let events_of_node = || async {
        let (status, events) = tp
            .request(Method::GET, "/api/v1/events", Some(&tp.admin_token), None)
            .await?;
        anyhow::ensure!(status == 200, "events answered {status}");
        Ok::<_, anyhow::Error>(
            events
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter(|e| e["node_id"] == remote.as_str())
                        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
    };

    let (status, body) = send().await?;
    assert_eq!(status, 204, "{body}");
    let node = state().await?;
    assert_eq!(node["state"], "ready", "{node}");
    metrics.watch_nodes_once(&mut seen).await?;
    assert!(
        events_of_node().await?.is_empty(),
        "a new node is no change"
    );
    assert_eq!(node["name"], "remote-1");
    assert_eq!(node["address"], "10.0.0.9:7000");
    assert_eq!(node["latest"]["cpu_percent"], 12.5);
    assert!(node["latest"]["net_rx_bytes_per_second"].is_null());

    // The agent stops: unreachable within the silence plus one interval.
    wait_until(silence + interval, "node unreachable", || async {
        Ok((state().await?["state"] == "unreachable").then_some(()))
    })
    .await?;
    metrics.watch_nodes_once(&mut seen).await?;
    metrics.watch_nodes_once(&mut seen).await?;
    assert_eq!(events_of_node().await?, ["node_unreachable"]);
    // It comes back.
    let (status, _) = send().await?;
    assert_eq!(status, 204);
    assert_eq!(state().await?["state"], "ready");
    metrics.watch_nodes_once(&mut seen).await?;
    assert_eq!(
        events_of_node().await?,
        ["node_recovered", "node_unreachable"],
        "newest first, one event per change"
    );

    // Only admins send heartbeats; bad bodies change nothing.
    let user = tp.new_user("not-an-agent").await?;
    let (status, _) = tp
        .request(Method::POST, &path, Some(&user), Some(heartbeat.clone()))
        .await?;
    assert_eq!(status, 403);
    let mut bad = heartbeat.clone();
    bad["node"]["cpu_count"] = json!("two");
    let (status, _) = tp
        .request(Method::POST, &path, Some(&tp.admin_token), Some(bad))
        .await?;
    assert_eq!(status, 422);
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/nodes/not-a-uuid/heartbeat",
            Some(&tp.admin_token),
            Some(heartbeat.clone()),
        )
        .await?;
    assert_eq!(status, 400);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_history_loads_and_answers() -> anyhow::Result<()> {
    let tp = plane(Duration::from_secs(30)).await?;
    let user = tp.new_user("history-owner").await?;
    let id = tp.running_sandbox(&user, images::BUSYBOX).await?;
    let sandbox: hangar_core::SandboxId = id.parse()?;
    let now = hangar_server::clock::Clock::now(&hangar_server::clock::SystemClock);
    let row = |at_ms: i64, cpu: f64| SandboxSample {
        at: Timestamp::from_unix_ms(at_ms),
        cpu_percent: Some(cpu),
        memory_bytes: 1 << 20,
        memory_limit_bytes: Some(1 << 30),
        disk_bytes: 4096,
        net_rx_bytes_per_second: Some(1.0),
        net_tx_bytes_per_second: Some(2.0),
        pids: 3,
    };
    let metrics = tp.plane.state.store.metrics();
    let ten = 600_000;
    let start = now.unix_ms() - 8 * 86_400_000;
    let tens: Vec<_> = (0..8 * 144)
        .map(|i| row((start / ten + i) * ten, (i % 100) as f64))
        .collect();
    metrics
        .put_sandbox_rows(sandbox, Resolution::TenMinutes, &tens)
        .await?;
    let minutes: Vec<_> = (0..1441)
        .map(|i| row((now.unix_ms() / 60_000 - 1440 + i) * 60_000, 5.0))
        .collect();
    metrics
        .put_sandbox_rows(sandbox, Resolution::Minute, &minutes)
        .await?;
    tp.plane.state.metrics.maintain_once().await?;

    let (status, week) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{id}/metrics?since=7d"),
            Some(&user),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{week}");
    assert_eq!(week["step_seconds"], 600);
    let t = week["t"].as_array().cloned().unwrap_or_default();
    assert!((1008..=1010).contains(&t.len()), "{}", t.len());
    let cpu = week["cpu_percent"].as_array().cloned().unwrap_or_default();
    assert_eq!(cpu.len(), t.len());
    let filled = cpu.iter().filter(|v| v.is_number()).count();
    assert!(filled >= 1000, "{filled} of {} points have data", cpu.len());
    assert!(week["pids"]
        .as_array()
        .is_some_and(|p| p.iter().any(|v| v.as_f64() == Some(3.0))));

    let (status, day) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{id}/metrics?since=24h"),
            Some(&user),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(day["step_seconds"], 60);
    let filled = day["cpu_percent"]
        .as_array()
        .map(|a| a.iter().filter(|v| v.as_f64() == Some(5.0)).count())
        .unwrap_or(0);
    assert!(filled >= 1430, "{filled}");
    tp.shutdown().await
}
