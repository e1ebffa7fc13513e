//! Test kit (dev-only): the real control plane and local runc node, in process, serving the
//! real HTTP API on `127.0.0.1:0` over a temporary data directory, plus helpers every
//! integration test needs: the static guest agent, test images, an HTTP client, and
//! `wait_until` (every wait has a deadline; no bare sleeps).
//!
//! **Architecture Invariant:** nothing here is a fake: the plane is the same
//! [`hangar_server::local::LocalPlane`] that `hangar up` assembles.

pub mod anthropic_auth;
pub mod github_auth;
pub mod google_auth;
pub mod openai_auth;
pub mod standin;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hangar_runtime::image::{Image, ImageStore};
use hangar_server::local::{LocalConfig, LocalPlane};
use hangar_server::sandboxes::SandboxConfig;
use serde_json::Value;

/// Polls `condition` every 20 ms until it yields `Some`, or fails after `deadline`.
pub async fn wait_until<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut condition: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = condition().await? {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails unless running as root with runc on PATH (the runc driver needs both; CI has them).
pub fn require_root_and_runc() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (the runc driver mounts overlays and runs runc)"
    );
    assert!(
        Command::new("runc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs runc on PATH (cargo xtask test installs it)"
    );
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The static guest agent: `$HANGAR_GUEST_AGENT` (set by `cargo xtask test`), else built
/// once with `cargo xtask guest`.
pub fn guest_agent() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("HANGAR_GUEST_AGENT") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["xtask", "guest"])
            .status()
            .expect("running cargo xtask guest");
        assert!(status.success(), "cargo xtask guest failed");
        root.join("target/guest/x86_64-unknown-linux-gnu/release/hangar-guest")
    })
    .clone()
}

/// The image store holding the default image (with the real CLIs), built by
/// `cargo xtask test` and named by `$HANGAR_TEST_IMAGES`.
pub fn default_image_store() -> PathBuf {
    match std::env::var_os("HANGAR_TEST_IMAGES") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "HANGAR_TEST_IMAGES is not set: run the suite with `cargo xtask test`, which builds \
             the default image"
        ),
    }
}

/// Everything a [`TestPlane`] can be started with.
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    /// Sandbox service settings.
    pub sandbox: SandboxConfig,
    /// Connect service settings.
    pub connect: hangar_server::connect::ConnectConfig,
    /// A shared image store (read only); a fresh one with the test images when `None`.
    pub images_dir: Option<PathBuf>,
    /// Extra provider files.
    pub providers_dir: Option<PathBuf>,
    /// Sign-in settings. With [`TestPlane::start_on`], `public_url` should be the listener's
    /// address (the test knows it before the plane starts, to register redirect URIs).
    pub signin: hangar_server::signin::SigninConfig,
    /// The node's sandbox network (opt in: `None` keeps every sandbox loopback-only, as
    /// before networking existed). [`test_network`] makes one that parallel tests do not
    /// share. Overrides `sandbox.network` when set.
    pub network: Option<hangar_runtime::net::NetworkConfig>,
    /// OAuth settings; the issuer is always set to the plane's own base URL.
    pub oauth: hangar_server::oauth::OAuthConfig,
    /// The store URL (`postgres://...` for a PostgreSQL-backed plane); a SQLite file in the
    /// data directory when `None`.
    pub store_url: Option<String>,
    /// Health settings. No collector or maintenance loop runs unless the test starts one
    /// (`plane.state.metrics.clone().collect_forever(...)`).
    pub metrics: hangar_server::metrics::MetricsConfig,
    /// Who may read `/metrics` (Prometheus).
    pub telemetry: hangar_server::telemetry::MetricsConfig,
}

/// A sandbox network of this test's own: bridge `hgt<pid><n>` and a /24 under
/// 10.128.0.0/10 derived from the process id and a counter (nextest runs each test in its own
/// process), DNS `192.0.2.53` (TEST-NET-1: nothing answers), the default deny list.
pub fn test_network() -> hangar_runtime::net::NetworkConfig {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 16;
    let pid = std::process::id();
    let h = pid.wrapping_mul(16).wrapping_add(n) % (64 * 256);
    let subnet = format!("10.{}.{}.0/24", 128 + h / 256, h % 256);
    hangar_runtime::net::NetworkConfig {
        bridge: format!("hgt{}x{n}", pid % 10_000_000),
        subnet: subnet.parse().unwrap_or_default(),
        ..hangar_runtime::net::NetworkConfig::with_dns(vec![std::net::Ipv4Addr::new(192, 0, 2, 53)])
    }
}

/// Removes what a sandbox network leaves on the host: the network namespaces under
/// `data/sandboxes/*/net/netns` (their veths go with them), the bridge and hangar's nftables
/// tables. Synchronous and best effort, for `Drop`.
pub fn remove_test_network(data: &Path, config: &hangar_runtime::net::NetworkConfig) {
    if let Ok(entries) = std::fs::read_dir(data.join("sandboxes")) {
        for entry in entries.flatten() {
            let netns = entry.path().join("net").join("netns");
            let _ = nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH);
            let _ = Command::new("ip")
                .args([
                    "link",
                    "del",
                    &hangar_runtime::net::veth_name_for(&entry.file_name()),
                ])
                .output();
        }
    }
    let _ = Command::new("ip")
        .args(["link", "del", &config.bridge])
        .output();
    for family in ["inet", "bridge"] {
        let _ = Command::new("nft")
            .args(["delete", "table", family, &config.table_name()])
            .output();
    }
}

/// A running control plane with its API on loopback.
pub struct TestPlane {
    /// The assembled plane (service, accounts, store).
    pub plane: LocalPlane,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bootstrap admin's token.
    pub admin_token: String,
    /// The data directory (removed on drop).
    pub data: tempfile::TempDir,
    /// The image store of the node.
    pub images: ImageStore,
    server: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    http: reqwest::Client,
}

impl Drop for TestPlane {
    /// Runs also when a test panics: deletes every container of this plane's runc root and
    /// unmounts every sandbox root, so a failed test leaks no processes or mounts (the data
    /// directory itself is removed by its `TempDir` afterwards).
    fn drop(&mut self) {
        self.server.abort();
        let runc_root = self.data.path().join("runc");
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
        {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", name])
                    .output();
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.data.path().join("sandboxes")) {
            for entry in entries.flatten() {
                let _ = nix::mount::umount2(
                    &entry.path().join("rootfs"),
                    nix::mount::MntFlags::MNT_DETACH,
                );
            }
        }
        if let Some(net) = &self.plane.state.sandboxes.config().network {
            remove_test_network(self.data.path(), net);
        }
    }
}

/// Names of the images every [`TestPlane`] has.
pub mod images {
    /// busybox with the guest agent as init.
    pub const BUSYBOX: &str = "busybox";
    /// busybox whose init prints two lines and hangs: the guest agent never starts.
    pub const HANG: &str = "hang";
}

impl TestPlane {
    /// Starts a plane with default settings.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(SandboxConfig::default()).await
    }

    /// Starts a plane with the given sandbox settings, the `busybox` and `hang` images.
    pub async fn start_with(sandbox: SandboxConfig) -> anyhow::Result<Self> {
        Self::start_opts(sandbox, None).await
    }

    /// Starts a plane whose node uses the image store `images_dir` (shared: read only, no test
    /// images added); a fresh store with the `busybox` and `hang` images when `None`.
    pub async fn start_opts(
        sandbox: SandboxConfig,
        images_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        Self::start_config(TestConfig {
            sandbox,
            images_dir,
            ..TestConfig::default()
        })
        .await
    }

    /// Starts a plane with every setting given.
    pub async fn start_config(config: TestConfig) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(config, listener).await
    }

    /// A listener on `127.0.0.1:0` and its base URL (`http://127.0.0.1:PORT`), for
    /// [`TestPlane::start_on`] when a test needs the address before the plane starts.
    pub async fn listener() -> anyhow::Result<(tokio::net::TcpListener, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        Ok((listener, base))
    }

    /// Starts a plane with every setting given, serving on `listener` (with the peer address
    /// available to handlers, as `hangar up` serves).
    pub async fn start_on(
        config: TestConfig,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Self> {
        let TestConfig {
            sandbox,
            connect,
            images_dir,
            providers_dir,
            network,
            signin,
            oauth,
            store_url,
            telemetry,
            metrics,
        } = config;
        let mut sandbox = sandbox;
        if network.is_some() {
            sandbox.network = network;
        }
        require_root_and_runc();
        let data = tempfile::Builder::new().prefix("hangar-test").tempdir()?;
        let shared = images_dir.is_some();
        let images_dir = images_dir.unwrap_or_else(|| data.path().join("images"));
        let images = ImageStore::open(&images_dir)?;
        // A shared store is only read: importing into it from parallel tests would race.
        if !shared {
            hangar_runtime::image::testing::busybox_image(&images, images::BUSYBOX, None)?;
            hangar_runtime::image::testing::busybox_image(
                &images,
                images::HANG,
                Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo booting test image; echo stuck on purpose >&2; exec sleep 3600".into(),
                ]),
            )?;
        }
        let network = sandbox.network.clone();
        // The OAuth issuer is the plane's own base URL, and so is the sign-in public URL
        // unless the test chose one.
        let base = format!("http://{}", listener.local_addr()?);
        let mut signin = signin;
        if signin.public_url == hangar_server::signin::SigninConfig::default().public_url {
            signin.public_url = base.parse()?;
        }
        let opened = LocalPlane::open(LocalConfig {
            metrics,
            data_dir: data.path().to_owned(),
            store_url,
            guest_agent: guest_agent(),
            images_dir: Some(images_dir),
            sandbox,
            connect,
            providers_dir,
            signin,
            oauth: hangar_server::oauth::OAuthConfig {
                issuer: base.clone(),
                ..oauth
            },
            telemetry,
            events: Default::default(),
        })
        .await;
        // No TestPlane (and no Drop) if opening failed: remove a half-made network here.
        if let (Err(_), Some(net)) = (&opened, &network) {
            remove_test_network(data.path(), net);
        }
        let plane = opened?;
        let admin_token = std::fs::read_to_string(&plane.admin_token_path)?
            .trim()
            .to_owned();
        let app = hangar_server::router(plane.state.clone());
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let live = plane.state.live.clone();
        // Shut down as `hangar up` does: stop accepting, close the live streams, let
        // requests in flight finish.
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
                live.close();
            })
            .await;
        });
        Ok(Self {
            plane,
            base,
            admin_token,
            data,
            images,
            server,
            stop,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    /// Shuts the API down gracefully, as `hangar up` does on SIGTERM: no new connections,
    /// live streams closed, requests in flight finished. Fails if the server has not
    /// stopped within `deadline` (an open connection holding it). The plane's services stay
    /// usable (and [`Self::shutdown`] still cleans up).
    pub async fn shutdown_api(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        tokio::time::timeout(deadline, &mut self.server)
            .await
            .with_context(|| format!("the API did not shut down within {deadline:?}"))?
            .context("server task")?;
        Ok(())
    }

    /// Adds an image made from the host's busybox to the node.
    pub fn busybox_image(&self, name: &str, init: Option<Vec<String>>) -> anyhow::Result<Image> {
        Ok(hangar_runtime::image::testing::busybox_image(
            &self.images,
            name,
            init,
        )?)
    }

    /// Sends a request with `token` and returns the status and the JSON body (`Null` if empty).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp.bytes().await?;
        if status >= 400 {
            assert_eq!(
                ctype, "application/problem+json",
                "error bodies are problem+json: {path} {status}"
            );
        }
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).with_context(|| format!("JSON from {path}"))?
        };
        Ok((status, value))
    }

    /// A raw request with a raw body and content type, for malformed-input tests.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &'static str,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Creates a sandbox as `token` and returns its JSON (state `creating`).
    pub async fn create(&self, token: &str, body: Value) -> anyhow::Result<Value> {
        let (status, v) = self
            .request(
                reqwest::Method::POST,
                "/api/v1/sandboxes",
                Some(token),
                Some(body),
            )
            .await?;
        if status != 202 {
            bail!("create answered {status}: {v}");
        }
        Ok(v)
    }

    /// Reads a sandbox as `token`.
    pub async fn get(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        let (status, v) = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/sandboxes/{id}"),
                Some(token),
                None,
            )
            .await?;
        if status != 200 {
            bail!("get answered {status}: {v}");
        }
        Ok(v)
    }

    /// Waits until the sandbox's state satisfies `done`, within `deadline`.
    pub async fn wait_state(
        &self,
        token: &str,
        id: &str,
        deadline: Duration,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Value> {
        wait_until(deadline, &format!("sandbox {id} state"), || async {
            let v = self.get(token, id).await?;
            let state = v["state"].as_str().unwrap_or("").to_owned();
            Ok(done(&state).then_some(v))
        })
        .await
    }

    /// Creates a sandbox from `image` as `token`, waits until it runs (20 s), returns its id.
    pub async fn running_sandbox(&self, token: &str, image: &str) -> anyhow::Result<String> {
        let created = self
            .create(token, serde_json::json!({ "image": image }))
            .await?;
        let id = created["id"].as_str().context("id in answer")?.to_owned();
        let v = self
            .wait_state(token, &id, Duration::from_secs(20), |s| s != "creating")
            .await?;
        if v["state"] != "running" {
            bail!("sandbox {id} did not start: {v}");
        }
        Ok(id)
    }

    /// Runs `argv` in a sandbox through the API; returns the status and the JSON answer.
    pub async fn exec(&self, token: &str, id: &str, argv: &[&str]) -> anyhow::Result<(u16, Value)> {
        self.request(
            reqwest::Method::POST,
            &format!("/api/v1/sandboxes/{id}/exec"),
            Some(token),
            Some(serde_json::json!({ "argv": argv })),
        )
        .await
    }

    /// Starts a connect session as `token` (`flow` may be `None`); returns its JSON answer
    /// (state `starting`, and the viewer URL for the browser flow).
    pub async fn start_connect(
        &self,
        token: &str,
        provider: &str,
        flow: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut body = serde_json::json!({ "provider": provider });
        if let Some(flow) = flow {
            body["flow"] = serde_json::json!(flow);
        }
        let (status, v) = self
            .request(
                reqwest::Method::POST,
                "/api/v1/connect",
                Some(token),
                Some(body),
            )
            .await?;
        if status != 202 {
            bail!("connect start answered {status}: {v}");
        }
        Ok(v)
    }

    /// Gives connect session `id` the person's paste code or token; returns the answer's
    /// status (204 when taken) and body.
    pub async fn submit_code(
        &self,
        token: &str,
        id: &str,
        code: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.request(
            reqwest::Method::POST,
            &format!("/api/v1/connect/{id}/code"),
            Some(token),
            Some(serde_json::json!({ "code": code })),
        )
        .await
    }

    /// Removes the caller's credential for `provider`; returns the answer's status (204 when
    /// removed, 404 when there was none).
    pub async fn remove_credential(&self, token: &str, provider: &str) -> anyhow::Result<u16> {
        let (status, _) = self
            .request(
                reqwest::Method::DELETE,
                &format!("/api/v1/credentials/{provider}"),
                Some(token),
                None,
            )
            .await?;
        Ok(status)
    }

    /// Waits (up to `deadline`) until the connect session's state satisfies `done`.
    pub async fn wait_connect(
        &self,
        token: &str,
        id: &str,
        deadline: Duration,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Value> {
        wait_until(deadline, &format!("connect session {id}"), || async {
            let (status, v) = self
                .request(
                    reqwest::Method::GET,
                    &format!("/api/v1/connect/{id}"),
                    Some(token),
                    None,
                )
                .await?;
            if status != 200 {
                bail!("connect get answered {status}: {v}");
            }
            Ok(done(v["state"].as_str().unwrap_or("")).then_some(v))
        })
        .await
    }

    /// Waits (up to `deadline`) until the caller's first credential has a status check, and
    /// returns its status.
    pub async fn wait_status_check(
        &self,
        token: &str,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        wait_until(deadline, "status check", || async {
            let (_, list) = self
                .request(
                    reqwest::Method::GET,
                    "/api/v1/credentials",
                    Some(token),
                    None,
                )
                .await?;
            Ok(list
                .as_array()
                .and_then(|l| l.first())
                .filter(|c| c["last_check_at"].is_string())
                .cloned())
        })
        .await
    }

    /// Creates a user and returns its token.
    pub async fn new_user(&self, name: &str) -> anyhow::Result<String> {
        let (status, v) = self
            .request(
                reqwest::Method::POST,
                "/api/v1/users",
                Some(&self.admin_token),
                Some(serde_json::json!({ "name": name })),
            )
            .await?;
        if status != 201 {
            bail!("user create answered {status}: {v}");
        }
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("token in answer")
    }

    /// Destroys every sandbox the store knows, waiting for each (test cleanup).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let svc = self.plane.state.sandboxes.clone();
        let all = self
            .plane
            .state
            .store
            .sandboxes()
            .list_on_node(svc.node().id())
            .await?;
        for s in all {
            let _ = svc.node().destroy(s.id).await;
        }
        self.server.abort();
        Ok(())
    }
}
