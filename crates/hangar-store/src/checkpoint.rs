//! A SQLite file's WAL checkpoints, taken off the writer's path ([`WalCheckpointer`]).
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a checkpoint copies them back
//! into the database file and syncs it. SQLite's own autocheckpoint runs inside the `COMMIT`
//! that takes the WAL past 1000 pages: that writer (and every writer queued behind it) waits
//! for the copy and the sync of a thousand scattered pages, 20 to 30 ms on this class of
//! machine, against about 6 ms for a whole batch of refresh rotations.
//!
//! So a task with a connection of its own runs a `PASSIVE` checkpoint shortly after each write
//! (the write pool wakes it when its connection comes back): the copy and the sync happen
//! beside the writer. A passive checkpoint never waits for a lock and never blocks a reader or
//! the writer; it copies what was committed when it began.
//!
//! Under steady writes a passive checkpoint never catches up completely, and SQLite starts the
//! WAL over from its beginning only after one has. So the writer keeps an autocheckpoint, at
//! [`WRITER_AUTOCHECKPOINT_PAGES`]: when the WAL reaches that size, the writer's checkpoint has
//! only what was committed since the last passive one left to copy, and the next write starts
//! the WAL over. The WAL file stays below about 40 MB (SQLite keeps it at its largest size for
//! reuse).
//!
//! Source: <https://www.sqlite.org/wal.html> (checkpointing, automatic checkpoint, WAL reset)
//! and <https://www.sqlite.org/pragma.html#pragma_wal_checkpoint>.

use std::time::Duration;

use sqlx::{Connection as _, Executor as _};
use tokio::sync::mpsc;

use crate::error::StoreError;

/// The writer's `wal_autocheckpoint`, in pages of 4 KiB: the bound on the WAL (SQLite's
/// default is 1000; with the copying done beside the writer, a larger bound means fewer
/// commits that finish a checkpoint, each with as little left to copy).
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Quiet time between a write and the checkpoint it wakes, so writes close together are
/// copied by one checkpoint.
pub(crate) const CHECKPOINT_DELAY: Duration = Duration::from_millis(5);

/// The waking side of a WAL checkpointer (held by the write pool's release hook). The task
/// ends, and closes its connection, when this is dropped with the pool.
#[derive(Debug)]
pub(crate) struct WalCheckpointer {
    wake: mpsc::Sender<()>,
}

impl WalCheckpointer {
    /// Opens the checkpointer's connection to the SQLite file at `url` within `timeout` and
    /// starts its task. Errors: [`StoreError::Database`] (the connection cannot be opened),
    /// [`StoreError::Timeout`].
    pub(crate) async fn start(url: &str, timeout: Duration) -> Result<WalCheckpointer, StoreError> {
        let open = async {
            let mut conn = sqlx::AnyConnection::connect(url).await?;
            // The checkpoint's own sync of the database file; the WAL's is as the writer's.
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            Ok::<_, sqlx::Error>(conn)
        };
        let mut conn =
            StoreError::within(timeout, "opening the WAL checkpointer's connection", open).await?;
        // One pending wake is enough: a checkpoint copies everything committed before it.
        let (wake, mut woken) = mpsc::channel(1);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                tokio::time::sleep(CHECKPOINT_DELAY).await;
                // Wakes that came during the delay are served by this checkpoint.
                while woken.try_recv().is_ok() {}
                if let Err(err) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                    tracing::debug!(%err, "WAL checkpoint failed; the next write tries again");
                }
            }
            let _ = conn.close().await;
        });
        Ok(WalCheckpointer { wake })
    }

    /// Asks for a checkpoint soon (never waits; a wake already pending covers this one).
    pub(crate) fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}
