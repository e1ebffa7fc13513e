//! The real Codex CLI signs in for real: `codex login --device-auth`, from the default image,
//! in the browser sandbox of a connect session, against a stand-in of auth.openai.com
//! (`hangar_testkit::openai_auth`, which says it is a stand-in).
//!
//! auth.openai.com cannot be reached from here, so the CLI is pointed at the stand-in by name
//! resolution and a test CA inside the test sandbox only: the test adds
//! `127.0.0.1 auth.openai.com` to that sandbox's `/etc/hosts`, writes the test CA into it,
//! and the flow's environment sets `SSL_CERT_FILE` to it. The stand-in listens on
//! `127.0.0.1:443` inside that sandbox's own network namespace. Nothing else is changed:
//! the CLI, its device code flow, PKCE code exchange and `auth.json` writing are the real
//! ones; hangar's capture, vault, delivery and the real `codex login status` follow.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hangar_server::connect::ConnectConfig;
use hangar_testkit::openai_auth::OpenAiAuthStandIn;
use hangar_testkit::{default_image_store, wait_until, TestConfig, TestPlane};
use reqwest::Method;

/// Where the test puts its files inside the browser sandbox.
const TEST_DIR: &str = "etc/hangar-test";

/// The shipped codex provider, with the device code login gated on the test's set-up (a
/// bounded wait for `/etc/hangar-test/ready`) and pointed at the test CA. Everything else
/// (files, modes, status command, prompt regexes) is the shipped file's.
fn codex_provider_for_stand_in() -> anyhow::Result<String> {
    let shipped =
        std::fs::read_to_string(hangar_testkit::workspace_root().join("providers/codex.toml"))?;
    let mut spec: toml::Table = toml::from_str(&shipped)?;
    let flows = spec
        .get_mut("flows")
        .and_then(|f| f.as_table_mut())
        .ok_or_else(|| anyhow::anyhow!("codex.toml has no flows"))?;
    let device = flows
        .get_mut("device_code")
        .and_then(|f| f.as_table_mut())
        .ok_or_else(|| anyhow::anyhow!("codex.toml has no device_code flow"))?;
    let argv: Vec<String> = device["argv"]
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
    device.insert(
        "argv".into(),
        toml::Value::Array(vec!["sh".into(), "-c".into(), script.into()]),
    );
    let mut env = toml::Table::new();
    env.insert("SSL_CERT_FILE".into(), format!("/{TEST_DIR}/ca.pem").into());
    device.insert("env".into(), toml::Value::Table(env));
    Ok(toml::to_string(&spec)?)
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
    let providers = tempfile::tempdir()?;
    std::fs::write(
        providers.path().join("codex.toml"),
        codex_provider_for_stand_in()?,
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

    let started = tp.start_connect(&t, "codex", Some("device_code")).await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
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

    // The test's part of the sandbox: the stand-in in its network namespace, the name and
    // the CA that point the CLI there, then the go-ahead.
    let pid = sandbox_pid(&tp, &browser)?;
    let standin =
        OpenAiAuthStandIn::start_in_netns(&PathBuf::from(format!("/proc/{pid}/ns/net"))).await?;
    let rootfs = tp
        .data
        .path()
        .join("sandboxes")
        .join(&browser)
        .join("rootfs");
    let hosts = rootfs.join("etc/hosts");
    let mut text = std::fs::read_to_string(&hosts).unwrap_or_default();
    text.push_str(&format!(
        "\n127.0.0.1 {}\n",
        hangar_testkit::openai_auth::HOST
    ));
    std::fs::write(&hosts, text)?;
    std::fs::create_dir_all(rootfs.join(TEST_DIR))?;
    std::fs::write(rootfs.join(TEST_DIR).join("ca.pem"), &standin.ca_pem)?;
    std::fs::write(rootfs.join(TEST_DIR).join("ready"), b"")?;

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
