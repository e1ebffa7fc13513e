//! The store proper: blobs, refs, the step cache and work directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::{digest_tree, TreeSummary};
use super::fsutil::{clean_tmp, copy_tree, create_dirs, write_atomic, Workdir};
use super::{parse_digest, validate_name, Image, ImageConfig, ImageError};

/// Golden root filesystems, content-addressed and immutable; see the module docs for the
/// layout. Cheap to clone; several stores (and processes) may share a root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// `blobs/sha256/<hex>/image.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRecord {
    format: u32,
    name: String,
    digest: String,
    config: ImageConfig,
    created_at_ms: i64,
    size_bytes: u64,
}

const RECORD_FORMAT: u32 = 1;

impl ImageStore {
    /// Opens (creating as needed) the store at `root` (made absolute: recipe steps run in
    /// other directories), and removes work left in `tmp/` by builds that are no longer
    /// running. Blocking.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root: PathBuf = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let store = Self { root };
        for dir in [
            store.blobs_dir(),
            store.refs_dir(),
            store.cache_dir(),
            store.tmp_dir(),
        ] {
            create_dirs(&dir, 0o755)?;
        }
        clean_tmp(&store.tmp_dir())?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds an image by name (`default`, through `refs/<name>`) or by digest
    /// (`sha256:<hex>`). [`ImageError::NotFound`] when there is none. Blocking (small reads).
    pub fn resolve(&self, name_or_digest: &str) -> Result<Image, ImageError> {
        if name_or_digest.starts_with("sha256:") {
            let hex = parse_digest(name_or_digest)?;
            return self.load_blob(hex, None).and_then(|found| {
                found.ok_or_else(|| ImageError::NotFound {
                    name: name_or_digest.to_owned(),
                })
            });
        }
        validate_name(name_or_digest)?;
        let digest = self
            .read_ref(name_or_digest)?
            .ok_or_else(|| ImageError::NotFound {
                name: name_or_digest.to_owned(),
            })?;
        let hex = parse_digest(&digest).map_err(|_| ImageError::Corrupt {
            path: self.refs_dir().join(name_or_digest),
            reason: format!("not a digest: {digest:?}"),
        })?;
        self.load_blob(hex, Some(name_or_digest))?
            .ok_or_else(|| ImageError::Corrupt {
                path: self.refs_dir().join(name_or_digest),
                reason: format!("points to missing blob {digest}"),
            })
    }

    /// Every named image (one per ref), sorted by name. Blobs no ref points to are not listed
    /// but stay resolvable by digest. Blocking.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let dir = self.refs_dir();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(ImageError::io("read dir", &dir))?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        names.iter().map(|n| self.resolve(n)).collect()
    }

    /// Imports a copy of the assembled tree `rootfs` as `name` with `config`: the copy is
    /// hashed (see the module docs), stored as a blob unless one with that digest exists, and
    /// `refs/<name>` is pointed at it. `rootfs` itself is left as it was. Idempotent: the same
    /// tree and config give the same digest and one blob. Blocking (copies and hashes the tree).
    pub fn import_dir(
        &self,
        name: &str,
        rootfs: &Path,
        config: ImageConfig,
    ) -> Result<Image, ImageError> {
        validate_name(name)?;
        let work = self.workdir()?;
        let staged = work.path().join("rootfs");
        copy_tree(rootfs, &staged)?;
        self.import_staged(name, &work, &staged, config, None)
    }

    /// Imports `staged` (a tree inside `work`, moved, not copied) as `name`. When `dedup` names
    /// an immutable tree (a cache snapshot), identical files are hard-linked to it first.
    pub(crate) fn import_staged(
        &self,
        name: &str,
        work: &Workdir,
        staged: &Path,
        config: ImageConfig,
        dedup: Option<&Path>,
    ) -> Result<Image, ImageError> {
        validate_name(name)?;
        let TreeSummary { digest, size_bytes } = digest_tree(staged, &config)?;
        let hex = parse_digest(&digest)?.to_owned();
        let blob = self.blob_dir(&hex);
        if !blob.exists() {
            if let Some(old) = dedup {
                super::fsutil::dedup_against(staged, old)?;
            }
            let pending = work.path().join("blob");
            create_dirs(&pending, 0o755)?;
            let target = pending.join("rootfs");
            std::fs::rename(staged, &target).map_err(ImageError::io("rename", staged))?;
            let record = ImageRecord {
                format: RECORD_FORMAT,
                name: name.to_owned(),
                digest: digest.clone(),
                config,
                created_at_ms: now_ms(),
                size_bytes,
            };
            let json = serde_json::to_vec_pretty(&record).map_err(|e| ImageError::Corrupt {
                path: pending.join("image.json"),
                reason: e.to_string(),
            })?;
            write_atomic(&pending.join("image.json"), &json, 0o444)?;
            match std::fs::rename(&pending, &blob) {
                Ok(()) => {
                    let ro = std::fs::Permissions::from_mode(0o555);
                    std::fs::set_permissions(&blob, ro).map_err(ImageError::io("chmod", &blob))?;
                    tracing::info!(%name, %digest, size_bytes, "image imported");
                }
                // Another import of the same tree won the race; ours goes with the workdir.
                Err(_) if blob.exists() => {}
                Err(e) => return Err(ImageError::io("rename", &pending)(e)),
            }
        }
        self.set_ref(name, &digest)?;
        self.resolve(name)
    }

    /// Re-hashes an image's tree and config and checks that they still give its digest; a
    /// blob written to after import (say, used as a root filesystem directly instead of as an
    /// overlayfs lower dir) fails with [`ImageError::Corrupt`]. Blocking; reads the whole tree.
    pub fn verify(&self, image: &Image) -> Result<(), ImageError> {
        let summary = digest_tree(&image.rootfs, &image.config)?;
        if summary.digest != image.digest {
            return Err(ImageError::Corrupt {
                path: image.rootfs.clone(),
                reason: format!("the tree now hashes to {}", summary.digest),
            });
        }
        Ok(())
    }

    /// Points `refs/<name>` at `digest`, atomically.
    pub(crate) fn set_ref(&self, name: &str, digest: &str) -> Result<(), ImageError> {
        validate_name(name)?;
        parse_digest(digest)?;
        write_atomic(
            &self.refs_dir().join(name),
            format!("{digest}\n").as_bytes(),
            0o644,
        )
    }

    fn read_ref(&self, name: &str) -> Result<Option<String>, ImageError> {
        let path = self.refs_dir().join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("read", &path)(e)),
        }
    }

    /// Whether a blob with this digest exists.
    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        parse_digest(digest)
            .map(|hex| self.blob_dir(hex).is_dir())
            .unwrap_or(false)
    }

    fn load_blob(&self, hex: &str, name: Option<&str>) -> Result<Option<Image>, ImageError> {
        let dir = self.blob_dir(hex);
        let path = dir.join("image.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("read", &path)(e)),
        };
        let record: ImageRecord =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if record.format != RECORD_FORMAT || record.digest != format!("sha256:{hex}") {
            return Err(ImageError::Corrupt {
                path,
                reason: "format or digest does not match".into(),
            });
        }
        Ok(Some(Image {
            name: name.map(str::to_owned).unwrap_or(record.name),
            digest: record.digest,
            rootfs: dir.join("rootfs"),
            config: record.config,
            created_at_ms: record.created_at_ms,
            size_bytes: record.size_bytes,
        }))
    }

    /// A fresh locked directory under `tmp/`, removed when dropped.
    pub(crate) fn workdir(&self) -> Result<Workdir, ImageError> {
        Workdir::new(&self.tmp_dir())
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    fn blob_dir(&self, hex: &str) -> PathBuf {
        self.blobs_dir().join(hex)
    }
    fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

#[allow(clippy::disallowed_methods)] // the image store is an edge: it stamps its own files
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
