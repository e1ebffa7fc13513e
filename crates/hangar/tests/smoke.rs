use std::time::Duration;

use hangar_testkit::{images, TestPlane};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn create_exec_destroy() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let sb = tp.create(&t, json!({"image": images::BUSYBOX})).await?;
    let id = sb["id"].as_str().unwrap_or_default().to_owned();
    let v = tp.wait_state(&t, &id, Duration::from_secs(20), |s| s == "running" || s == "failed").await?;
    assert_eq!(v["state"], "running", "{v}");
    let (status, out) = tp
        .request(reqwest::Method::POST, &format!("/api/v1/sandboxes/{id}/exec"), Some(&t), Some(json!({"argv": ["sh", "-c", "echo hi; id -u"]})))
        .await?;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["stdout"], "hi\n1000\n");
    tp.shutdown().await
}
