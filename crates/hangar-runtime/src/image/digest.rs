//! The content digest of a tree plus its config (scheme in the module docs of `image`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use super::{ImageConfig, ImageError};

/// What hashing a tree found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeSummary {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Apparent size of regular files, each inode once, in bytes.
    pub size_bytes: u64,
}

/// Appends the netstring of `bytes` to the hash.
fn ns(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update(bytes.len().to_string().as_bytes());
    hasher.update(b":");
    hasher.update(bytes);
    hasher.update(b",");
}

/// Hashes `root` and `config` as version 1 of the image digest.
pub(crate) fn digest_tree(root: &Path, config: &ImageConfig) -> Result<TreeSummary, ImageError> {
    let mut hasher = Sha256::new();
    hasher.update(b"hangar-image-v1\n");
    let mut size_bytes = 0u64;
    // Content hashes of inodes with several links, so each is read once.
    let mut linked: HashMap<(u64, u64), String> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];

    for entry in WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| walk_error(root, e))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(path);
        let meta = entry.metadata().map_err(|e| walk_error(root, e))?;
        let ft = meta.file_type();
        let detail: Vec<u8>;
        let kind: &[u8] = if ft.is_dir() {
            detail = Vec::new();
            b"dir"
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            let known = if meta.nlink() > 1 {
                linked.get(&key).cloned()
            } else {
                None
            };
            let content = match known {
                Some(hex) => hex,
                None => {
                    size_bytes += meta.len();
                    let hex = hash_file(path, &mut buf)?;
                    if meta.nlink() > 1 {
                        linked.insert(key, hex.clone());
                    }
                    hex
                }
            };
            detail = format!("{} {}", meta.len(), content).into_bytes();
            b"file"
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(ImageError::io("readlink", path))?;
            detail = target.as_os_str().as_bytes().to_vec();
            b"symlink"
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = meta.rdev();
            detail = format!("{} {}", libc::major(rdev), libc::minor(rdev)).into_bytes();
            if ft.is_char_device() {
                b"char"
            } else {
                b"block"
            }
        } else if ft.is_fifo() {
            detail = Vec::new();
            b"fifo"
        } else {
            detail = Vec::new();
            b"socket"
        };
        ns(&mut hasher, rel.as_os_str().as_bytes());
        ns(&mut hasher, kind);
        ns(
            &mut hasher,
            format!("{:04o}", meta.mode() & 0o7777).as_bytes(),
        );
        ns(&mut hasher, meta.uid().to_string().as_bytes());
        ns(&mut hasher, meta.gid().to_string().as_bytes());
        ns(&mut hasher, &detail);
    }

    let config_json = serde_json::to_vec(config).map_err(|e| ImageError::Corrupt {
        path: root.to_owned(),
        reason: format!("config does not serialize: {e}"),
    })?;
    ns(&mut hasher, b"config");
    ns(&mut hasher, &config_json);
    Ok(TreeSummary {
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size_bytes,
    })
}

/// SHA-256 of a file's content, as lowercase hex.
pub(crate) fn hash_file(path: &Path, buf: &mut [u8]) -> Result<String, ImageError> {
    let mut file = File::open(path).map_err(ImageError::io("open", path))?;
    let mut hasher = Sha256::new();
    loop {
        let n = file.read(buf).map_err(ImageError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn walk_error(root: &Path, e: walkdir::Error) -> ImageError {
    let path = e.path().unwrap_or(root).to_owned();
    let source = e
        .into_io_error()
        .unwrap_or_else(|| std::io::Error::other("file system loop"));
    ImageError::Io {
        op: "walk",
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/hostname"), b"sandbox\n").expect("write");
        symlink("etc/hostname", root.join("link")).expect("symlink");
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    #[test]
    fn same_tree_same_digest_and_each_property_counts() {
        let config = ImageConfig::default();
        let a = tree();
        let b = tree();
        let da = digest_tree(a.path(), &config).expect("digest");
        assert_eq!(da, digest_tree(b.path(), &config).expect("digest"));
        assert_eq!(da.size_bytes, 8);

        std::fs::set_permissions(
            b.path().join("etc/hostname"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        let db = digest_tree(b.path(), &config).expect("digest");
        assert_ne!(da.digest, db.digest, "mode is covered");

        let mut other = config.clone();
        other.env.push("A=b".into());
        assert_ne!(
            da.digest,
            digest_tree(a.path(), &other).expect("digest").digest,
            "config is covered"
        );

        std::fs::remove_file(a.path().join("link")).expect("rm");
        symlink("etc/hostnamX", a.path().join("link")).expect("symlink");
        assert_ne!(
            da.digest,
            digest_tree(a.path(), &config).expect("digest").digest,
            "target is covered"
        );
    }

    #[test]
    fn hard_links_are_counted_once_in_size() {
        let a = tree();
        std::fs::hard_link(a.path().join("etc/hostname"), a.path().join("etc/again"))
            .expect("link");
        let s = digest_tree(a.path(), &ImageConfig::default()).expect("digest");
        assert_eq!(s.size_bytes, 8);
    }
}
