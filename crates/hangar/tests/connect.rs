//! Connecting a CLI account end to end, with a stand-in CLI described as provider data (a
//! fourth provider: no Rust change). Its "login" is a shell script in the browser sandbox that
//! prints a device code and then writes a credential file the way the real CLIs do (temp file,
//! then rename). The sandbox, guest agent, file watch, vault, store transaction, delivery and
//! status check are all the real ones.

use std::time::Duration;

use hangar_server::connect::ConnectConfig;
use hangar_testkit::{images, wait_until, TestConfig, TestPlane};
use reqwest::Method;
use serde_json::{json, Value};

const FAKE_CLI: &str = r#"
id = "fake_cli"
display_name = "Stand-in CLI for tests"
binary = "sh"

[flows.device_code]
argv = ["sh", "-c", "echo 'Visit https://auth.example.test/device and enter the one-time code'; echo 'ABCD-1234'; sleep 0.5; mkdir -p .fake; printf '%s' '{\"tokens\":{\"refresh_token\":\"rt-secret-1\",\"access_token\":\"at-1\",\"expires_at\":4102444800000}}' > .fake/creds.json.tmp; mv .fake/creds.json.tmp .fake/creds.json; sleep 30"]
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
"#;

async fn plane(sign_in: Duration) -> anyhow::Result<(TestPlane, tempfile::TempDir)> {
    let providers = tempfile::tempdir()?;
    std::fs::write(providers.path().join("fake_cli.toml"), FAKE_CLI)?;
    let tp = TestPlane::start_config(TestConfig {
        connect: ConnectConfig {
            sign_in_timeout: sign_in,
            browser_image: images::BUSYBOX.to_owned(),
            browser_session: Vec::new(),
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

async fn wait_session(
    tp: &TestPlane,
    token: &str,
    id: &str,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<Value> {
    wait_until(Duration::from_secs(30), "connect session", || async {
        let v = session(tp, token, id).await?;
        Ok(done(v["state"].as_str().unwrap_or("")).then_some(v))
    })
    .await
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

    let (status, started) = tp
        .request(
            Method::POST,
            "/api/v1/connect",
            Some(&alice),
            Some(json!({"provider": "fake_cli", "flow": "device_code"})),
        )
        .await?;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["state"], "starting");
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let done = wait_session(&tp, &alice, &id, |s| {
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

    // Delivered into the sandbox that was already running, with the provider's mode.
    let (_, out) = cat(&tp, &alice, &before, "/home/hangar/.fake/creds.json").await?;
    let text = out["stdout"].as_str().unwrap_or("");
    assert!(text.starts_with("-rw-------"), "{out}");
    assert!(text.contains("rt-secret-1"), "{out}");

    // ...and into a sandbox started later, at boot.
    let later = tp.running_sandbox(&alice, images::BUSYBOX).await?;
    let (_, out) = cat(&tp, &alice, &later, "/home/hangar/.fake/creds.json").await?;
    assert!(
        out["stdout"].as_str().unwrap_or("").contains("rt-secret-1"),
        "{out}"
    );

    // The CLI's own status command ran and said so; the expiry was read from the file.
    let status = wait_until(Duration::from_secs(10), "status check", || async {
        let (_, list) = tp
            .request(Method::GET, "/api/v1/credentials", Some(&alice), None)
            .await?;
        Ok(list
            .as_array()
            .and_then(|l| l.first())
            .filter(|c| c["last_check_at"].is_string())
            .cloned())
    })
    .await?;
    assert_eq!(status["provider"], "fake_cli");
    assert_eq!(status["last_check_ok"], true, "{status}");
    assert!(status["last_check_output"]
        .as_str()
        .unwrap_or("")
        .contains("logged-in-as-fake"));
    assert_eq!(
        status["access_token_expires_at"],
        "2100-01-01T00:00:00.000Z"
    );

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
    let (_, list) = tp
        .request(Method::GET, "/api/v1/credentials", Some(&bob), None)
        .await?;
    assert_eq!(list, json!([]));

    // Removal takes it out of the vault and out of live sandboxes.
    let (status, _) = tp
        .request(
            Method::DELETE,
            "/api/v1/credentials/fake_cli",
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (_, out) = tp
        .exec(
            &alice,
            &before,
            &["test", "-e", "/home/hangar/.fake/creds.json"],
        )
        .await?;
    assert_eq!(out["exit_code"], 1, "file removed: {out}");
    let (status, _) = tp
        .request(
            Method::DELETE,
            "/api/v1/credentials/fake_cli",
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_deadline_expires_the_session_and_tears_down() -> anyhow::Result<()> {
    let (tp, _providers) = plane(Duration::from_millis(2500)).await?;
    let t = tp.admin_token.clone();
    let (status, started) = tp
        .request(
            Method::POST,
            "/api/v1/connect",
            Some(&t),
            Some(json!({"provider": "fake_cli", "flow": "browser"})),
        )
        .await?;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let v = wait_session(&tp, &t, &id, |s| s == "awaiting_user").await?;
    assert_eq!(v["prompt"]["kind"], "viewer");
    assert!(
        v["viewer_websocket"]
            .as_str()
            .is_some_and(|w| w.ends_with("/ports/5900/ws")),
        "{v}"
    );
    let v = wait_session(&tp, &t, &id, |s| s != "awaiting_user").await?;
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
    let (_, started) = tp
        .request(
            Method::POST,
            "/api/v1/connect",
            Some(&t),
            Some(json!({"provider": "fake_cli", "flow": "paste_code"})),
        )
        .await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let v = wait_session(&tp, &t, &id, |s| s != "starting").await?;
    assert_eq!(v["state"], "awaiting_user", "{v}");
    assert_eq!(v["prompt"]["kind"], "authorize_url");
    let (status, _) = tp
        .request(
            Method::POST,
            &format!("/api/v1/connect/{id}/code"),
            Some(&t),
            Some(json!({"code": "the-code"})),
        )
        .await?;
    assert_eq!(status, 204);
    // This stand-in writes a file without a refresh token: refused, nothing stored.
    let v = wait_session(&tp, &t, &id, |s| s == "failed" || s == "completed").await?;
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
    let (status, _) = tp
        .request(
            Method::POST,
            &format!("/api/v1/connect/{id}/code"),
            Some(&t),
            Some(json!({"code": "x"})),
        )
        .await?;
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
