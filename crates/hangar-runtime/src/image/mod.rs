//! The image store: golden root filesystems, content-addressed and immutable, and the builder
//! that makes them from recipes.
//!
//! # Layout under the store root (`DATA_DIR/images`)
//!
//! ```text
//! blobs/sha256/<hex>/rootfs/      the image's tree; an overlayfs lower dir, never modified
//! blobs/sha256/<hex>/image.json   name (first import), digest, config, size, creation time
//! refs/<name>                     "sha256:<hex>\n"; replaced atomically (rename) on rebuild
//! cache/<step-key>/rootfs/        the tree after a step that runs a program (keys: [`Recipe`])
//! cache/<step-key>/digest         the digest a finished build imported from that step
//! tmp/<id>/                       work in progress, flock'ed by its owner; removed on open
//! ```
//!
//! Blobs appear only by `rename(2)` of a complete directory, so a blob that exists is whole. Its
//! directory is made mode 0555 and `image.json` 0444; the tree itself keeps the modes it was
//! built with (they are part of the digest). Files of a blob may be hard links shared with cache
//! snapshots: both are immutable, so sharing inodes is safe and saves a full copy of each image.
//!
//! # Digest (`sha256:<hex>`), version 1
//!
//! SHA-256 over this byte stream, where `ns(x)` is the netstring `<decimal length of x>:x,`:
//!
//! ```text
//! "hangar-image-v1\n"
//! for each entry of the tree, in walk order:
//!     ns(path) ns(kind) ns(mode) ns(uid) ns(gid) ns(detail)
//! ns("config") ns(json(config))
//! ```
//!
//! - walk order: depth-first pre-order from the tree's root, siblings sorted by file name bytes;
//!   the root itself comes first with the empty path; `path` is the path relative to the root,
//!   components joined by `/`, raw bytes;
//! - `kind`: `dir`, `file`, `symlink`, `char`, `block`, `fifo` or `socket`;
//! - `mode`: the permission bits (`st_mode & 0o7777`) as 4 octal digits, e.g. `0755`;
//! - `uid`, `gid`: decimal;
//! - `detail`: for `file` `"<size in bytes> <sha256 hex of the content>"`; for `symlink` the raw
//!   target; for `char`/`block` `"<major> <minor>"`; empty otherwise;
//! - `json(config)`: the [`ImageConfig`] serialized by `serde_json` in compact form (fields in
//!   declaration order, labels sorted by key).
//!
//! Not included: timestamps, link counts (each hard link is hashed as its own file), extended
//! attributes, and the image name — the same tree and config under two names is one blob.
//!
//! # Threading
//!
//! [`ImageStore`]'s methods other than [`ImageStore::build`] do blocking file I/O (hashing a
//! large tree takes seconds): from async code call them inside `spawn_blocking`.

mod build;
mod digest;
mod exec;
mod fsutil;
mod mirror;
mod recipe;
mod store;
pub mod testing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use build::{BuildProgress, NoProgress};
pub use mirror::{debian_mirror, MIRROR_ENV};
pub use recipe::{
    Base, DebootstrapBase, NpmCiStep, NpmUnpackStep, Recipe, Step, StepKind, UserStep,
};
pub use store::ImageStore;

/// One image in the store, as [`ImageStore::resolve`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The name it was resolved by; for a lookup by digest, the name it was first imported as.
    pub name: String,
    /// `sha256:<64 lowercase hex>`; see the module docs for what it covers.
    pub digest: String,
    /// The tree, to be used read-only (an overlayfs lower dir): `blobs/sha256/<hex>/rootfs`.
    pub rootfs: PathBuf,
    /// How a sandbox from this image is started.
    pub config: ImageConfig,
    /// When the blob was first imported, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Apparent size of the tree's regular files, each inode counted once, in bytes.
    pub size_bytes: u64,
}

/// How a sandbox from an image is started. Part of the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// The unprivileged user sandbox processes run as.
    #[serde(default)]
    pub user: ImageUser,
    /// Environment of sandbox processes, `"KEY=VALUE"` each.
    #[serde(default = "default_env")]
    pub env: Vec<String>,
    /// Argv of the sandbox's first process. `None`: the guest agent itself. When set, the sandbox
    /// runs this instead and it is expected to exec the agent found at `$HANGAR_GUEST_AGENT`
    /// (test images use it to simulate a slow or hanging boot).
    #[serde(default)]
    pub init: Option<Vec<String>>,
    /// Free-form facts about the image, e.g. `"@openai/codex" = "0.169.0"`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The unprivileged user of an image; it exists in the image's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageUser {
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// Login name.
    pub name: String,
    /// Absolute path of the home directory inside the image, owned by `uid:gid`.
    pub home: String,
}

impl Default for ImageUser {
    /// `hangar`, 1000:1000, `/home/hangar`.
    fn default() -> Self {
        Self {
            uid: 1000,
            gid: 1000,
            name: "hangar".into(),
            home: "/home/hangar".into(),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            user: ImageUser::default(),
            env: default_env(),
            init: None,
            labels: BTreeMap::new(),
        }
    }
}

fn default_env() -> Vec<String> {
    vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
}

/// Errors of the image store and builder.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image by that name or digest.
    #[error("image not found: {name}")]
    NotFound {
        /// The name or digest asked for.
        name: String,
    },
    /// A name or digest that is not well formed.
    #[error("invalid image reference {value:?}: {reason}")]
    InvalidReference {
        /// What was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`"read"`, `"rename"`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something in the store is not as the store writes it.
    #[error("corrupt store entry {path}: {reason}")]
    Corrupt {
        /// The entry.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A recipe could not be read or makes no sense.
    #[error("recipe {path}: {reason}")]
    Recipe {
        /// The recipe file (or the file it refers to).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A program could not be started.
    #[error("step {step}: cannot start {program}")]
    Spawn {
        /// The build step.
        step: String,
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A program exited unsuccessfully.
    #[error("step {step}: {program} failed ({status}); last output: {}", last_lines.join(" | "))]
    CommandFailed {
        /// The build step.
        step: String,
        /// The program.
        program: String,
        /// Its exit status, as the OS describes it.
        status: String,
        /// The last lines it printed (stdout and stderr interleaved).
        last_lines: Vec<String>,
    },
    /// A program outlived its deadline and was killed (with its whole process group).
    #[error("step {step}: {program} did not finish within {deadline:?}; last output: {}", last_lines.join(" | "))]
    Timeout {
        /// The build step.
        step: String,
        /// The program.
        program: String,
        /// The deadline it had.
        deadline: Duration,
        /// The last lines it printed.
        last_lines: Vec<String>,
    },
    /// A downloaded package does not match the integrity pinned in the recipe.
    #[error("step {step}: {package} has integrity {actual}, recipe pins {expected}")]
    Integrity {
        /// The build step.
        step: String,
        /// `name@version`.
        package: String,
        /// The pinned `sha512-<base64>`.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// A path inside an image would resolve outside its tree.
    #[error("path {path} escapes the root filesystem {rootfs}")]
    Escapes {
        /// The image path.
        path: String,
        /// The tree.
        rootfs: PathBuf,
    },
    /// A blocking task panicked or was cancelled.
    #[error("background task failed")]
    Task {
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ImageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

/// Checks an image name: 1-64 characters of `[a-z0-9._-]`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ImageError> {
    let bad = |reason| {
        Err(ImageError::InvalidReference {
            value: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("a name has 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return bad("a name has only a-z, 0-9, '.', '_' and '-'");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("a name starts with a letter or digit");
    }
    Ok(())
}

/// Parses `sha256:<64 lowercase hex>` and returns the hex part.
pub fn parse_digest(digest: &str) -> Result<&str, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or(ImageError::InvalidReference {
            value: digest.to_owned(),
            reason: "a digest starts with sha256:",
        })?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ImageError::InvalidReference {
            value: digest.to_owned(),
            reason: "a digest is sha256: and 64 lowercase hex digits",
        });
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["default", "a", "browser-1.2_x", "0abc"] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "Default",
            "-x",
            ".x",
            "a/b",
            "a b",
            &"x".repeat(65),
            "..",
            "sha256:ab",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_digest(&format!("sha256:{hex}")).ok(),
            Some(hex.as_str())
        );
        assert!(parse_digest(&hex).is_err());
        assert!(parse_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(parse_digest("sha256:abc").is_err());
    }

    #[test]
    fn config_json_is_stable() {
        let mut config = ImageConfig::default();
        config.labels.insert("b".into(), "2".into());
        config.labels.insert("a".into(), "1".into());
        let json = serde_json::to_string(&config).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"user":{"uid":1000,"gid":1000,"name":"hangar","home":"/home/hangar"},"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"init":null,"labels":{"a":"1","b":"2"}}"#
        );
    }
}
