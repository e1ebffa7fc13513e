//! Group commit of refresh-token rotations ([`RotationQueue`]), the token endpoint's hot write.
//!
//! Alone, every rotation costs a transaction, a commit and the round trips to the database;
//! on SQLite, with one writer at a time, it also waits for every rotation before it, plus the
//! hand-offs between the async caller and the connection's thread. The queue's task takes
//! every rotation waiting (up to [`MAX_BATCH`], each old token at most once) and writes them
//! as **one transaction in one round trip**, with the same compare-and-set per rotation:
//!
//! - SQLite: one batch `BEGIN IMMEDIATE; ...; COMMIT` holding, per rotation, the update and
//!   an insert conditional on its `changes()`;
//! - PostgreSQL: one statement, the updates as one `UPDATE ... FROM (VALUES ...)` in a
//!   data-modifying `WITH`, the inserts conditional on the rotations it returned.
//!
//! Each rotation's rows come back tagged with its place in the batch. A batch that fails is
//! rolled back and its rotations are written one by one, so one bad rotation fails only
//! itself.

use std::fmt::Write as _;
use std::time::Duration;

use hangar_core::Timestamp;
use hangar_oauth::SecretHash;
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::codec::ms;
use crate::error::StoreError;
use crate::oauth::{bind_tokens, token_rows, NEW_TOKEN_COLUMNS};
use crate::{sqlite_transaction_batch, Dialect, NewOAuthToken};

/// Most rotations written in one transaction (22 bound values each for an access and a
/// refresh token, far below SQLite's limit of 32 766 and PostgreSQL's of 65 535).
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
    /// Starts the task writing through `write` (it uses one connection at a time). Needs a
    /// Tokio runtime.
    pub(crate) fn start(write: AnyPool, dialect: Dialect) -> RotationQueue {
        let (requests, line) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_batches(write, dialect, line));
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
async fn write_batches(write: AnyPool, dialect: Dialect, mut line: mpsc::Receiver<Rotation>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while line.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        while !waiting.is_empty() {
            // A caller that stopped waiting gets nothing written.
            waiting.retain(|r: &Rotation| !r.reply.is_closed());
            // Each old token once per batch; a second rotation of it goes in the next.
            let mut batch = Vec::with_capacity(waiting.len());
            let mut later = Vec::new();
            for rotation in waiting.drain(..) {
                if batch.iter().any(|r: &Rotation| r.hash == rotation.hash) {
                    later.push(rotation);
                } else {
                    batch.push(rotation);
                }
            }
            write_and_answer(&write, dialect, batch).await;
            waiting = later;
        }
    }
}

/// Writes `batch` and answers its callers: all together, or one by one if that failed.
async fn write_and_answer(write: &AnyPool, dialect: Dialect, mut batch: Vec<Rotation>) {
    match write_batch(write, dialect, &batch).await {
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
                let outcome = write_batch(write, dialect, std::slice::from_ref(&rotation))
                    .await
                    .and_then(|mut outcomes| outcomes.pop().unwrap_or(Ok(false)));
                let _ = rotation.reply.send(outcome);
            }
        }
    }
}

/// Writes `batch` (each old token at most once) in one transaction. Returns, per rotation,
/// whether its compare-and-set won; errors if the transaction failed (then nothing was
/// written).
async fn write_batch(
    write: &AnyPool,
    dialect: Dialect,
    batch: &[Rotation],
) -> Result<Vec<Result<bool, StoreError>>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match dialect {
        Dialect::Sqlite => sqlite_batch(batch),
        Dialect::Postgres => postgres_batch(batch),
    };
    let mut query = sqlx::query(&sql);
    for rotation in batch {
        query = bind_tokens(
            query.bind(rotation.hash.to_hex()).bind(ms(rotation.now)),
            &rotation.tokens,
        );
    }
    let rows = match dialect {
        Dialect::Sqlite => sqlite_transaction_batch(write, query).await,
        Dialect::Postgres => query.fetch_all(write).await,
    }
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

/// The compare-and-set of a rotation, for the old token's hash `hash` at `now` (SQL
/// expressions): it must be a refresh token, unrotated, unrevoked, unexpired, with a live
/// grant.
fn rotatable(hash: &str, now: &str) -> String {
    format!(
        "token_hash = {hash} AND kind = 'refresh' AND rotated_at IS NULL \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {now}) \
         AND EXISTS (SELECT 1 FROM oauth_grants g \
                     WHERE g.id = oauth_tokens.grant_id AND g.revoked_at IS NULL)"
    )
}

/// The `$N` numbers of each rotation's values, in binding order: its hash, its now, and the
/// first of its tokens' values (10 per token, [`token_rows`]).
fn numbering(batch: &[Rotation]) -> impl Iterator<Item = (usize, &Rotation, usize)> {
    batch
        .iter()
        .scan(1, |next, rotation| {
            let first = *next;
            *next += 2 + 10 * rotation.tokens.len();
            Some((first, rotation))
        })
        .enumerate()
        .map(|(k, (first, rotation))| (k, rotation, first))
}

/// `BEGIN IMMEDIATE; (update RETURNING k, 0; insert WHERE changes() = 1 RETURNING k, 1;)...;
/// COMMIT` for rotations `k = 0, 1, ...` (sqlx-sqlite binds `$N` by number in every statement
/// of a batch).
fn sqlite_batch(batch: &[Rotation]) -> String {
    let mut sql = String::from("BEGIN IMMEDIATE;");
    for (k, rotation, first) in numbering(batch) {
        let (hash, now) = (format!("${first}"), format!("${}", first + 1));
        let _ = write!(
            sql,
            " UPDATE oauth_tokens SET rotated_at = {now} WHERE {} RETURNING {k}, 0;",
            rotatable(&hash, &now)
        );
        if !rotation.tokens.is_empty() {
            let _ = write!(
                sql,
                " INSERT INTO oauth_tokens ({NEW_TOKEN_COLUMNS}) \
                 SELECT * FROM (VALUES {}) WHERE changes() = 1 RETURNING {k}, 1;",
                token_rows(rotation.tokens.len(), first + 2)
            );
        }
    }
    sql.push_str(" COMMIT");
    sql
}

/// One statement: the updates as one `UPDATE ... FROM` the rotations `(k, hash, now)` in a
/// data-modifying `WITH`, the inserts of the tokens `(k, ...)` of the rotations it returned,
/// then `(k, 0)` per rotated token and `(k, 1)` per inserted one. The compare-and-set is the
/// one of [`rotatable`].
fn postgres_batch(batch: &[Rotation]) -> String {
    let mut input = String::new();
    let mut tokens = String::new();
    for (k, rotation, first) in numbering(batch) {
        let sep = if input.is_empty() { "" } else { ", " };
        let _ = write!(input, "{sep}({k}, ${first}, ${})", first + 1);
        for i in 0..rotation.tokens.len() {
            let sep = if tokens.is_empty() { "" } else { ", " };
            let row = token_rows(1, first + 2 + 10 * i);
            let _ = write!(tokens, "{sep}({k}, {}", &row[1..]);
        }
    }
    let mut sql = format!(
        "WITH input (k, old_hash, now) AS (VALUES {input}), \
         rotated AS (UPDATE oauth_tokens SET rotated_at = input.now FROM input WHERE {} \
           RETURNING input.k)",
        rotatable("input.old_hash", "input.now")
    );
    if tokens.is_empty() {
        sql.push_str(" SELECT k::bigint, 0::bigint FROM rotated");
        return sql;
    }
    let _ = write!(
        sql,
        ", new_tokens (k, {NEW_TOKEN_COLUMNS}) AS (VALUES {tokens}), \
         inserted AS (INSERT INTO oauth_tokens ({NEW_TOKEN_COLUMNS}) \
           SELECT {NEW_TOKEN_COLUMNS} FROM new_tokens WHERE k IN (SELECT k FROM rotated) \
           RETURNING token_hash) \
         SELECT k::bigint, 0::bigint FROM rotated \
         UNION ALL SELECT n.k::bigint, 1::bigint FROM inserted \
           JOIN new_tokens n ON n.token_hash = inserted.token_hash"
    );
    sql
}
