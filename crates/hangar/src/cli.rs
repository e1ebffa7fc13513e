//! Command-line definitions (clap derive). Flags, environment variables and config file keys
//! share names: `--data-dir` / `HANGAR_DATA_DIR` / `data_dir`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hangar: sandboxes for AI coding CLIs, with OAuth done right.
#[derive(Debug, Parser)]
#[command(name = "hangar", version, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of client verbs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A human-readable table.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
}

/// Options every client verb shares.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The hangar API.
    #[arg(
        long,
        env = "HANGAR_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// A personal access token (default: the local bootstrap admin token, if readable).
    #[arg(long, env = "HANGAR_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
}

/// Where hangar keeps its state.
#[derive(Debug, Clone, Args)]
pub struct DataOpts {
    /// Data directory (default `$XDG_DATA_HOME/hangar`, or `/var/lib/hangar` as root).
    #[arg(long, env = "HANGAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A TOML config file (keys as the long flags, with `_`).
    #[arg(long, env = "HANGAR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine: API, SQLite store and a local runc node.
    Up(UpArgs),
    /// Manage sandboxes.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Build and list images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Connect a CLI account (`claude_code`, `codex`, `gemini_cli`), or show what is connected.
    Connect(ConnectArgs),
    /// Connected credentials.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Manage your personal access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage users (admin).
    #[command(subcommand)]
    User(UserCommand),
    /// hangar's OAuth authorization server: clients (admin) and signing keys.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// The credential vault (on the control plane's machine).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Measure create-to-ready and exec latency against the raw runc floor.
    Bench(BenchArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `hangar up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Data and config.
    #[command(flatten)]
    pub data: DataOpts,
    /// Address the API listens on.
    #[arg(long, env = "HANGAR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Default readiness deadline for sandboxes, in milliseconds.
    #[arg(long, env = "HANGAR_READINESS_TIMEOUT_MS")]
    pub readiness_timeout_ms: Option<u64>,
    /// Seconds between reconciler passes.
    #[arg(long, env = "HANGAR_RECONCILE_INTERVAL_S")]
    pub reconcile_interval_s: Option<u64>,
    /// The static guest agent binary (default: `hangar-guest` beside this executable).
    #[arg(long, env = "HANGAR_GUEST_AGENT")]
    pub guest_agent: Option<PathBuf>,
    /// The URL people reach hangar at: the OAuth issuer, sign-in redirect URIs and cookies
    /// (default `http://LISTEN`).
    #[arg(long, env = "HANGAR_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// `--network` values (the API's `network` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// Outbound internet through the node's NAT.
    Egress,
    /// Loopback only.
    None,
}

impl From<NetworkArg> for hangar_core::NetworkPolicy {
    fn from(arg: NetworkArg) -> Self {
        match arg {
            NetworkArg::Egress => Self::Egress,
            NetworkArg::None => Self::None,
        }
    }
}

/// `hangar sandbox ...`.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox; prints its id at once.
    Create {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Image name or digest.
        #[arg(long, default_value = "default")]
        image: String,
        /// CPU quota in thousandths of a core.
        #[arg(long)]
        cpu_millis: Option<u32>,
        /// Memory limit in MiB.
        #[arg(long)]
        memory_mib: Option<u32>,
        /// Maximum number of processes.
        #[arg(long)]
        pids_max: Option<u32>,
        /// Readiness deadline in milliseconds.
        #[arg(long)]
        readiness_timeout_ms: Option<u64>,
        /// Keep a failed sandbox's files this many seconds for inspection.
        #[arg(long)]
        keep_failed_s: Option<u32>,
        /// Network: `egress` (outbound internet via the node's NAT) or `none` (loopback
        /// only). Default: the server's `[network] default`.
        #[arg(long, value_enum)]
        network: Option<NetworkArg>,
        /// Wait until it is running (or failed), with a progress spinner.
        #[arg(long)]
        wait: bool,
    },
    /// List your sandboxes.
    Ls {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Include destroyed sandboxes.
        #[arg(long)]
        all: bool,
    },
    /// Show one sandbox: state, boot stages with times, failure.
    Get {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Sandbox id.
        id: String,
    },
    /// Run a command; exits with its exit code.
    Exec {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Deadline in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// Environment variables, `KEY=VALUE`.
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Sandbox id.
        id: String,
        /// The command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// An interactive terminal in the sandbox.
    Shell {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Sandbox id.
        id: String,
        /// The command (default: the login shell).
        #[arg(last = true)]
        argv: Vec<String>,
    },
    /// Stop (files are kept).
    Stop {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Sandbox id.
        id: String,
        /// Return at once instead of waiting for `stopped`.
        #[arg(long)]
        no_wait: bool,
    },
    /// Start a stopped sandbox again.
    Start {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Sandbox id.
        id: String,
        /// Return at once instead of waiting for `running`.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a sandbox.
    Rm {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Sandbox id.
        id: String,
        /// Return at once instead of waiting for `destroyed`.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `hangar image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image on this machine (needs root), with progress; finished steps are reused.
    Build {
        /// Data and config.
        #[command(flatten)]
        data: DataOpts,
        /// The recipe: `default`, or a directory holding a recipe.toml.
        #[arg(default_value = "default")]
        recipe: String,
    },
    /// List images on the node.
    Ls {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `hangar token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; the secret is printed once.
    Create {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// A label.
        name: String,
        /// Lifetime in seconds.
        #[arg(long, conflicts_with = "expires_in")]
        expires_in_s: Option<u64>,
        /// Lifetime as a number with a unit: `90s`, `45m`, `12h`, `30d`.
        #[arg(long, value_parser = parse_duration_s)]
        expires_in: Option<u64>,
        /// Limit the token to these scopes, comma-separated (`sandboxes:read,connect`);
        /// default: every scope.
        #[arg(long)]
        scope: Option<String>,
    },
    /// List your tokens.
    Ls {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Revoke a token.
    Revoke {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Token id.
        id: String,
    },
}

/// Parses `90s`, `45m`, `12h`, `30d` or plain seconds into seconds.
pub fn parse_duration_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30d, 12h, 45m or 90s"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    n.checked_mul(factor).ok_or_else(|| "too long".to_owned())
}

/// `hangar oauth ...`.
#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Registered clients (admin).
    #[command(subcommand)]
    Client(OauthClientCommand),
    /// id_token signing keys (on the control plane's machine).
    #[command(subcommand)]
    Keys(OauthKeysCommand),
}

/// `hangar oauth client ...`.
#[derive(Debug, Subcommand)]
pub enum OauthClientCommand {
    /// Register a client; a confidential client's secret is printed once.
    Create {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// Display name, shown on the consent page.
        #[arg(long)]
        name: String,
        /// A redirect URI (repeat for several); compared exactly.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Scopes the client may ask for, comma- or space-separated.
        #[arg(long)]
        scope: String,
        /// A public client (native or browser app): no secret, PKCE required.
        #[arg(long)]
        public: bool,
    },
    /// List clients.
    Ls {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Remove a client and every grant and token issued to it.
    Rm {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// The client id.
        id: String,
    },
}

/// `hangar oauth keys ...`.
#[derive(Debug, Subcommand)]
pub enum OauthKeysCommand {
    /// Add a signing key; it signs from now on, old keys stay published until their tokens
    /// expire.
    Rotate {
        /// Data and config.
        #[command(flatten)]
        data: DataOpts,
    },
}

/// `hangar user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its first token once.
    Create {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// User name.
        name: String,
        /// Make it an admin.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    Ls {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `hangar connect PROVIDER` or `hangar connect status`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Client options.
    #[command(flatten)]
    pub client: ClientOpts,
    /// The provider to connect, or `status`.
    pub provider: String,
    /// The flow: browser, device_code, paste_code or token (default: the provider's first).
    #[arg(long)]
    pub flow: Option<String>,
    /// Return once the session is started instead of waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
}

/// `hangar credentials ...`.
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Connected providers: since when, last status check, token expiry, last refresh.
    Ls {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Remove a provider's credential from the vault and from live sandboxes.
    Rm {
        /// Client options.
        #[command(flatten)]
        client: ClientOpts,
        /// The provider.
        provider: String,
    },
}

/// `hangar vault ...`.
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Add a key version and re-wrap every stored credential's data key under it.
    Rotate {
        /// Data and config.
        #[command(flatten)]
        data: DataOpts,
    },
}

/// `hangar bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Where the bench keeps its temporary state (default: a new temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Sandboxes per series.
    #[arg(long, default_value_t = 20)]
    pub sandboxes: usize,
    /// Exec round trips to time.
    #[arg(long, default_value_t = 200)]
    pub execs: usize,
    /// Image to use: `busybox` (built from the host's busybox-static) or a name in the data dir.
    #[arg(long, default_value = "busybox")]
    pub image: String,
    /// The static guest agent binary.
    #[arg(long, env = "HANGAR_GUEST_AGENT")]
    pub guest_agent: Option<PathBuf>,
    /// Run the connect series instead: browser sandbox to a live desktop, and credential
    /// capture to delivery in `--sandboxes` live sandboxes.
    #[arg(long)]
    pub connect: bool,
    /// Run the metrics series instead: collector CPU with `--sandboxes` running sandboxes
    /// (use 50), a week of history through the API, the store's cost per day.
    #[arg(long)]
    pub metrics: bool,
    /// An image store holding the `browser` image (for `--connect`).
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// Run the dashboard series instead: first-load compressed JavaScript and time to
    /// render in headless Chromium on loopback (needs `web/` built and its npm packages).
    #[arg(long, conflicts_with = "connect")]
    pub dashboard: bool,
    /// The repository's `web/` directory (for `--dashboard`).
    #[arg(long, default_value = "web")]
    pub web_dir: PathBuf,
    /// Cold page loads to time (for `--dashboard`).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
}
