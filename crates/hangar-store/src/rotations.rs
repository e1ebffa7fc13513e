//! Group commit of refresh-token rotations on SQLite ([`RotationQueue`]).
//!
//! SQLite has one writer at a time, so under load every rotation waits for the ones before
//! it, and each one costs a transaction plus the hand-offs between the async caller and the
//! connection's thread. The queue's task takes every rotation waiting (up to
//! [`MAX_BATCH`]) and writes them as **one transaction in one round trip**: per rotation the
//! compare-and-set update and the insert conditional on it, exactly as a single rotation
//! would run them, each answering with the hashes it wrote. A batch that fails is rolled back
//! and its rotations are run one by one, so one bad rotation fails only itself.

use std::fmt::Write as _;
use std::time::Duration;

use hangar_core::Timestamp;
use hangar_oauth::SecretHash;
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::codec::ms;
use crate::error::StoreError;
use crate::oauth::{bind_tokens, rotate_refresh_update, token_rows, NEW_TOKEN_COLUMNS};
use crate::{sqlite_transaction_batch, NewOAuthToken};

/// Most rotations written in one transaction (22 bound values each for an access and a
/// refresh token, far below SQLite's limit of 32 766).
pub(crate) const MAX_BATCH: usize = 64;

/// Most rotations waiting for the writer; a caller beyond that waits to get in line.
const QUEUE_DEPTH: usize = 1024;

/// Longest a caller waits for its rotation: in line, for the writer connection (the pool's
/// acquire timeout) and for the file lock ([`crate::SQLITE_BUSY_TIMEOUT_MS`]).
const DEADLINE: Duration = Duration::from_secs(30);

/// The line of rotations waiting for a SQLite writer, and the task that writes them. Cheap to
/// clone; the task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct RotationQueue {
    requests: mpsc::Sender<Rotation>,
}

/// One rotation in line.
#[derive(Debug)]
struct Rotation {
    hash: SecretHash,
    now: Timestamp,
    tokens: Vec<NewOAuthToken>,
    /// Whether the compare-and-set won (and the tokens were written).
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

impl RotationQueue {
    /// Starts the task writing through `write` (a pool of one SQLite connection, or the only
    /// one). Needs a Tokio runtime.
    pub(crate) fn start(write: AnyPool) -> RotationQueue {
        let (requests, line) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_batches(write, line));
        RotationQueue { requests }
    }

    /// Rotates `hash` at `now` to `tokens` (see [`crate::OAuthRepo::rotate_refresh`]) in the
    /// next batch. Returns whether the compare-and-set won. Errors: [`StoreError::Timeout`]
    /// after [`DEADLINE`], a database error of the rotation's own transaction.
    pub(crate) async fn rotate(
        &self,
        hash: &SecretHash,
        now: Timestamp,
        tokens: &[NewOAuthToken],
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let rotation = Rotation {
            hash: *hash,
            now,
            tokens: tokens.to_vec(),
            reply,
        };
        let gone = || StoreError::Database(sqlx::Error::PoolClosed);
        let wait = async {
            self.requests.send(rotation).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .map_err(|_| StoreError::Timeout {
                what: "rotating a refresh token",
            })?
    }
}

/// The task: takes everything in line, writes it as one batch, answers each caller.
async fn write_batches(write: AnyPool, mut line: mpsc::Receiver<Rotation>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while line.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A caller that stopped waiting gets nothing written.
        batch.retain(|r: &Rotation| !r.reply.is_closed());
        match write_batch(&write, &batch).await {
            Ok(outcomes) => {
                for (rotation, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = rotation.reply.send(outcome);
                }
            }
            Err(err) if batch.len() == 1 => {
                if let Some(rotation) = batch.pop() {
                    let _ = rotation.reply.send(Err(err));
                }
            }
            // Nothing was written: find the rotation that failed by writing each alone.
            Err(_) => {
                for rotation in batch.drain(..) {
                    let outcome = write_batch(&write, std::slice::from_ref(&rotation))
                        .await
                        .and_then(|mut outcomes| outcomes.pop().unwrap_or(Ok(false)));
                    let _ = rotation.reply.send(outcome);
                }
            }
        }
    }
}

/// Writes `batch` in one transaction. Returns, per rotation, whether its compare-and-set won;
/// errors if the transaction failed (then nothing was written).
async fn write_batch(
    write: &AnyPool,
    batch: &[Rotation],
) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let sql = batch_sql(batch);
    let mut query = sqlx::query(&sql);
    for rotation in batch {
        query = bind_tokens(
            query.bind(rotation.hash.to_hex()).bind(ms(rotation.now)),
            &rotation.tokens,
        );
    }
    let rows = sqlite_transaction_batch(write, query)
        .await
        .map_err(StoreError::from_write("oauth token"))?;
    // Each returned row names its rotation and whether it is the update (0) or an insert (1).
    let mut written = vec![(0usize, 0usize); batch.len()];
    for row in &rows {
        let item: i64 = row.try_get(0)?;
        let inserted: i64 = row.try_get(1)?;
        let Some(counts) = usize::try_from(item).ok().and_then(|i| written.get_mut(i)) else {
            return Err(StoreError::corrupt("oauth_tokens", "a rotation batch row"));
        };
        if inserted == 0 {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    Ok(batch
        .iter()
        .zip(written)
        .map(|(rotation, (rotated, inserted))| {
            let expected = if rotated == 1 {
                rotation.tokens.len()
            } else {
                0
            };
            if rotated <= 1 && inserted == expected {
                Ok(rotated == 1)
            } else {
                Err(StoreError::corrupt(
                    "oauth_tokens",
                    format!(
                        "a refresh rotation changed {rotated} old and {inserted} new rows \
                         for {} tokens",
                        rotation.tokens.len()
                    ),
                ))
            }
        })
        .collect())
}

/// `BEGIN IMMEDIATE; (update RETURNING k, 0; insert WHERE changes() = 1 RETURNING k, 1;)...;
/// COMMIT` for rotations `k = 0, 1, ...`, numbering each rotation's values after the previous
/// one's (sqlx-sqlite binds `$N` by number in every statement of a batch).
fn batch_sql(batch: &[Rotation]) -> String {
    let mut sql = String::from("BEGIN IMMEDIATE;");
    let mut next = 1;
    for (k, rotation) in batch.iter().enumerate() {
        let _ = write!(
            sql,
            " {} RETURNING {k}, 0;",
            rotate_refresh_update(next, next + 1)
        );
        if !rotation.tokens.is_empty() {
            let _ = write!(
                sql,
                " INSERT INTO oauth_tokens ({NEW_TOKEN_COLUMNS}) \
                 SELECT * FROM (VALUES {}) WHERE changes() = 1 RETURNING {k}, 1;",
                token_rows(rotation.tokens.len(), next + 2)
            );
        }
        next += 2 + 10 * rotation.tokens.len();
    }
    sql.push_str(" COMMIT");
    sql
}
