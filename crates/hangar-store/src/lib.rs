//! hangar's persistence: sqlx repositories and embedded migrations for SQLite (`hangar up`, one
//! file under the data directory) and PostgreSQL (`hangar serve`, shared by many machines).
//!
//! Owns: the schema (`migrations/sqlite`, `migrations/postgres`, kept in step), the mapping
//! between rows and the domain types of `hangar-core`, and the compare-and-set writes that make
//! lifecycle changes race-free ([`SandboxRepo::transition`], [`ConnectSessionRepo::transition`],
//! [`CredentialRepo::replace_sealed`], [`SigninStateRepo::take`], the OAuth writes of
//! [`OAuthRepo`]), and the multi-table transactions [`Store::complete_connect`],
//! [`Store::sign_in_external`], [`OAuthRepo::redeem_code`], [`OAuthRepo::rotate_refresh`] and
//! [`OAuthRepo::redeem_device`].
//!
//! One set of queries serves both databases through sqlx's `Any` driver: `$1` placeholders,
//! portable SQL, ids as hyphenated UUID text, times as BIGINT unix milliseconds, booleans as
//! 0/1 integers, nested values as JSON text in a store-owned shape (see each repository).
//!
//! **Architecture Invariant:** no business rules beyond compare-and-set: which transitions are
//! legal is asked of `hangar-core`, who may see what is decided by the caller (the store only
//! offers owner-scoped reads). No I/O other than the database, no clock (every `now` is passed
//! in), and no secrets: token secrets arrive already hashed, credentials already sealed (and
//! are never printed, not even by `Debug`), and errors and logs never carry stored values or
//! database URLs.

#![warn(missing_docs)]

mod checkpoint;
mod codec;
mod connect;
mod credentials;
mod error;
mod events;
mod metrics;
mod nodes;
mod oauth;
mod rotations;
mod sandboxes;
mod signin;
mod tokens;
mod users;

#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use hangar_core::{ConnectSession, ConnectSessionId, ConnectState, Timestamp};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

use rotations::RotationQueue;

pub use connect::{ConnectChange, ConnectSessionRepo};
pub use credentials::{CredentialRecord, CredentialRepo, NewCredential, NewSeal, StatusCheck};
pub use error::StoreError;
pub use events::{EventCursor, EventRepo};
pub use metrics::{MaintenanceReport, MetricsRepo};
pub use nodes::{NodeRecord, NodeRepo};
pub use oauth::{
    DeviceRecord, GrantRecord, NewOAuthToken, OAuthRepo, OAuthTokenRecord, RefreshedTokens,
    RotatedRefresh, SigningKeyRecord,
};
pub use sandboxes::{SandboxRepo, StateChange};
pub use signin::{
    BrowserSessionRecord, BrowserSessionRepo, ExternalIdentity, ExternalIdentityRepo,
    ExternalSignIn, SignedInUser, SigninState, SigninStateRefusal, SigninStateRepo,
};
pub use tokens::{TokenRecord, TokenRepo};
pub use users::{User, UserRepo};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// SQLite's wait for a locked database, in milliseconds (`PRAGMA busy_timeout`).
pub const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// How long a PostgreSQL connection may sit idle in the pool before it is pinged on the way
/// out (a connection in steady use is not: the ping would double every query's round trips).
pub const POSTGRES_PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Which database a [`Store`] talks to, chosen by the URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `sqlite:` URLs: a file (WAL mode, `synchronous = NORMAL`) or `sqlite::memory:`.
    Sqlite,
    /// `postgres:` or `postgresql:` URLs.
    Postgres,
}

impl Dialect {
    /// The dialect of `url`, by its scheme. Errors with [`StoreError::UnsupportedUrl`] naming
    /// only the scheme (the rest may hold a password).
    pub fn from_url(url: &str) -> Result<Dialect, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }
}

/// Pool settings. Every wait is bounded: acquiring a connection by `acquire_timeout`, a locked
/// SQLite database by [`SQLITE_BUSY_TIMEOUT_MS`], a PostgreSQL statement by
/// `statement_timeout`, and running migrations by `migrate_timeout`.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most connections open at once (forced to 1 for `sqlite::memory:`). On a SQLite file
    /// with 2 or more, one of them is the writer's and the rest are for reads.
    pub max_connections: u32,
    /// Longest wait for a pooled connection, including opening a new one.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every statement (lock waits included). Ignored by SQLite.
    pub statement_timeout: Duration,
    /// Longest wait for the migrations to apply (PostgreSQL serializes concurrent migrators).
    pub migrate_timeout: Duration,
}

impl Default for StoreOptions {
    /// 8 connections, 5 s acquire, 30 s statements, 60 s migrations.
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            migrate_timeout: Duration::from_secs(60),
        }
    }
}

/// A connection pool's figures at one moment ([`Store::pool_stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle plus in use).
    pub open: u32,
    /// Of those, idle in the pool.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// The store: connection pools over SQLite or PostgreSQL, migrated to the current schema.
/// Cheap to clone (the pools are shared).
#[derive(Clone, Debug)]
pub struct Store {
    pools: Pools,
}

/// The pools a repository goes through: `read` for reads, `write` for every statement that
/// changes a row and every transaction.
///
/// On PostgreSQL, in memory, and with a one-connection limit both are the same pool. On a
/// SQLite file, `write` holds exactly one connection: SQLite lets one writer in at a time, and
/// writers that queue for the pool (first come, first served, within the acquire timeout)
/// wait only as long as the writer before them, where writers racing for the file lock would
/// sleep in SQLite's busy handler in steps of up to 100 ms. Reads keep their own connections (WAL lets them run beside the
/// writer). Only another process writing the same file still meets the busy handler.
#[derive(Clone, Debug)]
pub(crate) struct Pools {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    /// Which database.
    pub(crate) dialect: Dialect,
    /// The group commit refresh rotations go through (`rotations.rs`).
    pub(crate) rotations: RotationQueue,
}

impl Pools {
    /// Whether reads and writes share one pool.
    fn shared(&self) -> bool {
        std::ptr::eq(self.read.options(), self.write.options())
    }
}

/// Runs `query`, a SQLite batch that is a whole transaction (`BEGIN IMMEDIATE; ...; COMMIT`),
/// on a connection of `write` in one round trip, and returns the rows its statements return,
/// in order (count writes with `RETURNING`: sqlx's `rows_affected` of a batch counts a
/// `COMMIT` as repeating the changes of the statement before it).
///
/// A batch that fails part way leaves its transaction open on the connection. So unless the
/// batch answered with success, the connection runs [`SQLITE_ROLL_BACK_ANY`] before it goes
/// back to the pool, also when the caller stops waiting (a task finishes the job), and is
/// closed instead if that fails (closing rolls back too; the pool opens a new one).
///
/// SQLite only: PostgreSQL takes one statement per prepared query.
pub(crate) async fn sqlite_transaction_batch<'q>(
    write: &AnyPool,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    let mut batch = TransactionBatch {
        conn: Some(write.acquire().await?),
        answered: false,
    };
    let Some(conn) = batch.conn.as_mut() else {
        return Err(sqlx::Error::PoolClosed);
    };
    let rows = query.fetch_all(&mut **conn).await?;
    batch.answered = true;
    Ok(rows)
}

/// Ends whatever transaction a SQLite connection has open, and succeeds whether or not one
/// was: the savepoint opens a transaction if none was, and `ROLLBACK` ends all of it.
const SQLITE_ROLL_BACK_ANY: &str = "SAVEPOINT hangar_roll_back_any; ROLLBACK";

/// A writer connection running a transaction batch ([`sqlite_transaction_batch`]):
/// rolled back when dropped before the batch answered with success.
struct TransactionBatch {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    answered: bool,
}

impl Drop for TransactionBatch {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            // The worker runs commands in order: the rollback follows the batch.
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = conn.execute(SQLITE_ROLL_BACK_ANY).await {
                        tracing::warn!(%err, "closing a SQLite connection whose rollback failed");
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

static MEMORY_DB_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Store {
    /// Connects with [`StoreOptions::default`] and applies any pending migrations.
    ///
    /// `url` is `sqlite:///abs/path/hangar.db` (the file is created if missing, its directory is
    /// not), `sqlite::memory:` (one private in-memory database per `Store`, gone when the store is
    /// closed), or `postgres://user@host/db`.
    ///
    /// Errors: [`StoreError::UnsupportedUrl`], [`StoreError::Database`] (cannot connect within
    /// the acquire timeout), [`StoreError::Migrate`], [`StoreError::Timeout`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit pool settings.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        // sqlx pings every connection it hands out by default: a second round trip for every
        // query. A SQLite file cannot drop its connection; a PostgreSQL connection is checked
        // only after it sat idle (HikariCP's rule), and one that broke since fails its query.
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false);
        // A SQLite file with room for two connections gets its own writer (see [`Pools`]).
        let mut own_writer = false;
        let url = match dialect {
            Dialect::Sqlite => {
                let (url, in_memory) = sqlite_url(url);
                own_writer = !in_memory && options.max_connections >= 2;
                if in_memory {
                    // Each connection to `:memory:` is its own database: keep exactly one,
                    // forever, so the data lives as long as the store.
                    pool_options = pool_options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                } else {
                    enable_wal(&url, options.acquire_timeout).await?;
                }
                pool_options = pool_options.after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // WAL's recommended level: a commit survives a crash of hangar; a
                        // power loss may undo the last commits but never corrupts the file.
                        // FULL would sync the WAL on every commit (about 1 ms each here).
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // A statement inside a transaction that may fail part way (a batch's
                        // INSERT ... SELECT) keeps a statement journal of the pages it changes,
                        // to undo only itself. Past 64 KiB SQLite spills it to a temporary
                        // file, created, written and deleted per statement: a quarter of the
                        // writer's time in a refresh batch. In memory it stays a few MiB at
                        // most (the pages of one statement).
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                        if own_writer {
                            // The checkpointer copies the WAL back beside the writer; the
                            // writer's own checkpoint is only the bound (`checkpoint.rs`).
                            conn.execute(
                                format!(
                                    "PRAGMA wal_autocheckpoint = {}",
                                    checkpoint::WRITER_AUTOCHECKPOINT_PAGES
                                )
                                .as_str(),
                            )
                            .await?;
                        }
                        conn.execute(
                            format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str(),
                        )
                        .await?;
                        Ok(())
                    })
                });
                url
            }
            Dialect::Postgres => {
                let statement_ms = options.statement_timeout.as_millis();
                pool_options = pool_options
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                format!("SET statement_timeout = {statement_ms}").as_str(),
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= POSTGRES_PING_AFTER_IDLE {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    });
                url.to_owned()
            }
        };
        let connect_options: AnyConnectOptions = url.parse()?;
        let pools = if own_writer {
            // Every write wakes the checkpointer (see `checkpoint.rs`).
            let checkpointer =
                checkpoint::WalCheckpointer::start(&url, options.acquire_timeout).await?;
            let writer_options =
                pool_options
                    .clone()
                    .max_connections(1)
                    .after_release(move |conn, _meta| {
                        checkpointer.wake();
                        let finish = checkpointer.take_finish();
                        Box::pin(async move {
                            if finish {
                                checkpoint::finish(conn).await;
                            }
                            Ok(true)
                        })
                    });
            let read = pool_options
                .max_connections(options.max_connections - 1)
                .connect_with(connect_options.clone())
                .await?;
            let write = writer_options.connect_with(connect_options).await?;
            Pools {
                rotations: RotationQueue::start(write.clone(), dialect),
                write,
                read,
                dialect,
            }
        } else {
            let pool = pool_options.connect_with(connect_options).await?;
            Pools {
                rotations: RotationQueue::start(pool.clone(), dialect),
                write: pool.clone(),
                read: pool,
                dialect,
            }
        };
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE_MIGRATOR,
            Dialect::Postgres => &POSTGRES_MIGRATOR,
        };
        let migrate = async {
            migrator
                .run(&pools.write)
                .await
                .map_err(StoreError::Migrate)
        };
        StoreError::within(options.migrate_timeout, "running migrations", migrate).await?;
        tracing::debug!(?dialect, "store connected and migrated");
        Ok(Store { pools })
    }

    /// The `sqlite:` URL of the database file at `path` (absolute, as `hangar up` uses it),
    /// with the characters SQLite URLs give a meaning (`%`, `?`, `#`) percent-encoded.
    /// A non-UTF-8 path is converted lossily.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        let mut url = String::from("sqlite://");
        for ch in path.to_string_lossy().chars() {
            match ch {
                '%' => url.push_str("%25"),
                '?' => url.push_str("%3F"),
                '#' => url.push_str("%23"),
                other => url.push(other),
            }
        }
        url
    }

    /// Users.
    pub fn users(&self) -> UserRepo<'_> {
        UserRepo::new(&self.pools)
    }

    /// Personal access tokens (hashes only).
    pub fn tokens(&self) -> TokenRepo<'_> {
        TokenRepo::new(&self.pools)
    }

    /// The OAuth authorization server's clients, grants, codes, tokens, device codes and
    /// signing keys.
    pub fn oauth(&self) -> OAuthRepo<'_> {
        OAuthRepo::new(&self.pools)
    }

    /// Sandbox records and their compare-and-set lifecycle changes.
    pub fn sandboxes(&self) -> SandboxRepo<'_> {
        SandboxRepo::new(&self.pools)
    }

    /// Operational events (bounded by [`EventRepo::prune`]).
    pub fn events(&self) -> EventRepo<'_> {
        EventRepo::new(&self.pools)
    }

    /// The pools' figures right now (both together where reads and writes have their own),
    /// for monitoring (`GET /metrics`). No I/O.
    pub fn pool_stats(&self) -> PoolStats {
        let of = |pool: &AnyPool| {
            let open = pool.size();
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            PoolStats {
                open,
                idle: idle.min(open),
                max: pool.options().get_max_connections(),
            }
        };
        let read = of(&self.pools.read);
        if self.pools.shared() {
            return read;
        }
        let write = of(&self.pools.write);
        PoolStats {
            open: read.open + write.open,
            idle: read.idle + write.idle,
            max: read.max + write.max,
        }
    }

    /// Nodes and their heartbeats.
    pub fn nodes(&self) -> NodeRepo<'_> {
        NodeRepo::new(&self.pools)
    }

    /// Health history: raw samples, their aggregates, downsampling and retention.
    pub fn metrics(&self) -> MetricsRepo<'_> {
        MetricsRepo::new(&self.pools)
    }

    /// Connect sessions and their compare-and-set lifecycle changes.
    pub fn connect_sessions(&self) -> ConnectSessionRepo<'_> {
        ConnectSessionRepo::new(&self.pools)
    }

    /// Sealed credentials (opaque bytes; the store never opens them).
    pub fn credentials(&self) -> CredentialRepo<'_> {
        CredentialRepo::new(&self.pools)
    }

    /// Browser sessions (hashes only).
    pub fn browser_sessions(&self) -> BrowserSessionRepo<'_> {
        BrowserSessionRepo::new(&self.pools)
    }

    /// Users' identities at upstream sign-in providers.
    pub fn external_identities(&self) -> ExternalIdentityRepo<'_> {
        ExternalIdentityRepo::new(&self.pools)
    }

    /// Sign-ins in progress (single use).
    pub fn signin_states(&self) -> SigninStateRepo<'_> {
        SigninStateRepo::new(&self.pools)
    }

    /// Signs a person in with an upstream identity, in **one database transaction**: if
    /// `(provider, subject)` is linked, returns its user (`created: false`, nothing written);
    /// otherwise creates the user `new_user` (not an admin) named `sign_in.wanted_name`, or
    /// the first free of `wanted_name-2`, `wanted_name-3`, ..., and links the identity to it
    /// (`created: true`). Either both rows are written or neither.
    ///
    /// A transaction that loses a race (a concurrent first sign-in of the same subject, or a
    /// concurrent user taking the name) is rolled back and tried again, up to 5 times, so two
    /// concurrent first sign-ins of one subject make one user.
    ///
    /// Errors: [`StoreError::Duplicate`] if every attempt lost (or 1000 names were taken),
    /// [`StoreError::Database`].
    pub async fn sign_in_external(
        &self,
        sign_in: &ExternalSignIn,
        new_user: hangar_core::UserId,
        now: Timestamp,
    ) -> Result<SignedInUser, StoreError> {
        signin::sign_in_external(&self.pools, sign_in, new_user, now).await
    }

    /// Stores the credential a connect session captured and marks that session `completed`,
    /// in **one database transaction**: either both are written or neither is (the rule
    /// "storing a credential and marking its connect session completed are one store
    /// transaction"). Returns the session and the credential as committed.
    ///
    /// Inside the transaction:
    /// 1. the session moves `from -> completed` as a compare-and-set on its state (it must
    ///    also belong to `credential.owner` and be for `credential.provider`), setting
    ///    `completed_at = updated_at = now`;
    /// 2. the credential is inserted when `expected_previous_version` is `None` (no credential
    ///    yet), or else replaces the stored one as a compare-and-set on
    ///    `record_version = expected_previous_version`. A replacement gets a fresh
    ///    `connected_at = now` and clears the old refresh time and status check.
    ///
    /// If either step is refused the transaction is rolled back, so there is never a stored
    /// credential whose session still says pending or failed, nor a completed session without
    /// its credential.
    ///
    /// Errors (nothing is written in every case):
    /// - [`StoreError::InvalidConnectTransition`] if `from -> completed` is not legal (only
    ///   `capturing` may complete), checked before touching the database;
    /// - [`StoreError::InvalidRecordVersion`] if `credential.record_version` is 0, or is not
    ///   `expected_previous_version + 1` when replacing;
    /// - [`StoreError::NotFound`] if there is no such session, or it is another owner's or for
    ///   another provider;
    /// - [`StoreError::ConnectConflict`] with the state found if the session is no longer in
    ///   `from` (expired, cancelled, or already completed by a concurrent call);
    /// - [`StoreError::CredentialConflict`] with the version found if the stored credential is
    ///   not at `expected_previous_version` (including a row that appeared when `None` was
    ///   expected, or vanished when one was).
    pub async fn complete_connect(
        &self,
        session_id: ConnectSessionId,
        from: ConnectState,
        credential: NewCredential,
        expected_previous_version: Option<u64>,
        now: Timestamp,
    ) -> Result<(ConnectSession, CredentialRecord), StoreError> {
        credentials::complete_connect(
            &self.pools,
            session_id,
            from,
            credential,
            expected_previous_version,
            now,
        )
        .await
    }

    /// One round trip to the database (for `/readyz`), bounded by the acquire timeout (and, on
    /// PostgreSQL, the statement timeout). Errors: [`StoreError::Database`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pools.read.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Which database this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.pools.dialect
    }

    /// Closes every connection and waits for them to finish. An in-memory SQLite database is
    /// gone afterwards; files and PostgreSQL databases keep their data for the next `connect`.
    pub async fn close(&self) {
        self.pools.read.close().await;
        self.pools.write.close().await;
    }
}

/// Normalizes a `sqlite:` URL: `:memory:` becomes a uniquely named in-memory database (shared by
/// the pool's one connection), and a file URL without `mode=` gets `mode=rwc` (create if
/// missing). Returns the URL and whether it is in memory.
fn sqlite_url(url: &str) -> (String, bool) {
    let rest = url
        .split_once(':')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.trim_start_matches("//");
    let memory = path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory");
    if memory {
        let n = MEMORY_DB_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("hangar-memory-{}-{n}", std::process::id());
        return (format!("sqlite:file:{name}?mode=memory&cache=shared"), true);
    }
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        (url.to_owned(), false)
    } else if query.is_empty() {
        (format!("{url}?mode=rwc"), false)
    } else {
        (format!("{url}&mode=rwc"), false)
    }
}

/// Puts a SQLite file in WAL mode once, before the pool opens (changing the journal mode takes a
/// lock that `busy_timeout` does not wait for, so it must not race the pool's connections).
async fn enable_wal(url: &str, timeout: Duration) -> Result<(), StoreError> {
    let work = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(&mut conn)
                .await?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode");
            }
        }
        conn.close().await?;
        Ok::<(), sqlx::Error>(())
    };
    StoreError::within(timeout, "opening the SQLite file", work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_by_scheme() {
        assert_eq!(
            Dialect::from_url("sqlite::memory:").ok(),
            Some(Dialect::Sqlite)
        );
        assert_eq!(
            Dialect::from_url("sqlite:///var/lib/hangar/hangar.db").ok(),
            Some(Dialect::Sqlite)
        );
        assert_eq!(
            Dialect::from_url("postgres://u:secret@h/db").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("postgresql://h/db").ok(),
            Some(Dialect::Postgres)
        );
        let err = Dialect::from_url("mysql://u:secret@h/db").expect_err("mysql");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn sqlite_url_for_a_path_escapes_url_syntax() {
        assert_eq!(
            Store::sqlite_url(std::path::Path::new("/var/lib/hangar/hangar.db")),
            "sqlite:///var/lib/hangar/hangar.db"
        );
        assert_eq!(
            Store::sqlite_url(std::path::Path::new("/data/50%?#/h b.db")),
            "sqlite:///data/50%25%3F%23/h b.db"
        );
    }

    /// The two migration directories describe the same schema: same files, and the same text
    /// once comments and the dialects' type spellings (`INTEGER`/`BIGINT`, `BLOB`/`BYTEA`,
    /// `STRICT`) are set aside. A migration that must differ on purpose goes in
    /// `ALLOWED_TO_DIFFER` with a reason.
    #[test]
    fn migrations_are_kept_in_step() {
        const ALLOWED_TO_DIFFER: &[&str] = &[
            // SQLite cannot drop a foreign key in place: it rebuilds the table.
            "0009_oauth_tokens_by_grant.sql",
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let list = |sub: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
                .expect("migrations dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let normalize = |text: String| {
            text.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join(" ")
                .replace("INTEGER", "BIGINT")
                .replace("BYTEA", "BLOB")
                .replace(") STRICT;", ");")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let sqlite = list("sqlite");
        assert_eq!(sqlite, list("postgres"), "same migration files");
        assert!(!sqlite.is_empty());
        for name in sqlite {
            if ALLOWED_TO_DIFFER.contains(&name.as_str()) {
                continue;
            }
            let read = |sub: &str| {
                std::fs::read_to_string(dir.join(sub).join(&name)).expect("read migration")
            };
            assert_eq!(
                normalize(read("sqlite")),
                normalize(read("postgres")),
                "{name} differs between dialects"
            );
        }
    }

    #[test]
    fn sqlite_urls_are_normalized() {
        assert_eq!(
            sqlite_url("sqlite:///tmp/x.db"),
            ("sqlite:///tmp/x.db?mode=rwc".to_owned(), false)
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/x.db?cache=private"),
            (
                "sqlite:///tmp/x.db?cache=private&mode=rwc".to_owned(),
                false
            )
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/x.db?mode=ro"),
            ("sqlite:///tmp/x.db?mode=ro".to_owned(), false)
        );
        let (a, mem_a) = sqlite_url("sqlite::memory:");
        let (b, mem_b) = sqlite_url("sqlite://:memory:");
        assert!(mem_a && mem_b);
        assert_ne!(a, b, "each in-memory store is its own database");
    }
}
