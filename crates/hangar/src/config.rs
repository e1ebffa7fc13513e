//! Settings: command-line flags > `HANGAR_*` environment (clap reads both) > TOML config file >
//! defaults. The file's keys are the long flag names with `_` (`listen`, `data_dir`,
//! `readiness_timeout_ms`, `reconcile_interval_s`, `guest_agent`, `store_url`).

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
