//! The real CLIs confirm a delivered login with their own status commands.
//!
//! The providers' sign-in servers cannot be reached from here, so the login step is replaced:
//! these tests take the shipped provider files (`providers/*.toml`) as they are — credential
//! files, modes, checks, status command — and swap only the login command for a script that
//! writes exactly the files the real CLI writes after a successful sign-in (shapes read from
//! the CLIs' shipped code: codex `auth.json` with a three-part JWT id token carrying `email`
//! and the `https://api.openai.com/auth` claim; Claude Code's `.credentials.json` under
//! `claudeAiOauth` with `expiresAt` in epoch milliseconds). Everything after the login is
//! real: capture in the sandbox, vault, store, delivery into the default image's sandboxes,
//! and `codex login status` / `claude auth status` reading the delivered files.

use std::time::Duration;

use base64::Engine;
use hangar_server::connect::ConnectConfig;
use hangar_testkit::{default_image_store, TestConfig, TestPlane};
use serde_json::{json, Value};

fn b64url(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWT-shaped token (unsigned: the CLIs check its shape and claims, not a signature).
fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64url(&json!({"alg": "RS256", "typ": "JWT"})),
        b64url(&claims)
    )
}

/// The shipped provider file with its login flows replaced by one that writes `files`
/// (path relative to HOME -> contents) the way the CLI does: temp file, then rename.
fn provider_with_scripted_login(id: &str, files: &[(&str, String)]) -> anyhow::Result<String> {
    let shipped = std::fs::read_to_string(
        hangar_testkit::workspace_root()
            .join("providers")
            .join(format!("{id}.toml")),
    )?;
    let mut spec: toml::Table = toml::from_str(&shipped)?;
    let mut script = String::from(
        "echo 'Visit https://auth.example.test/device and enter ABCD-1234'; sleep 0.3; ",
    );
    for (path, contents) in files {
        let b64 = base64::engine::general_purpose::STANDARD.encode(contents);
        script.push_str(&format!(
            "mkdir -p \"$(dirname {path})\" && echo {b64} | base64 -d > {path}.tmp && chmod 600 {path}.tmp && mv {path}.tmp {path}; "
        ));
    }
    script.push_str("sleep 30");
    let mut flow = toml::Table::new();
    flow.insert(
        "argv".into(),
        toml::Value::Array(vec!["sh".into(), "-c".into(), script.into()]),
    );
    flow.insert("url_regex".into(), r"(?P<url>https://\S+/device)".into());
    flow.insert("code_regex".into(), r"(?P<code>[A-Z]{4}-[0-9]{4})".into());
    let mut flows = toml::Table::new();
    flows.insert("device_code".into(), toml::Value::Table(flow));
    spec.insert("flows".into(), toml::Value::Table(flows));
    Ok(toml::to_string(&spec)?)
}

async fn connect_and_check(id: &str, files: &[(&str, String)], expect: &str) -> anyhow::Result<()> {
    let providers = tempfile::tempdir()?;
    std::fs::write(
        providers.path().join(format!("{id}.toml")),
        provider_with_scripted_login(id, files)?,
    )?;
    let tp = TestPlane::start_config(TestConfig {
        connect: ConnectConfig {
            browser_image: "default".into(),
            browser_session: Vec::new(),
            ..ConnectConfig::default()
        },
        images_dir: Some(default_image_store()),
        providers_dir: Some(providers.path().to_owned()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let sandbox = tp.running_sandbox(&t, "default").await?;
    let started = tp.start_connect(&t, id, Some("device_code")).await?;
    let session = started["id"].as_str().unwrap_or_default().to_owned();
    let done = tp
        .wait_connect(&t, &session, Duration::from_secs(60), |s| {
            !matches!(s, "starting" | "awaiting_user" | "capturing")
        })
        .await?;
    assert_eq!(done["state"], "completed", "{done}");
    let check = tp.wait_status_check(&t, Duration::from_secs(60)).await?;
    assert_eq!(check["last_check_ok"], true, "{check}");
    assert!(
        check["last_check_output"]
            .as_str()
            .unwrap_or("")
            .contains(expect),
        "{check}"
    );
    // The same command, run by hand in the sandbox, agrees.
    let (_, files_there) = tp
        .exec(
            &t,
            &sandbox,
            &["sh", "-c", &format!("ls -la ~/{}", files[0].0)],
        )
        .await?;
    assert!(
        files_there["stdout"]
            .as_str()
            .unwrap_or("")
            .starts_with("-rw-------"),
        "{files_there}"
    );
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_login_status_confirms_the_delivered_auth_json() -> anyhow::Result<()> {
    let claims = json!({
        "email": "dev@example.test",
        "exp": 4102444800u64,
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct-test", "chatgpt_plan_type": "plus"}
    });
    let auth = json!({
        "OPENAI_API_KEY": null,
        "auth_mode": "chatgpt",
        "tokens": {
            "id_token": jwt(claims.clone()),
            "access_token": jwt(claims),
            "refresh_token": "rt-codex-test",
            "account_id": "acct-test"
        },
        "last_refresh": "2026-11-23T00:00:00Z"
    });
    connect_and_check(
        "codex",
        &[(".codex/auth.json", auth.to_string())],
        "Logged in using ChatGPT",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_auth_status_confirms_the_delivered_credentials() -> anyhow::Result<()> {
    let credentials = json!({
        "claudeAiOauth": {
            "accessToken": "sk-ant-oat01-test",
            "refreshToken": "sk-ant-ort01-test",
            "expiresAt": 4102444800000u64,
            "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
            "subscriptionType": "pro"
        }
    });
    connect_and_check(
        "claude_code",
        &[(".claude/.credentials.json", credentials.to_string())],
        "\"loggedIn\": true",
    )
    .await
}

/// The token flow needs no provider server at all, so it runs the real CLI end to end: the
/// person's API key goes to `codex login --with-api-key` in the sandbox's terminal, the real
/// codex writes its `auth.json`, hangar captures, seals and delivers it, and the real
/// `codex login status` confirms.
#[tokio::test(flavor = "multi_thread")]
async fn codex_api_key_login_runs_for_real_end_to_end() -> anyhow::Result<()> {
    let tp = TestPlane::start_config(TestConfig {
        connect: ConnectConfig {
            browser_image: "default".into(),
            browser_session: Vec::new(),
            ..ConnectConfig::default()
        },
        images_dir: Some(default_image_store()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let sandbox = tp.running_sandbox(&t, "default").await?;
    let started = tp.start_connect(&t, "codex", Some("token")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let waiting = tp
        .wait_connect(&t, &id, Duration::from_secs(60), |s| s != "starting")
        .await?;
    assert_eq!(waiting["state"], "awaiting_user", "{waiting}");
    let key = "sk-hangar-test-0123456789abcdefghijklmnop";
    let (status, body) = tp.submit_code(&t, &id, key).await?;
    assert_eq!(status, 204, "{body}");
    let done = tp
        .wait_connect(&t, &id, Duration::from_secs(60), |s| {
            matches!(s, "completed" | "failed" | "expired")
        })
        .await?;
    assert_eq!(done["state"], "completed", "{done}");
    let check = tp.wait_status_check(&t, Duration::from_secs(60)).await?;
    assert_eq!(check["last_check_ok"], true, "{check}");
    assert!(
        check["last_check_output"]
            .as_str()
            .unwrap_or("")
            .contains("API key"),
        "{check}"
    );
    let (_, out) = tp
        .exec(&t, &sandbox, &["sh", "-c", "cat ~/.codex/auth.json"])
        .await?;
    assert!(out["stdout"].as_str().unwrap_or("").contains(key), "{out}");
    tp.shutdown().await
}

/// Claude Code's long-lived token (what `claude setup-token` prints) is a credential the CLI
/// reads from `CLAUDE_CODE_OAUTH_TOKEN`: the person gives it, hangar seals it and every command
/// in the person's sandboxes sees it, and the real `claude auth status` in the default image
/// reports the login from it (it reads the variable; no network).
#[tokio::test(flavor = "multi_thread")]
async fn claude_oauth_token_from_the_environment_is_confirmed_by_claude() -> anyhow::Result<()> {
    let tp = TestPlane::start_config(TestConfig {
        images_dir: Some(default_image_store()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let sandbox = tp.running_sandbox(&t, "default").await?;
    let started = tp.start_connect(&t, "claude_code", Some("token")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    tp.wait_connect(&t, &id, Duration::from_secs(30), |s| s == "awaiting_user")
        .await?;
    let token = "sk-ant-oat01-StandInToken0123456789abcdefghijklmnopqrstuvwxyz";
    let (status, body) = tp.submit_code(&t, &id, token).await?;
    assert_eq!(status, 204, "{body}");
    let done = tp
        .wait_connect(&t, &id, Duration::from_secs(30), |s| {
            matches!(s, "completed" | "failed" | "expired")
        })
        .await?;
    assert_eq!(done["state"], "completed", "{done}");
    let check = tp.wait_status_check(&t, Duration::from_secs(60)).await?;
    assert_eq!(check["last_check_ok"], true, "{check}");
    // What claude said: logged in, by the token from the environment.
    assert!(
        check["last_check_output"]
            .as_str()
            .unwrap_or("")
            .contains("\"authMethod\": \"oauth_token\""),
        "{check}"
    );
    let (_, out) = tp
        .exec(
            &t,
            &sandbox,
            &["sh", "-c", "printenv CLAUDE_CODE_OAUTH_TOKEN"],
        )
        .await?;
    assert_eq!(out["stdout"], format!("{token}\n"), "{out}");
    tp.shutdown().await
}
