//! `Watch`: report files once they exist and have settled, and again on every settled change
//! (how a connect session captures the credential files a CLI writes).
//!
//! One inotify instance per request. While a file is missing, the nearest existing ancestor of
//! its parent directory is watched and the watch moves down as directories appear (`mkdir -p`
//! followed by a rename works); once the parent exists it is watched, which sees every way a
//! CLI writes a file: create, truncate + write (`IN_MODIFY`, `IN_CLOSE_WRITE`), write to a
//! temporary name + rename (`IN_MOVED_TO`), chmod (`IN_ATTRIB`). Events on names that lead to
//! none of the files (other files in the same directory) are ignored. Each relevant event
//! restarts the settle timer; when it fires, the files are read from disk (so the decision
//! never depends on having seen every event) and reported if all exist and differ from the
//! last report.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWrite;
use tokio::io::Interest;
use tokio::time::Instant;

use super::{env, send_error, InputReader};
use crate::protocol::{
    write_frame, ErrorCode, Event, WatchRequest, WatchedFile, MAX_FILE_BYTES, MAX_WATCH_PATHS,
};

type WatchResult<T> = Result<T, (ErrorCode, String)>;

/// Permission bits reported.
const MODE_MASK: u32 = 0o7777;

/// Runs one watch until its timeout, an error, or the client going away.
pub(super) async fn run<W: AsyncWrite + Unpin>(
    req: WatchRequest,
    mut inputs: InputReader,
    wr: &mut W,
) {
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
    let home = env::current_user()
        .map(|u| u.home)
        .filter(|h| Path::new(h).is_absolute())
        .unwrap_or_else(|| "/".into());
    let targets = match validate(&req, Path::new(&home)) {
        Ok(t) => t,
        Err((code, message)) => return send_error(wr, code, message).await,
    };
    let mut watcher = match Watcher::new(targets.clone()) {
        Ok(w) => w,
        Err((code, message)) => return send_error(wr, code, message).await,
    };
    if let Err((code, message)) = watcher.rearm() {
        return send_error(wr, code, message).await;
    }
    let paths = targets
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if !send_before(wr, &Event::Watching { paths }, deadline).await {
        return;
    }

    let settle = Duration::from_millis(req.settle_ms);
    // The files may all be there already: check once the first quiet period has passed.
    let mut check_at = Some(Instant::now() + settle);
    let mut last: Option<Vec<WatchedFile>> = None;
    loop {
        let check = async move {
            match check_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                let message = format!("watch timed out after {} ms", req.timeout_ms);
                let event = Event::Error { code: ErrorCode::Timeout, message };
                // The client gets a short grace to take the last event.
                let _ = send_before(wr, &event, Instant::now() + Duration::from_secs(1)).await;
                return;
            }
            input = inputs.rx.recv() => {
                // Nothing is expected from the client; only its going away matters.
                if input.is_none() {
                    return;
                }
            }
            changed = watcher.wait_for_change() => match changed.and_then(|relevant| {
                if relevant {
                    watcher.rearm()?;
                }
                Ok(relevant)
            }) {
                Ok(true) => check_at = Some(Instant::now() + settle),
                Ok(false) => {}
                Err((code, message)) => return send_error(wr, code, message).await,
            },
            () = check => {
                check_at = None;
                match snapshot(targets.clone(), req.max_bytes).await {
                    Ok(Some(files)) if last.as_ref() != Some(&files) => {
                        if !send_before(wr, &Event::Files { files: files.clone() }, deadline).await {
                            return;
                        }
                        last = Some(files);
                    }
                    Ok(_) => {}
                    Err((code, message)) => return send_error(wr, code, message).await,
                }
            }
        }
    }
}

/// Writes one event, giving up at `deadline` (a client that stops reading must not keep the
/// watch alive). False when the event could not be sent.
async fn send_before<W: AsyncWrite + Unpin>(wr: &mut W, event: &Event, deadline: Instant) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, write_frame(wr, event)).await,
        Ok(Ok(()))
    )
}

/// Checks the request and resolves its paths against `home`.
fn validate(req: &WatchRequest, home: &Path) -> WatchResult<Vec<PathBuf>> {
    let invalid = |m: String| (ErrorCode::InvalidRequest, m);
    if req.paths.is_empty() || req.paths.len() > MAX_WATCH_PATHS {
        return Err(invalid(format!(
            "between 1 and {MAX_WATCH_PATHS} paths are needed, got {}",
            req.paths.len()
        )));
    }
    if req.timeout_ms == 0 {
        return Err(invalid("timeout_ms must be above 0".into()));
    }
    if req.max_bytes == 0 || req.max_bytes > MAX_FILE_BYTES as u64 {
        return Err(invalid(format!(
            "max_bytes must be between 1 and {MAX_FILE_BYTES}, got {}",
            req.max_bytes
        )));
    }
    req.paths.iter().map(|p| resolve(p, home)).collect()
}

/// `path` made absolute against `home` and lexically normalized (`.` and repeated `/`
/// dropped).
///
/// Errors: `InvalidRequest` for an empty path, a `..` component, or no file name.
pub(super) fn resolve(path: &str, home: &Path) -> WatchResult<PathBuf> {
    let invalid = |why: &str| (ErrorCode::InvalidRequest, format!("path {path:?} {why}"));
    if path.is_empty() {
        return Err(invalid("is empty"));
    }
    // "." would be the home directory itself.
    if !matches!(
        Path::new(path).components().next_back(),
        Some(Component::Normal(_))
    ) {
        return Err(invalid("names no file"));
    }
    let joined = home.join(path);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir => return Err(invalid("contains '..'")),
            Component::Prefix(_) => return Err(invalid("is not a unix path")),
        }
    }
    if out.file_name().is_none() {
        return Err(invalid("names no file"));
    }
    Ok(out)
}

/// An inotify file descriptor tokio can poll.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The inotify instance and the directories it watches.
struct Watcher {
    fd: AsyncFd<InotifyFd>,
    targets: Vec<PathBuf>,
    /// Watched directory of each watch descriptor.
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl Watcher {
    fn new(targets: Vec<PathBuf>) -> WatchResult<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| errno("inotify_init1", e))?;
        // SAFETY: the descriptor is owned by the `Inotify`, which the AsyncFd owns and never
        // replaces or closes before it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
            .map_err(|e| {
                let e = io::Error::from(e);
                (ErrorCode::Io, format!("register inotify: {e}"))
            })?;
        Ok(Self {
            fd,
            targets,
            dirs: HashMap::new(),
        })
    }

    /// Watches, for every target, its parent directory or else that directory's nearest
    /// existing ancestor, and drops watches no longer needed.
    fn rearm(&mut self) -> WatchResult<()> {
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        let mut wanted: HashMap<WatchDescriptor, PathBuf> = HashMap::new();
        for target in &self.targets {
            let parent = target.parent().unwrap_or(Path::new("/"));
            let mut armed = false;
            for dir in parent.ancestors() {
                match self.fd.get_ref().0.add_watch(dir, mask) {
                    Ok(wd) => {
                        wanted.insert(wd, dir.to_path_buf());
                        armed = true;
                        break;
                    }
                    // Not there (yet), or a file where a directory should be: go up.
                    Err(Errno::ENOENT | Errno::ENOTDIR) => {}
                    Err(e) => return Err(errno(&format!("watch {}", dir.display()), e)),
                }
            }
            if !armed {
                return Err((
                    ErrorCode::Io,
                    format!("no directory above {} can be watched", target.display()),
                ));
            }
        }
        for wd in self.dirs.keys() {
            if !wanted.contains_key(wd) {
                // Fails harmlessly for a watch the kernel already dropped (directory gone).
                let _ = self.fd.get_ref().0.rm_watch(*wd);
            }
        }
        self.dirs = wanted;
        Ok(())
    }

    /// Waits for inotify events and reads all that are queued; true when any of them may
    /// concern a target (a name leading to one, a watched directory itself, an overflow).
    /// Cancel-safe: events stay queued in the kernel until read.
    async fn wait_for_change(&self) -> WatchResult<bool> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| (ErrorCode::Io, format!("poll inotify: {e}")))?;
            let mut relevant = false;
            let mut read_any = false;
            loop {
                match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                    Ok(Ok(events)) => {
                        read_any = true;
                        relevant |= events.iter().any(|ev| self.concerns_target(ev));
                    }
                    Ok(Err(e)) => return Err((ErrorCode::Io, format!("read inotify: {e}"))),
                    // Drained: try_io cleared readiness.
                    Err(_would_block) => break,
                }
            }
            if read_any {
                return Ok(relevant);
            }
        }
    }

    fn concerns_target(&self, ev: &nix::sys::inotify::InotifyEvent) -> bool {
        if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            return true;
        }
        let Some(dir) = self.dirs.get(&ev.wd) else {
            // A watch just replaced or dropped: its IN_IGNORED needs no action.
            return !ev.mask.contains(AddWatchFlags::IN_IGNORED);
        };
        match &ev.name {
            // An event on the watched directory itself (deleted, moved, watch dropped).
            None => true,
            Some(name) => {
                let path = dir.join(name);
                self.targets.iter().any(|t| t.starts_with(&path))
            }
        }
    }
}

fn errno(what: &str, e: Errno) -> (ErrorCode, String) {
    let e = io::Error::from(e);
    (ErrorCode::from_io(&e), format!("{what}: {e}"))
}

/// Reads every target on the blocking pool: `Ok(None)` while any is missing.
async fn snapshot(targets: Vec<PathBuf>, max_bytes: u64) -> WatchResult<Option<Vec<WatchedFile>>> {
    tokio::task::spawn_blocking(move || snapshot_blocking(&targets, max_bytes))
        .await
        .unwrap_or_else(|e| Err((ErrorCode::Io, format!("watch read task: {e}"))))
}

fn snapshot_blocking(targets: &[PathBuf], max_bytes: u64) -> WatchResult<Option<Vec<WatchedFile>>> {
    let mut files = Vec::with_capacity(targets.len());
    let mut total: u64 = 0;
    for target in targets {
        let Some((data, mode)) = read_one(target, max_bytes)? else {
            return Ok(None);
        };
        total += data.len() as u64;
        if total > MAX_FILE_BYTES as u64 {
            return Err((
                ErrorCode::InvalidRequest,
                format!("the watched files add up to more than {MAX_FILE_BYTES} bytes"),
            ));
        }
        files.push(WatchedFile {
            path: target.to_string_lossy().into_owned(),
            mode,
            data,
        });
    }
    Ok(Some(files))
}

/// One file's contents and mode, `None` when it does not exist.
fn read_one(path: &Path, max_bytes: u64) -> WatchResult<Option<(Vec<u8>, u32)>> {
    let missing = |e: &io::Error| {
        e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
    };
    let fail = |e: io::Error| (ErrorCode::from_io(&e), format!("{}: {e}", path.display()));
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if missing(&e) => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err((
            ErrorCode::InvalidRequest,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let too_large = || {
        (
            ErrorCode::InvalidRequest,
            format!("{} is above max_bytes ({max_bytes})", path.display()),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    // One byte past the limit detects a file that grew since `metadata`.
    file.take(max_bytes + 1)
        .read_to_end(&mut data)
        .map_err(fail)?;
    if data.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(Some((data, meta.permissions().mode() & MODE_MASK)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_home() {
        let home = Path::new("/home/dev");
        assert_eq!(
            resolve(".codex/auth.json", home),
            Ok(PathBuf::from("/home/dev/.codex/auth.json"))
        );
        assert_eq!(
            resolve("./.claude//.credentials.json", home),
            Ok(PathBuf::from("/home/dev/.claude/.credentials.json"))
        );
        assert_eq!(resolve("/etc/x", home), Ok(PathBuf::from("/etc/x")));
        for bad in ["", "/", "../etc/passwd", "/a/../b", "."] {
            assert!(
                matches!(resolve(bad, home), Err((ErrorCode::InvalidRequest, _))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn requests_are_validated() {
        let home = Path::new("/root");
        let ok = WatchRequest {
            paths: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(validate(&ok, home), Ok(vec![PathBuf::from("/root/a")]));
        let bad = [
            WatchRequest::default(),
            WatchRequest {
                paths: vec!["a".into(); MAX_WATCH_PATHS + 1],
                ..Default::default()
            },
            WatchRequest {
                timeout_ms: 0,
                ..ok.clone()
            },
            WatchRequest {
                max_bytes: 0,
                ..ok.clone()
            },
            WatchRequest {
                max_bytes: MAX_FILE_BYTES as u64 + 1,
                ..ok.clone()
            },
        ];
        for req in &bad {
            assert!(
                matches!(validate(req, home), Err((ErrorCode::InvalidRequest, _))),
                "{req:?}"
            );
        }
    }

    #[test]
    fn snapshot_needs_every_file_and_enforces_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("sub/b");
        let targets = vec![a.clone(), b.clone()];
        assert_eq!(snapshot_blocking(&targets, 10), Ok(None));
        fs::write(&a, b"aa").expect("write a");
        assert_eq!(snapshot_blocking(&targets, 10), Ok(None));
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(&b, b"bbb").expect("write b");
        fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).expect("chmod");
        let files = snapshot_blocking(&targets, 10)
            .expect("read")
            .expect("all there");
        assert_eq!(files[0].data, b"aa");
        assert_eq!(files[1].data, b"bbb");
        assert_eq!(files[1].mode, 0o600);
        assert_eq!(files[1].path, b.to_string_lossy());
        assert!(matches!(
            snapshot_blocking(&targets, 2),
            Err((ErrorCode::InvalidRequest, _))
        ));
        // A file where a directory is expected reads as "missing", a directory as invalid.
        assert_eq!(snapshot_blocking(&[a.join("x")], 10), Ok(None));
        assert!(matches!(
            snapshot_blocking(&[dir.path().join("sub")], 10),
            Err((ErrorCode::InvalidRequest, _))
        ));
    }
}
