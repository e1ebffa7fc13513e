//! Settings: command-line flags > `HANGAR_*` environment (clap reads both) > TOML config file >
//! defaults. The file's keys are the long flag names with `_` (`listen`, `data_dir`,
//! `readiness_timeout_ms`, `reconcile_interval_s`, `guest_agent`, `store_url`, `images_dir`),
//! plus the connect settings (`providers_dir`, `browser_image`, `browser_session`,
//! `sign_in_timeout_min`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
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
