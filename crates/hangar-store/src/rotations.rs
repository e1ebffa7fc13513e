//! Group commit of refresh-token rotations ([`RotationQueue`]), the token endpoint's hot write.
//!
//! Alone, every rotation costs a transaction, a commit and the round trips to the database;
//! on SQLite, with one writer at a time, it also waits for every rotation before it, plus the
//! hand-offs between the async caller and the connection's thread. The queue's task takes
//! every rotation waiting (up to [`MAX_BATCH`], each old token at most once) and writes them
//! as **one transaction in one round trip**, with the same compare-and-set per rotation:
//!
//! - SQLite: one batch `BEGIN IMMEDIATE; INSERT ...; UPDATE ...; COMMIT` whatever its size:
//!   the insert of every new token whose old token passes the compare-and-set, then the
//!   update of those old tokens under the same condition. Nothing else writes between the
//!   two (one transaction, one writer), so both pick the same rotations;
//! - PostgreSQL: one statement, the updates as one `UPDATE ... FROM (VALUES ...)` in a
//!   data-modifying `WITH`, the inserts conditional on the rotations it returned.
//!
//! The new tokens take their grant, person, family and authentication time from the old row
//! in the same statements, and the update returns what the caller needs of it, so a refresh
//! reads nothing before its rotation. Only the rotations that won return a row (the old
//! token's hash with what was read): with sqlx-sqlite every row and every statement's result
//! is a message between the connection's thread and the task, so fewer is faster.
//!
//! A batch that fails is rolled back and its rotations are written one by one, so one bad
//! rotation fails only itself.

use std::fmt::Write as _;
use std::time::Duration;

use hangar_core::Timestamp;
use hangar_oauth::SecretHash;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{col, ms, parse};
use crate::error::StoreError;
use crate::oauth::{hash_col, scopes_col, NEW_TOKEN_COLUMNS};
use crate::{sqlite_transaction_batch, Dialect, RefreshedTokens, RotatedRefresh};

/// Most rotations written in one transaction ([`BOUND_PER_ROTATION`] values each, far below
/// SQLite's limit of 32 766 bound values and PostgreSQL's of 65 535).
pub(crate) const MAX_BATCH: usize = 64;

/// Values bound per rotation, in this order: the old token's hash, now, the client, the new
/// access token's hash, scope (or NULL) and expiry, the new refresh token's hash and expiry.
const BOUND_PER_ROTATION: usize = 8;

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
    tokens: RefreshedTokens,
    /// What the won compare-and-set read (and the tokens were written); `None`: it lost.
    reply: oneshot::Sender<Result<Option<RotatedRefresh>, StoreError>>,
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
    /// next batch. Returns what the compare-and-set read if it won, `None` if it lost.
    /// Errors: [`StoreError::Timeout`] after [`DEADLINE`], a database error of the rotation's
    /// own transaction.
    pub(crate) async fn rotate(
        &self,
        hash: &SecretHash,
        now: Timestamp,
        tokens: &RefreshedTokens,
    ) -> Result<Option<RotatedRefresh>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let rotation = Rotation {
            hash: *hash,
            now,
            tokens: tokens.clone(),
            reply,
        };
        let gone = || StoreError::Database(sqlx::Error::PoolClosed);
        let wait = async {
            self.requests.send(rotation).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        };
        StoreError::within(DEADLINE, "rotating a refresh token", wait).await
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
                let _ = rotation.reply.send(Ok(outcome));
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
                    .map(|mut outcomes| outcomes.pop().flatten());
                let _ = rotation.reply.send(outcome);
            }
        }
    }
}

/// Writes `batch` (each old token at most once) in one transaction. Returns, per rotation,
/// what its compare-and-set read if it won; errors if the transaction failed (then nothing
/// was written).
async fn write_batch(
    write: &AnyPool,
    dialect: Dialect,
    batch: &[Rotation],
) -> Result<Vec<Option<RotatedRefresh>>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match dialect {
        Dialect::Sqlite => sqlite_batch(batch),
        Dialect::Postgres => postgres_batch(batch),
    };
    let mut query = sqlx::query(&sql);
    for rotation in batch {
        let t = &rotation.tokens;
        query = query
            .bind(rotation.hash.to_hex())
            .bind(ms(rotation.now))
            .bind(t.client_id.as_str().to_owned())
            .bind(t.access.to_hex())
            .bind(t.access_scopes.as_ref().map(ToString::to_string))
            .bind(ms(t.access_expires_at))
            .bind(t.refresh.to_hex())
            .bind(ms(t.refresh_expires_at));
    }
    let rows = match dialect {
        Dialect::Sqlite => sqlite_transaction_batch(write, query).await,
        Dialect::Postgres => query.fetch_all(write).await,
    }
    .map_err(StoreError::from_write("oauth token"))?;
    // One row per rotation that won, named by its old token's hash.
    let mut read: Vec<Option<RotatedRefresh>> = vec![None; batch.len()];
    for row in &rows {
        let old: String = col(row, "token_hash")?;
        let grant: String = col(row, "grant_id")?;
        let user: String = col(row, "user_id")?;
        let scopes: String = col(row, "scopes")?;
        let old = hash_col("oauth_tokens.token_hash", &old)?;
        let slot = batch
            .iter()
            .position(|r| r.hash == old)
            .and_then(|k| read.get_mut(k))
            .filter(|slot| slot.is_none())
            .ok_or_else(|| StoreError::corrupt("oauth_tokens", "a rotation batch row"))?;
        *slot = Some(RotatedRefresh {
            grant_id: parse("oauth_tokens.grant_id", &grant)?,
            user: parse("oauth_tokens.user_id", &user)?,
            scopes: scopes_col("oauth_tokens.scopes", &scopes)?,
        });
    }
    Ok(read)
}

/// The compare-and-set of a rotation, for the old token's hash `hash` at `now` presented by
/// `client` (SQL expressions): it must be a refresh token of that client, unrotated,
/// unrevoked, unexpired, with a live grant. It is `RefreshTokenState::check_refresh`
/// (hangar-oauth) as one condition; the caller of a lost rotation asks that for the reason.
fn rotatable(hash: &str, now: &str, client: &str) -> String {
    format!(
        "oauth_tokens.token_hash = {hash} AND oauth_tokens.kind = 'refresh' \
         AND oauth_tokens.client_id = {client} AND oauth_tokens.rotated_at IS NULL \
         AND oauth_tokens.revoked_at IS NULL \
         AND (oauth_tokens.expires_at IS NULL OR oauth_tokens.expires_at > {now}) \
         AND EXISTS (SELECT 1 FROM oauth_grants g \
                     WHERE g.id = oauth_tokens.grant_id AND g.revoked_at IS NULL)"
    )
}

/// Each rotation with its place `k` in the batch and the `$N` names of its
/// [`BOUND_PER_ROTATION`] values, in binding order.
fn numbering(batch: &[Rotation]) -> impl Iterator<Item = (usize, [String; BOUND_PER_ROTATION])> {
    (0..batch.len()).map(|k| {
        let first = 1 + k * BOUND_PER_ROTATION;
        (k, std::array::from_fn(|i| format!("${}", first + i)))
    })
}

/// `BEGIN IMMEDIATE; INSERT (the new tokens of every rotation whose old token passes the
/// compare-and-set, from the old row); UPDATE (those old tokens) RETURNING what it read;
/// COMMIT`. sqlx-sqlite binds `$N` by number in every statement of a batch, so both
/// statements name the same values.
fn sqlite_batch(batch: &[Rotation]) -> String {
    let mut new_tokens = String::new();
    let mut olds = String::new();
    for (_, [hash, now, client, access, access_scopes, access_exp, refresh, refresh_exp]) in
        numbering(batch)
    {
        let sep = if olds.is_empty() { "" } else { ", " };
        let _ = write!(
            new_tokens,
            "{sep}({hash}, {now}, {client}, {access}, 'access', {access_scopes}, {access_exp}), \
             ({hash}, {now}, {client}, {refresh}, 'refresh', NULL, {refresh_exp})"
        );
        let _ = write!(olds, "{sep}({hash}, {now}, {client})");
    }
    // SQLite names the columns of a VALUES table column1, column2, ...
    format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO oauth_tokens ({NEW_TOKEN_COLUMNS}) \
         SELECT n.column4, n.column5, oauth_tokens.grant_id, oauth_tokens.client_id, \
           oauth_tokens.user_id, oauth_tokens.family, \
           coalesce(n.column6, oauth_tokens.scopes), oauth_tokens.auth_time, n.column2, \
           n.column7 \
         FROM (VALUES {new_tokens}) AS n \
         JOIN oauth_tokens ON {}; \
         UPDATE oauth_tokens SET rotated_at = o.column2 FROM (VALUES {olds}) AS o WHERE {} \
         RETURNING token_hash, grant_id, user_id, scopes; \
         COMMIT",
        rotatable("n.column1", "n.column2", "n.column3"),
        rotatable("o.column1", "o.column2", "o.column3"),
    )
}

/// One statement: the updates as one `UPDATE ... FROM` the rotations in a data-modifying
/// `WITH`, returning what they read; the inserts of both new tokens of each rotation it
/// returned, from the old row (PostgreSQL runs a data-modifying `WITH` to completion whether
/// or not it is read); then the old hash and what was read per rotated token. The
/// compare-and-set is the one of [`rotatable`].
fn postgres_batch(batch: &[Rotation]) -> String {
    let mut input = String::new();
    for (k, values) in numbering(batch) {
        let sep = if input.is_empty() { "" } else { ", " };
        let _ = write!(input, "{sep}({k}, {})", values.join(", "));
    }
    format!(
        "WITH input (k, old_hash, now, client, access_hash, access_scopes, access_exp, \
                     refresh_hash, refresh_exp) AS (VALUES {input}), \
         rotated AS (UPDATE oauth_tokens SET rotated_at = input.now FROM input WHERE {} \
           RETURNING input.k, oauth_tokens.grant_id, oauth_tokens.client_id, \
             oauth_tokens.user_id, oauth_tokens.family, oauth_tokens.scopes, \
             oauth_tokens.auth_time), \
         inserted AS (INSERT INTO oauth_tokens ({NEW_TOKEN_COLUMNS}) \
           SELECT n.token_hash, n.kind, r.grant_id, r.client_id, r.user_id, r.family, \
             coalesce(n.scopes, r.scopes), r.auth_time, i.now, n.expires_at \
           FROM rotated r JOIN input i ON i.k = r.k \
           CROSS JOIN LATERAL (VALUES (i.access_hash, 'access', i.access_scopes, i.access_exp), \
             (i.refresh_hash, 'refresh', NULL, i.refresh_exp)) \
             AS n (token_hash, kind, scopes, expires_at) \
           ) \
         SELECT i.old_hash AS token_hash, r.grant_id, r.user_id, r.scopes \
           FROM rotated r JOIN input i ON i.k = r.k",
        rotatable("input.old_hash", "input.now", "input.client")
    )
}
