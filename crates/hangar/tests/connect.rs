//! Connecting a CLI account end to end, with a stand-in CLI described as provider data (a
//! fourth provider: no Rust change). Its "login" is a shell script in the browser sandbox that
//! prints a device code and then writes a credential file the way the real CLIs do (temp file,
//! then rename). The sandbox, guest agent, file watch, vault, store transaction, delivery and
//! status check are all the real ones.

use std::time::Duration;

use hangar_server::connect::ConnectConfig;
use hangar_testkit::{images, TestConfig, TestPlane};
use reqwest::Method;
use serde_json::{json, Value};

/// The stand-in CLI's provider file; its refresh goes to `token_url`.
fn fake_cli(token_url: &str) -> String {
    FAKE_CLI.replace("TOKEN_URL", token_url)
}

const FAKE_CLI: &str = r#"
id = "fake_cli"
display_name = "Stand-in CLI for tests"
binary = "sh"

[flows.device_code]
argv = ["sh", "-c", "echo 'Visit https://auth.example.test/device and enter the one-time code'; echo 'ABCD-1234'; sleep 0.5; mkdir -p .fake; printf '{\"tokens\":{\"refresh_token\":\"rt-secret-1\",\"access_token\":\"at-1\",\"expires_at\":%s}}' $(( $(date +%s) * 1000 + 600000 )) > .fake/creds.json.tmp; mv .fake/creds.json.tmp .fake/creds.json; sleep 30"]
url_regex = '(?P<url>https://\S+/device)'
code_regex = '(?P<code>[A-Z]{4}-[0-9]{4})'

[flows.paste_code]
argv = ["sh", "-c", "echo 'Open https://auth.example.test/authorize?x=1 and paste the code:'; read code; mkdir -p .fake; printf '{\"tokens\":{\"access_token\":\"at\",\"expires_at\":4102444800000}}' > .fake/creds.json; sleep 30"]
url_regex = '(?P<url>https://\S+/authorize\S*)'
input = "paste_code"

[flows.browser]
argv = ["sh", "-c", "sleep 60"]

[[files]]
path = ".fake/creds.json"
mode = 0o600
refresh_token = "/tokens/refresh_token"
access_token = "/tokens/access_token"
expiry = { pointer = "/tokens/expires_at", format = "epoch_ms" }

[status]
kind = "command"
argv = ["sh", "-c", "test -s $HOME/.fake/creds.json && echo logged-in-as-fake"]
logged_in_regex = "logged-in-as-fake"

[refresh]
token_url = "TOKEN_URL"
client_id = "fake-client"
grant_format = "json"
"#;

async fn plane(sign_in: Duration) -> anyhow::Result<(TestPlane, tempfile::TempDir)> {
    plane_with(sign_in, "http://127.0.0.1:9/token", Duration::from_secs(60)).await
}

async fn plane_with(
    sign_in: Duration,
    token_url: &str,
    refresh_margin: Duration,
) -> anyhow::Result<(TestPlane, tempfile::TempDir)> {
    let providers = tempfile::tempdir()?;
    std::fs::write(providers.path().join("fake_cli.toml"), fake_cli(token_url))?;
    let tp = TestPlane::start_config(TestConfig {
        connect: ConnectConfig {
            sign_in_timeout: sign_in,
            browser_image: images::BUSYBOX.to_owned(),
            browser_session: Vec::new(),
            refresh_margin,
            ..ConnectConfig::default()
        },
        providers_dir: Some(providers.path().to_owned()),
        ..TestConfig::default()
    })
    .await?;
    Ok((tp, providers))
}

async fn session(tp: &TestPlane, token: &str, id: &str) -> anyhow::Result<Value> {
    let (status, v) = tp
        .request(
            Method::GET,
            &format!("/api/v1/connect/{id}"),
            Some(token),
            None,
        )
        .await?;
    anyhow::ensure!(status == 200, "get session: {status} {v}");
    Ok(v)
}

async fn cat(
    tp: &TestPlane,
    token: &str,
    sandbox: &str,
    path: &str,
) -> anyhow::Result<(u16, Value)> {
    tp.exec(
        token,
        sandbox,
        &[
            "sh",
            "-c",
            &format!("ls -l {path} | cut -c1-10; cat {path}"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn device_code_login_is_captured_sealed_delivered_and_checked() -> anyhow::Result<()> {
    let (tp, _providers) = plane(Duration::from_secs(60)).await?;
    let alice = tp.new_user("alice").await?;
    let before = tp.running_sandbox(&alice, images::BUSYBOX).await?;
    // A stopped sandbox gets nothing while stopped, and the files when it starts.
    let stopped = tp.running_sandbox(&alice, images::BUSYBOX).await?;
    tp.request(
        Method::POST,
        &format!("/api/v1/sandboxes/{stopped}/stop"),
        Some(&alice),
        None,
    )
    .await?;
    tp.wait_state(&alice, &stopped, Duration::from_secs(20), |s| {
        s == "stopped"
    })
    .await?;

    let started = tp
        .start_connect(&alice, "fake_cli", Some("device_code"))
        .await?;
    assert_eq!(started["state"], "starting");
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let done = tp
        .wait_connect(&alice, &id, Duration::from_secs(30), |s| {
            s == "completed" || s == "failed" || s == "expired"
        })
        .await?;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["prompt"]["kind"], "verification_uri", "{done}");
    assert_eq!(done["prompt"]["user_code"], "ABCD-1234");
    assert_eq!(done["prompt"]["uri"], "https://auth.example.test/device");
    let browser = done["browser_sandbox"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The browser sandbox is torn down as planned, and the session stays completed.
    let sb = tp
        .wait_state(&alice, &browser, Duration::from_secs(20), |s| {
            s == "destroyed" || s == "failed"
        })
        .await?;
    assert_eq!(sb["state"], "destroyed", "{sb}");
    assert_eq!(session(&tp, &alice, &id).await?["state"], "completed");
    // Its outcome is recorded once, as an event for admins.
    let (status, events) = tp
        .request(Method::GET, "/api/v1/events", Some(&tp.admin_token), None)
        .await?;
    assert_eq!(status, 200, "{events}");
    let outcomes: Vec<&Value> = events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["connect_session_id"] == id.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(outcomes.len(), 1, "{events}");
    assert_eq!(outcomes[0]["kind"], "connect_session");
    assert_eq!(outcomes[0]["severity"], "info");
    assert!(
        outcomes[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("completed")),
        "{events}"
    );

    // Delivered into the sandbox that was already running, with the provider's mode.
    let (_, out) = cat(&tp, &alice, &before, "/home/hangar/.fake/creds.json").await?;
    let text = out["stdout"].as_str().unwrap_or("");
    assert!(text.starts_with("-rw-------"), "{out}");
    assert!(text.contains("at-1"), "{out}");
    // Sandboxes never hold the real refresh token (hangar owns refresh).
    assert!(!text.contains("rt-secret-1"), "{out}");
    assert!(text.contains("hangar-managed-refresh-token"), "{out}");

    let upper = tp
        .data
        .path()
        .join("sandboxes")
        .join(&stopped)
        .join("upper/home/hangar/.fake/creds.json");
    assert!(!upper.exists(), "nothing written into a stopped sandbox");
    tp.request(
        Method::POST,
        &format!("/api/v1/sandboxes/{stopped}/start"),
        Some(&alice),
        None,
    )
    .await?;
    tp.wait_state(&alice, &stopped, Duration::from_secs(20), |s| {
        s == "running"
    })
    .await?;
    let (_, out) = cat(&tp, &alice, &stopped, "/home/hangar/.fake/creds.json").await?;
    assert!(
        out["stdout"].as_str().unwrap_or("").contains("at-1"),
        "{out}"
    );

    // ...and into a sandbox started later, at boot.
    let later = tp.running_sandbox(&alice, images::BUSYBOX).await?;
    let (_, out) = cat(&tp, &alice, &later, "/home/hangar/.fake/creds.json").await?;
    assert!(
        out["stdout"].as_str().unwrap_or("").contains("at-1"),
        "{out}"
    );

    // The CLI's own status command ran and said so; the expiry was read from the file.
    let status = tp
        .wait_status_check(&alice, Duration::from_secs(10))
        .await?;
    assert_eq!(status["provider"], "fake_cli");
    assert_eq!(status["last_check_ok"], true, "{status}");
    assert!(status["last_check_output"]
        .as_str()
        .unwrap_or("")
        .contains("logged-in-as-fake"));
    assert!(status["access_token_expires_at"].is_string(), "{status}");

    // Sealed at rest: the refresh token is not in the database file.
    for file in ["hangar.db", "hangar.db-wal"] {
        let bytes = std::fs::read(tp.data.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(11).any(|w| w == b"rt-secret-1"),
            "{file} holds the plaintext"
        );
    }

    // Walled off: another user sees nothing.
    let bob = tp.new_user("bob").await?;
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/connect/{id}"),
            Some(&bob),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    for (method, path) in [
        (Method::POST, format!("/api/v1/connect/{id}/code")),
        (Method::DELETE, format!("/api/v1/connect/{id}")),
    ] {
        let (status, _) = tp
            .request(method, &path, Some(&bob), Some(json!({"code": "x"})))
            .await?;
        assert_eq!(status, 404, "{path}");
    }
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&bob), None)
        .await?;
    assert_eq!(list, json!([]));

    // Removal takes it out of the vault and out of live sandboxes.
    let status = tp.remove_credential(&alice, "fake_cli").await?;
    assert_eq!(status, 204);
    let (_, out) = tp
        .exec(
            &alice,
            &before,
            &["test", "-e", "/home/hangar/.fake/creds.json"],
        )
        .await?;
    assert_eq!(out["exit_code"], 1, "file removed: {out}");
    let status = tp.remove_credential(&alice, "fake_cli").await?;
    assert_eq!(status, 404);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_deadline_expires_the_session_and_tears_down() -> anyhow::Result<()> {
    let (tp, _providers) = plane(Duration::from_millis(2500)).await?;
    let t = tp.admin_token.clone();
    let started = tp.start_connect(&t, "fake_cli", Some("browser")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let v = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| s == "awaiting_user")
        .await?;
    assert_eq!(v["prompt"]["kind"], "viewer");
    assert!(
        v["viewer_websocket"]
            .as_str()
            .is_some_and(|w| w.ends_with("/vnc")),
        "{v}"
    );
    let v = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| s != "awaiting_user")
        .await?;
    assert_eq!(v["state"], "expired", "{v}");
    assert!(v["viewer_websocket"].is_null());
    let browser = v["browser_sandbox"].as_str().unwrap_or_default().to_owned();
    let sb = tp
        .wait_state(&t, &browser, Duration::from_secs(20), |s| {
            s == "destroyed" || s == "failed"
        })
        .await?;
    assert_eq!(sb["state"], "destroyed");
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&t), None)
        .await?;
    assert_eq!(list, json!([]));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn paste_code_reaches_the_login_and_bad_files_fail_the_session() -> anyhow::Result<()> {
    let (tp, _providers) = plane(Duration::from_secs(60)).await?;
    let t = tp.admin_token.clone();
    let started = tp.start_connect(&t, "fake_cli", Some("paste_code")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let v = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| s != "starting")
        .await?;
    assert_eq!(v["state"], "awaiting_user", "{v}");
    assert_eq!(v["prompt"]["kind"], "authorize_url");
    let (status, _) = tp.submit_code(&t, &id, "the-code").await?;
    assert_eq!(status, 204);
    // This stand-in writes a file without a refresh token: refused, nothing stored.
    let v = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| {
            s == "failed" || s == "completed"
        })
        .await?;
    assert_eq!(v["state"], "failed", "{v}");
    assert!(
        v["failure"].as_str().unwrap_or("").contains("refused"),
        "{v}"
    );
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&t), None)
        .await?;
    assert_eq!(list, json!([]));
    // A finished session takes no more codes, and unknown providers and flows are refused.
    let (status, _) = tp.submit_code(&t, &id, "x").await?;
    assert_eq!(status, 409);
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/connect",
            Some(&t),
            Some(json!({"provider": "nope"})),
        )
        .await?;
    assert_eq!(status, 422);
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/connect",
            Some(&t),
            Some(json!({"provider": "fake_cli", "flow": "token"})),
        )
        .await?;
    assert_eq!(status, 422);
    let (_, providers) = tp
        .request(Method::GET, "/api/v1/providers", Some(&t), None)
        .await?;
    let ids: Vec<&str> = providers
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec!["claude_code", "codex", "fake_cli", "gemini_cli"]);
    tp.shutdown().await
}

/// A stand-in token endpoint following RFC 6749 section 6 as the providers run it: refresh
/// tokens rotate on every use and a used one is refused (`invalid_grant`). Its responses say
/// it is a stand-in (`issuer_note`).
#[derive(Default)]
struct TokenEndpoint {
    current: String,
    issued: u32,
    seen: Vec<String>,
    reuse: u32,
    revoked: bool,
}

type Endpoint = std::sync::Arc<std::sync::Mutex<TokenEndpoint>>;

async fn token(
    axum::extract::State(state): axum::extract::State<Endpoint>,
    axum::Json(body): axum::Json<Value>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let presented = body["refresh_token"].as_str().unwrap_or("").to_owned();
    s.seen.push(presented.clone());
    let bad = |e: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": e })),
        )
    };
    if body["grant_type"] != "refresh_token" || body["client_id"] != "fake-client" {
        return bad("invalid_request");
    }
    if s.revoked {
        return bad("invalid_grant");
    }
    if presented != s.current {
        s.reuse += 1;
        return bad("invalid_grant");
    }
    s.issued += 1;
    s.current = format!("rt-{}", s.issued);
    let body = json!({
        "access_token": format!("at-{}", s.issued),
        "refresh_token": s.current,
        "token_type": "Bearer",
        "expires_in": 3600,
        "issuer_note": "stand-in token endpoint for tests"
    });
    (axum::http::StatusCode::OK, axum::Json(body))
}

async fn stand_in_token_endpoint() -> anyhow::Result<(String, Endpoint)> {
    let state: Endpoint = std::sync::Arc::new(std::sync::Mutex::new(TokenEndpoint {
        current: "rt-secret-1".into(),
        issued: 1,
        ..TokenEndpoint::default()
    }));
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/token", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, state))
}

#[tokio::test(flavor = "multi_thread")]
async fn hangar_alone_refreshes_and_every_live_sandbox_follows() -> anyhow::Result<()> {
    let (url, endpoint) = stand_in_token_endpoint().await?;
    // A margin longer than the tokens' life: every pass refreshes.
    let (tp, _providers) =
        plane_with(Duration::from_secs(60), &url, Duration::from_secs(7200)).await?;
    let t = tp.admin_token.clone();
    let a = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let b = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let started = tp
        .start_connect(&t, "fake_cli", Some("device_code"))
        .await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let done = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| {
            s == "completed" || s == "failed"
        })
        .await?;
    assert_eq!(done["state"], "completed", "{done}");

    let connect = tp.plane.state.connect.clone();
    for round in 2..=3u32 {
        let report = connect.refresh_due().await;
        assert_eq!(report.refreshed.len(), 1, "round {round}: {report:?}");
        for sandbox in [&a, &b] {
            let (_, out) = cat(&tp, &t, sandbox, "/home/hangar/.fake/creds.json").await?;
            let text = out["stdout"].as_str().unwrap_or("");
            assert!(
                text.contains(&format!("at-{round}")),
                "round {round}: {out}"
            );
            assert!(
                !text.contains("rt-"),
                "no refresh token in sandboxes: {out}"
            );
        }
    }
    {
        let s = endpoint.lock().unwrap_or_else(|p| p.into_inner());
        // The rotated token was kept and used: rt-secret-1, then rt-2; nothing was reused.
        assert_eq!(s.seen, vec!["rt-secret-1".to_owned(), "rt-2".to_owned()]);
        assert_eq!(s.reuse, 0);
    }
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&t), None)
        .await?;
    let status = list
        .as_array()
        .and_then(|l| l.first())
        .cloned()
        .unwrap_or_default();
    assert!(status["last_refresh_at"].is_string(), "{status}");

    // A refresh token the provider no longer honours is reported, not hidden.
    endpoint.lock().unwrap_or_else(|p| p.into_inner()).revoked = true;
    let report = connect.refresh_due().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].2.contains("invalid_grant"), "{report:?}");
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&t), None)
        .await?;
    let status = list
        .as_array()
        .and_then(|l| l.first())
        .cloned()
        .unwrap_or_default();
    assert_eq!(status["last_check_ok"], false, "{status}");
    assert!(status["last_check_output"]
        .as_str()
        .unwrap_or("")
        .contains("invalid_grant"));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_ends_open_sessions_and_removes_their_browser_sandboxes() -> anyhow::Result<()> {
    let (tp, providers) = plane(Duration::from_secs(60)).await?;
    let t = tp.admin_token.clone();
    let started = tp.start_connect(&t, "fake_cli", Some("browser")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let v = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| s == "awaiting_user")
        .await?;
    let browser = v["browser_sandbox"].as_str().unwrap_or_default().to_owned();

    // A second control plane over the same data directory, as after a restart.
    let again = hangar_server::local::LocalPlane::open(hangar_server::local::LocalConfig {
        metrics: Default::default(),
        data_dir: tp.data.path().to_owned(),
        store_url: None,
        guest_agent: hangar_testkit::guest_agent(),
        images_dir: Some(tp.data.path().join("images")),
        sandbox: Default::default(),
        connect: ConnectConfig {
            browser_image: images::BUSYBOX.to_owned(),
            browser_session: Vec::new(),
            ..ConnectConfig::default()
        },
        providers_dir: Some(providers.path().to_owned()),
        signin: Default::default(),
        oauth: Default::default(),
        telemetry: Default::default(),
        events: Default::default(),
    })
    .await?;
    assert_eq!(again.state.connect.recover().await?, 1);
    let v = session(&tp, &t, &id).await?;
    assert_eq!(v["state"], "failed", "{v}");
    assert!(v["failure"].as_str().unwrap_or("").contains("restarted"));
    let sb = tp
        .wait_state(&t, &browser, Duration::from_secs(20), |s| s == "destroyed")
        .await?;
    assert_eq!(sb["state"], "destroyed");
    // Ended sessions are not ended twice.
    assert_eq!(again.state.connect.recover().await?, 0);
    tp.shutdown().await
}

/// A credential the CLI reads from an environment variable (Gemini's `GEMINI_API_KEY`, from
/// the shipped provider file): no sandbox and no command; the person's key is sealed as the
/// provider's env file, and every command in the person's sandboxes sees the variable — in a
/// sandbox that was running, and in one started later. Removal takes it away again, and a
/// malformed key fails the session without storing anything or echoing it.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_reaches_every_command_as_an_environment_variable() -> anyhow::Result<()> {
    let (tp, _providers) = plane(Duration::from_secs(60)).await?;
    let t = tp.admin_token.clone();
    let before = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let printenv = [
        "sh",
        "-c",
        "echo \"${GEMINI_API_KEY-unset}\"; ls -l ~/.hangar/env | tail -n +2 | cut -c1-10",
    ];

    // A key with a newline is refused at the door (422); one with a space passes the door but
    // not the env-file rules: the session fails, stores nothing and does not echo it.
    let started = tp.start_connect(&t, "gemini_cli", Some("token")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    tp.wait_connect(&t, &id, Duration::from_secs(30), |s| s == "awaiting_user")
        .await?;
    assert!(started["browser_sandbox"].is_null(), "{started}");
    assert_eq!(tp.submit_code(&t, &id, "AIza-bad\nkey").await?.0, 422);
    assert_eq!(tp.submit_code(&t, &id, "AIza-bad key").await?.0, 204);
    let failed = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| s == "failed")
        .await?;
    assert!(!failed.to_string().contains("AIza-bad"), "{failed}");
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&t), None)
        .await?;
    assert_eq!(list, json!([]));

    let key = "AIzaSyStandInKey0123456789abcdefghijkl";
    let started = tp.start_connect(&t, "gemini_cli", Some("token")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    tp.wait_connect(&t, &id, Duration::from_secs(30), |s| s == "awaiting_user")
        .await?;
    let (status, _) = tp.submit_code(&t, &id, &format!("  {key}\n")).await?;
    assert_eq!(status, 204);
    let done = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| {
            matches!(s, "completed" | "failed" | "expired")
        })
        .await?;
    assert_eq!(done["state"], "completed", "{done}");
    let check = tp.wait_status_check(&t, Duration::from_secs(10)).await?;
    assert_eq!(check["provider"], "gemini_cli", "{check}");
    assert_eq!(check["last_check_ok"], true, "{check}");

    let (_, out) = tp.exec(&t, &before, &printenv).await?;
    assert_eq!(out["stdout"], format!("{key}\n-rw-------\n"), "{out}");
    let later = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let (_, out) = tp.exec(&t, &later, &printenv).await?;
    assert_eq!(out["stdout"], format!("{key}\n-rw-------\n"), "{out}");

    let status = tp.remove_credential(&t, "gemini_cli").await?;
    assert_eq!(status, 204);
    let (_, out) = tp
        .exec(
            &t,
            &before,
            &["sh", "-c", "echo \"${GEMINI_API_KEY-unset}\""],
        )
        .await?;
    assert_eq!(out["stdout"], "unset\n", "{out}");
    tp.shutdown().await
}
