//! The web dashboard, for real: the pages embedded in the binary, served by a real plane
//! with real runc sandboxes, driven in a real headless Chromium (Debian's, through
//! playwright-core; `web/tests/dashboard.mjs` holds the browser side of each scenario).
//! Screenshots of the main pages go to `target/test-artifacts/dashboard/`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use hangar_testkit::{default_image_store, images, workspace_root, TestConfig, TestPlane};
use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    REFERRER_POLICY, X_FRAME_OPTIONS,
};
use reqwest::Method;
use serde_json::Value;

fn artifacts() -> PathBuf {
    workspace_root().join("target/test-artifacts/dashboard")
}

/// Runs one scenario of `web/tests/dashboard.mjs` against the plane and returns what it saw.
async fn drive(
    tp: &TestPlane,
    scenario: &str,
    token: &str,
    arg: Option<&str>,
) -> anyhow::Result<Value> {
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(workspace_root().join("web"))
        .arg("tests/dashboard.mjs")
        .arg(scenario)
        .arg(&tp.base)
        .arg(token)
        .arg(artifacts())
        .args(arg)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .with_context(|| format!("scenario {scenario} past its deadline"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "scenario {scenario}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout.lines().last().context("no output")?;
    println!("{scenario}: {line}");
    Ok(serde_json::from_str(line)?)
}

fn assert_screenshots(names: &[&str]) {
    for name in names {
        let path = artifacts().join(format!("{name}.png"));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} is not a real screenshot", path.display());
    }
}

fn no_console_errors(seen: &Value) {
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_the_dashboard_with_safe_headers_and_compression() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let get = |path: &str, encoding: &str| {
        http.get(format!("{}{path}", tp.base))
            .header(ACCEPT_ENCODING, encoding)
            .send()
    };
    let header = |r: &reqwest::Response, name| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // The page for / and every client-side route: HTML with the security headers.
    let mut script = String::new();
    for path in ["/", "/app", "/app/sandboxes/some-id", "/app/admin"] {
        let r = get(path, "identity").await?;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, CONTENT_TYPE), "text/html; charset=utf-8");
        let csp = header(&r, CONTENT_SECURITY_POLICY);
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header(&r, X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(&r, REFERRER_POLICY), "same-origin");
        assert_eq!(header(&r, CACHE_CONTROL), "no-cache");
        let body = r.text().await?;
        // No inline script: every <script> has a src under /assets/.
        assert!(!body.contains("<script>"), "{body}");
        script = body
            .split("src=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .context("a script src")?
            .to_owned();
        assert!(script.starts_with("/assets/index-"), "{script}");
    }
    // Hashed assets: immutable, precompressed by preference, plain on request.
    let br = get(&script, "gzip, deflate, br").await?;
    assert_eq!(br.status(), 200);
    assert_eq!(header(&br, CONTENT_ENCODING), "br");
    assert_eq!(
        header(&br, CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&br, CONTENT_TYPE), "text/javascript; charset=utf-8");
    let br_len = br.bytes().await?.len();
    let gz = get(&script, "gzip").await?;
    assert_eq!(header(&gz, CONTENT_ENCODING), "gzip");
    let plain = get(&script, "identity").await?;
    assert_eq!(header(&plain, CONTENT_ENCODING), "");
    let plain_len = plain.bytes().await?.len();
    assert!(br_len * 2 < plain_len, "{br_len} vs {plain_len}");
    assert_eq!(get("/assets/nope.js", "br").await?.status(), 404);
    // The viewer page is the same build.
    let viewer = get("/connect/00000000-0000-0000-0000-000000000000", "br").await?;
    assert_eq!(viewer.status(), 200);
    assert!(header(&viewer, CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    // Nothing else is shadowed: the API, sign-in, OAuth metadata and probes answer as before.
    let api = get("/api/v1/no-such-thing", "br").await?;
    assert_eq!(api.status(), 404);
    assert_eq!(header(&api, CONTENT_TYPE), "application/problem+json");
    assert_eq!(get("/api/v1/sandboxes", "br").await?.status(), 401);
    let login = get("/login", "br").await?;
    assert_eq!(login.status(), 200);
    assert!(login.text().await?.contains("Personal access token"));
    assert_eq!(
        get("/.well-known/oauth-authorization-server", "br")
            .await?
            .status(),
        200
    );
    assert_eq!(get("/healthz", "br").await?.status(), 200);
    // The sign-in view lists the configured providers (none here) without a session.
    let (status, providers) = tp
        .request(Method::GET, "/api/v1/signin/providers", None, None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(providers, serde_json::json!([]));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_create_a_sandbox_watch_it_run_and_use_its_terminal() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let seen = drive(&tp, "sandbox", &t, None).await?;
    // A refused token: the sign-in page with its error, 401, no session.
    assert_eq!(seen["bad_token_status"], 401, "{seen}");
    assert!(
        seen["bad_token_page_error"]
            .as_str()
            .unwrap_or_default()
            .contains("token"),
        "{seen}"
    );
    assert_eq!(seen["cookies_after_bad_token"], serde_json::json!([]));
    assert_eq!(seen["signed_in_as"], "admin (admin)");
    assert_eq!(seen["cookie"]["httpOnly"], true);
    assert_eq!(seen["cookie"]["sameSite"], "Lax");
    // The page showed the boot: created at once, then running with every stage.
    assert!(
        ["creating", "running"].contains(&seen["first_state"].as_str().unwrap_or_default()),
        "{seen}"
    );
    assert_eq!(
        seen["stages_reached"],
        serde_json::json!(["created", "rootfs_ready", "process_started", "agent_ready"])
    );
    assert_eq!(seen["terminal_output_seen"], true);
    assert_eq!(seen["paste_seen"], true);
    let size = &seen["terminal_size"];
    assert!(
        size["after"]["cols"].as_u64() < size["before"]["cols"].as_u64(),
        "{size}"
    );
    assert_eq!(seen["destroyed_from_page"], true);
    no_console_errors(&seen);
    // What the page did is what the API records: the sandbox it made is destroyed, with the
    // limit the form asked for.
    let id = seen["sandbox_id"].as_str().context("sandbox id")?;
    let sandbox = tp.get(&t, id).await?;
    assert_eq!(sandbox["state"], "destroyed", "{sandbox}");
    assert_eq!(sandbox["limits"]["memory_mib"], 256);
    assert_eq!(sandbox["image"], images::BUSYBOX);
    assert_screenshots(&["signin", "sandbox", "terminal", "sandboxes"]);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_cli_accounts_linked_apps_and_sign_out() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let seen = drive(&tp, "access", &t, None).await?;
    assert_eq!(seen["secret_prefix"], "hgr_pat_", "{seen}");
    assert!(
        seen["token_row"]
            .as_str()
            .unwrap_or_default()
            .contains("sandboxes:read"),
        "{seen}"
    );
    // The token made on the page reads, may not write (its scope), and stops when revoked.
    assert_eq!(seen["secret_read_status"], 200);
    assert_eq!(seen["secret_write_status"], 403);
    assert_eq!(seen["secret_still_shown"], false);
    assert_eq!(seen["revoked_read_status"], 401);
    let providers = seen["connect_providers"]
        .as_array()
        .context("providers")?
        .clone();
    for p in ["claude_code", "codex", "gemini_cli"] {
        assert!(providers.contains(&Value::from(p)), "{providers:?}");
    }
    assert_eq!(seen["after_sign_out_api_status"], 401, "{seen}");
    assert_eq!(seen["signed_out"], true);
    no_console_errors(&seen);
    // The API agrees: the token is recorded as revoked, with its scope and expiry.
    let (_, tokens) = tp
        .request(Method::GET, "/api/v1/tokens", Some(&t), None)
        .await?;
    let made = tokens
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == "dashboard-made"))
        .context("the token in the list")?;
    assert!(!made["revoked_at"].is_null(), "{made}");
    assert!(!made["expires_at"].is_null(), "{made}");
    assert_eq!(made["scope"], "sandboxes:read");
    assert_screenshots(&["tokens", "accounts"]);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_page_is_refused_to_a_non_admin() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let user = tp.new_user("alice").await?;
    let seen = drive(&tp, "refused", &user, None).await?;
    assert_eq!(seen["signed_in_as"], "alice", "{seen}");
    assert_eq!(seen["admin_link"], false);
    assert!(
        seen["refusal"]
            .as_str()
            .unwrap_or_default()
            .contains("Only admins"),
        "{seen}"
    );
    // The API refuses the same person with the same session.
    assert_eq!(seen["status /api/v1/users"], 403);
    no_console_errors(&seen);
    assert_screenshots(&["admin-refused"]);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_sandbox_shows_the_stage_reached_and_its_console() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    // The `hang` image's init prints two lines and never starts the guest agent.
    let created = tp
        .create(
            &t,
            serde_json::json!({"image": images::HANG, "readiness_timeout_ms": 1500}),
        )
        .await?;
    let id = created["id"].as_str().context("id")?.to_owned();
    let failed = tp
        .wait_state(&t, &id, Duration::from_secs(30), |s| s == "failed")
        .await?;
    assert_eq!(failed["state"], "failed", "{failed}");
    let seen = drive(&tp, "failed", &t, Some(&id)).await?;
    assert_eq!(seen["failure_kind"], "boot_timeout", "{seen}");
    let reached = failed["failure"]["stage_reached"]
        .as_str()
        .context("stage reached")?;
    assert!(
        seen["failure_text"]
            .as_str()
            .unwrap_or_default()
            .contains(reached),
        "{seen}"
    );
    assert!(
        seen["console_tail"]
            .as_str()
            .unwrap_or_default()
            .contains("booting test image"),
        "{seen}"
    );
    // The timeline marks the stages never reached.
    let stages = seen["stages"].as_array().context("stages")?;
    let agent = stages
        .iter()
        .find(|s| s[0] == "agent_ready")
        .context("agent_ready")?;
    assert_eq!(agent[1], "no", "{seen}");
    assert_eq!(seen["terminal_offered"], false);
    assert_eq!(seen["list_marks_unhealthy"], true);
    no_console_errors(&seen);
    assert_screenshots(&["sandbox-failed"]);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_flow_shows_the_remote_browser_through_novnc() -> anyhow::Result<()> {
    let tp = TestPlane::start_config(TestConfig {
        images_dir: Some(default_image_store()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let seen = drive(&tp, "connect", &t, None).await?;
    assert_eq!(seen["desktop_drawn"], true, "{seen}");
    assert_eq!(seen["cancelled_from_page"], true, "{seen}");
    no_console_errors(&seen);
    // The session the page started and cancelled is the API's, its browser sandbox gone.
    let id = seen["session_id"].as_str().context("session id")?;
    let (status, session) = tp
        .request(
            Method::GET,
            &format!("/api/v1/connect/{id}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(session["state"], "cancelled", "{session}");
    assert_eq!(session["provider"], "codex");
    let browser = session["browser_sandbox"]
        .as_str()
        .context("browser sandbox")?;
    let sandbox = tp
        .wait_state(&t, browser, Duration::from_secs(30), |s| {
            s == "destroyed" || s == "failed"
        })
        .await?;
    assert_eq!(sandbox["state"], "destroyed");
    assert_screenshots(&["connect"]);
    tp.shutdown().await
}

/// The collector, `/api/v1/nodes`, `/api/v1/nodes/{id}/metrics`,
/// `/api/v1/nodes/{id}/sandboxes`, `/api/v1/sandboxes/{id}/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_charts_render_with_data() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    // No test plane runs the collector unless asked: sample every second.
    let collector = tokio::spawn(
        tp.plane
            .state
            .metrics
            .clone()
            .collect_forever(Duration::from_secs(1)),
    );
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    // Some real work for the charts to show.
    let (status, v) = tp
        .exec(
            &t,
            &id,
            &["sh", "-c", "(while :; do :; done) >/dev/null 2>&1 &"],
        )
        .await?;
    assert_eq!(status, 200, "{v}");
    let seen = drive(&tp, "charts", &t, Some(&id)).await?;
    assert!(
        seen["sandbox_chart_points"]["cpu"].as_u64() > Some(0),
        "{seen}"
    );
    assert!(seen["sandbox_canvases"].as_u64() >= Some(3), "{seen}");
    // The data is drawn: the CPU charts hold pixels of their series' colour.
    assert!(seen["sandbox_cpu_pixels"].as_u64() > Some(0), "{seen}");
    assert!(seen["node_cpu_pixels"].as_u64() > Some(0), "{seen}");
    assert_eq!(seen["node_state"], "ready");
    assert!(seen["node_cpu"].as_str().unwrap_or("–").contains('%'));
    assert_eq!(seen["node_sandbox_healthy"], "true");
    assert!(seen["node_chart_points"]["cpu"].as_u64() > Some(0));
    no_console_errors(&seen);
    assert_screenshots(&["sandbox-charts", "admin", "node"]);
    // A non-admin is refused the admin routes behind the page.
    let user = tp.new_user("bob").await?;
    let refused = drive(&tp, "refused", &user, None).await?;
    assert_eq!(refused["status /api/v1/nodes"], 403, "{refused}");
    collector.abort();
    tp.shutdown().await
}

/// Live updates: `GET /api/v1/stream` (SSE) and `GET /api/v1/events`.
#[tokio::test(flavor = "multi_thread")]
async fn live_updates_arrive_on_the_stream() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let seen = drive(&tp, "live", &t, None).await?;
    assert_eq!(seen["live_mode"], "stream", "{seen}");
    // The new sandbox's boot reached the list by events, not by refetching it.
    assert_eq!(seen["list_refetches_while_booting"], 0, "{seen}");
    assert_eq!(seen["failed_event_seen"], true);
    no_console_errors(&seen);
    assert_screenshots(&["admin-events"]);
    let user = tp.new_user("carol").await?;
    let refused = drive(&tp, "refused", &user, None).await?;
    assert_eq!(refused["status /api/v1/events"], 403, "{refused}");
    tp.shutdown().await
}
