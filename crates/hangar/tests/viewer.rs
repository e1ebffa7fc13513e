//! The remote browser, for real: a browser-flow connect session runs the real `codex login`
//! in a browser sandbox (Xvfb, Chromium, x11vnc); the CLI opens its sign-in page in that
//! Chromium; and hangar's viewer page, driven in a real headless Chromium on the host, draws
//! the sandbox's desktop through noVNC and hangar's WebSocket bridge. The provider itself
//! cannot be reached from here, so the page shows Chromium's offline error for the provider's
//! URL: what matters is that the login started, its page opened, and the desktop is visible.

use std::time::Duration;

use hangar_testkit::{default_image_store, wait_until, workspace_root, TestConfig, TestPlane};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn viewer_draws_the_browser_sandbox_running_the_real_codex_login() -> anyhow::Result<()> {
    let tp = TestPlane::start_config(TestConfig {
        images_dir: Some(default_image_store()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let started = tp.start_connect(&t, "codex", Some("browser")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let session = tp
        .wait_connect(&t, &id, Duration::from_secs(60), |s| s != "starting")
        .await?;
    assert_eq!(session["state"], "awaiting_user", "{session}");
    assert_eq!(session["prompt"]["kind"], "viewer");
    let browser = session["browser_sandbox"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The CLI's login opened the provider's authorize page in the sandbox's Chromium.
    let args = wait_until(
        Duration::from_secs(30),
        "chromium on the sign-in page",
        || async {
            let (_, out) = tp.exec(&t, &browser, &["ps", "-eo", "args"]).await?;
            let text = out["stdout"].as_str().unwrap_or("").to_owned();
            Ok((text.contains("chromium") && text.contains("/oauth/authorize")).then_some(text))
        },
    )
    .await?;
    assert!(args.contains("codex login"), "{args}");

    // The viewer page draws the desktop in a real browser.
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let shot = artifacts.join("connect-viewer.png");
    let viewer_url = started["viewer_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        viewer_url.starts_with(&format!("/connect/{id}#viewer=hgr_view_")),
        "{started}"
    );
    let url = format!("{}{viewer_url}", tp.base);
    // The viewer token reads this session and nothing else.
    let viewer_token = viewer_url
        .split("#viewer=")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/connect/{id}"),
            Some(&viewer_token),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    let (status, _) = tp
        .request(Method::GET, "/api/v1/sandboxes", Some(&viewer_token), None)
        .await?;
    assert_eq!(status, 401);
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{browser}"),
            Some(&viewer_token),
            None,
        )
        .await?;
    assert_eq!(status, 401);
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .current_dir(workspace_root().join("web"))
            .arg("tests/viewer.mjs")
            .arg(&url)
            .arg(&shot)
            .output(),
    )
    .await??;
    assert!(
        out.status.success(),
        "viewer: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "viewer timings: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert!(
        std::fs::metadata(&shot)?.len() > 10_000,
        "a real screenshot"
    );

    // Cancelling tears the browser sandbox down as planned.
    let (status, v) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/connect/{id}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    let sb = tp
        .wait_state(&t, &browser, Duration::from_secs(20), |s| {
            s == "destroyed" || s == "failed"
        })
        .await?;
    assert_eq!(sb["state"], "destroyed");
    tp.shutdown().await
}
