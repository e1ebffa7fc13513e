//! `hangar bench`: create-to-ready latency (20 one after another, 20 at once), exec round
//! trip, and the floor (the same OCI bundle run by plain runc, with the same readiness
//! check, no hangar), plus the host memory an idle sandbox costs, and what egress networking
//! adds to create-to-ready (egress and `none` sandboxes alternating). Needs root and runc
//! (and nft for the egress series).
//!
//! Every series but the egress one uses network policy `none`, so the floor comparison stays
//! like for like (plain runc makes the same loopback-only namespace). The egress series runs
//! on a throw-away bridge and subnet that are removed at the end.
//!
//! Everything runs against a throw-away data directory and an in-process control plane
//! serving the real HTTP API on loopback; latencies are measured by a client polling that API.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hangar_core::{BootStage, Limits, NetworkPolicy, SandboxId, SandboxState};
use hangar_guest::client::GuestClient;
use hangar_runtime::image::{Image, ImageStore};
use hangar_runtime::runc::{build_spec, BundlePaths};
use hangar_runtime::SandboxSpec;
use hangar_server::api::dto::{CreateSandboxRequest, ExecRequestBody, ExecResult, SandboxView};
use hangar_server::local::{LocalConfig, LocalPlane};
use hangar_server::sandboxes::SandboxConfig;
use reqwest::Method;

use crate::cli::{BenchArgs, ClientOpts, OutputFormat};
use crate::client::ApiClient;
use crate::config::guest_agent_path;

/// Readiness deadline for every sandbox in the bench.
const READY_DEADLINE: Duration = Duration::from_secs(30);

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.connect {
        return crate::bench_connect::run(args).await;
    }
    if args.dashboard {
        return crate::bench_dashboard::run(args).await;
    }
    let tmp;
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            tmp = tempfile::Builder::new().prefix("hangar-bench").tempdir()?;
            tmp.path().to_owned()
        }
    };
    let guest = guest_agent_path(args.guest_agent.clone())?;
    let data = work.join("data");
    let images = ImageStore::open(data.join("images"))?;
    let image = if args.image == "busybox" {
        hangar_runtime::image::testing::busybox_image(&images, "busybox", None)?
    } else {
        images.resolve(&args.image)?
    };
    let bench_net = hangar_runtime::net::NetworkConfig {
        bridge: BENCH_BRIDGE.to_owned(),
        subnet: BENCH_SUBNET.parse().context("bench subnet")?,
        ..hangar_runtime::net::NetworkConfig::with_dns(
            hangar_runtime::net::files::host_nameservers(Path::new("/")),
        )
    };
    let plane = LocalPlane::open(LocalConfig {
        metrics: Default::default(),
        data_dir: data.clone(),
        store_url: None,
        guest_agent: guest.clone(),
        images_dir: None,
        sandbox: SandboxConfig {
            default_network: NetworkPolicy::None,
            network: Some(bench_net.clone()),
            ..SandboxConfig::default()
        },
        connect: Default::default(),
        providers_dir: None,
        signin: Default::default(),
        oauth: Default::default(),
        telemetry: Default::default(),
        events: Default::default(),
    })
    .await?;
    let (api, server) = serve_on_loopback(&plane).await?;
    let result = if args.metrics {
        crate::bench_metrics::run(&plane, &api, args.sandboxes, &work).await
    } else {
        series(&args, &work, &image, &guest, &plane, &api).await
    };
    server.abort();
    if let Err(e) = hangar_runtime::net::remove_node(
        &bench_net,
        &work.join("nft-cleanup.json"),
        Duration::from_secs(10),
    )
    .await
    {
        eprintln!("removing the bench network: {e}");
    }
    result
}

/// A bridge and subnet of the bench's own, removed when it ends.
const BENCH_BRIDGE: &str = "hgbench0";
const BENCH_SUBNET: &str = "10.213.0.0/24";

async fn series(
    args: &BenchArgs,
    work: &Path,
    image: &Image,
    guest: &Path,
    plane: &LocalPlane,
    api: &Arc<ApiClient>,
) -> anyhow::Result<()> {
    let api = Arc::clone(api);

    println!(
        "hangar bench: image {} ({}), {} sandboxes per series, {} execs",
        image.name,
        &image.digest[..19.min(image.digest.len())],
        args.sandboxes,
        args.execs
    );
    let n = args.sandboxes;

    // Floor: plain runc with the same bundle and the same readiness check.
    let floor = floor_series(work, image, guest, n).await?;
    report(
        "floor: overlay + runc run -d + agent ping (no hangar)",
        &floor,
    );

    // Sequential create-to-ready.
    let rss_before = self_rss_kib();
    let mut seq = Vec::new();
    let mut seq_server = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..n {
        let (id, took, server) = create_and_wait(&api, &image.name).await?;
        seq.push(took);
        seq_server.push(server);
        ids.push(id);
    }
    report("hangar create-to-ready, one after another", &seq);
    report(
        "  the same, server side (created -> agent_ready stamps)",
        &seq_server,
    );

    // Memory of idle sandboxes: measured while the sequential series is up.
    let mem = idle_memory(&ids, plane).await;
    let plane_growth_kib = (self_rss_kib() - rss_before).max(0.0) / ids.len().max(1) as f64;

    // Exec round trip on the first sandbox.
    let first = ids.first().cloned().context("no sandbox")?;
    let mut execs = Vec::new();
    let body = ExecRequestBody {
        argv: vec!["true".into()],
        ..Default::default()
    };
    for _ in 0..args.execs {
        let t = Instant::now();
        let out: ExecResult = api
            .call(
                Method::POST,
                &format!("/api/v1/sandboxes/{first}/exec"),
                Some(&body),
                Duration::ZERO,
            )
            .await?;
        execs.push(t.elapsed());
        if out.exit_code != Some(0) {
            bail!("exec true exited {:?}", out.exit_code);
        }
    }
    report("exec round trip (`true`, HTTP API)", &execs);
    let mut direct = Vec::new();
    let guest_client = plane.state.sandboxes.node().guest(first.parse()?);
    for _ in 0..args.execs {
        let t = Instant::now();
        guest_client
            .exec_collect(
                hangar_guest::protocol::ExecRequest {
                    argv: vec!["true".into()],
                    env: Vec::new(),
                    cwd: None,
                    timeout_ms: Some(10_000),
                    stdin: None,
                },
                Duration::from_secs(10),
            )
            .await?;
        direct.push(t.elapsed());
    }
    report("exec round trip (`true`, guest agent socket only)", &direct);
    destroy_all(&api, &ids).await?;

    // Concurrent create-to-ready.
    let mut handles = Vec::new();
    for _ in 0..n {
        let api = Arc::clone(&api);
        let name = image.name.clone();
        handles.push(tokio::spawn(
            async move { create_and_wait(&api, &name).await },
        ));
    }
    let mut par = Vec::new();
    let mut par_server = Vec::new();
    let mut par_ids = Vec::new();
    for h in handles {
        let (id, took, server) = h.await??;
        par.push(took);
        par_server.push(server);
        par_ids.push(id);
    }
    report("hangar create-to-ready, all at once", &par);
    report(
        "  the same, server side (created -> agent_ready stamps)",
        &par_server,
    );
    destroy_all(&api, &par_ids).await?;

    // Egress against none, alternating so both see the same host state.
    let mut egress = Vec::new();
    let mut none = Vec::new();
    let mut net_ids = Vec::new();
    for _ in 0..n {
        for (policy, into) in [
            (NetworkPolicy::Egress, &mut egress),
            (NetworkPolicy::None, &mut none),
        ] {
            let (id, took, _) = create_and_wait_with(&api, &image.name, Some(policy)).await?;
            into.push(took);
            net_ids.push(id);
        }
    }
    report(
        "create-to-ready, network none (alternating with egress)",
        &none,
    );
    report(
        "create-to-ready, network egress (veth, netns, NAT)",
        &egress,
    );
    println!(
        "egress adds (p50): {:.1} ms, (p95): {:.1} ms",
        ms(pct(&egress, 50.0)) - ms(pct(&none, 50.0)),
        ms(pct(&egress, 95.0)) - ms(pct(&none, 95.0)),
    );
    destroy_all(&api, &net_ids).await?;

    let (p50_floor, p50_seq) = (pct(&floor, 50.0), pct(&seq, 50.0));
    println!(
        "ratio hangar/floor (p50, sequential): {:.2}  ({:.1} ms / {:.1} ms)",
        p50_seq.as_secs_f64() / p50_floor.as_secs_f64().max(1e-9),
        ms(p50_seq),
        ms(p50_floor)
    );
    if let Some((kib_cgroup, kib_procs)) = mem {
        let beyond = (kib_cgroup - kib_procs).max(0.0) + plane_growth_kib;
        println!(
            "idle sandbox memory (mean of {}): cgroup {:.2} MiB, its processes' RSS {:.2} MiB, \
             control plane growth {:.2} MiB; beyond its own processes: {:.2} MiB",
            ids.len(),
            kib_cgroup / 1024.0,
            kib_procs / 1024.0,
            plane_growth_kib / 1024.0,
            beyond / 1024.0
        );
    }
    Ok(())
}

/// Serves `plane`'s API on `127.0.0.1:0` in this process; returns a client with the bootstrap
/// admin's token and the server task.
pub(crate) async fn serve_on_loopback(
    plane: &LocalPlane,
) -> anyhow::Result<(Arc<ApiClient>, tokio::task::JoinHandle<()>)> {
    let token = std::fs::read_to_string(&plane.admin_token_path)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = hangar_server::router(plane.state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let api = Arc::new(ApiClient::new(&ClientOpts {
        url: format!("http://{addr}"),
        token: Some(token.trim().to_owned()),
        output: OutputFormat::Table,
    })?);
    Ok((api, server))
}

/// Creates a sandbox and polls until it runs. Returns its id, the client-observed
/// create-to-ready time, and the server-side time from `created` to `agent_ready`.
pub(crate) async fn create_and_wait(
    api: &ApiClient,
    image: &str,
) -> anyhow::Result<(String, Duration, Duration)> {
    create_and_wait_with(api, image, None).await
}

/// [`create_and_wait`] with a network policy (`None`: the server's default).
pub(crate) async fn create_and_wait_with(
    api: &ApiClient,
    image: &str,
    network: Option<NetworkPolicy>,
) -> anyhow::Result<(String, Duration, Duration)> {
    let t = Instant::now();
    let req = CreateSandboxRequest {
        image: Some(image.to_owned()),
        limits: Some(hangar_server::api::dto::LimitsRequest {
            memory_mib: Some(256),
            ..Default::default()
        }),
        network,
        ..Default::default()
    };
    let s: SandboxView = api.post("/api/v1/sandboxes", &req).await?;
    let id = s.id.to_string();
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let s: SandboxView = api.get(&format!("/api/v1/sandboxes/{id}")).await?;
        match s.state {
            SandboxState::Running => {
                let took = t.elapsed();
                let at = |stage: BootStage| {
                    s.boot
                        .iter()
                        .find(|e| e.stage == stage)
                        .map(|e| e.at.unix_ms())
                };
                let server = match (at(BootStage::Created), at(BootStage::AgentReady)) {
                    (Some(a), Some(b)) => Duration::from_millis(u64::try_from(b - a).unwrap_or(0)),
                    _ => Duration::ZERO,
                };
                return Ok((id, took, server));
            }
            SandboxState::Failed => bail!("sandbox {id} failed: {:?}", s.failure),
            _ if Instant::now() > deadline => bail!("sandbox {id} not ready in time"),
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

pub(crate) async fn destroy_all(api: &ApiClient, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let _: SandboxView = api
            .call::<(), _>(
                Method::DELETE,
                &format!("/api/v1/sandboxes/{id}"),
                None,
                Duration::ZERO,
            )
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let s: SandboxView = api.get(&format!("/api/v1/sandboxes/{id}")).await?;
            if s.state == SandboxState::Destroyed {
                break;
            }
            if Instant::now() > deadline {
                bail!("sandbox {id} not destroyed in time");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Boots the same bundle with plain runc `n` times, each waited until its agent answers.
async fn floor_series(
    work: &Path,
    image: &Image,
    guest: &Path,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let root = work.join("floor");
    let runc_root = root.join("runc");
    std::fs::create_dir_all(&runc_root)?;
    let mut times = Vec::new();
    for i in 0..n {
        let dir = root.join(format!("b{i}"));
        let (upper, workdir, merged, run) = (
            dir.join("upper"),
            dir.join("work"),
            dir.join("rootfs"),
            dir.join("run"),
        );
        for d in [&upper, &workdir, &merged, &run] {
            std::fs::create_dir_all(d)?;
        }
        nix::unistd::chown(
            &run,
            Some(nix::unistd::Uid::from_raw(image.config.user.uid)),
            Some(nix::unistd::Gid::from_raw(image.config.user.gid)),
        )?;
        let spec = SandboxSpec {
            id: SandboxId::from_uuid(uuid::Uuid::now_v7()),
            image: image.clone(),
            limits: Limits {
                memory_mib: 256,
                ..Limits::default()
            },
            network: NetworkPolicy::None,
        };
        let oci = build_spec(
            &spec,
            BundlePaths {
                rootfs: &merged,
                guest_agent: guest,
                socket_dir: &run,
                nofile_limit: hangar_runtime::runc::host_nofile_limit(),
                network: None,
            },
        )?;
        let t = Instant::now();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.rootfs.display(),
            upper.display(),
            workdir.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )?;
        oci.save(dir.join("config.json"))?;
        let name = format!("floor-{i}");
        let status = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["run", "--detach", "--bundle"])
            .arg(&dir)
            .arg(&name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("runc run failed for the floor bundle");
        }
        let guest_client = GuestClient::unix(run.join("agent.sock"));
        let deadline = Instant::now() + READY_DEADLINE;
        while guest_client.ping(Duration::from_millis(500)).await.is_err() {
            if Instant::now() > deadline {
                bail!("floor sandbox agent not ready in time");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t.elapsed());
        let _ = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "--force", &name])
            .status()
            .await;
        let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(times)
}

/// Mean per idle sandbox, in KiB: (its memory cgroup's usage, which counts its processes,
/// the page cache and kernel memory charged to it; the RSS of the processes in it).
/// There is no shim process: what a sandbox costs beyond its processes is the rest of its
/// cgroup's charge plus the control plane's growth.
async fn idle_memory(ids: &[String], plane: &LocalPlane) -> Option<(f64, f64)> {
    let mut total = 0.0;
    let mut procs = 0.0;
    let mut counted = 0.0;
    for id in ids {
        let id: SandboxId = id.parse().ok()?;
        let Ok(hangar_runtime::RuntimeStatus::Running { pid }) =
            plane.state.sandboxes.node().status(id).await
        else {
            continue;
        };
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mem_path = cg.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        })?;
        let usage: f64 = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory{mem_path}/memory.usage_in_bytes"
        ))
        .ok()?
        .trim()
        .parse()
        .ok()?;
        let rss = cgroup_rss_kib(&format!("/sys/fs/cgroup/memory{mem_path}/cgroup.procs"));
        total += usage / 1024.0;
        procs += rss;
        counted += 1.0;
    }
    (counted > 0.0).then(|| (total / counted, procs / counted))
}

fn self_rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0.0)
}

fn cgroup_rss_kib(procs_file: &str) -> f64 {
    let Ok(list) = std::fs::read_to_string(procs_file) else {
        return 0.0;
    };
    list.lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .sum()
}

pub(crate) fn pct(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn report(label: &str, samples: &[Duration]) {
    println!(
        "{label}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms",
        samples.len(),
        ms(pct(samples, 50.0)),
        ms(pct(samples, 95.0)),
        ms(pct(samples, 100.0))
    );
}
