//! Sandbox lifecycle rules, against the real control plane and real runc.

use std::time::{Duration, Instant};

use hangar_server::sandboxes::SandboxConfig;
use hangar_testkit::{images, wait_until, TestPlane};
use reqwest::Method;
use serde_json::{json, Value};

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn stages(v: &Value) -> Vec<String> {
    v["boot"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["stage"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_answers_at_once_and_boot_stages_are_recorded() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let sb = tp.create(&t, json!({"image": images::BUSYBOX, "limits": {"memory_mib": 128, "pids_max": 64, "cpu_millis": 500}})).await?;
    assert_eq!(sb["state"], "creating");
    assert_eq!(stages(&sb), vec!["created"]);
    let id = id_of(&sb);
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(20), |s| s != "creating")
        .await?;
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(
        stages(&v),
        vec!["created", "rootfs_ready", "process_started", "agent_ready"]
    );
    let times: Vec<String> = v["boot"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["at"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "stage times are in order");

    // Runs as the unprivileged user, with the limits enforced by cgroups.
    let (status, out) = tp
        .exec(
            &t,
            &id,
            &["sh", "-c", "id -u; cat /proc/self/cgroup | head -50"],
        )
        .await?;
    assert_eq!(status, 200);
    assert!(
        out["stdout"].as_str().unwrap_or("").starts_with("1000\n"),
        "{out}"
    );
    let pid = match tp.plane.state.sandboxes.node().status(id.parse()?).await? {
        hangar_runtime::RuntimeStatus::Running { pid } => pid,
        other => anyhow::bail!("not running: {other:?}"),
    };
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mem = cgroups
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == "memory"))
        })
        .and_then(|l| l.split(':').nth(2))
        .unwrap_or("");
    let limit =
        std::fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes"))?;
    assert_eq!(limit.trim(), (128u64 * 1024 * 1024).to_string());
    let pids = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap_or("");
    let pids_max = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{pids}/pids.max"))?;
    assert_eq!(pids_max.trim(), "64");

    // Its own network namespace: only loopback.
    let (_, out) = tp.exec(&t, &id, &["cat", "/proc/net/dev"]).await?;
    let ifaces: Vec<&str> = out["stdout"]
        .as_str()
        .unwrap_or("")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, vec!["lo"]);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_past_deadline_fails_with_stage_and_console() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let deadline_ms = 1500;
    let started = Instant::now();
    let sb = tp
        .create(
            &t,
            json!({"image": images::HANG, "readiness_timeout_ms": deadline_ms}),
        )
        .await?;
    // The create call itself does not wait for the boot.
    assert!(started.elapsed() < Duration::from_millis(deadline_ms));
    assert_eq!(sb["state"], "creating");
    let id = id_of(&sb);
    // Failed within the deadline plus a small margin; every GET answered meanwhile.
    let v = tp
        .wait_state(&t, &id, Duration::from_millis(deadline_ms + 3000), |s| {
            s != "creating"
        })
        .await?;
    assert_eq!(v["state"], "failed", "{v}");
    let failure = &v["failure"];
    assert_eq!(failure["kind"], "boot_timeout");
    assert_eq!(failure["stage_reached"], "process_started");
    let console: Vec<&str> = failure["console_tail"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(console.contains(&"booting test image"), "{console:?}");
    assert!(console.contains(&"stuck on purpose"), "{console:?}");
    // Default retention: resources released, and a failed sandbox never starts again.
    let dir = tp.data.path().join("sandboxes").join(&id);
    wait_until(Duration::from_secs(10), "release", || async {
        Ok((!dir.exists()).then_some(()))
    })
    .await?;
    let (status, body) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/start"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 409, "{body}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn global_readiness_default_applies() -> anyhow::Result<()> {
    let tp = TestPlane::start_with(SandboxConfig {
        readiness_timeout: Duration::from_millis(800),
        ..SandboxConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let sb = tp.create(&t, json!({"image": images::HANG})).await?;
    assert_eq!(sb["readiness_timeout_ms"], 800);
    let v = tp
        .wait_state(&t, &id_of(&sb), Duration::from_millis(800 + 3000), |s| {
            s != "creating"
        })
        .await?;
    assert_eq!(v["failure"]["kind"], "boot_timeout");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_start_keeps_files_and_destroy_ends_destroyed() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let (status, _) = tp
        .exec(&t, &id, &["sh", "-c", "echo kept > /home/hangar/note"])
        .await?;
    assert_eq!(status, 200);
    // A process that ignores SIGTERM and would exit non-zero: a planned stop still ends stopped.
    let (status, _) = tp
        .exec(
            &t,
            &id,
            &[
                "sh",
                "-c",
                "trap '' TERM; (trap '' TERM; sleep 1000) >/dev/null 2>&1 & echo started",
            ],
        )
        .await?;
    assert_eq!(status, 200);
    let (status, v) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/stop"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    assert_eq!(v["state"], "stopping");
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(20), |s| s != "stopping")
        .await?;
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(v["failure"].is_null());
    let (status, body) = tp.exec(&t, &id, &["true"]).await?;
    assert_eq!(status, 409, "exec into a stopped sandbox: {body}");
    assert_eq!(body["code"], "wrong_state");

    let (status, v) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/start"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    assert_eq!(v["state"], "starting");
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(20), |s| s != "starting")
        .await?;
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(
        stages(&v),
        vec!["created", "rootfs_ready", "process_started", "agent_ready"]
    );
    let (_, out) = tp.exec(&t, &id, &["cat", "/home/hangar/note"]).await?;
    assert_eq!(out["stdout"], "kept\n");

    let (status, v) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/sandboxes/{id}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    assert_eq!(v["state"], "destroying");
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(20), |s| s != "destroying")
        .await?;
    assert_eq!(v["state"], "destroyed");
    assert!(v["released_at"].is_string());
    assert!(!tp.data.path().join("sandboxes").join(&id).exists());
    // Destroyed is final.
    let (status, _) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/start"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 409);
    let (status, _) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/sandboxes/{id}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 409);
    // Listed only with all=true.
    let (_, list) = tp
        .request(Method::GET, "/api/v1/sandboxes", Some(&t), None)
        .await?;
    assert!(list
        .as_array()
        .is_some_and(|a| a.iter().all(|s| s["id"] != id.as_str())));
    let (_, list) = tp
        .request(Method::GET, "/api/v1/sandboxes?all=true", Some(&t), None)
        .await?;
    assert!(list
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["id"] == id.as_str())));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_during_boot_ends_destroyed() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = id_of(
        &tp.create(
            &t,
            json!({"image": images::HANG, "readiness_timeout_ms": 20000}),
        )
        .await?,
    );
    tp.wait_state(&t, &id, Duration::from_secs(10), |_| true)
        .await?;
    let (status, _) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/sandboxes/{id}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 202);
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(20), |s| {
            s == "destroyed" || s == "failed"
        })
        .await?;
    assert_eq!(v["state"], "destroyed", "{v}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keep_holds_files_until_ttl() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = id_of(&tp.create(&t, json!({"image": images::HANG, "readiness_timeout_ms": 500, "retention": {"on_failure": "keep", "ttl_s": 2}})).await?);
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(5), |s| s == "failed")
        .await?;
    assert!(v["released_at"].is_null());
    let dir = tp.data.path().join("sandboxes").join(&id);
    assert!(dir.join("console.log").exists(), "kept for inspection");
    // Its processes are gone even though its files are kept.
    wait_until(Duration::from_secs(5), "processes gone", || async {
        let st = tp.plane.state.sandboxes.node().status(id.parse()?).await?;
        Ok((st == hangar_runtime::RuntimeStatus::Missing).then_some(()))
    })
    .await?;
    assert!(dir.join("upper").exists(), "files kept");
    // A reconciler pass before the TTL keeps it; one after releases it.
    tp.plane.state.sandboxes.reconcile_once().await?;
    assert!(dir.exists());
    let svc = tp.plane.state.sandboxes.clone();
    wait_until(Duration::from_secs(10), "release after TTL", || {
        let svc = svc.clone();
        let dir = dir.clone();
        async move {
            svc.reconcile_once().await?;
            Ok((!dir.exists()).then_some(()))
        }
    })
    .await?;
    let v = tp.get(&t, &id).await?;
    assert_eq!(v["state"], "failed");
    assert!(v["released_at"].is_string());
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciler_marks_vanished_and_removes_orphans() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let runc_root = tp.data.path().join("runc");

    // Delete the container behind hangar's back.
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["delete", "--force", &id])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An orphan container in hangar's runc root, and an orphan sandbox directory.
    let orphan_id = uuid::Uuid::now_v7().to_string();
    let orphan_dir = tp.data.path().join("sandboxes").join(&orphan_id);
    std::fs::create_dir_all(orphan_dir.join("upper"))?;
    let bundle = tempfile::tempdir()?;
    let spec = std::process::Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(bundle.path())
        .output()?;
    assert!(spec.status.success());
    let rootfs = bundle.path().join("rootfs");
    hangar_runtime::image::testing::busybox_rootfs(&rootfs)?;
    let cfg_path = bundle.path().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sleep", "1000"]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
    let run = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg("stray")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    assert!(run.success());

    let report = tp.plane.state.sandboxes.reconcile_once().await?;
    assert!(
        report.orphans_removed.contains(&"stray".to_owned()),
        "{report:?}"
    );
    assert!(report.orphans_removed.contains(&orphan_id), "{report:?}");
    assert!(!orphan_dir.exists());
    let v = tp.get(&t, &id).await?;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["failure"]["kind"], "vanished");
    assert!(
        v["failure"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("vanished"),
        "{v}"
    );
    // Both are in the event log: the lost sandbox, and each orphan removed.
    let (status, events) = tp
        .request(Method::GET, "/api/v1/events", Some(&t), None)
        .await?;
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "sandbox_vanished" && e["sandbox_id"] == id.as_str()),
        "{events:?}"
    );
    for name in ["stray", orphan_id.as_str()] {
        assert!(
            events.iter().any(|e| e["kind"] == "reconciler_action"
                && e["message"].as_str().is_some_and(|m| m.contains(name))),
            "{name}: {events:?}"
        );
    }
    let list = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["list", "-q"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
    // A failed record is never resumed: exec refuses.
    let (status, _) = tp.exec(&t, &id, &["true"]).await?;
    assert_eq!(status, 409);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_into_a_dead_sandbox_marks_it_failed() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let runc_root = tp.data.path().join("runc");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["kill", &id, "KILL"])
        .output()?;
    assert!(out.status.success());
    wait_until(Duration::from_secs(5), "container stopped", || async {
        let st = tp.plane.state.sandboxes.node().status(id.parse()?).await?;
        Ok((!matches!(st, hangar_runtime::RuntimeStatus::Running { .. })).then_some(()))
    })
    .await?;
    let (status, body) = tp.exec(&t, &id, &["true"]).await?;
    assert_eq!(status, 503, "{body}");
    let v = tp.get(&t, &id).await?;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["failure"]["kind"], "vanished");
    tp.shutdown().await
}
