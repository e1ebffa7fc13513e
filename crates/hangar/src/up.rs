//! `hangar up`: the API, an SQLite store and a local runc node in one process.

use std::net::SocketAddr;
use std::time::Duration;

use std::future::IntoFuture;

use anyhow::Context;
use hangar_server::local::{LocalConfig, LocalPlane};
use hangar_server::sandboxes::SandboxConfig;

use crate::cli::UpArgs;
use crate::config::{default_data_dir, guest_agent_path, FileConfig};

/// How long open connections may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often credentials near expiry are looked for and refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Default API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HANGAR_LOG")
                .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let file = FileConfig::load(args.data.config.as_deref())?;
    let connect = file.connect();
    let metrics_config = file.metrics();
    let telemetry = file.telemetry();
    let data_dir = args
        .data
        .data_dir
        .or(file.data_dir.clone())
        .unwrap_or_else(default_data_dir);
    let listen: SocketAddr = match args.listen.or(file.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    // One public URL: the OAuth issuer and the base of sign-in redirect URIs.
    let public_url = args
        .public_url
        .or(file.public_url.clone())
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{listen}"));
    let signin = file.signin(Some(&public_url))?;
    let mut sandbox = SandboxConfig::default();
    let (default_network, network) = file
        .network
        .resolve(|| hangar_runtime::net::files::host_nameservers(std::path::Path::new("/")))?;
    sandbox.default_network = default_network;
    sandbox.network = Some(network);
    if let Some(ms) = args.readiness_timeout_ms.or(file.readiness_timeout_ms) {
        sandbox.readiness_timeout = Duration::from_millis(ms);
    }
    let reconcile_every = Duration::from_secs(
        args.reconcile_interval_s
            .or(file.reconcile_interval_s)
            .unwrap_or(30)
            .max(1),
    );
    let guest_agent = guest_agent_path(args.guest_agent.or(file.guest_agent))?;

    let plane = LocalPlane::open(LocalConfig {
        metrics: metrics_config,
        data_dir: data_dir.clone(),
        store_url: file.store_url,
        guest_agent,
        images_dir: file.images_dir,
        sandbox,
        connect,
        providers_dir: file.providers_dir,
        signin,
        oauth: hangar_server::oauth::OAuthConfig {
            issuer: public_url,
            ..Default::default()
        },
        telemetry,
        events: Default::default(),
    })
    .await
    .with_context(|| format!("opening the data directory {}", data_dir.display()))?;

    let images = plane
        .state
        .sandboxes
        .node()
        .images()
        .list()
        .unwrap_or_default();
    if images.is_empty() {
        eprintln!(
            "warning: no images yet; build one with `hangar image build default --data-dir {}`",
            data_dir.display()
        );
    }
    let service = plane.state.sandboxes.clone();
    service
        .reconcile_once()
        .await
        .context("first reconciler pass")?;
    let reconciler = tokio::spawn(service.clone().reconcile_forever(reconcile_every));
    let connect = plane.state.connect.clone();
    let ended = connect
        .recover()
        .await
        .context("ending interrupted connect sessions")?;
    if ended > 0 {
        eprintln!("ended {ended} connect session(s) interrupted by the restart");
    }
    let refresher = tokio::spawn(connect.refresh_forever(REFRESH_EVERY));
    let metrics = plane.state.metrics.clone();
    let collector = tokio::spawn(metrics.clone().collect_forever(metrics.config().interval));
    let maintainer = tokio::spawn(
        metrics
            .clone()
            .maintain_forever(metrics.config().maintain_every),
    );
    let pruner = tokio::spawn(plane.state.events.clone().prune_forever());
    let node_watch = tokio::spawn(
        metrics
            .clone()
            .watch_nodes_forever(metrics.config().interval),
    );

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("local address")?;
    eprintln!(
        "hangar is up: API on http://{addr}  (data in {})",
        data_dir.display()
    );
    if plane.bootstrapped {
        eprintln!(
            "the bootstrap admin token was written to {} (mode 0600)",
            plane.admin_token_path.display()
        );
    } else {
        eprintln!("admin token: {}", plane.admin_token_path.display());
    }
    eprintln!(
        "use it:  export HANGAR_URL=http://{addr} HANGAR_TOKEN=$(cat {})",
        plane.admin_token_path.display()
    );

    // The peer address is the sign-in rate limit's key.
    let live = plane.state.live.clone();
    let app =
        hangar_server::router(plane.state).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut serve = std::pin::pin!(axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
            // Live streams never end on their own: close them so they do not hold the
            // graceful shutdown.
            live.close();
        })
        .into_future());
    tokio::select! {
        result = &mut serve => result.context("serving the API")?,
        () = shutdown_signal() => {
            let _ = stop_tx.send(true);
            // Open terminals would hold a graceful shutdown forever: give them a deadline.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await.is_err() {
                eprintln!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
            }
        }
    }
    reconciler.abort();
    refresher.abort();
    collector.abort();
    maintainer.abort();
    pruner.abort();
    node_watch.abort();
    eprintln!("hangar stopped; sandboxes keep running and are picked up on the next start");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
