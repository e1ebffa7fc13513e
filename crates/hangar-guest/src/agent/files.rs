//! `PutFile` / `GetFile`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::{ErrorCode, PutFileRequest, MAX_FILE_BYTES};

type FileResult<T> = Result<T, (ErrorCode, String)>;

/// Permission bits a request may set.
const MODE_MASK: u32 = 0o7777;

/// Writes the file on the blocking pool (see [`put_blocking`]).
pub(super) async fn put(req: PutFileRequest) -> FileResult<()> {
    tokio::task::spawn_blocking(move || put_blocking(&req))
        .await
        .unwrap_or_else(|e| Err((ErrorCode::Io, format!("put_file task: {e}"))))
}

/// Reads the file on the blocking pool (see [`get_blocking`]).
pub(super) async fn get(path: String) -> FileResult<(Vec<u8>, u32)> {
    tokio::task::spawn_blocking(move || get_blocking(&path))
        .await
        .unwrap_or_else(|e| Err((ErrorCode::Io, format!("get_file task: {e}"))))
}

fn absolute(path: &str) -> FileResult<&Path> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err((
            ErrorCode::InvalidRequest,
            format!("path {path:?} is not absolute"),
        ));
    }
    Ok(p)
}

fn io_err(what: &Path, e: io::Error) -> (ErrorCode, String) {
    (ErrorCode::from_io(&e), format!("{}: {e}", what.display()))
}

/// Creates parent directories, writes a temporary file next to `path` with the requested mode
/// (exactly, regardless of umask), fsyncs it and renames it over `path`.
fn put_blocking(req: &PutFileRequest) -> FileResult<()> {
    let path = absolute(&req.path)?;
    if req.data.len() > MAX_FILE_BYTES {
        return Err((
            ErrorCode::InvalidRequest,
            format!(
                "{} bytes is above the {MAX_FILE_BYTES}-byte limit",
                req.data.len()
            ),
        ));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err((
            ErrorCode::InvalidRequest,
            format!("path {:?} names no file", req.path),
        ));
    };
    fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    let tmp = temp_path(parent, &name.to_string_lossy());
    let written =
        write_new(&tmp, &req.data, req.mode & MODE_MASK).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    Ok(())
}

fn write_new(tmp: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()
}

/// A name in `dir` no other writer (in this agent or another) uses at the same time.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.hangar-tmp.{}.{n}", std::process::id()))
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`], with its permission bits.
fn get_blocking(path: &str) -> FileResult<(Vec<u8>, u32)> {
    let p = absolute(path)?;
    let file = fs::File::open(p).map_err(|e| io_err(p, e))?;
    let meta = file.metadata().map_err(|e| io_err(p, e))?;
    if !meta.is_file() {
        return Err((
            ErrorCode::InvalidRequest,
            format!("{path} is not a regular file"),
        ));
    }
    let too_large = || {
        (
            ErrorCode::InvalidRequest,
            format!("{path} is above the {MAX_FILE_BYTES}-byte limit"),
        )
    };
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // One byte past the limit detects a file that grew since `metadata`.
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| io_err(p, e))?;
    if data.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok((data, meta.permissions().mode() & MODE_MASK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_keeps_data_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/c.txt");
        let req = PutFileRequest {
            path: path.to_string_lossy().into_owned(),
            mode: 0o640,
            data: b"hello".to_vec(),
        };
        put_blocking(&req).expect("put");
        let (data, mode) = get_blocking(&req.path).expect("get");
        assert_eq!(data, b"hello");
        assert_eq!(mode, 0o640);
        // Overwrite with another mode; no temporary files are left behind.
        put_blocking(&PutFileRequest {
            mode: 0o4755,
            data: b"x".to_vec(),
            ..req.clone()
        })
        .expect("overwrite");
        assert_eq!(
            get_blocking(&req.path).expect("get"),
            (b"x".to_vec(), 0o4755)
        );
        let names: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .expect("readdir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.txt")]);
    }

    #[test]
    fn errors_have_codes() {
        assert!(matches!(
            get_blocking("/definitely/not/here"),
            Err((ErrorCode::NotFound, _))
        ));
        assert!(matches!(
            get_blocking("/"),
            Err((ErrorCode::InvalidRequest, _))
        ));
        assert!(matches!(
            get_blocking("rel"),
            Err((ErrorCode::InvalidRequest, _))
        ));
        let root = PutFileRequest {
            path: "/".into(),
            mode: 0o644,
            data: vec![],
        };
        assert!(matches!(
            put_blocking(&root),
            Err((ErrorCode::InvalidRequest, _))
        ));
        let big = PutFileRequest {
            path: "/tmp/never-written".into(),
            mode: 0o644,
            data: vec![0; MAX_FILE_BYTES + 1],
        };
        assert!(matches!(
            put_blocking(&big),
            Err((ErrorCode::InvalidRequest, _))
        ));
    }
}
