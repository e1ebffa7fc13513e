//! The default image carries the real AI CLIs: each prints its version inside a sandbox.

use std::time::Duration;

use hangar_server::sandboxes::SandboxConfig;
use hangar_testkit::{default_image_store, TestPlane};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn claude_codex_and_gemini_run_in_the_default_image() -> anyhow::Result<()> {
    let tp = TestPlane::start_opts(SandboxConfig::default(), Some(default_image_store())).await?;
    let t = tp.admin_token.clone();
    let sb = tp.create(&t, json!({"image": "default"})).await?;
    let id = sb["id"].as_str().unwrap_or_default().to_owned();
    let v = tp
        .wait_state(&t, &id, Duration::from_secs(30), |s| s != "creating")
        .await?;
    assert_eq!(v["state"], "running", "{v}");
    for (argv, expect) in [
        (vec!["claude", "--version"], "2.1.330"),
        (vec!["codex", "--version"], "0.169.0"),
        (vec!["gemini", "--version"], "0.61.0"),
    ] {
        let (status, out) = tp
            .request(
                Method::POST,
                &format!("/api/v1/sandboxes/{id}/exec"),
                Some(&t),
                Some(json!({"argv": argv, "timeout_ms": 60000})),
            )
            .await?;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["exit_code"], 0, "{argv:?}: {out}");
        assert!(
            out["stdout"].as_str().is_some_and(|s| s.contains(expect)),
            "{argv:?}: {out}"
        );
    }
    // The CLIs run as the unprivileged user, in its home.
    let (_, out) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/exec"),
            Some(&t),
            Some(json!({"argv": ["sh", "-c", "id -un; pwd"]})),
        )
        .await?;
    assert_eq!(out["stdout"], "hangar\n/home/hangar\n");
    tp.shutdown().await
}
