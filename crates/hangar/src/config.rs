//! Settings: command-line flags > `HANGAR_*` environment (clap reads both) > TOML config file >
//! defaults. The file's keys are the long flag names with `_` (`listen`, `data_dir`,
//! `readiness_timeout_ms`, `reconcile_interval_s`, `guest_agent`, `store_url`, `images_dir`),
//! plus the connect settings (`providers_dir`, `browser_image`, `browser_session`,
//! `sign_in_timeout_min`), and a `[network]` table (`default`, `subnet`, `bridge`, `dns`,
//! `deny`; see [`NetworkSection`]).

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
    /// The public base URL of hangar: the OAuth issuer (default `http://LISTEN`).
    pub public_url: Option<String>,
    /// Sandbox networking.
    #[serde(default)]
    pub network: NetworkSection,
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
}
