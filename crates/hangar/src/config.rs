//! Settings: command-line flags > `HANGAR_*` environment (clap reads both) > TOML config file >
//! defaults. The file's keys are the long flag names with `_` (`listen`, `data_dir`,
//! `readiness_timeout_ms`, `reconcile_interval_s`, `guest_agent`, `store_url`, `images_dir`),
//! plus the connect settings (`providers_dir`, `browser_image`, `browser_session`,
//! `sign_in_timeout_min`), a `[network]` table (`default`, `subnet`, `bridge`, `dns`,
//! `deny`; see [`NetworkSection`]), `public_url`, the sign-in tables `[[signin.oidc]]` and
//! `[signin.github]` (see [`SigninSection`]), `[metrics]` ([`MetricsSection`]: sampling,
//! history and who may scrape `/metrics`) and `[nodes]` ([`NodesSection`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hangar_core::NetworkPolicy;
use hangar_runtime::net::NetworkConfig;
use ipnet::Ipv4Net;
use serde::Deserialize;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// API listen address.
    pub listen: Option<SocketAddr>,
    /// Default readiness deadline in milliseconds.
    pub readiness_timeout_ms: Option<u64>,
    /// Seconds between reconciler passes.
    pub reconcile_interval_s: Option<u64>,
    /// The static guest agent.
    pub guest_agent: Option<PathBuf>,
    /// Store URL (`sqlite://...` or `postgres://...`).
    pub store_url: Option<String>,
    /// Image store directory (default `DATA/images`).
    pub images_dir: Option<PathBuf>,
    /// Extra provider files (`*.toml`) added to the built-in providers.
    pub providers_dir: Option<PathBuf>,
    /// The image of browser sandboxes for connect sessions (default `browser`).
    pub browser_image: Option<String>,
    /// The command wrapping a browser-flow login (default
    /// `["/usr/local/bin/hangar-browser-session"]`; `[]` runs the login directly).
    pub browser_session: Option<Vec<String>>,
    /// Minutes a person has to sign in (default 15).
    pub sign_in_timeout_min: Option<u64>,
    /// Sandbox networking.
    #[serde(default)]
    pub network: NetworkSection,
    /// The URL people reach hangar at: the OAuth issuer, sign-in redirect URIs, cookies'
    /// `Secure` (default `http://LISTEN`).
    pub public_url: Option<String>,
    /// Sign-in with GitHub / OpenID Connect.
    #[serde(default)]
    pub signin: SigninSection,
    /// Health figures, their history, and who may scrape `GET /metrics`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Node health.
    #[serde(default)]
    pub nodes: NodesSection,
}

/// The `[metrics]` table. Every key is optional:
/// ```toml
/// [metrics]
/// interval_s = 10          # how often the node and its sandboxes are sampled
/// disk_refresh_s = 60      # how often a sandbox's writable layer is measured again
/// keep_raw_h = 1           # raw samples are kept 1 hour,
/// keep_minute_h = 24       # 1-minute aggregates 1 day,
/// keep_ten_minutes_d = 30  # 10-minute aggregates 30 days
/// public = true            # anyone reaching the API may scrape /metrics (default: admin token only)
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Seconds between samples (default 10).
    pub interval_s: Option<u64>,
    /// Seconds between measurements of a sandbox's writable layer (default 60).
    pub disk_refresh_s: Option<u64>,
    /// Hours raw samples are kept (default 1).
    pub keep_raw_h: Option<u64>,
    /// Hours 1-minute aggregates are kept (default 24).
    pub keep_minute_h: Option<u64>,
    /// Days 10-minute aggregates are kept (default 30).
    pub keep_ten_minutes_d: Option<u64>,
    /// Serve `/metrics` without authentication (for a Prometheus on a private network).
    #[serde(default)]
    pub public: bool,
}

/// The `[nodes]` table:
/// ```toml
/// [nodes]
/// unreachable_after_s = 30   # a node silent this long is shown unreachable
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesSection {
    /// Seconds without a heartbeat after which a node is `unreachable` (default 30).
    pub unreachable_after_s: Option<u64>,
}

/// The `[signin]` table and its providers. Every key is optional:
/// ```toml
/// public_url = "https://hangar.example.com"   # top level: redirect URIs, cookies' Secure
///
/// [signin]
/// session_lifetime_h = 168        # browser sessions last 7 days
/// rate_limit_burst = 30           # sign-in requests per client address at once...
/// rate_limit_period_s = 2         # ...then one more every 2 s
///
/// [[signin.oidc]]                 # any OpenID Connect provider, by discovery
/// name = "corp"                   # /login/corp, redirect URI {public_url}/login/corp/callback
/// display_name = "Corp SSO"
/// issuer = "https://sso.example.com/realms/main"
/// client_id = "hangar"
/// client_secret = "..."
/// scopes = ["email", "profile"]   # besides openid
///
/// [signin.github]                 # a GitHub OAuth app; callback {public_url}/login/github/callback
/// client_id = "Iv1.0123"
/// client_secret = "..."
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigninSection {
    /// Browser session lifetime in hours (default 168).
    pub session_lifetime_h: Option<u64>,
    /// Sign-in requests allowed at once per client address (default 30).
    pub rate_limit_burst: Option<u32>,
    /// Seconds until one more is allowed (default 2).
    pub rate_limit_period_s: Option<u64>,
    /// OpenID Connect providers.
    #[serde(default)]
    pub oidc: Vec<OidcSection>,
    /// GitHub.
    pub github: Option<GithubSection>,
}

/// One `[[signin.oidc]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// Name in URLs and stored identities (`a-z0-9-_`).
    pub name: String,
    /// Button label (default: the name).
    pub display_name: Option<String>,
    /// Issuer (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Scopes besides `openid` (default `email`, `profile`).
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OidcSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSection")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// `[signin.github]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSection {
    /// The OAuth app's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// Authorization endpoint (default GitHub's).
    pub authorize_url: Option<String>,
    /// Token endpoint (default GitHub's).
    pub token_url: Option<String>,
    /// REST API root (default `https://api.github.com`).
    pub api_url: Option<String>,
    /// Scopes (default `read:user`, `user:email`).
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for GithubSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSection")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// The `[network]` table. Every key is optional:
/// ```toml
/// [network]
/// default = "egress"            # or "none": the policy of a sandbox created without one
/// subnet = "10.89.0.0/16"       # sandbox addresses; the first one is the bridge's
/// bridge = "hangar0"
/// dns = ["1.1.1.1"]             # default: the host's nameservers (resolv.conf)
/// deny = ["169.254.0.0/16"]     # default: link-local (metadata), 0/8, multicast, 240/4
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Policy of sandboxes created without one (default `egress`).
    pub default: Option<NetworkPolicy>,
    /// Sandbox subnet (default `10.89.0.0/16`).
    pub subnet: Option<Ipv4Net>,
    /// Bridge name (default `hangar0`).
    pub bridge: Option<String>,
    /// Nameservers for sandboxes (default: the host's non-loopback ones from
    /// `/etc/resolv.conf`, else `/run/systemd/resolve/resolv.conf`).
    pub dns: Option<Vec<Ipv4Addr>>,
    /// Destinations sandboxes may never reach (replaces the default list).
    pub deny: Option<Vec<Ipv4Net>>,
}

impl NetworkSection {
    /// The default policy and the node's network settings, defaults filled in (`host_dns`
    /// is called only when no `dns` is given). Invalid settings are an error naming them.
    pub fn resolve(
        &self,
        host_dns: impl FnOnce() -> Vec<Ipv4Addr>,
    ) -> anyhow::Result<(NetworkPolicy, NetworkConfig)> {
        let mut config = NetworkConfig::with_dns(match &self.dns {
            Some(dns) => dns.clone(),
            None => host_dns(),
        });
        if let Some(subnet) = self.subnet {
            config.subnet = subnet;
        }
        if let Some(bridge) = &self.bridge {
            config.bridge = bridge.clone();
        }
        if let Some(deny) = &self.deny {
            config.deny = deny.clone();
        }
        config.validate().context("[network] in the config file")?;
        if config.dns.is_empty() {
            tracing::warn!(
                "no usable nameserver on this host: sandboxes get none (set [network] dns)"
            );
        }
        Ok((self.default.unwrap_or(NetworkPolicy::Egress), config))
    }
}

impl FileConfig {
    /// The connect service settings this file asks for, over the defaults.
    pub fn connect(&self) -> hangar_server::connect::ConnectConfig {
        let mut config = hangar_server::connect::ConnectConfig::default();
        if let Some(image) = &self.browser_image {
            config.browser_image = image.clone();
        }
        if let Some(session) = &self.browser_session {
            config.browser_session = session.clone();
        }
        if let Some(min) = self.sign_in_timeout_min {
            config.sign_in_timeout = std::time::Duration::from_secs(min.max(1) * 60);
        }
        config
    }
}

impl FileConfig {
    /// The health settings (`[metrics]`, `[nodes]`) over the defaults. Zero values are
    /// raised to 1.
    pub fn metrics(&self) -> hangar_server::metrics::MetricsConfig {
        use std::time::Duration;
        let mut config = hangar_server::metrics::MetricsConfig::default();
        let m = &self.metrics;
        if let Some(s) = m.interval_s {
            config.interval = Duration::from_secs(s.max(1));
        }
        if let Some(s) = m.disk_refresh_s {
            config.disk_refresh = Duration::from_secs(s.max(1));
        }
        if let Some(h) = m.keep_raw_h {
            config.retention.raw = Duration::from_secs(h.max(1) * 3600);
        }
        if let Some(h) = m.keep_minute_h {
            config.retention.minute = Duration::from_secs(h.max(1) * 3600);
        }
        if let Some(d) = m.keep_ten_minutes_d {
            config.retention.ten_minutes = Duration::from_secs(d.max(1) * 86_400);
        }
        if let Some(s) = self.nodes.unreachable_after_s {
            config.unreachable_after = Duration::from_secs(s.max(1));
        }
        config
    }

    /// Who may read `/metrics` (`[metrics] public`).
    pub fn telemetry(&self) -> hangar_server::telemetry::MetricsConfig {
        hangar_server::telemetry::MetricsConfig {
            public: self.metrics.public,
        }
    }
}

impl FileConfig {
    /// The sign-in settings, over the defaults; `public_url` is the flag's or the file's.
    /// Invalid settings are an error naming them.
    pub fn signin(
        &self,
        public_url: Option<&str>,
    ) -> anyhow::Result<hangar_server::signin::SigninConfig> {
        use hangar_server::signin::{GithubConfig, OidcProviderConfig, Secret, SigninConfig};
        let mut config = SigninConfig::default();
        if let Some(url) = public_url.or(self.public_url.as_deref()) {
            config.public_url = SigninConfig::parse_public_url(url)?;
        }
        let s = &self.signin;
        if let Some(h) = s.session_lifetime_h {
            config.session_lifetime = std::time::Duration::from_secs(h.max(1) * 3600);
        }
        if let Some(burst) = s.rate_limit_burst {
            config.rate_limit.burst = burst;
        }
        if let Some(period) = s.rate_limit_period_s {
            config.rate_limit.replenish_every = std::time::Duration::from_secs(period);
        }
        config.oidc = s
            .oidc
            .iter()
            .map(|o| OidcProviderConfig {
                name: o.name.clone(),
                display_name: o.display_name.clone(),
                issuer: o.issuer.clone(),
                client_id: o.client_id.clone(),
                client_secret: Secret::new(o.client_secret.clone()),
                scopes: o.scopes.clone(),
            })
            .collect();
        config.github = s.github.as_ref().map(|g| {
            let mut github =
                GithubConfig::new(g.client_id.clone(), Secret::new(g.client_secret.clone()));
            if let Some(u) = &g.authorize_url {
                github.authorize_url = u.clone();
            }
            if let Some(u) = &g.token_url {
                github.token_url = u.clone();
            }
            if let Some(u) = &g.api_url {
                github.api_url = u.clone();
            }
            if let Some(scopes) = &g.scopes {
                github.scopes = scopes.clone();
            }
            github
        });
        config.validate()?;
        Ok(config)
    }

    /// Reads `path` if given; an absent flag means no file.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The default data directory: `/var/lib/hangar` for root, else `$XDG_DATA_HOME/hangar`
/// (or `~/.local/share/hangar`).
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/hangar");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("hangar");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
    PathBuf::from(home).join(".local/share/hangar")
}

/// The static guest agent: the given path, else `hangar-guest` beside this executable.
pub fn guest_agent_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the hangar executable")?;
    let beside = exe.with_file_name("hangar-guest");
    if beside.is_file() {
        return Ok(beside);
    }
    anyhow::bail!(
        "no guest agent: put the static hangar-guest beside {} or pass --guest-agent \
         (cargo xtask build makes it)",
        exe.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_section_defaults_and_overrides() {
        let empty: FileConfig = toml::from_str("").expect("empty");
        let (policy, net) = empty
            .network
            .resolve(|| vec![Ipv4Addr::new(192, 0, 2, 53)])
            .expect("defaults");
        assert_eq!(policy, NetworkPolicy::Egress);
        assert_eq!(net.bridge, "hangar0");
        assert_eq!(net.subnet.to_string(), "10.89.0.0/16");
        assert_eq!(net.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
        assert!(net.deny.contains(&"169.254.0.0/16".parse().expect("cidr")));

        let file: FileConfig = toml::from_str(
            "[network]\ndefault = \"none\"\nsubnet = \"172.30.0.0/24\"\nbridge = \"hg1\"\n\
             dns = [\"1.1.1.1\"]\ndeny = [\"10.0.0.0/8\"]\n",
        )
        .expect("parse");
        let (policy, net) = file
            .network
            .resolve(|| panic!("host DNS must not be read when dns is given"))
            .expect("resolve");
        assert_eq!(policy, NetworkPolicy::None);
        assert_eq!(net.bridge, "hg1");
        assert_eq!(net.gateway(), Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(net.dns, vec![Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!(
            net.deny,
            vec!["10.0.0.0/8".parse::<Ipv4Net>().expect("cidr")]
        );

        assert!(toml::from_str::<FileConfig>("[network]\ndefault = \"open\"\n").is_err());
        assert!(toml::from_str::<FileConfig>("[network]\nsubnet = \"nope\"\n").is_err());
        let bad: FileConfig =
            toml::from_str("[network]\nbridge = \"much-too-long-name\"\n").expect("parse");
        assert!(bad.network.resolve(Vec::new).is_err());
    }

    #[test]
    fn metrics_and_nodes_sections() {
        let empty: FileConfig = toml::from_str("").expect("empty");
        let d = empty.metrics();
        assert_eq!(d.interval.as_secs(), 10);
        assert_eq!(d.unreachable_after.as_secs(), 30);
        assert_eq!(d.retention.ten_minutes.as_secs(), 30 * 86_400);
        let file: FileConfig = toml::from_str(
            "[metrics]\ninterval_s = 2\nkeep_raw_h = 3\n[nodes]\nunreachable_after_s = 5\n",
        )
        .expect("parse");
        let c = file.metrics();
        assert_eq!(c.interval.as_secs(), 2);
        assert_eq!(c.retention.raw.as_secs(), 3 * 3600);
        assert_eq!(c.unreachable_after.as_secs(), 5);
        assert!(toml::from_str::<FileConfig>("[metrics]\ninterval = 2\n").is_err());
    }

    #[test]
    fn signin_section_fills_the_settings() {
        let empty: FileConfig = toml::from_str("").expect("empty");
        let config = empty.signin(None).expect("defaults");
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(config.oidc.is_empty() && config.github.is_none());

        let file: FileConfig = toml::from_str(
            "public_url = \"https://hangar.example.com\"\n\
             [signin]\nsession_lifetime_h = 24\nrate_limit_burst = 5\n\
             [[signin.oidc]]\nname = \"corp\"\nissuer = \"https://sso.example.com\"\n\
             client_id = \"h\"\nclient_secret = \"oidc-secret\"\n\
             [signin.github]\nclient_id = \"gh\"\nclient_secret = \"gh-secret\"\n\
             api_url = \"http://127.0.0.1:9/api\"\n",
        )
        .expect("parse");
        assert!(!format!("{file:?}").contains("secret\""));
        let config = file.signin(None).expect("resolve");
        assert!(config.secure_cookies());
        assert_eq!(config.session_lifetime.as_secs(), 24 * 3600);
        assert_eq!(config.rate_limit.burst, 5);
        assert_eq!(config.oidc[0].client_secret.expose_secret(), "oidc-secret");
        let github = config.github.as_ref().expect("github");
        assert_eq!(github.api_url, "http://127.0.0.1:9/api");
        assert_eq!(
            github.token_url,
            "https://github.com/login/oauth/access_token"
        );
        let text = format!("{config:?}");
        assert!(
            !text.contains("oidc-secret") && !text.contains("gh-secret"),
            "{text}"
        );
        // The flag wins over the file.
        let flagged = file.signin(Some("http://10.0.0.1:8080")).expect("flag");
        assert!(!flagged.secure_cookies());

        assert!(empty.signin(Some("https://h.example/path")).is_err());
        assert!(toml::from_str::<FileConfig>("[signin]\nnope = 1\n").is_err());
        let bad: FileConfig = toml::from_str(
            "[[signin.oidc]]\nname = \"github\"\nissuer = \"https://x\"\n\
                            client_id = \"a\"\nclient_secret = \"b\"\n",
        )
        .expect("parse");
        assert!(bad.signin(None).is_err());
    }
}
