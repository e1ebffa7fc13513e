//! A SQLite file's WAL checkpoints, taken off the writer's path ([`WalCheckpointer`]).
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them back
//! into the database file and syncs it. SQLite's own autocheckpoint runs inside the `COMMIT`
//! that takes the WAL past 1000 pages: that writer (and every writer queued behind it) waits
//! for the copy and the sync of a thousand scattered pages, 20 to 30 ms on this class of
//! machine, against about 3 ms for a whole batch of refresh rotations.
//!
//! So a task with a connection of its own runs a `PASSIVE` checkpoint shortly after each write
//! (the write pool wakes it when its connection comes back): the copy happens beside the
//! writer. A passive checkpoint never waits for a lock and never blocks a reader or the
//! writer; it copies what was committed when it began.
//!
//! Two things about SQLite's checkpoints shape the rest (measured with `perf` syscall
//! tracepoints on the refresh benchmark):
//!
//! - SQLite syncs the database file only when a checkpoint reaches the end of the WAL. Under
//!   steady writes a passive checkpoint never does, so the copied pages stayed dirty in the
//!   page cache until one did: about 40 MB, and that one sync took 33 ms. The task syncs the
//!   database file itself beside its checkpoints ([`DatabaseSync`]), so the dirty pages never
//!   pile up.
//! - SQLite starts the WAL over from its beginning only after a checkpoint has copied all of
//!   it. With writes arriving all the time, that takes a checkpoint while nothing is written:
//!   a pause of the writer, as long as the copy of what is left plus two syncs. Copying is
//!   about 80 pages a millisecond here, so the pause is kept short by leaving little: when the
//!   WAL passes [`FINISH_PAGES`], the task runs checkpoints back to back ([`CatchUp`]) until
//!   one had little to copy, then asks the writer to finish: the write pool's release hook runs
//!   one more passive checkpoint on the writer's connection ([`finish`]), between two writes,
//!   and the next write starts the WAL over.
//!
//! The writer keeps an autocheckpoint as the bound, at [`WRITER_AUTOCHECKPOINT_PAGES`]: if the
//! task falls behind, the WAL stays below about 64 MB (SQLite keeps the file at its largest
//! size for reuse).
//!
//! Source: <https://www.sqlite.org/wal.html> (checkpointing, automatic checkpoint, WAL reset),
//! <https://www.sqlite.org/pragma.html#pragma_wal_checkpoint> and `walCheckpoint` in
//! SQLite's `wal.c` (when the database file is synced).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection as _, Executor as _};
use tokio::sync::mpsc;

use crate::error::StoreError;

/// The writer's `wal_autocheckpoint`, in pages of 4 KiB: the bound on the WAL if the
/// checkpointer falls behind (SQLite's default is 1000).
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_000;

/// WAL length, in pages, from which the checkpointer catches up and asks the writer to finish
/// (see the module documentation).
pub(crate) const FINISH_PAGES: i64 = 8_000;

/// A catch-up run that copied at most this many pages leaves little for the writer: about
/// what is committed during one run.
pub(crate) const FINISH_REST_PAGES: i64 = 512;

/// Most checkpoints run back to back in one catch-up.
pub(crate) const MAX_CATCH_UP_RUNS: u32 = 4;

/// Quiet time between a write and the checkpoint it wakes, so writes close together are
/// copied by one checkpoint.
pub(crate) const CHECKPOINT_DELAY: Duration = Duration::from_millis(5);

/// What a `PRAGMA wal_checkpoint` answered, in WAL frames (one page each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checkpoint {
    /// Another checkpoint was running (the writer's): nothing was done.
    Busy,
    /// `log` frames were in the WAL when it began; the first `backfilled` of them are now in
    /// the database file.
    Done { log: i64, backfilled: i64 },
}

impl Checkpoint {
    /// From the row `(busy, log, checkpointed)` of `PRAGMA wal_checkpoint`.
    fn from_row((busy, log, backfilled): (i64, i64, i64)) -> Checkpoint {
        if busy != 0 || log < 0 {
            Checkpoint::Busy
        } else {
            Checkpoint::Done { log, backfilled }
        }
    }
}

/// What the checkpointer does after a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait for the next write.
    Wait,
    /// Checkpoint again at once: the WAL is long and the last run still had much to copy.
    Again,
    /// Ask the writer to finish the checkpoint.
    Finish,
}

/// The state of one catch-up: checkpoints run back to back once the WAL is long, until one
/// copied at most [`FINISH_REST_PAGES`] (so about that much is left) or
/// [`MAX_CATCH_UP_RUNS`] ran.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    runs: u32,
    /// Frames in the database file after the previous run of this catch-up.
    backfilled: Option<i64>,
}

impl CatchUp {
    /// Takes the result of the checkpoint just run and says what comes next.
    pub(crate) fn after(&mut self, checkpoint: Checkpoint) -> Next {
        let Checkpoint::Done { log, backfilled } = checkpoint else {
            return self.stop(Next::Wait);
        };
        if log < FINISH_PAGES {
            return self.stop(Next::Wait);
        }
        let copied = self.backfilled.map(|before| backfilled - before);
        self.runs += 1;
        self.backfilled = Some(backfilled);
        match copied {
            // The WAL started over since the last run (the writer's bound finished it).
            Some(n) if n < 0 => self.stop(Next::Wait),
            Some(n) if n <= FINISH_REST_PAGES => self.stop(Next::Finish),
            _ if self.runs >= MAX_CATCH_UP_RUNS => self.stop(Next::Finish),
            _ => Next::Again,
        }
    }

    fn stop(&mut self, next: Next) -> Next {
        *self = CatchUp::default();
        next
    }
}

/// The waking side of a WAL checkpointer (held by the write pool's release hook). The task
/// ends, and closes its connection, when this is dropped with the pool.
#[derive(Debug)]
pub(crate) struct WalCheckpointer {
    wake: mpsc::Sender<()>,
    /// Set by the task when the writer should finish a checkpoint ([`finish`]).
    finish: Arc<AtomicBool>,
}

impl WalCheckpointer {
    /// Opens the checkpointer's connection to the SQLite file at `url` within `timeout` and
    /// starts its task. Errors: [`StoreError::Database`] (the connection cannot be opened, or
    /// the database file cannot be opened for its syncs), [`StoreError::Timeout`].
    pub(crate) async fn start(url: &str, timeout: Duration) -> Result<WalCheckpointer, StoreError> {
        let open = async {
            let mut conn = sqlx::AnyConnection::connect(url).await?;
            // A checkpoint syncs the WAL before it copies, and the database file when it
            // reaches the end of the WAL (the task syncs the file beside, see above).
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            // `(seq, name, file)` per attached database; `main` is the file itself.
            let (_, _, path): (i64, String, String) = sqlx::query_as("PRAGMA database_list")
                .fetch_one(&mut conn)
                .await?;
            let file = std::fs::File::open(PathBuf::from(path)).map_err(sqlx::Error::Io)?;
            Ok::<_, sqlx::Error>((conn, Arc::new(file)))
        };
        let (mut conn, file) =
            StoreError::within(timeout, "opening the WAL checkpointer's connection", open).await?;
        // One pending wake is enough: a checkpoint copies everything committed before it.
        let (wake, mut woken) = mpsc::channel(1);
        let finish = Arc::new(AtomicBool::new(false));
        let finish_wanted = finish.clone();
        tokio::spawn(async move {
            let mut catch_up = CatchUp::default();
            let mut syncing = DatabaseSync::new(file);
            while woken.recv().await.is_some() {
                tokio::time::sleep(CHECKPOINT_DELAY).await;
                // Wakes that came during the delay are served by this checkpoint.
                while woken.try_recv().is_ok() {}
                loop {
                    let checkpoint = match passive_checkpoint(&mut conn).await {
                        Ok(checkpoint) => checkpoint,
                        Err(err) => {
                            tracing::debug!(%err, "WAL checkpoint failed; the next write tries again");
                            break;
                        }
                    };
                    if checkpoint != Checkpoint::Busy {
                        syncing.start().await;
                    }
                    match catch_up.after(checkpoint) {
                        Next::Wait => break,
                        Next::Again => continue,
                        Next::Finish => {
                            finish_wanted.store(true, Ordering::Release);
                            break;
                        }
                    }
                }
            }
            let _ = conn.close().await;
        });
        Ok(WalCheckpointer { wake, finish })
    }

    /// Asks for a checkpoint soon (never waits; a wake already pending covers this one).
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Whether the writer should finish a checkpoint now; a `true` is given out once.
    pub(crate) fn take_finish(&self) -> bool {
        self.finish.swap(false, Ordering::AcqRel)
    }
}

/// Runs a `PASSIVE` checkpoint on `conn`.
async fn passive_checkpoint(conn: &mut sqlx::AnyConnection) -> Result<Checkpoint, sqlx::Error> {
    let row: (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok(Checkpoint::from_row(row))
}

/// Syncs of the database file (`fdatasync`) beside the checkpoints, on a blocking thread, one
/// at a time: a checkpoint never waits for one, so catch-up runs follow each other at once,
/// and the pages copied are written out while the next run copies. A failure is logged only:
/// SQLite's own sync at the end of a complete checkpoint still comes.
struct DatabaseSync {
    file: Arc<std::fs::File>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl DatabaseSync {
    fn new(file: Arc<std::fs::File>) -> DatabaseSync {
        DatabaseSync {
            file,
            running: None,
        }
    }

    /// Starts a sync of everything copied so far, unless one is still running (the next
    /// checkpoint starts one then).
    async fn start(&mut self) {
        if let Some(running) = self.running.take_if(|sync| sync.is_finished()) {
            match running.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%err, "syncing the database file failed"),
                Err(err) => tracing::debug!(%err, "the database file's sync did not run"),
            }
        }
        if self.running.is_none() {
            let file = self.file.clone();
            self.running = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        }
    }
}

/// The writer's part of a checkpoint the checkpointer asked it to finish
/// ([`WalCheckpointer::take_finish`]), run by the write pool's release hook on the writer's
/// connection: a `PASSIVE` checkpoint that, with no write in between, copies the rest of the
/// WAL, so the next write starts the WAL over. A failure is logged only (the writer's
/// autocheckpoint stays the bound).
pub(crate) async fn finish(conn: &mut sqlx::AnyConnection) {
    if let Err(err) = passive_checkpoint(conn).await {
        tracing::debug!(%err, "finishing a WAL checkpoint on the writer failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(log: i64, backfilled: i64) -> Checkpoint {
        Checkpoint::Done { log, backfilled }
    }

    #[test]
    fn a_short_wal_is_left_to_the_next_write() {
        let mut catch_up = CatchUp::default();
        assert_eq!(
            catch_up.after(done(FINISH_PAGES - 1, FINISH_PAGES - 1)),
            Next::Wait
        );
        assert_eq!(catch_up.after(Checkpoint::Busy), Next::Wait);
    }

    #[test]
    fn a_long_wal_is_caught_up_until_little_is_left_then_finished() {
        let mut catch_up = CatchUp::default();
        assert_eq!(catch_up.after(done(9_000, 9_000)), Next::Again);
        // 900 pages were committed during that run, and copied by this one.
        assert_eq!(catch_up.after(done(9_900, 9_900)), Next::Again);
        assert_eq!(
            catch_up.after(done(9_900 + FINISH_REST_PAGES, 9_900 + FINISH_REST_PAGES)),
            Next::Finish
        );
        // The next long WAL starts a new catch-up.
        assert_eq!(catch_up.after(done(9_000, 9_000)), Next::Again);
    }

    #[test]
    fn a_catch_up_that_does_not_converge_finishes_after_its_last_run() {
        let mut catch_up = CatchUp::default();
        let mut next = Next::Again;
        let mut runs = 0;
        while next == Next::Again {
            runs += 1;
            let end = FINISH_PAGES + i64::from(runs) * 2 * FINISH_REST_PAGES;
            next = catch_up.after(done(end, end));
        }
        assert_eq!((next, runs), (Next::Finish, MAX_CATCH_UP_RUNS));
    }

    #[test]
    fn a_wal_started_over_or_a_busy_checkpoint_ends_the_catch_up() {
        let mut catch_up = CatchUp::default();
        assert_eq!(catch_up.after(done(12_000, 12_000)), Next::Again);
        assert_eq!(catch_up.after(done(FINISH_PAGES, 300)), Next::Wait);
        assert_eq!(catch_up.after(done(12_000, 12_000)), Next::Again);
        assert_eq!(catch_up.after(Checkpoint::Busy), Next::Wait);
        // A new catch-up: its first run has no previous one to compare with.
        assert_eq!(catch_up.after(done(12_000, 12_000)), Next::Again);
    }

    /// Writes one after another for longer than the writer's bound takes to fill: the WAL
    /// still starts over before the bound (the checkpointer caught up and the writer finished
    /// the checkpoint), so its file never grows to the bound's size.
    #[tokio::test]
    async fn steady_writes_start_the_wal_over_before_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hangar.db");
        let store = crate::Store::connect(&crate::Store::sqlite_url(&path))
            .await
            .expect("connect");
        let wal = dir.path().join("hangar.db-wal");
        // A WAL frame is a 24-byte header and a page; the file has a 32-byte header.
        let frame = 24 + 4096;
        let bound = 32 + u64::from(WRITER_AUTOCHECKPOINT_PAGES) * frame;
        // Each user is about 5 pages (the name's overflow pages in the table and in the
        // unique index): the writes add up to about twice the bound.
        let users = 2 * WRITER_AUTOCHECKPOINT_PAGES / 4;
        let name_tail = "x".repeat(8 * 1024);
        let mut largest = 0u64;
        for k in 0..users {
            let user = crate::User {
                id: hangar_core::UserId::from_uuid(uuid::Uuid::now_v7()),
                name: format!("{k}-{name_tail}"),
                is_admin: false,
                created_at: hangar_core::Timestamp::from_unix_ms(0),
            };
            store.users().create(&user).await.expect("create user");
            // SQLite keeps the file at its largest size: this is the longest the WAL got.
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        store.close().await;
        let database = std::fs::metadata(&path).expect("database file").len();
        assert!(
            database > 2 * bound,
            "the writes ({database} bytes) fill the WAL past the bound twice over"
        );
        assert!(
            largest < bound,
            "the WAL grew to {largest} bytes, the writer's bound is {bound}"
        );
    }

    #[test]
    fn the_pragma_row_maps_to_a_checkpoint() {
        assert_eq!(Checkpoint::from_row((1, -1, -1)), Checkpoint::Busy);
        assert_eq!(Checkpoint::from_row((0, 10, 7)), done(10, 7));
    }
}
