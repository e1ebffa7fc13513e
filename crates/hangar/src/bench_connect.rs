//! `hangar bench --connect`: (1) a browser sandbox from the request to a live remote desktop,
//! stage by stage (sandbox running; `hangar-browser-session` up; the VNC server answering
//! `RFB 003.008` through hangar's port forwarding — what the viewer then draws); (2) credential
//! capture to delivered in N live sandboxes, timed from the moment the stand-in login writes
//! its file (the host's `/proc/uptime`, which containers share) to the moment the last
//! sandbox has it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hangar_core::SandboxId;
use hangar_guest::protocol::{Event, ExecRequest};
use hangar_server::api::dto::{ConnectSessionView, StartConnectRequest};
use hangar_server::connect::ConnectConfig;
use hangar_server::local::{LocalConfig, LocalPlane};
use hangar_server::sandboxes::SandboxConfig;
use reqwest::Method;
use tokio::io::AsyncReadExt;

use crate::bench::{create_and_wait, report, serve_on_loopback};
use crate::cli::BenchArgs;
use crate::client::ApiClient;
use crate::config::guest_agent_path;

const ROUNDS: usize = 5;
const DEADLINE: Duration = Duration::from_secs(60);

/// A stand-in provider whose login notes the host's uptime and then writes its file.
const BENCH_PROVIDER: &str = r#"
id = "bench_cli"
display_name = "Stand-in CLI for the bench"
binary = "sh"

[flows.device_code]
argv = ["sh", "-c", "echo 'Visit https://auth.example.test/device and enter ABCD-1234'; sleep 0.2; mkdir -p .bench; printf '{\"t\":{\"rt\":\"r\",\"at\":\"a\"},\"t0\":\"%s\"}' $(cut -d' ' -f1 /proc/uptime) > .bench/creds.json; sleep 30"]
url_regex = '(?P<url>https://\S+/device)'
code_regex = '(?P<code>[A-Z]{4}-[0-9]{4})'

[[files]]
path = ".bench/creds.json"
mode = 0o600
refresh_token = "/t/rt"
access_token = "/t/at"

[status]
kind = "file_only"
"#;

fn uptime_s() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/uptime")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("reading /proc/uptime")
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("hangar-bench").tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_owned());
    let data = work.join("data");
    let providers = work.join("providers");
    std::fs::create_dir_all(&providers)?;
    std::fs::write(providers.join("bench_cli.toml"), BENCH_PROVIDER)?;
    let images_dir = args
        .images_dir
        .clone()
        .unwrap_or_else(|| data.join("images"));
    let images = hangar_runtime::image::ImageStore::open(&images_dir)?;
    if images.resolve("busybox").is_err() {
        hangar_runtime::image::testing::busybox_image(&images, "busybox", None)?;
    }
    let plane = LocalPlane::open(LocalConfig {
        metrics: Default::default(),
        data_dir: data.clone(),
        store_url: None,
        guest_agent: guest_agent_path(args.guest_agent.clone())?,
        images_dir: Some(images_dir),
        sandbox: SandboxConfig::default(),
        connect: ConnectConfig {
            browser_image: "busybox".into(),
            browser_session: Vec::new(),
            ..ConnectConfig::default()
        },
        providers_dir: Some(providers),
        signin: Default::default(),
        oauth: Default::default(),
        telemetry: Default::default(),
        events: Default::default(),
    })
    .await?;
    let (api, server) = serve_on_loopback(&plane).await?;

    if images.resolve("browser").is_ok() {
        browser_series(&api, &plane).await?;
    } else {
        println!("no browser image in the store: skipping the desktop series (pass --images-dir)");
    }
    delivery_series(&api, &plane, args.sandboxes.clamp(1, 50)).await?;
    server.abort();
    Ok(())
}

/// Request -> running -> desktop up -> VNC answering through the port forward.
async fn browser_series(api: &ApiClient, plane: &LocalPlane) -> anyhow::Result<()> {
    let (mut running, mut desktop, mut vnc) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let (id, took, _) = create_and_wait(api, "browser").await?;
        running.push(took);
        let sandbox: SandboxId = id.parse()?;
        let guest = plane.state.sandboxes.node().guest(sandbox);
        let mut session = guest
            .exec(ExecRequest {
                argv: vec!["/usr/local/bin/hangar-browser-session".into()],
                timeout_ms: Some(120_000),
                ..ExecRequest::default()
            })
            .await?;
        // The session script reports "vnc ready" on stderr.
        let deadline = Instant::now() + DEADLINE;
        let mut seen = String::new();
        while !seen.contains("vnc ready") {
            if Instant::now() > deadline {
                bail!("desktop not up: {seen}");
            }
            match session.next_event_within(Duration::from_secs(5)).await? {
                Some(Event::Stdout(d) | Event::Stderr(d)) => {
                    seen.push_str(&String::from_utf8_lossy(&d))
                }
                Some(Event::Exit(s)) => bail!("browser session exited {s:?}: {seen}"),
                Some(_) => {}
                None => bail!("browser session ended: {seen}"),
            }
        }
        desktop.push(t.elapsed());
        let mut banner = [0u8; 12];
        let mut stream = guest.forward(5900).await?;
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut banner)).await??;
        if &banner != b"RFB 003.008\n" {
            bail!("unexpected VNC banner {banner:?}");
        }
        vnc.push(t.elapsed());
        drop(stream);
        drop(session);
        let _: serde_json::Value = api
            .call::<(), _>(
                Method::DELETE,
                &format!("/api/v1/sandboxes/{id}"),
                None,
                Duration::ZERO,
            )
            .await?;
    }
    report("browser sandbox: request -> running", &running);
    report(
        "browser sandbox: request -> desktop up (Xvfb, x11vnc)",
        &desktop,
    );
    report(
        "browser sandbox: request -> VNC answering through hangar",
        &vnc,
    );
    Ok(())
}

/// Capture -> delivered in `n` live sandboxes.
async fn delivery_series(api: &ApiClient, plane: &LocalPlane, n: usize) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            create_and_wait(api, "busybox")
                .await?
                .0
                .parse::<SandboxId>()?,
        );
    }
    let node = plane.state.sandboxes.node();
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let _started: ConnectSessionView = api
            .post(
                "/api/v1/connect",
                &StartConnectRequest {
                    provider: "bench_cli".into(),
                    flow: Some(hangar_core::ConnectFlow::DeviceCode),
                },
            )
            .await?;
        let deadline = Instant::now() + DEADLINE;
        let mut pending: Vec<SandboxId> = ids.clone();
        while !pending.is_empty() {
            if Instant::now() > deadline {
                bail!("credential not delivered to {} sandboxes", pending.len());
            }
            let mut still = Vec::new();
            for id in pending {
                let out = node
                    .guest(id)
                    .exec_collect(
                        ExecRequest {
                            argv: vec![
                                "test".into(),
                                "-s".into(),
                                "/home/hangar/.bench/creds.json".into(),
                            ],
                            ..ExecRequest::default()
                        },
                        Duration::from_secs(5),
                    )
                    .await?;
                if out.status.code != Some(0) {
                    still.push(id);
                }
            }
            pending = still;
        }
        let t1 = uptime_s()?;
        // The login noted the host's uptime in the file it wrote (`t0`).
        let (file, _) = node
            .guest(ids[0])
            .get_file("/home/hangar/.bench/creds.json", Duration::from_secs(5))
            .await?;
        let doc: serde_json::Value = serde_json::from_slice(&file)?;
        let t0: f64 = doc["t0"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .context("t0 in the delivered file")?;
        samples.push(Duration::from_secs_f64((t1 - t0).max(0.0)));
        let () = api
            .call::<(), ()>(
                Method::DELETE,
                "/api/v1/credentials/bench_cli",
                None,
                Duration::ZERO,
            )
            .await?;
    }
    report(
        &format!(
            "credential written -> delivered in {n} live sandboxes (includes the 300 ms settle)"
        ),
        &samples,
    );
    Ok(())
}
