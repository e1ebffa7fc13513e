//! The `hangar` binary for real: `hangar up` as a child process, restarted mid-run, and the
//! client verbs against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangar_runtime::image::ImageStore;
use hangar_testkit::{guest_agent, require_root_and_runc, wait_until};
use serde_json::{json, Value};

const HANGAR: &str = env!("CARGO_BIN_EXE_hangar");

/// A `hangar up` child process; killed (whole group) on drop.
struct Up {
    child: Child,
    base: String,
    token: String,
    /// Its standard error, line by line, after the start-up lines.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Up {
    fn start(data: &Path) -> anyhow::Result<Self> {
        Self::start_with(data, None)
    }

    /// Starts `hangar up` with `config` plus a `[network]` table naming this test's own
    /// bridge and subnet (written by [`prepare_data`]), so parallel tests share no network
    /// and the default policy (`egress`) is the binary's own.
    fn start_with(data: &Path, config: Option<&Path>) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut text = match config {
            Some(path) => std::fs::read_to_string(path)?,
            None => String::new(),
        };
        let net: hangar_runtime::net::NetworkConfig =
            serde_json::from_slice(&std::fs::read(data.join(TEST_NETWORK))?)?;
        let dns: Vec<String> = net
            .dns
            .iter()
            .map(|a| format!("{:?}", a.to_string()))
            .collect();
        text.push_str(&format!(
            "\n[network]\nbridge = {:?}\nsubnet = \"{}\"\ndns = [{}]\n",
            net.bridge,
            net.subnet,
            dns.join(", ")
        ));
        let merged = data.join("hangar-up.toml");
        std::fs::write(&merged, text)?;
        let mut cmd = Command::new(HANGAR);
        cmd.arg("up").arg("--config").arg(&merged);
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--guest-agent")
            .arg(guest_agent())
            .env("HANGAR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("hangar up did not start: {seen:?}"))?;
            if let Some(rest) = line.split("API on ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            seen.push(line);
        };
        let token = std::fs::read_to_string(data.join("admin-token"))?
            .trim()
            .to_owned();
        Ok(Self {
            child,
            base,
            token,
            stderr: rx,
        })
    }

    /// SIGTERM, then wait for the exit (deadline 15 s).
    fn stop(self) -> anyhow::Result<()> {
        self.stop_and_log().map(|_| ())
    }

    /// [`Up::stop`], returning what it wrote to standard error after starting.
    fn stop_and_log(mut self) -> anyhow::Result<Vec<String>> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "hangar up exited with {status}");
                // The pipe is closed: the reader thread ends after the last line.
                let mut lines = Vec::new();
                while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
                    lines.push(line);
                }
                return Ok(lines);
            }
            anyhow::ensure!(Instant::now() < deadline, "hangar up did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(HANGAR)
            .args(args)
            .env("HANGAR_URL", &self.base)
            .env("HANGAR_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()?)
    }

    fn cli_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(&all)?;
        anyhow::ensure!(
            out.status.success(),
            "hangar {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// Where [`prepare_data`] keeps the test's sandbox network settings (JSON).
const TEST_NETWORK: &str = "test-network.json";

/// A test's data directory and its sandbox network, removed (network first) on drop.
struct TestData {
    dir: tempfile::TempDir,
    net: hangar_runtime::net::NetworkConfig,
}

impl TestData {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestData {
    fn drop(&mut self) {
        hangar_testkit::remove_test_network(self.dir.path(), &self.net);
    }
}

fn prepare_data() -> anyhow::Result<TestData> {
    require_root_and_runc();
    let dir = tempfile::Builder::new().prefix("hangar-bin").tempdir()?;
    let net = hangar_testkit::test_network();
    std::fs::write(dir.path().join(TEST_NETWORK), serde_json::to_vec(&net)?)?;
    let data = TestData { dir, net };
    let images = ImageStore::open(data.path().join("images"))?;
    hangar_runtime::image::testing::busybox_image(&images, "busybox", None)?;
    hangar_runtime::image::testing::busybox_image(
        &images,
        "hang",
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "exec sleep 3600".into(),
        ]),
    )?;
    Ok(data)
}

async fn wait_state(up: &Up, id: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<Value> {
    wait_until(Duration::from_secs(30), "state", || async {
        let v = up.cli_json(&["sandbox", "get", id])?;
        Ok(done(v["state"].as_str().unwrap_or("")).then_some(v))
    })
    .await
}

/// Removes every sandbox through the API (test cleanup).
fn cleanup(up: &Up) -> anyhow::Result<()> {
    let list = up.cli_json(&["sandbox", "ls"])?;
    for s in list.as_array().cloned().unwrap_or_default() {
        if let Some(id) = s["id"].as_str() {
            let _ = up.cli(&["sandbox", "rm", id]);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn records_survive_a_restart_and_running_sandboxes_stay_usable() -> anyhow::Result<()> {
    let data = prepare_data()?;
    let up = Up::start(data.path())?;
    let token_before = up.token.clone();
    let a = up.cli_json(&["sandbox", "create", "--image", "busybox"])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b = up.cli_json(&["sandbox", "create", "--image", "busybox"])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_state(&up, &a, |s| s == "running").await?;
    wait_state(&up, &b, |s| s == "running").await?;
    let out = up.cli(&[
        "sandbox",
        "exec",
        &a,
        "--",
        "sh",
        "-c",
        "echo before > /home/hangar/f",
    ])?;
    assert!(out.status.success());
    let out = up.cli(&["sandbox", "stop", &b])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A boot in progress when the control plane goes away.
    let c = up.cli_json(&[
        "sandbox",
        "create",
        "--image",
        "hang",
        "--readiness-timeout-ms",
        "60000",
    ])?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    up.stop()?;

    let up = Up::start(data.path())?;
    assert_eq!(up.token, token_before, "the bootstrap token is made once");
    let list = up.cli_json(&["sandbox", "ls"])?;
    let state_of = |id: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|s| s["id"] == id))
            .map(|s| s["state"].clone())
    };
    assert_eq!(state_of(&a), Some(json!("running")), "{list}");
    assert_eq!(state_of(&b), Some(json!("stopped")), "{list}");
    let cv = up.cli_json(&["sandbox", "get", &c])?;
    assert_eq!(cv["state"], "failed", "{cv}");
    assert_eq!(cv["failure"]["kind"], "interrupted");
    let out = up.cli(&["sandbox", "exec", &a, "--", "cat", "/home/hangar/f"])?;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    let out = up.cli(&["sandbox", "start", &b])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = up.cli(&["sandbox", "exec", &b, "--", "true"])?;
    assert!(out.status.success());
    cleanup(&up)?;
    up.stop()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_verbs_work_end_to_end() -> anyhow::Result<()> {
    let data = prepare_data()?;
    let up = Up::start(data.path())?;
    // create prints the id at once, in state creating.
    let out = up.cli(&[
        "sandbox",
        "create",
        "--image",
        "busybox",
        "--memory-mib",
        "256",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let mut parts = line.split_whitespace();
    let id = parts.next().unwrap_or_default().to_owned();
    assert_eq!(parts.next(), Some("creating"), "{line}");
    wait_state(&up, &id, |s| s == "running").await?;

    let out = up.cli(&["sandbox", "get", &id])?;
    let text = String::from_utf8_lossy(&out.stdout);
    for stage in ["created", "rootfs_ready", "process_started", "agent_ready"] {
        assert!(text.contains(stage), "{text}");
    }
    let out = up.cli(&[
        "sandbox",
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 5",
    ])?;
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    let out = up.cli(&["sandbox", "ls"])?;
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ID"),
        "table output"
    );
    let list = up.cli_json(&["sandbox", "ls"])?;
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    // Errors reach the user as the problem's detail, with a failing exit code.
    let out = up.cli(&["sandbox", "create", "--image", "nope"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown image"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(HANGAR)
        .args(["sandbox", "ls"])
        .env("HANGAR_URL", &up.base)
        .env("HANGAR_TOKEN", "hgr_pat_wrong")
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Users and tokens.
    let user = up.cli_json(&["user", "create", "carol"])?;
    let carol = user["token"].as_str().unwrap_or_default().to_owned();
    let out = Command::new(HANGAR)
        .args(["sandbox", "get", &id])
        .env("HANGAR_URL", &up.base)
        .env("HANGAR_TOKEN", &carol)
        .output()?;
    assert!(
        !out.status.success(),
        "carol cannot see the admin's sandbox"
    );
    let tok = up.cli_json(&["token", "create", "script"])?;
    assert!(tok["token"]
        .as_str()
        .is_some_and(|t| t.starts_with("hgr_pat_")));

    let out = up.cli(&["sandbox", "stop", &id])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    let out = up.cli(&["sandbox", "start", &id])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("running"));
    let out = up.cli(&["sandbox", "rm", &id])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("destroyed"));

    // Nothing connected yet; removing an absent credential is a clear error.
    assert_eq!(up.cli_json(&["connect", "status"])?, json!([]));
    let out = up.cli(&["credentials", "rm", "codex"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credential for codex"));
    let out = up.cli(&["connect", "nope"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown provider"));

    let out = Command::new(HANGAR)
        .args(["completions", "bash"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("sandbox"));
    up.stop()
}

/// A stand-in CLI (provider data only) whose device-code login writes its file at once.
const STAND_IN_PROVIDER: &str = r#"
id = "stand_in"
display_name = "Stand-in CLI"
binary = "sh"

[flows.device_code]
argv = ["sh", "-c", "echo 'Visit https://auth.example.test/device and enter ABCD-1234'; sleep 0.5; mkdir -p .s; printf '{\"rt\":\"r\",\"at\":\"a\"}' > .s/c.json; sleep 30"]
url_regex = '(?P<url>https://\S+/device)'
code_regex = '(?P<code>[A-Z]{4}-[0-9]{4})'

[[files]]
path = ".s/c.json"
refresh_token = "/rt"
access_token = "/at"

[status]
kind = "file_only"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn hangar_connect_walks_a_person_through_a_device_code() -> anyhow::Result<()> {
    let data = prepare_data()?;
    let providers = data.path().join("providers");
    std::fs::create_dir_all(&providers)?;
    std::fs::write(providers.join("stand_in.toml"), STAND_IN_PROVIDER)?;
    let config = data.path().join("hangar.toml");
    std::fs::write(
        &config,
        format!(
            "providers_dir = {:?}\nbrowser_image = \"busybox\"\nbrowser_session = []\n",
            providers.display().to_string()
        ),
    )?;
    let up = Up::start_with(data.path(), Some(&config))?;
    let out = up.cli(&["connect", "stand_in", "--flow", "device_code"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Open https://auth.example.test/device and enter the code ABCD-1234"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stand_in connected"));
    let out = up.cli(&["connect", "status"])?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("PROVIDER"), "{table}");
    assert!(table.contains("stand_in"), "{table}");
    let out = up.cli(&["credentials", "rm", "stand_in"])?;
    assert!(out.status.success());

    // A script pipes an API key to `hangar connect --flow token` (a terminal would be asked
    // without echo); the key is stored and never printed.
    let key = "AIzaSyStandInKey0123456789abcdefghijkl";
    let mut child = Command::new(HANGAR)
        .args(["connect", "gemini_cli", "--flow", "token"])
        .env("HANGAR_URL", &up.base)
        .env("HANGAR_TOKEN", &up.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        writeln!(stdin, "{key}")?;
    }
    let out = child.wait_with_output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("gemini_cli connected"), "{stdout}");
    assert!(!stdout.contains(key) && !stderr.contains(key));
    let list = up.cli_json(&["credentials", "ls"])?;
    assert_eq!(list[0]["provider"], "gemini_cli", "{list}");
    cleanup(&up)?;
    up.stop()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_open_live_streams_and_public_metrics_need_no_token() -> anyhow::Result<()> {
    use futures::StreamExt;
    let data = prepare_data()?;
    let config = data.path().join("metrics.toml");
    std::fs::write(&config, "[metrics]\npublic = true\n")?;
    let up = Up::start_with(data.path(), Some(&config))?;
    let http = reqwest::Client::new();
    // `[metrics] public = true`: no token needed.
    let resp = http.get(format!("{}/metrics", up.base)).send().await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await?.contains("hangar_build_info"));

    let stream = http
        .get(format!("{}/api/v1/stream", up.base))
        .bearer_auth(&up.token)
        .send()
        .await?;
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(async move {
        let mut body = stream.bytes_stream();
        while let Some(chunk) = body.next().await {
            chunk?;
        }
        anyhow::Ok(())
    });
    let log = tokio::task::spawn_blocking(move || up.stop_and_log()).await??;
    // The stream ended as a complete response, not cut off when the process exited, and
    // the graceful shutdown did not have to give up on it.
    tokio::time::timeout(Duration::from_secs(5), reader).await???;
    assert!(
        !log.iter().any(|l| l.contains("still open")),
        "an open stream held the shutdown: {log:?}"
    );
    Ok(())
}
