//! `hangar bench --dashboard`: the web dashboard's first load in a real headless Chromium on
//! loopback. Serves an in-process plane (throw-away data directory, three running `busybox`
//! sandboxes so the list has rows) and runs `web/tests/bench.mjs` (playwright-core with
//! Debian's `/usr/bin/chromium`), which reports the first page's JavaScript as sent
//! (compressed for Chromium's `Accept-Encoding`) and the medians of first contentful paint and
//! of the sandbox list rendered with its data over `--runs` cold loads. Needs root, runc, Node
//! and `npm ci` in `--web-dir`.

use std::time::Duration;

use anyhow::{bail, Context};
use hangar_core::NetworkPolicy;
use hangar_server::local::{LocalConfig, LocalPlane};
use hangar_server::sandboxes::SandboxConfig;
use hangar_server::signin::SigninConfig;

use crate::bench::{create_and_wait, destroy_all};
use crate::cli::{BenchArgs, ClientOpts, OutputFormat};
use crate::client::ApiClient;
use crate::config::guest_agent_path;

/// Deadline of the whole browser run.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("hangar-bench").tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_owned());
    let data = work.join("data");
    let images = hangar_runtime::image::ImageStore::open(data.join("images"))?;
    if images.resolve("busybox").is_err() {
        hangar_runtime::image::testing::busybox_image(&images, "busybox", None)?;
    }
    // The sign-in form's same-origin check needs the public URL to be this listener's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let plane = LocalPlane::open(LocalConfig {
        data_dir: data.clone(),
        store_url: None,
        guest_agent: guest_agent_path(args.guest_agent.clone())?,
        images_dir: None,
        sandbox: SandboxConfig {
            default_network: NetworkPolicy::None,
            ..SandboxConfig::default()
        },
        connect: Default::default(),
        providers_dir: None,
        signin: SigninConfig {
            public_url: SigninConfig::parse_public_url(&base)?,
            ..SigninConfig::default()
        },
        oauth: Default::default(),
        metrics: Default::default(),
        telemetry: Default::default(),
        events: Default::default(),
    })
    .await?;
    let token = std::fs::read_to_string(&plane.admin_token_path)?
        .trim()
        .to_owned();
    let app = hangar_server::router(plane.state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    let api = ApiClient::new(&ClientOpts {
        url: base.clone(),
        token: Some(token.clone()),
        output: OutputFormat::Table,
    })?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create_and_wait(&api, "busybox").await?.0);
    }
    let result = browser(&args, &base, &token).await;
    destroy_all(&api, &ids).await?;
    server.abort();
    result
}

async fn browser(args: &BenchArgs, base: &str, token: &str) -> anyhow::Result<()> {
    let web = &args.web_dir;
    let size = tokio::process::Command::new("node")
        .current_dir(web)
        .args(["scripts/size.mjs", "dist"])
        .output()
        .await
        .context("running node scripts/size.mjs")?;
    if size.status.success() {
        println!(
            "dashboard build (web/dist manifest): {}",
            String::from_utf8_lossy(&size.stdout).trim()
        );
    }
    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(web)
        .arg("tests/bench.mjs")
        .arg(base)
        .arg(token)
        .arg(args.runs.to_string())
        .kill_on_drop(true);
    let out = tokio::time::timeout(BROWSER_DEADLINE, cmd.output())
        .await
        .context("the browser run passed its deadline")?
        .context("running node tests/bench.mjs")?;
    if !out.status.success() {
        bail!(
            "bench.mjs: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).context("bench.mjs output")?;
    println!(
        "dashboard first load: {} KiB of compressed JavaScript ({} bytes decoded); \
         first contentful paint median {:.0} ms; rendered with data median {:.0} ms over {} \
         cold loads (target: < 300 KiB, < 1000 ms)",
        v["first_load_js_compressed_kib"],
        v["first_load_js_decoded_bytes"],
        v["first_contentful_paint_ms_median"]
            .as_f64()
            .unwrap_or(f64::NAN),
        v["rendered_with_data_ms_median"]
            .as_f64()
            .unwrap_or(f64::NAN),
        v["runs"],
    );
    println!("{}", line.trim());
    Ok(())
}
