//! Connect sessions: table `connect_sessions`, one row per [`ConnectSession`], every field kept.
//!
//! | column | holds |
//! |---|---|
//! | `id`, `owner_id` | hyphenated UUIDs (`owner_id` -> `users`) |
//! | `provider` | the [`hangar_core::ProviderId`] (`codex`, `claude_code`, ...) |
//! | `flow` | the [`hangar_core::ConnectFlow`] name (`browser`, `device_code`, `paste_code`, `token`) |
//! | `state` | the [`ConnectState`] name (`starting`, `awaiting_user`, ..., `completed`) |
//! | `browser_sandbox_id` | NULL or the browser sandbox's UUID. No foreign key: sandboxes live on nodes and may be gone long before the session record |
//! | `prompt` | NULL or JSON `{"kind":"verification_uri","uri":"...","user_code":"..."}` / `{"kind":"authorize_url","url":"..."}` / `{"kind":"viewer"}` |
//! | `failure` | NULL or the failure reason (text, never a secret) |
//! | `created_at`, `expires_at`, `updated_at`, `completed_at` | unix milliseconds (`completed_at` NULL until completed) |
//! | `version` | 0 on insert, +1 on every write: the compare-and-set token |
//!
//! After the insert, the row changes only through [`ConnectSessionRepo::transition`] and
//! [`crate::Store::complete_connect`], both compare-and-set on `state` (and `version`), both
//! checked first with [`ConnectState::transition`]. Since that check refuses every change out
//! of `completed`, no write of this crate can touch a completed row.

use hangar_core::{
    ConnectPrompt, ConnectSession, ConnectSessionId, ConnectState, SandboxId, Timestamp, UserId,
};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Executor};

use crate::codec::{col, decode_prompt, encode_prompt, ms, opt_ms, opt_ts, parse, ts};
use crate::error::StoreError;
use crate::Pools;

/// Extra field updates applied in the same compare-and-set as a state change. Each `Some`
/// sets (replaces) the stored value; `None` leaves it as it is. `Default` changes nothing but
/// the state (and `updated_at`, and `completed_at` when the target is `completed`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectChange {
    /// Sets the browser sandbox in which the login runs.
    pub browser_sandbox: Option<SandboxId>,
    /// Sets what the person is shown to act on.
    pub prompt: Option<ConnectPrompt>,
    /// Sets the failure reason (short, never a secret).
    pub failure: Option<String>,
}

/// How often a write is retried when only the row's version moved underneath it (state still
/// as expected). Each retry means another writer succeeded, so this bounds the work, not a wait.
const MAX_CAS_ATTEMPTS: usize = 16;

pub(crate) const SESSION_COLUMNS: &str = "id, owner_id, provider, flow, state, \
     browser_sandbox_id, prompt, failure, created_at, expires_at, updated_at, completed_at, \
     version";

/// The non-terminal states, as SQL literals, for [`ConnectSessionRepo::list_open`].
fn open_states_sql() -> String {
    hangar_core::connect::ALL_CONNECT_STATES
        .into_iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn session_from_row(row: &AnyRow) -> Result<(ConnectSession, i64), StoreError> {
    let id: String = col(row, "id")?;
    let owner: String = col(row, "owner_id")?;
    let provider: String = col(row, "provider")?;
    let flow: String = col(row, "flow")?;
    let state: String = col(row, "state")?;
    let sandbox: Option<String> = col(row, "browser_sandbox_id")?;
    let prompt: Option<String> = col(row, "prompt")?;
    let session = ConnectSession {
        id: parse("connect_sessions.id", &id)?,
        owner: parse("connect_sessions.owner_id", &owner)?,
        provider: parse("connect_sessions.provider", &provider)?,
        flow: parse("connect_sessions.flow", &flow)?,
        state: parse("connect_sessions.state", &state)?,
        browser_sandbox: sandbox
            .as_deref()
            .map(|s| parse("connect_sessions.browser_sandbox_id", s))
            .transpose()?,
        created_at: ts(col(row, "created_at")?),
        expires_at: ts(col(row, "expires_at")?),
        updated_at: ts(col(row, "updated_at")?),
        completed_at: opt_ts(col(row, "completed_at")?),
        failure: col(row, "failure")?,
        prompt: decode_prompt(prompt.as_deref())?,
    };
    Ok((session, col(row, "version")?))
}

/// The session `id` and its version, through any executor (the pool or a transaction).
pub(crate) async fn get_versioned<'e, E>(
    executor: E,
    id: ConnectSessionId,
) -> Result<Option<(ConnectSession, i64)>, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM connect_sessions WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(session_from_row).transpose()
}

/// Reads and writes connect sessions. Get one from [`crate::Store::connect_sessions`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectSessionRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> ConnectSessionRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records a new session exactly as given (any state; normally `starting`).
    ///
    /// Errors: [`StoreError::Duplicate`] (`what: "connect session"`) if the id exists,
    /// [`StoreError::MissingReference`] if the owner does not.
    pub async fn insert(&self, session: &ConnectSession) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO connect_sessions ({SESSION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0)"
        ))
        .bind(session.id.to_string())
        .bind(session.owner.to_string())
        .bind(session.provider.as_str())
        .bind(session.flow.as_str())
        .bind(session.state.as_str())
        .bind(session.browser_sandbox.map(|s| s.to_string()))
        .bind(encode_prompt(session.prompt.as_ref())?)
        .bind(session.failure.as_deref())
        .bind(ms(session.created_at))
        .bind(ms(session.expires_at))
        .bind(ms(session.updated_at))
        .bind(opt_ms(session.completed_at))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("connect session"))?;
        Ok(())
    }

    /// The session with this id, whoever owns it (for the per-session channel, which checks
    /// ownership itself, and the sweeper; user requests go through
    /// [`ConnectSessionRepo::get_owned`]).
    pub async fn get(&self, id: ConnectSessionId) -> Result<Option<ConnectSession>, StoreError> {
        Ok(get_versioned(self.pool, id).await?.map(|(s, _)| s))
    }

    /// The session with this id if `owner` owns it; another user's session answers `None`,
    /// exactly like a missing one (the tenant wall).
    pub async fn get_owned(
        &self,
        owner: UserId,
        id: ConnectSessionId,
    ) -> Result<Option<ConnectSession>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM connect_sessions WHERE id = $1 AND owner_id = $2"
        ))
        .bind(id.to_string())
        .bind(owner.to_string())
        .fetch_optional(self.pool)
        .await?;
        row.map(|r| session_from_row(&r).map(|(s, _)| s))
            .transpose()
    }

    /// Records the SHA-256 (64 lowercase hex characters) of the session's viewer token, once.
    /// Errors: [`StoreError::NotFound`] if the session does not exist or already has one.
    pub async fn set_viewer_token_hash(
        &self,
        id: ConnectSessionId,
        hash_hex: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE connect_sessions SET viewer_token_hash = $1 \
             WHERE id = $2 AND viewer_token_hash IS NULL",
        )
        .bind(hash_hex.to_owned())
        .bind(id.to_string())
        .execute(self.write)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// The session `id` if its viewer token hashes to `hash_hex`; `None` otherwise (a wrong
    /// token and a missing session look the same).
    pub async fn get_by_viewer_token(
        &self,
        id: ConnectSessionId,
        hash_hex: &str,
    ) -> Result<Option<ConnectSession>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM connect_sessions \
             WHERE id = $1 AND viewer_token_hash = $2"
        ))
        .bind(id.to_string())
        .bind(hash_hex.to_owned())
        .fetch_optional(self.pool)
        .await?;
        row.map(|r| session_from_row(&r).map(|(s, _)| s))
            .transpose()
    }

    /// `owner`'s sessions in every state, newest first.
    pub async fn list_owned(&self, owner: UserId) -> Result<Vec<ConnectSession>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM connect_sessions WHERE owner_id = $1 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(owner.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| session_from_row(r).map(|(s, _)| s))
            .collect()
    }

    /// Every session of every user still in a non-terminal state (`starting`,
    /// `awaiting_user`, `capturing`), soonest deadline first: the expiry sweeper's work list.
    pub async fn list_open(&self) -> Result<Vec<ConnectSession>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM connect_sessions WHERE state IN ({}) \
             ORDER BY expires_at, id",
            open_states_sql()
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| session_from_row(r).map(|(s, _)| s))
            .collect()
    }

    /// Moves session `id` from `from` to `to` as one compare-and-set on `state` and `version`,
    /// applying `change` and setting `updated_at = now` (and `completed_at = now` when `to` is
    /// `completed`) in the same statement. Returns the record as written.
    ///
    /// Completing a session normally goes through [`crate::Store::complete_connect`], which
    /// stores the credential in the same transaction; this method is for every other change.
    ///
    /// Errors: [`StoreError::InvalidConnectTransition`] if the lifecycle forbids `from -> to`
    /// (nothing is read or written; every change out of `completed` is refused here);
    /// [`StoreError::NotFound`] if there is no such session; [`StoreError::ConnectConflict`]
    /// with the state found if it is not (or no longer) in `from`.
    pub async fn transition(
        &self,
        id: ConnectSessionId,
        from: ConnectState,
        to: ConnectState,
        change: ConnectChange,
        now: Timestamp,
    ) -> Result<ConnectSession, StoreError> {
        from.transition(to)?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut session, version) = get_versioned(self.pool, id)
                .await?
                .ok_or(StoreError::NotFound)?;
            if session.state != from {
                return Err(StoreError::ConnectConflict {
                    id,
                    expected: from,
                    actual: Some(session.state),
                });
            }
            session.advance(to, now)?;
            if let Some(sandbox) = change.browser_sandbox {
                session.browser_sandbox = Some(sandbox);
            }
            if let Some(prompt) = &change.prompt {
                session.prompt = Some(prompt.clone());
            }
            if let Some(failure) = &change.failure {
                session.failure = Some(failure.clone());
            }
            let done = sqlx::query(
                "UPDATE connect_sessions SET state = $1, browser_sandbox_id = $2, prompt = $3, \
                 failure = $4, updated_at = $5, completed_at = $6, version = version + 1 \
                 WHERE id = $7 AND state = $8 AND version = $9",
            )
            .bind(session.state.as_str())
            .bind(session.browser_sandbox.map(|s| s.to_string()))
            .bind(encode_prompt(session.prompt.as_ref())?)
            .bind(session.failure.as_deref())
            .bind(ms(session.updated_at))
            .bind(opt_ms(session.completed_at))
            .bind(id.to_string())
            .bind(from.as_str())
            .bind(version)
            .execute(self.write)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(session);
            }
            tracing::debug!(%id, %from, "connect session compare-and-set lost, re-reading");
        }
        let actual = get_versioned(self.pool, id).await?.map(|(s, _)| s.state);
        Err(StoreError::ConnectConflict {
            id,
            expected: from,
            actual,
        })
    }
}
