//! The real CLIs sign in for real, from the default image, in the browser sandbox of a connect
//! session: `codex login --device-auth` against a stand-in of auth.openai.com
//! (`hangar_testkit::openai_auth`), the Gemini CLI's "Login with Google" paste-code flow
//! against a stand-in of Google's OAuth endpoints (`hangar_testkit::google_auth`), and
//! `claude auth login`'s paste-code flow against a stand-in of Anthropic's
//! (`hangar_testkit::anthropic_auth`). Each says it is a stand-in.
//!
//! The providers cannot be reached from here, so each CLI is pointed at its stand-in by name
//! resolution and a test CA inside the test sandbox only: the test adds the provider's host
//! names as `127.0.0.1` to that sandbox's `/etc/hosts`, writes the test CA into it, and the
//! flow's environment names it (`SSL_CERT_FILE` for codex, `NODE_EXTRA_CA_CERTS` for the
//! Node-based Gemini CLI and the Bun-built Claude Code). The stand-in listens on `127.0.0.1:443` inside that sandbox's own
//! network namespace. Nothing else is changed: the CLIs, their flows, PKCE code exchanges and
//! credential files are the real ones; hangar's capture, vault, delivery and status checks
//! follow.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hangar_server::connect::ConnectConfig;
use hangar_testkit::anthropic_auth::AnthropicAuthStandIn;
use hangar_testkit::google_auth::GoogleAuthStandIn;
use hangar_testkit::openai_auth::OpenAiAuthStandIn;
use hangar_testkit::standin::{StandIn, StandInState};
use hangar_testkit::{default_image_store, wait_until, TestConfig, TestPlane};
use reqwest::Method;

/// Where the test puts its files inside the browser sandbox.
const TEST_DIR: &str = "etc/hangar-test";

/// The shipped provider file `id`, with the login of `flow` gated on the test's set-up (a
/// bounded wait for `/etc/hangar-test/ready`) and given the test CA through `ca_env`.
/// Everything else (files, modes, status command, prompt regexes, the flow's own
/// environment) is the shipped file's.
fn provider_for_stand_in(id: &str, flow: &str, ca_env: &str) -> anyhow::Result<String> {
    let shipped = std::fs::read_to_string(
        hangar_testkit::workspace_root().join(format!("providers/{id}.toml")),
    )?;
    let mut spec: toml::Table = toml::from_str(&shipped)?;
    let flow_spec = spec
        .get_mut("flows")
        .and_then(|f| f.as_table_mut())
        .and_then(|f| f.get_mut(flow))
        .and_then(|f| f.as_table_mut())
        .ok_or_else(|| anyhow::anyhow!("{id}.toml has no {flow} flow"))?;
    let argv: Vec<String> = flow_spec["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let script = format!(
        "i=0; while [ ! -e /{TEST_DIR}/ready ]; do i=$((i+1)); [ $i -gt 600 ] && exit 3; sleep 0.1; done; exec {}",
        argv.join(" ")
    );
    flow_spec.insert(
        "argv".into(),
        toml::Value::Array(vec!["sh".into(), "-c".into(), script.into()]),
    );
    let env = flow_spec
        .entry("env")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(env) = env.as_table_mut() {
        env.insert(ca_env.into(), format!("/{TEST_DIR}/ca.pem").into());
    }
    Ok(toml::to_string(&spec)?)
}

/// A plane whose provider `id` is gated as [`provider_for_stand_in`] describes, with a running
/// CLI sandbox of the default image; starts a connect session of `flow` and returns the plane,
/// the CLI sandbox, the session id and its browser sandbox once that runs.
async fn start_gated_session(
    id: &str,
    flow: &str,
    ca_env: &str,
) -> anyhow::Result<(TestPlane, tempfile::TempDir, String, String, String)> {
    let providers = tempfile::tempdir()?;
    std::fs::write(
        providers.path().join(format!("{id}.toml")),
        provider_for_stand_in(id, flow, ca_env)?,
    )?;
    let tp = TestPlane::start_config(TestConfig {
        connect: ConnectConfig {
            browser_image: "default".into(),
            ..ConnectConfig::default()
        },
        images_dir: Some(default_image_store()),
        providers_dir: Some(providers.path().to_owned()),
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let cli_sandbox = tp.running_sandbox(&t, "default").await?;
    let started = tp.start_connect(&t, id, Some(flow)).await?;
    let session = started["id"].as_str().unwrap_or_default().to_owned();
    // The session names its browser sandbox once it prompts; before that it is the caller's
    // other sandbox.
    let browser = wait_until(Duration::from_secs(60), "browser sandbox", || async {
        let (_, list) = tp
            .request(Method::GET, "/api/v1/sandboxes", Some(&t), None)
            .await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str())
            .find(|s| *s != cli_sandbox)
            .map(str::to_owned))
    })
    .await?;
    tp.wait_state(&t, &browser, Duration::from_secs(60), |s| s == "running")
        .await?;
    Ok((tp, providers, cli_sandbox, session, browser))
}

/// Points `hosts` at `127.0.0.1` in the browser sandbox's `/etc/hosts`, writes the test CA,
/// and lets the gated login go.
fn point_at_stand_in(
    tp: &TestPlane,
    browser: &str,
    hosts: &[&str],
    ca_pem: &str,
) -> anyhow::Result<()> {
    let rootfs = tp
        .data
        .path()
        .join("sandboxes")
        .join(browser)
        .join("rootfs");
    let path = rootfs.join("etc/hosts");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push('\n');
    for host in hosts {
        text.push_str(&format!("127.0.0.1 {host}\n"));
    }
    std::fs::write(&path, text)?;
    std::fs::create_dir_all(rootfs.join(TEST_DIR))?;
    std::fs::write(rootfs.join(TEST_DIR).join("ca.pem"), ca_pem)?;
    std::fs::write(rootfs.join(TEST_DIR).join("ready"), b"")?;
    Ok(())
}

/// The host pid of a sandbox's first process, from runc's own state.
fn sandbox_pid(tp: &TestPlane, id: &str) -> anyhow::Result<u32> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(tp.data.path().join("runc"))
        .args(["state", id])
        .output()?;
    anyhow::ensure!(out.status.success(), "runc state {id} failed");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    state["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| anyhow::anyhow!("no pid in runc state: {state}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_device_code_sign_in_runs_for_real_against_a_stand_in_issuer() -> anyhow::Result<()> {
    let (tp, _providers, cli_sandbox, id, browser) =
        start_gated_session("codex", "device_code", "SSL_CERT_FILE").await?;
    let t = tp.admin_token.clone();
    // The test's part of the sandbox: the stand-in in its network namespace, the name and
    // the CA that point the CLI there, then the go-ahead.
    let pid = sandbox_pid(&tp, &browser)?;
    let standin =
        OpenAiAuthStandIn::start_in_netns(&PathBuf::from(format!("/proc/{pid}/ns/net"))).await?;
    point_at_stand_in(
        &tp,
        &browser,
        &[hangar_testkit::openai_auth::HOST],
        standin.ca_pem(),
    )?;

    // The real CLI asked the stand-in for a device code and printed it; hangar shows it.
    let waiting = tp
        .wait_connect(&t, &id, Duration::from_secs(60), |s| s != "starting")
        .await
        .map_err(|e| anyhow::anyhow!("{e}; stand-in saw {:?}", standin.requests()))?;
    assert_eq!(
        waiting["state"],
        "awaiting_user",
        "{waiting}; stand-in saw {:?}",
        standin.requests()
    );
    assert_eq!(waiting["prompt"]["kind"], "verification_uri", "{waiting}");
    assert_eq!(
        waiting["prompt"]["uri"], "https://auth.openai.com/codex/device",
        "{waiting}"
    );
    let user_code = waiting["prompt"]["user_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The person enters that code on the provider's page.
    assert!(
        standin.approve(&user_code),
        "hangar showed {user_code:?}, which the stand-in never issued: {:?}",
        standin.requests()
    );
    let done = tp
        .wait_connect(&t, &id, Duration::from_secs(60), |s| {
            matches!(s, "completed" | "failed" | "expired")
        })
        .await?;
    assert_eq!(
        done["state"],
        "completed",
        "{done}; stand-in saw {:?}",
        standin.requests()
    );
    let requests = standin.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "POST oauth/token authorization_code -> 200"),
        "{requests:?}"
    );
    let issued = standin.issued();
    assert_eq!(issued.len(), 1, "{requests:?}");

    // Delivered: the CLI sandbox holds the issued access token and never the refresh token.
    let check = tp.wait_status_check(&t, Duration::from_secs(60)).await?;
    assert_eq!(check["last_check_ok"], true, "{check}");
    assert!(
        check["last_check_output"]
            .as_str()
            .unwrap_or("")
            .contains("Logged in using ChatGPT"),
        "{check}"
    );
    let (_, out) = tp
        .exec(&t, &cli_sandbox, &["sh", "-c", "cat ~/.codex/auth.json"])
        .await?;
    let delivered = out["stdout"].as_str().unwrap_or("");
    assert!(delivered.contains(&issued[0].access_token), "{out}");
    assert!(!delivered.contains(&issued[0].refresh_token), "{out}");
    tp.shutdown().await
}

/// The paste-code sign-in with a real CLI whose provider `id` is played by stand-in `S`:
/// the CLI prints the authorization URL (hangar shows it), the person signs in there
/// (`authorize`) and pastes what the page shows, the CLI exchanges the code with the stand-in;
/// then the session completes and the credential file at `creds` (under home) reaches the
/// CLI sandbox with the issued access token and without the real refresh token. Returns the
/// plane and the recorded status check.
async fn paste_code_sign_in<S, T>(
    id: &str,
    ca_env: &str,
    hosts: &[&str],
    start: impl AsyncFnOnce(PathBuf) -> anyhow::Result<S>,
    authorize: impl Fn(&S, &str) -> anyhow::Result<String>,
    creds: &str,
) -> anyhow::Result<(TestPlane, serde_json::Value)>
where
    S: std::ops::Deref<Target = StandIn<T>>,
    T: StandInState,
{
    let (tp, _providers, cli_sandbox, session, browser) =
        start_gated_session(id, "paste_code", ca_env).await?;
    let t = tp.admin_token.clone();
    let pid = sandbox_pid(&tp, &browser)?;
    let standin = start(PathBuf::from(format!("/proc/{pid}/ns/net"))).await?;
    point_at_stand_in(&tp, &browser, hosts, standin.ca_pem())?;

    // The real CLI printed its authorization URL; hangar shows it.
    let waiting = tp
        .wait_connect(&t, &session, Duration::from_secs(90), |s| s != "starting")
        .await?;
    assert_eq!(waiting["state"], "awaiting_user", "{waiting}");
    assert_eq!(waiting["prompt"]["kind"], "authorize_url", "{waiting}");
    let url = waiting["prompt"]["url"].as_str().unwrap_or_default();

    // The person signs in there and pastes what the page shows.
    let code = authorize(&standin, url)?;
    let (status, body) = tp.submit_code(&t, &session, &code).await?;
    assert_eq!(status, 204, "{body}");
    let done = tp
        .wait_connect(&t, &session, Duration::from_secs(90), |s| {
            matches!(s, "completed" | "failed" | "expired")
        })
        .await?;
    let requests = standin.requests();
    assert_eq!(
        done["state"], "completed",
        "{done}; stand-in saw {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r == "POST token authorization_code -> 200"),
        "{requests:?}"
    );

    // Delivered with the issued access token and without the real refresh token.
    let check = tp.wait_status_check(&t, Duration::from_secs(60)).await?;
    let (_, out) = tp
        .exec(&t, &cli_sandbox, &["sh", "-c", &format!("cat ~/{creds}")])
        .await?;
    let delivered = out["stdout"].as_str().unwrap_or("");
    let (access, refresh) = (standin.access_tokens(), standin.refresh_tokens());
    assert!(
        access
            .first()
            .is_some_and(|a| delivered.contains(a.as_str())),
        "{out}"
    );
    assert!(
        refresh
            .first()
            .is_some_and(|r| !delivered.contains(r.as_str())),
        "{out}"
    );
    drop(standin);
    Ok((tp, check))
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_paste_code_sign_in_runs_for_real_against_a_stand_in_google() -> anyhow::Result<()> {
    let (tp, _) = paste_code_sign_in(
        "gemini_cli",
        "NODE_EXTRA_CA_CERTS",
        hangar_testkit::google_auth::HOSTS,
        async |netns: PathBuf| GoogleAuthStandIn::start_in_netns(&netns).await,
        GoogleAuthStandIn::authorize,
        ".gemini/oauth_creds.json",
    )
    .await?;
    let (_, list) = tp
        .request(
            Method::GET,
            "/api/v1/credentials",
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(list[0]["provider"], "gemini_cli", "{list}");
    assert!(list[0]["access_token_expires_at"].is_string(), "{list}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_paste_code_sign_in_runs_for_real_against_a_stand_in_anthropic() -> anyhow::Result<()>
{
    let (tp, check) = paste_code_sign_in(
        "claude_code",
        "NODE_EXTRA_CA_CERTS",
        hangar_testkit::anthropic_auth::HOSTS,
        async |netns: PathBuf| AnthropicAuthStandIn::start_in_netns(&netns).await,
        AnthropicAuthStandIn::authorize,
        ".claude/.credentials.json",
    )
    .await?;
    // The real `claude auth status` in the CLI sandbox says logged in.
    assert_eq!(check["last_check_ok"], true, "{check}");
    tp.shutdown().await
}
