//! File system helpers: copying, removing and deduplicating trees, confined path resolution,
//! atomic writes and flock'ed work directories.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use walkdir::WalkDir;

use super::digest::walk_error;
use super::ImageError;

/// Copies the tree `src` to `dst` with `cp -a --no-target-directory`: ownership, modes, times,
/// hard links within the tree, special files and extended attributes are kept. When `dst` is
/// an existing directory, `src`'s contents are merged into it.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let output = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg("--no-target-directory")
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|source| ImageError::Spawn {
            step: "copy".into(),
            program: "cp".into(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ImageError::CommandFailed {
        step: "copy".into(),
        program: format!("cp -a {} {}", src.display(), dst.display()),
        status: output.status.to_string(),
        last_lines: String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(5)
            .map(str::to_owned)
            .collect(),
    })
}

/// Removes a tree, first detaching whatever is mounted at or under it (a killed `debootstrap`
/// can leave `/proc` mounted in its target). A missing path is not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<(), ImageError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("stat", path)(e)),
        Ok(m) if !m.is_dir() => {
            return std::fs::remove_file(path).map_err(ImageError::io("remove", path))
        }
        Ok(_) => {}
    }
    let mut mounts = mounts_under(path);
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in mounts {
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m.display(), error = %e, "cannot detach mount in a tree being removed");
        }
    }
    std::fs::remove_dir_all(path).map_err(ImageError::io("remove", path))
}

/// Mount points at or under `path`, from `/proc/self/mountinfo`.
fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let base = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    info.split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|field| {
            PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(
                &unescape_mountinfo(field),
            )))
        })
        .filter(|m| m.starts_with(&base))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Replaces each regular file of `new` that is identical to the file at the same path in `old`
/// (same size, mode, owner, modification time and bytes) with a hard link to the one in `old`.
/// Both trees must be immutable from now on. Returns the bytes saved.
pub(crate) fn dedup_against(new: &Path, old: &Path) -> Result<u64, ImageError> {
    let mut saved = 0u64;
    let mut a = vec![0u8; 1 << 16];
    let mut b = vec![0u8; 1 << 16];
    for entry in WalkDir::new(new).follow_links(false) {
        let entry = entry.map_err(|e| walk_error(new, e))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(new).unwrap_or(path);
        let other = old.join(rel);
        let Ok(m_old) = std::fs::symlink_metadata(&other) else {
            continue;
        };
        let m_new = entry.metadata().map_err(|e| walk_error(new, e))?;
        let same_meta = m_old.is_file()
            && m_old.len() == m_new.len()
            && m_old.mode() == m_new.mode()
            && m_old.uid() == m_new.uid()
            && m_old.gid() == m_new.gid()
            && m_old.mtime() == m_new.mtime()
            && m_old.mtime_nsec() == m_new.mtime_nsec();
        if !same_meta || (m_old.dev(), m_old.ino()) == (m_new.dev(), m_new.ino()) {
            continue;
        }
        if !same_bytes(path, &other, &mut a, &mut b)? {
            continue;
        }
        let tmp = path.with_file_name(tmp_name(".hangar-dedup"));
        if std::fs::hard_link(&other, &tmp).is_err() {
            // Too many links, another file system, ...: keep the copy.
            continue;
        }
        std::fs::rename(&tmp, path).map_err(ImageError::io("rename", path))?;
        saved += m_new.len();
    }
    Ok(saved)
}

fn same_bytes(x: &Path, y: &Path, a: &mut [u8], b: &mut [u8]) -> Result<bool, ImageError> {
    let mut fx = File::open(x).map_err(ImageError::io("open", x))?;
    let mut fy = File::open(y).map_err(ImageError::io("open", y))?;
    loop {
        let n = read_full(&mut fx, a).map_err(ImageError::io("read", x))?;
        let m = read_full(&mut fy, b).map_err(ImageError::io("read", y))?;
        if n != m || a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Maps the absolute image path `path` to a host path inside `rootfs`, resolving symbolic links
/// as the image would see them (absolute targets are taken relative to `rootfs`; `..` stops at
/// its root). With `follow_last` false the last component is not resolved, for paths that are
/// about to be created or replaced.
pub(crate) fn resolve_in_rootfs(
    rootfs: &Path,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, ImageError> {
    let escapes = || ImageError::Escapes {
        path: path.to_owned(),
        rootfs: rootfs.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(escapes());
    }
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = components(Path::new(path));
    pending.reverse(); // a stack: next component last
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = rootfs.to_owned();
        candidate.extend(&resolved);
        candidate.push(&part);
        let is_last = pending.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (follow_last || !is_last) => {
                links += 1;
                if links > 40 {
                    return Err(escapes());
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(ImageError::io("readlink", &candidate))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    let mut out = rootfs.to_owned();
    out.extend(&resolved);
    Ok(out)
}

/// Normal and `..` components of a path, as owned strings.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same directory and `rename(2)`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(tmp_name(".tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(ImageError::io("create", &tmp))?;
    f.write_all(bytes).map_err(ImageError::io("write", &tmp))?;
    f.sync_all().map_err(ImageError::io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ImageError::io("rename", path)(e)
    })
}

/// A name unique within this host: `<prefix>-<pid>-<nanos>-<counter>`.
#[allow(clippy::disallowed_methods)] // uniqueness, not time: any value will do
pub(crate) fn tmp_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory under the store's `tmp/`, locked (flock) for as long as the value lives and
/// removed when it is dropped. [`clean_tmp`] skips directories whose lock is held.
#[derive(Debug)]
pub(crate) struct Workdir {
    path: PathBuf,
    _lock: Flock<File>,
}

const LOCK_FILE: &str = ".lock";

impl Workdir {
    /// Creates and locks a fresh directory under `tmp_root`.
    pub(crate) fn new(tmp_root: &Path) -> Result<Self, ImageError> {
        let path = tmp_root.join(tmp_name("work"));
        std::fs::create_dir(&path).map_err(ImageError::io("mkdir", &path))?;
        let lock_path = path.join(LOCK_FILE);
        let file = File::create(&lock_path).map_err(ImageError::io("create", &lock_path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            ImageError::Io {
                op: "flock",
                path: lock_path.clone(),
                source: std::io::Error::from(errno),
            }
        })?;
        Ok(Self { path, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a work directory");
        }
    }
}

/// Removes every entry of `tmp_root` that no live [`Workdir`] holds. An entry that cannot be
/// removed is logged and left for the next time: opening the store does not fail over it.
pub(crate) fn clean_tmp(tmp_root: &Path) -> Result<(), ImageError> {
    let entries = std::fs::read_dir(tmp_root).map_err(ImageError::io("read dir", tmp_root))?;
    for entry in entries {
        let entry = entry.map_err(ImageError::io("read dir", tmp_root))?;
        let path = entry.path();
        // Held while the tree goes, so no one else takes it meanwhile.
        let _held = match File::open(path.join(LOCK_FILE)) {
            Ok(file) => match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => Some(held),
                Err(_) => continue, // a build in progress
            },
            Err(_) => None,
        };
        if let Err(e) = remove_tree(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove abandoned image work");
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents; each created one gets `mode` and root ownership is
/// left as is (the builder runs as root).
pub(crate) fn create_dirs(dir: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(ImageError::io("mkdir", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolution_stays_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        symlink("usr/bin", root.join("bin")).expect("symlink");
        symlink("/etc", root.join("usr/etc")).expect("symlink");
        symlink("../../../../..", root.join("usr/up")).expect("symlink");

        let r = |p: &str, follow: bool| resolve_in_rootfs(root, p, follow).expect("resolve");
        assert_eq!(r("/bin/sh", true), root.join("usr/bin/sh"));
        assert_eq!(r("/bin", false), root.join("bin"));
        assert_eq!(r("/bin", true), root.join("usr/bin"));
        assert_eq!(r("/usr/etc/passwd", true), root.join("etc/passwd"));
        assert_eq!(r("/usr/up/x", true), root.join("x"));
        assert_eq!(r("/../../x", true), root.join("x"));
        assert!(resolve_in_rootfs(root, "relative", true).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(br"/a\040b"), b"/a b".to_vec());
        assert_eq!(unescape_mountinfo(br"/plain"), b"/plain".to_vec());
        assert_eq!(unescape_mountinfo(br"/end\04"), br"/end\04".to_vec());
    }

    #[test]
    fn dedup_links_identical_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old");
        std::fs::create_dir(&old).expect("mkdir");
        std::fs::write(old.join("same"), b"abc").expect("write");
        std::fs::write(old.join("differs"), b"abc").expect("write");
        let new = dir.path().join("new");
        copy_tree(&old, &new).expect("copy");
        // Same size and mtime, other bytes: must not be linked.
        let mtime = std::fs::metadata(new.join("differs"))
            .expect("stat")
            .modified()
            .expect("mtime");
        std::fs::write(new.join("differs"), b"abd").expect("write");
        File::options()
            .write(true)
            .open(new.join("differs"))
            .expect("open")
            .set_modified(mtime)
            .expect("touch");
        let saved = dedup_against(&new, &old).expect("dedup");
        assert_eq!(saved, 3);
        let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
        assert_eq!(ino(&new.join("same")), ino(&old.join("same")));
        assert_ne!(ino(&new.join("differs")), ino(&old.join("differs")));
        assert_eq!(std::fs::read(new.join("differs")).expect("read"), b"abd");
    }

    #[test]
    fn workdirs_in_use_survive_cleaning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = Workdir::new(dir.path()).expect("workdir");
        let stale = dir.path().join("stale");
        std::fs::create_dir(&stale).expect("mkdir");
        clean_tmp(dir.path()).expect("clean");
        assert!(live.path().exists());
        assert!(!stale.exists());
        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
    }
}
