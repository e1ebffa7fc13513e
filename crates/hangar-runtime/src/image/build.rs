//! Building an image from a [`Recipe`]: base, steps (each cached under its key), the
//! `/etc/hangar/image.toml` step, import.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha512};
use tokio::process::Command;

use super::exec::run_streaming;
use super::fsutil::{
    copy_tree, create_dirs, dedup_against, resolve_in_rootfs, tmp_name, write_atomic, Workdir,
};
use super::recipe::DEFAULT_STEP_TIMEOUT;
use super::{
    debian_mirror, Base, Image, ImageError, ImageStore, ImageUser, NpmCiStep, NpmUnpackStep,
    Recipe, Step, StepKind, UserStep,
};

/// Receives a build's progress. Calls come from the building task, in order: for each step
/// `step_started`, any number of `step_message` (its programs' output, one line each), then
/// `step_finished`. Steps are numbered from 0 to `total - 1`: the base, the recipe's steps,
/// writing `/etc/hangar/image.toml`, and the import. A step found in the cache is started with
/// `cached = true` and finished at once.
pub trait BuildProgress: Send + Sync {
    /// Step `index` of `total` begins.
    fn step_started(&self, index: usize, total: usize, name: &str, cached: bool);
    /// One line of output of the current step (no trailing newline).
    fn step_message(&self, line: &str);
    /// Step `index` ended successfully after `elapsed`.
    fn step_finished(&self, index: usize, elapsed: Duration);
}

/// A [`BuildProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl BuildProgress for NoProgress {
    fn step_started(&self, _: usize, _: usize, _: &str, _: bool) {}
    fn step_message(&self, _: &str) {}
    fn step_finished(&self, _: usize, _: Duration) {}
}

/// Where the host's CA bundle usually is; build-time node trusts it (NODE_EXTRA_CA_CERTS) so
/// that npm works behind a TLS-inspecting proxy the host trusts.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where busybox-static puts its binary.
pub(crate) const HOST_BUSYBOX: &str = "/bin/busybox";
const INFO_PATH: &str = "/etc/hangar/image.toml";

/// One entry of a build plan.
enum Work<'a> {
    Base(&'a Base),
    Step(&'a Step),
    Info,
}

impl Work<'_> {
    /// Whether the tree after this is kept in the cache. Steps that only write a few files
    /// (links, users, image.toml) are cheaper to redo than a copy of the whole tree.
    fn snapshots(&self) -> bool {
        match self {
            Work::Base(_) => true,
            Work::Step(step) => !matches!(step.kind, StepKind::Symlinks(_) | StepKind::User(_)),
            Work::Info => false,
        }
    }
}

struct Planned<'a> {
    name: String,
    key: String,
    work: Work<'a>,
}

fn ns(h: &mut Sha256, bytes: &[u8]) {
    h.update(bytes.len().to_string().as_bytes());
    h.update(b":");
    h.update(bytes);
    h.update(b",");
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| ImageError::Task { source })?
}

impl ImageStore {
    /// Builds `recipe` and points `refs/<recipe.name>` at the result. The tree after the base
    /// and after each step that runs a program (`run`, `npm_unpack`, `npm_ci`) is kept in the
    /// cache under the step's key (see [`Recipe`]); a build resumes from the last cached tree
    /// whose key still matches (redoing the cheap `symlinks` / `user` steps after it), and a
    /// build whose every input is unchanged only re-points the ref (re-importing if the blob was
    /// removed). Cache snapshots and the imported blob share unchanged files as hard links. Programs run with deadlines (15 minutes unless the step says otherwise) and
    /// their output goes to `progress`. Must run as root (debootstrap, ownership).
    ///
    /// Errors: [`ImageError::CommandFailed`] / [`ImageError::Timeout`] with the program's last
    /// output, [`ImageError::Integrity`], [`ImageError::Io`], and others by variant name.
    pub async fn build(
        &self,
        recipe: &Recipe,
        progress: &dyn BuildProgress,
    ) -> Result<Image, ImageError> {
        let (plan, base_source) = self.plan(recipe)?;
        let total = plan.len() + 1;
        let final_key = plan.last().map(|p| p.key.clone()).unwrap_or_default();
        let report_cached = |upto: usize| {
            for (i, p) in plan.iter().enumerate().take(upto) {
                progress.step_started(i, total, &p.name, true);
                progress.step_finished(i, Duration::ZERO);
            }
        };

        if let Some(digest) = self.cached_digest(&final_key)? {
            if self.has_blob(&digest) {
                report_cached(plan.len());
                progress.step_started(total - 1, total, "import", true);
                self.set_ref(&recipe.name, &digest)?;
                progress.step_finished(total - 1, Duration::ZERO);
                tracing::info!(name = %recipe.name, %digest, "image build fully cached");
                return self.resolve(&recipe.name);
            }
        }

        let work = self.workdir()?;
        let rootfs = work.path().join("rootfs");
        // The last snapshot taken or resumed from: files of the next one are linked to it.
        let mut previous: Option<PathBuf> = base_source;
        let resume = (0..plan.len().saturating_sub(1))
            .rev()
            .find(|&i| self.snapshot_dir(&plan[i].key).is_dir());
        let start = match resume {
            Some(r) => {
                report_cached(r + 1);
                let snap = self.snapshot_dir(&plan[r].key);
                let (from, to) = (snap.clone(), rootfs.clone());
                blocking(move || copy_tree(&from, &to)).await?;
                previous = Some(snap);
                r + 1
            }
            None => 0,
        };

        for (i, p) in plan.iter().enumerate().skip(start) {
            progress.step_started(i, total, &p.name, false);
            let began = Instant::now();
            match p.work {
                Work::Base(base) => self.run_base(base, &rootfs, progress).await?,
                Work::Step(step) => run_step(recipe, step, &rootfs, &work, progress).await?,
                Work::Info => write_info(recipe, &rootfs)?,
            }
            if p.work.snapshots() {
                previous = Some(
                    self.snapshot(&work, &rootfs, &p.key, previous.take())
                        .await?,
                );
            }
            progress.step_finished(i, began.elapsed());
        }

        progress.step_started(total - 1, total, "import", false);
        let began = Instant::now();
        let (store, name, config) = (self.clone(), recipe.name.clone(), recipe.config.clone());
        let image = blocking(move || {
            let image = store.import_staged(&name, &work, &rootfs, config, previous.as_deref())?;
            drop(work);
            Ok(image)
        })
        .await?;
        self.record_digest(&final_key, &image.digest)?;
        progress.step_finished(total - 1, began.elapsed());
        Ok(image)
    }

    /// The plan with each entry's cache key, and the tree the base copies (for linking).
    fn plan<'a>(
        &self,
        recipe: &'a Recipe,
    ) -> Result<(Vec<Planned<'a>>, Option<PathBuf>), ImageError> {
        let mut plan = Vec::with_capacity(recipe.steps.len() + 2);
        let mut h = Sha256::new();
        ns(&mut h, b"hangar-base-v1");
        let mut base_json = recipe.base.clone();
        if let Base::Debootstrap(d) = &mut base_json {
            d.mirror = None;
        }
        ns(&mut h, &json(&base_json));
        let (extra, source, name) = match &recipe.base {
            Base::Empty => (String::new(), None, "base: empty".to_owned()),
            Base::Busybox => {
                let mut buf = vec![0u8; 1 << 20];
                let hash = super::digest::hash_file(Path::new(HOST_BUSYBOX), &mut buf)?;
                (hash, None, "base: busybox".to_owned())
            }
            Base::Debootstrap(d) => (
                String::new(),
                None,
                format!("base: debootstrap {} {}", d.variant, d.suite),
            ),
            Base::Image(r) => {
                let image = self.resolve(r)?;
                let name = format!("base: image {} ({})", r, image.digest);
                (image.digest, Some(image.rootfs), name)
            }
        };
        ns(&mut h, extra.as_bytes());
        let mut key = hex::encode(h.finalize());
        plan.push(Planned {
            name,
            key: key.clone(),
            work: Work::Base(&recipe.base),
        });

        for step in &recipe.steps {
            let mut h = Sha256::new();
            ns(&mut h, b"hangar-step-v1");
            ns(&mut h, key.as_bytes());
            ns(&mut h, &json(&step.kind));
            for (rel, path) in recipe.step_input_files(step) {
                let bytes = std::fs::read(&path).map_err(ImageError::io("read", &path))?;
                ns(&mut h, rel.as_bytes());
                ns(&mut h, &bytes);
            }
            key = hex::encode(h.finalize());
            plan.push(Planned {
                name: step.name.clone(),
                key: key.clone(),
                work: Work::Step(step),
            });
        }

        let mut h = Sha256::new();
        ns(&mut h, b"hangar-info-v1");
        ns(&mut h, key.as_bytes());
        ns(&mut h, &json(&recipe.config));
        ns(&mut h, recipe.name.as_bytes());
        plan.push(Planned {
            name: format!("write {INFO_PATH}"),
            key: hex::encode(h.finalize()),
            work: Work::Info,
        });
        Ok((plan, source))
    }

    fn snapshot_dir(&self, key: &str) -> PathBuf {
        self.cache_dir().join(key).join("rootfs")
    }

    /// The digest a finished build recorded for its final key.
    fn cached_digest(&self, key: &str) -> Result<Option<String>, ImageError> {
        let path = self.cache_dir().join(key).join("digest");
        match std::fs::read_to_string(&path) {
            Ok(d) => Ok(Some(d.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("read", &path)(e)),
        }
    }

    fn record_digest(&self, key: &str, digest: &str) -> Result<(), ImageError> {
        let dir = self.cache_dir().join(key);
        create_dirs(&dir, 0o755)?;
        write_atomic(&dir.join("digest"), format!("{digest}\n").as_bytes(), 0o644)
    }

    /// Copies the work tree to `cache/<key>/rootfs` (linking files unchanged since `previous`)
    /// and returns that path.
    async fn snapshot(
        &self,
        work: &Workdir,
        rootfs: &Path,
        key: &str,
        previous: Option<PathBuf>,
    ) -> Result<PathBuf, ImageError> {
        let pending = work.path().join(tmp_name("snapshot"));
        let entry = self.cache_dir().join(key);
        let (from, snap_root) = (rootfs.to_owned(), pending.clone());
        blocking(move || {
            create_dirs(&snap_root, 0o755)?;
            let snap = snap_root.join("rootfs");
            copy_tree(&from, &snap)?;
            if let Some(prev) = previous {
                let saved = dedup_against(&snap, &prev)?;
                tracing::debug!(saved, "snapshot linked to the previous one");
            }
            match std::fs::rename(&snap_root, &entry) {
                Ok(()) => Ok(()),
                Err(_) if entry.join("rootfs").is_dir() => Ok(()), // a concurrent build made it
                Err(e) => Err(ImageError::io("rename", &snap_root)(e)),
            }
        })
        .await?;
        Ok(self.snapshot_dir(key))
    }

    async fn run_base(
        &self,
        base: &Base,
        rootfs: &Path,
        progress: &dyn BuildProgress,
    ) -> Result<(), ImageError> {
        match base {
            Base::Empty => create_dirs(rootfs, 0o755),
            Base::Busybox => {
                let to = rootfs.to_owned();
                blocking(move || super::testing::busybox_rootfs(&to)).await
            }
            Base::Image(r) => {
                let from = self.resolve(r)?.rootfs;
                let to = rootfs.to_owned();
                blocking(move || copy_tree(&from, &to)).await
            }
            Base::Debootstrap(d) => {
                create_dirs(rootfs, 0o755)?;
                let mirror = debian_mirror(&d.suite, d.mirror.as_deref()).ok_or_else(|| {
                    ImageError::Recipe {
                        path: PathBuf::from("recipe.toml"),
                        reason: format!(
                            "no Debian mirror for {}: the host's apt sources name none; \
                             set {} or the recipe's base.debootstrap.mirror",
                            d.suite,
                            crate::image::MIRROR_ENV
                        ),
                    }
                })?;
                progress.step_message(&format!("mirror {mirror}"));
                let mut cmd = Command::new("debootstrap");
                cmd.arg(format!("--variant={}", d.variant));
                if !d.include.is_empty() {
                    cmd.arg(format!("--include={}", d.include.join(",")));
                }
                cmd.arg(&d.suite).arg(rootfs).arg(&mirror);
                cmd.env("PATH", host_path_with_sbin())
                    .env("DEBIAN_FRONTEND", "noninteractive");
                run_streaming("base", "debootstrap", cmd, DEFAULT_STEP_TIMEOUT, progress).await?;
                // Package downloads are not part of an image.
                let archives = rootfs.join("var/cache/apt/archives");
                if let Ok(entries) = std::fs::read_dir(&archives) {
                    for e in entries.filter_map(Result::ok) {
                        if e.path().extension().is_some_and(|x| x == "deb") {
                            std::fs::remove_file(e.path())
                                .map_err(ImageError::io("remove", e.path()))?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

async fn run_step(
    recipe: &Recipe,
    step: &Step,
    rootfs: &Path,
    work: &Workdir,
    progress: &dyn BuildProgress,
) -> Result<(), ImageError> {
    match &step.kind {
        StepKind::Run { command, .. } => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(command)
                .current_dir(&recipe.dir)
                .env("ROOTFS", rootfs)
                .env("RECIPE_DIR", &recipe.dir)
                .env("PATH", host_path_with_sbin());
            run_streaming(&step.name, "sh", cmd, step.timeout, progress).await
        }
        StepKind::NpmUnpack(u) => npm_unpack(step, u, rootfs, work, progress).await,
        StepKind::NpmCi(ci) => npm_ci(recipe, step, ci, rootfs, progress).await,
        StepKind::Symlinks(links) => {
            for (link, target) in links {
                make_symlink(rootfs, link, target)?;
            }
            Ok(())
        }
        StepKind::User(u) => {
            let (rootfs, u) = (rootfs.to_owned(), u.clone());
            blocking(move || add_user(&rootfs, &u)).await
        }
    }
}

async fn npm_unpack(
    step: &Step,
    u: &NpmUnpackStep,
    rootfs: &Path,
    work: &Workdir,
    progress: &dyn BuildProgress,
) -> Result<(), ImageError> {
    let spec = format!("{}@{}", u.package, u.version);
    let stage = work.path().join(tmp_name("npm-pack"));
    create_dirs(&stage, 0o755)?;
    let mut cmd = Command::new("npm");
    cmd.arg("pack")
        .arg(&spec)
        .current_dir(&stage)
        .env("npm_config_update_notifier", "false");
    run_streaming(&step.name, "npm pack", cmd, step.timeout, progress).await?;
    let tarball = std::fs::read_dir(&stage)
        .map_err(ImageError::io("read dir", &stage))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| ImageError::CommandFailed {
            step: step.name.clone(),
            program: "npm pack".into(),
            status: "no tarball written".into(),
            last_lines: Vec::new(),
        })?;
    if let Some(expected) = &u.integrity {
        let path = tarball.clone();
        let actual = blocking(move || {
            let bytes = std::fs::read(&path).map_err(ImageError::io("read", &path))?;
            let digest = Sha512::digest(&bytes);
            Ok(format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ))
        })
        .await?;
        if &actual != expected {
            return Err(ImageError::Integrity {
                step: step.name.clone(),
                package: spec,
                expected: expected.clone(),
                actual,
            });
        }
    }
    let unpacked = stage.join("x");
    create_dirs(&unpacked, 0o755)?;
    let mut tar = Command::new("tar");
    tar.arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .arg("--no-same-owner");
    run_streaming(&step.name, "tar", tar, step.timeout, progress).await?;
    let package = unpacked.join("package");
    let dest = resolve_in_rootfs(rootfs, &u.dest, true)?;
    create_dirs(&dest, 0o755)?;
    let entries: Vec<String> = match &u.paths {
        Some(paths) => paths.clone(),
        None => std::fs::read_dir(&package)
            .map_err(ImageError::io("read dir", &package))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
    };
    for entry in entries {
        let from = package.join(&entry);
        if std::fs::symlink_metadata(&from).is_err() {
            return Err(ImageError::Recipe {
                path: PathBuf::from(&spec),
                reason: format!("the package has no {entry:?}"),
            });
        }
        progress.step_message(&format!("{entry} -> {}/{entry}", u.dest));
        let to = dest.join(&entry);
        blocking(move || copy_tree(&from, &to)).await?;
    }
    Ok(())
}

async fn npm_ci(
    recipe: &Recipe,
    step: &Step,
    ci: &NpmCiStep,
    rootfs: &Path,
    progress: &dyn BuildProgress,
) -> Result<(), ImageError> {
    let prefix = resolve_in_rootfs(rootfs, &ci.prefix, true)?;
    create_dirs(&prefix, 0o755)?;
    for f in ["package.json", "package-lock.json"] {
        let from = recipe.dir.join(&ci.package_dir).join(f);
        let to = prefix.join(f);
        std::fs::copy(&from, &to).map_err(ImageError::io("copy", &from))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644))
            .map_err(ImageError::io("chmod", &to))?;
    }
    let node = resolve_in_rootfs(rootfs, &ci.node, true)?;
    let npm_cli = resolve_in_rootfs(rootfs, &ci.npm_cli, true)?;
    let node_bin_dir = node.parent().unwrap_or(rootfs).to_owned();
    // node-gyp finds the image's headers under <node's prefix>/include/node.
    let node_prefix = node_bin_dir.parent().unwrap_or(rootfs).to_owned();
    let mut path = std::ffi::OsString::from(&node_bin_dir);
    path.push(":");
    path.push(host_path_with_sbin());
    let mut cmd = Command::new(&node);
    cmd.arg(&npm_cli)
        .arg("ci")
        .arg("--prefix")
        .arg(&prefix)
        .args([
            "--omit=dev",
            "--no-audit",
            "--no-fund",
            "--foreground-scripts",
            "--loglevel=http",
        ])
        .current_dir(&prefix)
        .env("PATH", path)
        .env("npm_config_nodedir", &node_prefix)
        .env("npm_config_update_notifier", "false");
    if std::env::var_os("NODE_EXTRA_CA_CERTS").is_none() && Path::new(HOST_CA_BUNDLE).is_file() {
        cmd.env("NODE_EXTRA_CA_CERTS", HOST_CA_BUNDLE);
    }
    run_streaming(&step.name, "npm ci", cmd, step.timeout, progress).await
}

/// Creates (or replaces) the symbolic link `link` -> `target` in the image; the target must
/// exist there.
fn make_symlink(rootfs: &Path, link: &str, target: &str) -> Result<(), ImageError> {
    let host_link = resolve_in_rootfs(rootfs, link, false)?;
    let target_in_image = if target.starts_with('/') {
        target.to_owned()
    } else {
        let parent = Path::new(link).parent().unwrap_or(Path::new("/"));
        format!("{}/{target}", parent.display())
    };
    let resolved = resolve_in_rootfs(rootfs, &target_in_image, true)?;
    if std::fs::symlink_metadata(&resolved).is_err() {
        return Err(ImageError::Recipe {
            path: PathBuf::from(link),
            reason: format!("symlink target {target} does not exist in the image"),
        });
    }
    if let Some(parent) = host_link.parent() {
        create_dirs(parent, 0o755)?;
    }
    match std::fs::symlink_metadata(&host_link) {
        Ok(m) if m.is_dir() => {
            return Err(ImageError::Recipe {
                path: PathBuf::from(link),
                reason: "is a directory".into(),
            })
        }
        Ok(_) => std::fs::remove_file(&host_link).map_err(ImageError::io("remove", &host_link))?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, &host_link).map_err(ImageError::io("symlink", &host_link))
}

/// Adds (or replaces) the user's lines in passwd, group, shadow and gshadow, and makes its home
/// from `/etc/skel`, owned by the user.
fn add_user(rootfs: &Path, u: &UserStep) -> Result<(), ImageError> {
    let edit = |file: &str, line: String, required: bool| -> Result<(), ImageError> {
        let path = resolve_in_rootfs(rootfs, file, true)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(()),
            Err(e) => return Err(ImageError::io("read", &path)(e)),
        };
        let prefix = format!("{}:", u.name);
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(&prefix)).collect();
        lines.push(&line);
        let mut out = lines.join("\n");
        out.push('\n');
        // In place: the file keeps its owner and mode (shadow is root:shadow 0640).
        std::fs::write(&path, out).map_err(ImageError::io("write", &path))
    };
    let passwd = resolve_in_rootfs(rootfs, "/etc/passwd", true)?;
    if let Ok(text) = std::fs::read_to_string(&passwd) {
        let taken = text.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.len() > 2 && f[0] != u.name && f[2] == u.uid.to_string()
        });
        if taken {
            return Err(ImageError::Recipe {
                path: passwd,
                reason: format!("uid {} belongs to another user", u.uid),
            });
        }
    }
    edit(
        "/etc/passwd",
        format!(
            "{}:x:{}:{}:{}:{}:{}",
            u.name, u.uid, u.gid, u.name, u.home, u.shell
        ),
        true,
    )?;
    edit("/etc/group", format!("{}:x:{}:", u.name, u.gid), true)?;
    edit("/etc/shadow", format!("{}:!::0:99999:7:::", u.name), false)?;
    edit("/etc/gshadow", format!("{}:!::", u.name), false)?;

    let home = resolve_in_rootfs(rootfs, &u.home, true)?;
    if let Some(parent) = home.parent() {
        create_dirs(parent, 0o755)?;
    }
    if !home.exists() {
        let skel = resolve_in_rootfs(rootfs, "/etc/skel", true)?;
        if skel.is_dir() {
            copy_tree(&skel, &home)?;
        } else {
            create_dirs(&home, 0o750)?;
        }
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o750))
        .map_err(ImageError::io("chmod", &home))?;
    for entry in walkdir::WalkDir::new(&home).follow_links(false) {
        let entry = entry.map_err(|e| super::digest::walk_error(&home, e))?;
        std::os::unix::fs::lchown(entry.path(), Some(u.uid), Some(u.gid))
            .map_err(ImageError::io("chown", entry.path()))?;
    }
    Ok(())
}

/// `/etc/hangar/image.toml`: the image describes itself (its digest cannot be inside it).
fn write_info(recipe: &Recipe, rootfs: &Path) -> Result<(), ImageError> {
    #[derive(serde::Serialize)]
    struct Info<'a> {
        name: &'a str,
        user: &'a ImageUser,
        labels: &'a std::collections::BTreeMap<String, String>,
    }
    let info = Info {
        name: &recipe.name,
        user: &recipe.config.user,
        labels: &recipe.config.labels,
    };
    let body = toml::to_string(&info).map_err(|e| ImageError::Recipe {
        path: recipe.dir.clone(),
        reason: e.to_string(),
    })?;
    let text = format!("# Written by hangar's image builder: what this image is.\n{body}");
    let dir = resolve_in_rootfs(rootfs, "/etc/hangar", true)?;
    create_dirs(&dir, 0o755)?;
    let path = dir.join("image.toml");
    std::fs::write(&path, text).map_err(ImageError::io("write", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(ImageError::io("chmod", &path))
}

/// The host's PATH with the sbin directories debootstrap and chroot live in.
fn host_path_with_sbin() -> std::ffi::OsString {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !std::env::split_paths(&path).any(|p| p == Path::new(dir)) {
            if !path.is_empty() {
                path.push(":");
            }
            path.push(dir);
        }
    }
    path
}
