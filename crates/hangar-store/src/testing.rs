//! Test helpers (cargo feature `testing`): a fresh, migrated database per test on either
//! backend, for this crate's tests and for other crates' (add
//! `hangar-store = { workspace = true, features = ["testing"] }` to `[dev-dependencies]`).
//!
//! - SQLite: a file in a temporary directory, removed when the [`TestDb`] drops.
//! - PostgreSQL: one throwaway cluster per test binary ([`PgCluster::shared`]), made with
//!   `initdb` in a temporary directory (trust auth, `fsync=off`, listening only on a unix
//!   socket inside that directory, so no port can clash), with a fresh `CREATE DATABASE` per
//!   test, dropped again when the [`TestDb`] drops.
//!
//! The cluster's server runs under a small `sh` supervisor in its own process group that
//! reads its stdin, a pipe from the test process: when the test process exits (normally,
//! by panic or by SIGKILL) the pipe closes, and the supervisor shuts the server down
//! (SIGQUIT, immediate shutdown) and removes the directory. Nothing is left behind and no
//! static destructor is needed. As root, the cluster runs as the `postgres` OS user
//! (PostgreSQL refuses to run as root).
//!
//! Binaries are found in `$HANGAR_PG_BINDIR`, else the newest `/usr/lib/postgresql/*/bin`,
//! else `initdb` on `PATH`. If they are missing, PostgreSQL tests fail with a message saying
//! what to install, unless `HANGAR_TEST_SKIP_POSTGRES=1`, in which case
//! [`TestDb::postgres`] returns `None` and the test is skipped.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::{Connection as _, Executor as _};

use crate::Store;

/// Environment variable that, set to `1`, skips the PostgreSQL half of the tests.
pub const SKIP_POSTGRES_ENV: &str = "HANGAR_TEST_SKIP_POSTGRES";
/// Environment variable naming the directory with `initdb`, `postgres`, `pg_isready`.
pub const PG_BINDIR_ENV: &str = "HANGAR_PG_BINDIR";

/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server may take to accept connections after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long creating or dropping one database may take.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The port number in the socket's name (`.s.PGSQL.<port>`); nothing listens on TCP.
const SOCKET_PORT: u16 = 5432;

/// A database backend to run a test against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database in the per-binary throwaway PostgreSQL cluster.
    Postgres,
}

impl Backend {
    /// Both backends, SQLite first.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// Whether `HANGAR_TEST_SKIP_POSTGRES=1` asks to skip PostgreSQL tests.
pub fn postgres_skipped() -> bool {
    std::env::var(SKIP_POSTGRES_ENV).is_ok_and(|v| v == "1")
}

/// A fresh, empty database for one test. Dropping it removes the SQLite directory or drops the
/// PostgreSQL database.
#[derive(Debug)]
pub struct TestDb {
    backend: Backend,
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg_database: Option<String>,
}

impl TestDb {
    /// A fresh database on `backend`; `None` only for PostgreSQL when it is skipped by
    /// `HANGAR_TEST_SKIP_POSTGRES=1`. Panics (failing the test) if it cannot be made.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::sqlite().await),
            Backend::Postgres => TestDb::postgres().await,
        }
    }

    /// A SQLite file URL (`sqlite:///tmp/.../hangar.db`) in a fresh temporary directory. The
    /// file is created by the first [`Store::connect`].
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::Builder::new()
            .prefix("hangar-store-test-")
            .tempdir()
            .unwrap_or_else(|err| panic!("creating a temporary directory: {err}"));
        let url = format!("sqlite://{}", dir.path().join("hangar.db").display());
        TestDb {
            backend: Backend::Sqlite,
            url,
            _dir: Some(dir),
            pg_database: None,
        }
    }

    /// A fresh database in the shared throwaway cluster, or `None` if PostgreSQL tests are
    /// skipped. Panics with the reason if the cluster cannot be started (binaries missing:
    /// install PostgreSQL, e.g. `apt-get install postgresql`).
    pub async fn postgres() -> Option<TestDb> {
        if postgres_skipped() {
            eprintln!("{SKIP_POSTGRES_ENV}=1: skipping the PostgreSQL run of this test");
            return None;
        }
        let cluster = PgCluster::shared().unwrap_or_else(|err| panic!("{err}"));
        let name = cluster
            .create_database()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        Some(TestDb {
            backend: Backend::Postgres,
            url: cluster.url(&name),
            _dir: None,
            pg_database: Some(name),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL to pass to [`Store::connect`] (no password: the cluster trusts local users).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects a [`Store`] (running migrations); panics on failure.
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap_or_else(|err| {
            panic!(
                "connecting to the {:?} test database: {err:?}",
                self.backend
            )
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let (Some(name), Some(Ok(cluster))) = (&self.pg_database, SHARED.get()) {
            cluster.drop_database(name);
        }
    }
}

static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static SEQ: AtomicU64 = AtomicU64::new(0);

/// A throwaway PostgreSQL cluster in a temporary directory (see the module docs).
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bindir: PathBuf,
    run_as: Option<(u32, u32)>,
    /// The supervisor shell and the write end of its stdin: closing it stops the server.
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
}

impl PgCluster {
    /// The cluster shared by every test of this process, started on first use. The error
    /// (also returned to every later caller) says what is missing.
    pub fn shared() -> Result<&'static PgCluster, String> {
        SHARED
            .get_or_init(PgCluster::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Starts a new cluster: `initdb`, then the server, then waits until it accepts
    /// connections. Blocks for about a second.
    pub fn start() -> Result<PgCluster, String> {
        let bindir = find_bindir()?;
        let run_as = if process_euid() == Some(0) {
            Some(lookup_user("postgres").ok_or(
                "running as root, but there is no `postgres` OS user to run the PostgreSQL test \
                 cluster as (it refuses to run as root)",
            )?)
        } else {
            None
        };
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::disallowed_methods)] // a unique name, not a time
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        // /tmp rather than $TMPDIR: the `postgres` user must be able to reach it, and the
        // socket path must stay short (at most 107 bytes).
        let dir =
            Path::new("/tmp").join(format!("hangar-pg-{}-{n}-{nanos:08x}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|err| format!("chown {} to postgres: {err}", dir.display()))?;
        }
        let mut cluster = PgCluster {
            dir,
            bindir,
            run_as,
            supervisor: Mutex::new(None),
        };
        match cluster.init_and_run() {
            Ok(()) => Ok(cluster),
            Err(err) => {
                cluster.stop();
                let _ = std::fs::remove_dir_all(&cluster.dir);
                Err(err)
            }
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn init_and_run(&mut self) -> Result<(), String> {
        let data = self.dir.join("data");
        let log = self.dir.join("initdb.log");
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run_with_deadline(initdb, &log, INITDB_TIMEOUT)
            .map_err(|err| format!("initdb failed: {err}\n{}", tail(&log)))?;

        // The supervisor: runs the server in the background, waits for stdin to close, then
        // shuts the server down immediately and removes the whole directory.
        const SUPERVISOR: &str = r#"dir=$1; shift
"$@" </dev/null >"$dir/postgres.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/postgres.pid"
cat >/dev/null
kill -QUIT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SUPERVISOR)
            .arg("hangar-pg-supervisor")
            .arg(&self.dir)
            .arg(self.bindir.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&self.dir)
            .arg("-p")
            .arg(SOCKET_PORT.to_string())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|err| format!("starting the PostgreSQL supervisor (sh): {err}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or("the supervisor has no stdin pipe")?;
        *self.lock_supervisor() = Some((child, stdin));
        self.wait_ready()
    }

    fn lock_supervisor(&self) -> std::sync::MutexGuard<'_, Option<(Child, ChildStdin)>> {
        self.supervisor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Polls `pg_isready` until the server accepts connections, the server dies, or the
    /// deadline passes.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let log = self.dir.join("postgres.log");
        loop {
            let mut probe = self.command("pg_isready");
            probe
                .arg("-h")
                .arg(&self.dir)
                .args([
                    "-p",
                    &SOCKET_PORT.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let status = probe
                .status()
                .map_err(|err| format!("running pg_isready: {err}"))?;
            if status.success() {
                return Ok(());
            }
            if !self.server_alive() {
                return Err(format!(
                    "the PostgreSQL test server exited during startup:\n{}",
                    tail(&log)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the PostgreSQL test server did not accept connections within {READY_TIMEOUT:?}:\n{}",
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server process is still running (not gone, not a zombie).
    fn server_alive(&self) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("postgres.pid")) else {
            return true; // the supervisor has not written it yet
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) else {
            return false;
        };
        // The state is the first field after the parenthesized command name.
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X")
        )
    }

    /// The URL of database `name` on this cluster (unix socket, user `postgres`, no password).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}&port={SOCKET_PORT}",
            self.dir.display()
        )
    }

    /// Creates a uniquely named empty database and returns its name.
    pub async fn create_database(&self) -> Result<String, String> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("hangar_test_{}_{n}", std::process::id());
        let admin_url = self.url("postgres");
        let work = async {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
                .await?;
            conn.close().await
        };
        match tokio::time::timeout(DATABASE_TIMEOUT, work).await {
            Ok(Ok(())) => Ok(name),
            Ok(Err(err)) => Err(format!("creating test database {name}: {err}")),
            Err(_) => Err(format!(
                "creating test database {name} took over {DATABASE_TIMEOUT:?}"
            )),
        }
    }

    /// Drops database `name`, disconnecting any sessions still on it. Blocking (runs
    /// `dropdb`, bounded); errors are printed, not raised (it runs from `Drop`).
    pub fn drop_database(&self, name: &str) {
        let mut cmd = self.command("dropdb");
        cmd.arg("-h").arg(&self.dir).args([
            "-p",
            &SOCKET_PORT.to_string(),
            "-U",
            "postgres",
            "--force",
            "--if-exists",
            name,
        ]);
        let log = self.dir.join(format!("dropdb-{name}.log"));
        if let Err(err) = run_with_deadline(cmd, &log, DATABASE_TIMEOUT) {
            eprintln!("dropping test database {name}: {err}\n{}", tail(&log));
        }
        let _ = std::fs::remove_file(&log);
    }

    /// Stops the server and removes the directory (closes the supervisor's stdin and waits for
    /// it, killing its process group if it does not finish in time).
    fn stop(&self) {
        let Some((mut child, stdin)) = self.lock_supervisor().take() else {
            return;
        };
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        // Last resort: SIGKILL the whole group (supervisor and server).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` with stdout and stderr to `log`, killing it at the deadline.
fn run_with_deadline(mut cmd: Command, log: &Path, timeout: Duration) -> Result<(), String> {
    let out =
        std::fs::File::create(log).map_err(|err| format!("creating {}: {err}", log.display()))?;
    let err_out = out
        .try_clone()
        .map_err(|err| format!("duplicating a file handle: {err}"))?;
    let mut child = cmd
        .stdout(out)
        .stderr(err_out)
        .spawn()
        .map_err(|err| format!("spawning {:?}: {err}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!("{:?} exited with {status}", cmd.get_program()))
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{:?} took over {timeout:?}", cmd.get_program()));
            }
            Err(err) => return Err(format!("waiting for {:?}: {err}", cmd.get_program())),
        }
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn find_bindir() -> Result<PathBuf, String> {
    let has_tools = |dir: &Path| {
        ["initdb", "postgres", "pg_isready", "dropdb"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
    };
    if let Some(dir) = std::env::var_os(PG_BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "{PG_BINDIR_ENV}={} does not hold initdb, postgres, pg_isready and dropdb",
                dir.display()
            ))
        };
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.into_iter().rev().find(|(_, d)| has_tools(d)) {
        return Ok(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d)) {
            return Ok(dir);
        }
    }
    Err(format!(
        "PostgreSQL server binaries (initdb, postgres, pg_isready, dropdb) not found in \
         /usr/lib/postgresql/*/bin or PATH. Install them (Debian: `apt-get install postgresql`), \
         or point {PG_BINDIR_ENV} at them, or set {SKIP_POSTGRES_ENV}=1 to skip the PostgreSQL \
         half of the store tests"
    ))
}

/// The effective uid of this process (the owner of `/proc/self`).
fn process_euid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Uid and gid of an OS user, from `/etc/passwd`.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Runs each named test function (`async fn name(db: TestDb)`) once per backend, as
/// `name::sqlite` and `name::postgres` `#[tokio::test]`s (multi-threaded runtime). The
/// PostgreSQL run is skipped when `HANGAR_TEST_SKIP_POSTGRES=1`. The calling crate needs
/// `tokio` (with `macros` and `rt-multi-thread`) in its dev-dependencies.
///
/// ```ignore
/// async fn users_are_unique(db: TestDb) { let store = db.store().await; /* ... */ }
/// hangar_store::test_both_backends!(users_are_unique);
/// ```
#[macro_export]
macro_rules! test_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::testing::TestDb::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = $crate::testing::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            }
        )*
    };
}
