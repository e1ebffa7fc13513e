//! Wiring for one machine: the store, accounts, the local node (runc driver + image store)
//! and the sandbox service over a data directory. Used by `hangar up`, `hangar bench` and the
//! test kit, so all three run exactly the same assembly.
//!
//! Data directory layout:
//! ```text
//! DATA/hangar.db        SQLite store (unless a store URL is given)
//! DATA/admin-token      the bootstrap admin's token, mode 0600, written once
//! DATA/node-id          this node's id
//! DATA/vault-keys       the vault's key ring, mode 0600 (unless HANGAR_VAULT_KEYS is set)
//! DATA/bin/hangar-guest the guest agent bind-mounted into sandboxes
//! DATA/images/          image store
//! DATA/sandboxes/       per-sandbox directories (runc bundles)
//! DATA/runc/            runc's state (--root)
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hangar_agent::Node;
use hangar_core::NodeId;
use hangar_runtime::image::ImageStore;
use hangar_runtime::runc::{RuncConfig, RuncDriver};
use hangar_runtime::AnyDriver;
use hangar_store::{NodeRecord, Store};

use crate::accounts::{AccountError, Accounts};
use crate::api::AppState;
use crate::clock::{Clock, SystemClock};
use crate::connect::{ConnectConfig, ConnectService};
use crate::credentials::{CredentialVault, CredentialVaultError};
use crate::sandboxes::{SandboxConfig, SandboxService};

/// What to assemble.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Store URL; `sqlite://DATA/hangar.db` when `None`.
    pub store_url: Option<String>,
    /// The static guest agent binary to install into `DATA/bin`.
    pub guest_agent: PathBuf,
    /// The image store; `DATA/images` when `None`.
    pub images_dir: Option<PathBuf>,
    /// Sandbox service settings.
    pub sandbox: SandboxConfig,
    /// Connect service settings.
    pub connect: ConnectConfig,
    /// Extra provider files (`*.toml`), added to the built-in ones (same id replaces).
    pub providers_dir: Option<PathBuf>,
    /// Sign-in settings (public URL, GitHub / OpenID Connect providers, sessions).
    pub signin: crate::signin::SigninConfig,
    /// The OAuth authorization server's settings (issuer, lifetimes, rate limits).
    pub oauth: crate::oauth::OAuthConfig,
    /// Health: collector interval, node silence, history retention.
    pub metrics: crate::metrics::MetricsConfig,
    /// Who may read `/metrics` (Prometheus).
    pub telemetry: crate::telemetry::MetricsConfig,
    /// How many events are kept and for how long.
    pub events: crate::events::EventsConfig,
}

/// Errors while assembling.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file in the data directory.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store.
    #[error("store")]
    Store(#[from] hangar_store::StoreError),
    /// Accounts.
    #[error("accounts")]
    Accounts(#[from] AccountError),
    /// The driver.
    #[error("driver")]
    Driver(#[from] hangar_runtime::DriverError),
    /// The image store.
    #[error("images")]
    Image(#[from] hangar_runtime::image::ImageError),
    /// The vault's key ring.
    #[error("vault")]
    Vault(#[from] CredentialVaultError),
    /// A provider file.
    #[error("providers")]
    Providers(#[from] hangar_connect::ProviderError),
    /// The sign-in settings.
    #[error("sign-in settings")]
    Signin(#[from] crate::signin::SigninConfigError),
    /// The OAuth signing keys.
    #[error("oauth signing keys")]
    OAuthKeys(#[from] crate::oauth::keys::KeyError),
    /// The metrics collector.
    #[error("metrics")]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// An assembled single-machine control plane.
#[derive(Debug, Clone)]
pub struct LocalPlane {
    /// State for the router.
    pub state: AppState,
    /// Where the bootstrap admin token is (written on first start only).
    pub admin_token_path: PathBuf,
    /// True when this start created the admin and wrote the token file.
    pub bootstrapped: bool,
    /// The vault credentials are sealed with.
    pub vault: Arc<CredentialVault>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LocalError {
    let path = path.to_owned();
    move |source| LocalError::Io { op, path, source }
}

impl LocalPlane {
    /// Opens (or creates) everything under `config.data_dir`.
    pub async fn open(config: LocalConfig) -> Result<Self, LocalError> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data).map_err(io("create", data))?;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod", data))?;
        let url = config
            .store_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&data.join("hangar.db")));
        let store = Store::connect(&url).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let accounts = Accounts::new(store.clone(), Arc::clone(&clock));
        let signin = crate::signin::SigninService::new(
            store.clone(),
            Arc::clone(&clock),
            Arc::clone(&accounts),
            config.signin.clone(),
        )?;

        let admin_token_path = data.join("admin-token");
        let mut bootstrapped = false;
        if let Some(issued) = accounts.bootstrap_admin().await? {
            write_secret_file(&admin_token_path, issued.secret.expose_secret())?;
            bootstrapped = true;
        }

        let vault = Arc::new(CredentialVault::open(data)?);
        let guest = install_guest_agent(&config.guest_agent, &data.join("bin"))?;
        let images = ImageStore::open(
            config
                .images_dir
                .clone()
                .unwrap_or_else(|| data.join("images")),
        )?;
        let runc = RuncDriver::new(RuncConfig {
            network: config.sandbox.network.clone(),
            ..RuncConfig::under(data, guest)
        })?;
        runc.setup_network().await?;
        let driver = AnyDriver::Runc(runc);
        let node_id = node_id(data)?;
        let node_name = hostname();
        let now = clock.now();
        store
            .nodes()
            .upsert(&NodeRecord {
                id: node_id,
                name: node_name.clone(),
                address: None,
                drivers: vec!["runc".to_owned()],
                last_heartbeat_at: now,
                created_at: now,
            })
            .await?;
        let node = Arc::new(Node::new(node_id, node_name, driver, images));
        let live = crate::live::LiveBus::new();
        let observers = crate::telemetry::Observers {
            live: live.clone(),
            events: crate::events::EventService::new(
                store.clone(),
                Arc::clone(&clock),
                live.clone(),
                config.events,
            ),
            metrics: crate::telemetry::Metrics::new(),
        };
        let metrics = crate::metrics::MetricsService::new(
            store.clone(),
            Arc::clone(&clock),
            config.metrics.clone(),
            Arc::clone(&node),
            data.clone(),
            observers.clone(),
        )?;
        let sandboxes = SandboxService::new(
            store.clone(),
            node,
            Arc::clone(&clock),
            config.sandbox,
            observers.clone(),
        );
        let mut providers = hangar_connect::builtin()?;
        if let Some(dir) = &config.providers_dir {
            providers = providers.merged(hangar_connect::load_dir(dir)?);
        }
        let oauth = crate::oauth::OAuthService::open(
            store.clone(),
            Arc::clone(&clock),
            Arc::clone(&vault),
            config.oauth.clone(),
        )
        .await?;
        let connect = ConnectService::new(
            store.clone(),
            Arc::clone(&sandboxes),
            Arc::clone(&vault),
            Arc::new(providers),
            clock,
            config.connect,
            observers.clone(),
        );
        sandboxes.set_ready_hook(connect.ready_hook());
        Ok(Self {
            state: AppState {
                sandboxes,
                accounts,
                connect,
                signin,
                oauth,
                metrics,
                store,
                live,
                events: observers.events,
                telemetry: observers.metrics,
                telemetry_config: config.telemetry,
            },
            admin_token_path,
            bootstrapped,
            vault,
        })
    }
}

/// Writes a secret to a new file readable only by its owner (0600).
fn write_secret_file(path: &Path, secret: &str) -> Result<(), LocalError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("write", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod", path))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(io("write", path))
}

/// Copies the guest agent into `bin_dir` (atomically, so running sandboxes keep the old
/// inode) unless an identical copy is there. Returns the installed path.
fn install_guest_agent(source: &Path, bin_dir: &Path) -> Result<PathBuf, LocalError> {
    std::fs::create_dir_all(bin_dir).map_err(io("create", bin_dir))?;
    let target = bin_dir.join("hangar-guest");
    let new = std::fs::read(source).map_err(io("read guest agent", source))?;
    if std::fs::read(&target).ok().as_deref() == Some(new.as_slice()) {
        return Ok(target);
    }
    let tmp = bin_dir.join(".hangar-guest.tmp");
    std::fs::write(&tmp, &new).map_err(io("write", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &tmp))?;
    std::fs::rename(&tmp, &target).map_err(io("rename", &target))?;
    Ok(target)
}

/// This node's id, made once and kept in `DATA/node-id`.
fn node_id(data: &Path) -> Result<NodeId, LocalError> {
    let path = data.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(id) = text.trim().parse() {
            return Ok(id);
        }
    }
    let id = NodeId::from_uuid(uuid::Uuid::now_v7());
    std::fs::write(&path, format!("{id}\n")).map_err(io("write", &path))?;
    Ok(id)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "local".to_owned())
}
