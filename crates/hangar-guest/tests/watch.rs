//! `Watch` (credential capture) through the real agent binary, with files written the ways the
//! CLIs write them.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{fd_count, inotify_count, wait_until, Agent};
use hangar_guest::protocol::ErrorCode;
use hangar_guest::{GuestError, WatchRequest, WatchStream, WatchedFile};

const DEADLINE: Duration = Duration::from_secs(10);

/// How long a test waits to be sure that no report comes: well above the settle time.
const QUIET: Duration = Duration::from_millis(1200);

const SETTLE_MS: u64 = 300;

fn request(paths: &[&Path]) -> WatchRequest {
    WatchRequest {
        paths: paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        settle_ms: SETTLE_MS,
        timeout_ms: 30_000,
        max_bytes: 64 * 1024,
    }
}

/// The next report, which must come within `DEADLINE`.
async fn next_report(ws: &mut WatchStream) -> Vec<WatchedFile> {
    match ws.next_files(DEADLINE).await {
        Ok(Some(files)) => files,
        other => panic!("expected a report, got {other:?}"),
    }
}

/// Asserts that no report comes for [`QUIET`].
async fn assert_quiet(ws: &mut WatchStream) {
    match ws.next_files(QUIET).await {
        Err(GuestError::Timeout { .. }) => {}
        other => panic!("expected no report, got {other:?}"),
    }
}

/// Writes `data` to a temporary name next to `path` with `mode`, then renames it over `path`
/// (how Codex and Claude write their credential files).
fn write_and_rename(path: &Path, data: &[u8], mode: u32) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, data).expect("write temp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod");
    fs::rename(&tmp, path).expect("rename");
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn file_in_directories_that_do_not_exist_yet_is_reported_after_rename() {
    let agent = Agent::start().await;
    let home = agent.dir.path().join("home/dev");
    let auth = home.join(".codex/auth.json");
    let mut ws = agent
        .client()
        .watch(request(&[&auth]))
        .await
        .expect("watch");
    assert_eq!(ws.paths(), [s(&auth)]);
    assert_quiet(&mut ws).await;

    // mkdir -p, then an unrelated file, then the credential by temp file + rename.
    fs::create_dir_all(auth.parent().expect("parent")).expect("mkdir -p");
    fs::write(home.join(".codex/config.toml"), b"model = 'x'\n").expect("other file");
    write_and_rename(&auth, br#"{"tokens":{"access_token":"a1"}}"#, 0o600);
    let files = next_report(&mut ws).await;
    assert_eq!(
        files,
        vec![WatchedFile {
            path: s(&auth),
            mode: 0o600,
            data: br#"{"tokens":{"access_token":"a1"}}"#.to_vec(),
        }]
    );
    // Writes to other files in the same directory are not reports.
    fs::write(home.join(".codex/history.jsonl"), b"{}\n").expect("other file");
    assert_quiet(&mut ws).await;
}

#[tokio::test]
async fn a_directory_renamed_into_place_is_seen() {
    let agent = Agent::start().await;
    let home = agent.dir.path().join("home");
    fs::create_dir_all(&home).expect("home");
    let creds = home.join(".claude/.credentials.json");
    let mut ws = agent
        .client()
        .watch(request(&[&creds]))
        .await
        .expect("watch");
    let staging = agent.dir.path().join("staging");
    fs::create_dir_all(&staging).expect("staging");
    fs::write(staging.join(".credentials.json"), b"{}").expect("write");
    fs::rename(&staging, home.join(".claude")).expect("rename dir");
    assert_eq!(next_report(&mut ws).await[0].data, b"{}");
}

#[tokio::test]
async fn two_files_are_reported_only_once_both_exist() {
    let agent = Agent::start().await;
    let dir = agent.dir.path().join("gemini");
    let creds = dir.join("oauth_creds.json");
    let settings = dir.join("settings.json");
    let mut ws = agent
        .client()
        .watch(request(&[&creds, &settings]))
        .await
        .expect("watch");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(&creds, b"creds").expect("write");
    assert_quiet(&mut ws).await;
    fs::write(&settings, b"settings").expect("write");
    let files = next_report(&mut ws).await;
    // Request order, whatever order they were written in.
    let got: Vec<_> = files
        .iter()
        .map(|f| (f.path.clone(), f.data.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (s(&creds), b"creds".to_vec()),
            (s(&settings), b"settings".to_vec())
        ]
    );
}

#[tokio::test]
async fn every_settled_change_is_reported_and_identical_rewrites_are_not() {
    let agent = Agent::start().await;
    let path = agent.dir.path().join("auth.json");
    fs::write(&path, b"v1").expect("write");
    let mut ws = agent
        .client()
        .watch(request(&[&path]))
        .await
        .expect("watch");
    // Already there: reported once it has been quiet for the settle time.
    assert_eq!(next_report(&mut ws).await[0].data, b"v1");

    // Truncate + write in place.
    fs::write(&path, b"v2").expect("rewrite");
    assert_eq!(next_report(&mut ws).await[0].data, b"v2");

    // Temp file + rename, with a new mode.
    write_and_rename(&path, b"v3", 0o600);
    let files = next_report(&mut ws).await;
    assert_eq!(
        (files[0].data.as_slice(), files[0].mode),
        (&b"v3"[..], 0o600)
    );

    // A chmod alone is a change too.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(next_report(&mut ws).await[0].mode, 0o640);

    // The same bytes and mode again: nothing new to report.
    fs::write(&path, b"v3").expect("same again");
    fs::write(&path, b"v3").expect("same again");
    assert_quiet(&mut ws).await;

    // Deleted, then written again with new contents.
    fs::remove_file(&path).expect("rm");
    assert_quiet(&mut ws).await;
    fs::write(&path, b"v4").expect("recreate");
    assert_eq!(next_report(&mut ws).await[0].data, b"v4");
}

#[tokio::test]
async fn a_file_written_in_pieces_is_reported_once_with_its_final_contents() {
    let agent = Agent::start().await;
    let path = agent.dir.path().join("creds.json");
    let mut ws = agent
        .client()
        .watch(request(&[&path]))
        .await
        .expect("watch");
    let started = Instant::now();
    let mut f = fs::File::create(&path).expect("create");
    for (i, piece) in [&b"{\"a\":"[..], b"\"tok", b"en\"}"].iter().enumerate() {
        if i > 0 {
            // Pacing the writer (100 ms apart, below the 300 ms settle time), not waiting for
            // a condition.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        f.write_all(piece).expect("write piece");
        f.flush().expect("flush");
    }
    drop(f);
    let files = next_report(&mut ws).await;
    assert_eq!(files[0].data, br#"{"a":"token"}"#);
    // Not before the writer was done and the settle time had passed.
    assert!(started.elapsed() >= Duration::from_millis(200 + SETTLE_MS));
    assert_quiet(&mut ws).await;
}

#[tokio::test]
async fn the_watch_ends_with_its_timeout() {
    let agent = Agent::start().await;
    let mut req = request(&[&agent.dir.path().join("never")]);
    req.timeout_ms = 500;
    let started = Instant::now();
    let mut ws = agent.client().watch(req).await.expect("watch");
    assert_eq!(ws.next_files(DEADLINE).await.expect("end"), None);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Over is over.
    assert_eq!(ws.next_files(DEADLINE).await.expect("end"), None);
}

#[tokio::test]
async fn relative_paths_are_under_the_agent_users_home() {
    let agent = Agent::start().await;
    let req = WatchRequest {
        paths: vec![".hangar-test-never-created/auth.json".into()],
        timeout_ms: 200,
        ..Default::default()
    };
    let mut ws = agent.client().watch(req).await.expect("watch");
    let resolved = PathBuf::from(&ws.paths()[0]);
    assert!(resolved.is_absolute(), "{resolved:?}");
    assert!(resolved.ends_with(".hangar-test-never-created/auth.json"));
    assert_eq!(ws.next_files(DEADLINE).await.expect("end"), None);
}

#[tokio::test]
async fn oversize_files_and_bad_requests_are_refused() {
    let agent = Agent::start().await;
    let client = agent.client();
    let path = agent.dir.path().join("big.json");
    fs::write(&path, vec![b'x'; 11]).expect("write");
    let mut req = request(&[&path]);
    req.max_bytes = 10;
    let mut ws = client.watch(req).await.expect("watch");
    let err = ws.next_files(DEADLINE).await.expect_err("too large");
    assert!(
        matches!(
            err,
            GuestError::Remote {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ),
        "{err:?}"
    );

    for bad in [
        WatchRequest::default(),
        WatchRequest {
            paths: vec!["../etc/passwd".into()],
            ..Default::default()
        },
        WatchRequest {
            paths: vec!["a".into()],
            timeout_ms: 0,
            ..Default::default()
        },
    ] {
        let err = client.watch(bad).await.expect_err("invalid");
        assert!(
            matches!(
                err,
                GuestError::Remote {
                    code: ErrorCode::InvalidRequest,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn disconnecting_ends_the_watch_and_frees_its_descriptors() {
    let agent = Agent::start().await;
    let pid = agent.child.id().expect("agent pid");
    let baseline = fd_count(pid);
    assert_eq!(inotify_count(pid), 0);
    let client = agent.client();
    let mut streams = Vec::new();
    for i in 0..8 {
        let path = agent.dir.path().join(format!("w{i}/deep/file"));
        streams.push(client.watch(request(&[&path])).await.expect("watch"));
    }
    assert_eq!(inotify_count(pid), 8, "one inotify instance per watch");
    drop(streams);
    wait_until(DEADLINE, || async { inotify_count(pid) == 0 }).await;
    // (The baseline may still hold the startup ping's socket, so "at most".)
    wait_until(DEADLINE, || async { fd_count(pid) <= baseline }).await;
    client.ping(DEADLINE).await.expect("agent still serves");
}
