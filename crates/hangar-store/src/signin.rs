//! Sign-in: browser sessions (table `browser_sessions`), external identities
//! (`external_identities`) and sign-ins in progress (`signin_states`), plus the one transaction
//! that makes a first sign-in's user and identity together ([`crate::Store::sign_in_external`]).
//!
//! Secrets never arrive here: a session cookie and a `state` parameter are kept as their
//! SHA-256 (64 lowercase hex characters), computed by the caller. The PKCE verifier and the
//! OpenID Connect nonce of a sign-in in progress are kept as they are (the callback needs them;
//! both are useless without the single-use `state` and the upstream code, and the row lives
//! minutes); `Debug` never prints them. Times are unix milliseconds.

use std::fmt;

use hangar_core::{BrowserSessionId, Timestamp, UserId};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Transaction};

use crate::codec::{col, ms, opt_ts, parse, ts};
use crate::error::StoreError;
use crate::users::{user_from_row, User};
use crate::Pools;

fn hash_from_hex(what: &'static str, text: &str) -> Result<[u8; 32], StoreError> {
    let mut hash = [0u8; 32];
    // The error names the problem, never the value.
    hex::decode_to_slice(text, &mut hash)
        .map_err(|_| StoreError::corrupt(what, "not 64 hex characters"))?;
    Ok(hash)
}

// ---------------------------------------------------------------------------------------------
// Browser sessions

/// One browser session, as stored (no secret).
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserSessionRecord {
    /// Its id.
    pub id: BrowserSessionId,
    /// The user it acts as.
    pub user: UserId,
    /// SHA-256 of the cookie's secret, computed by the caller.
    pub hash: [u8; 32],
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working (expired at and after this instant).
    pub expires_at: Timestamp,
    /// When it last authenticated a request.
    pub last_seen_at: Timestamp,
    /// When it was revoked (signed out), if it was.
    pub revoked_at: Option<Timestamp>,
}

impl fmt::Debug for BrowserSessionRecord {
    /// Leaves the hash out: it is a lookup key for a bearer secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserSessionRecord")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

const SESSION_COLUMNS: &str = "s.id AS id, s.user_id AS user_id, s.session_hash AS session_hash, \
                               s.created_at AS created_at, s.expires_at AS expires_at, \
                               s.last_seen_at AS last_seen_at, s.revoked_at AS revoked_at";

fn session_from_row(row: &AnyRow) -> Result<BrowserSessionRecord, StoreError> {
    let id: String = col(row, "id")?;
    let user: String = col(row, "user_id")?;
    let hash: String = col(row, "session_hash")?;
    Ok(BrowserSessionRecord {
        id: parse("browser_sessions.id", &id)?,
        user: parse("browser_sessions.user_id", &user)?,
        hash: hash_from_hex("browser_sessions.session_hash", &hash)?,
        created_at: ts(col(row, "created_at")?),
        expires_at: ts(col(row, "expires_at")?),
        last_seen_at: ts(col(row, "last_seen_at")?),
        revoked_at: opt_ts(col(row, "revoked_at")?),
    })
}

/// Reads and writes browser sessions. Get one from [`crate::Store::browser_sessions`].
#[derive(Clone, Copy, Debug)]
pub struct BrowserSessionRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> BrowserSessionRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records a new session. Errors: [`StoreError::Duplicate`] (`what: "browser session"`)
    /// if the id or hash exists, [`StoreError::MissingReference`] if the user does not.
    pub async fn insert(&self, session: &BrowserSessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO browser_sessions (id, user_id, session_hash, created_at, expires_at, \
             last_seen_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(session.id.to_string())
        .bind(session.user.to_string())
        .bind(hex::encode(session.hash))
        .bind(ms(session.created_at))
        .bind(ms(session.expires_at))
        .bind(ms(session.last_seen_at))
        .bind(session.revoked_at.map(ms))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("browser session"))?;
        Ok(())
    }

    /// The session whose secret hashes to `hash`, with its user, if it is usable at `now`: not
    /// revoked and expiring after `now`.
    pub async fn find_active_by_hash(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<(BrowserSessionRecord, User)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS}, u.id AS u_id, u.name AS u_name, \
             u.is_admin AS u_is_admin, u.created_at AS u_created_at \
             FROM browser_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.session_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2"
        ))
        .bind(hex::encode(hash))
        .bind(ms(now))
        .fetch_optional(self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((session_from_row(&row)?, user_from_row(&row, true)?))),
            None => Ok(None),
        }
    }

    /// The session with this hash in any state (revoked and expired included).
    pub async fn get_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<BrowserSessionRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM browser_sessions s WHERE s.session_hash = $1"
        ))
        .bind(hex::encode(hash))
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// All of a user's sessions, newest first.
    pub async fn list_for_user(
        &self,
        user: UserId,
    ) -> Result<Vec<BrowserSessionRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM browser_sessions s WHERE s.user_id = $1 \
             ORDER BY s.created_at DESC, s.id DESC"
        ))
        .bind(user.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Revokes the session with this hash at `now` (signing out). Returns `false` if there is
    /// none or it was already revoked (the first revocation time is kept).
    pub async fn revoke_by_hash(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE browser_sessions SET revoked_at = $2 \
             WHERE session_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hex::encode(hash))
        .bind(ms(now))
        .execute(self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that session `id` was used at `now`; never moves `last_seen_at` backwards.
    pub async fn touch(&self, id: BrowserSessionId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE browser_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
        )
        .bind(id.to_string())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// External identities

/// A user's identity at an upstream provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The configured provider name (`github`, or an OpenID Connect entry's `name`).
    pub provider: String,
    /// The provider's stable id of the person: OpenID Connect `sub` (Core 1.0 section 2),
    /// GitHub's numeric user id as decimal text.
    pub subject: String,
    /// The hangar user.
    pub user: UserId,
    /// The verified email the provider gave at the first sign-in, if any (shown only; never
    /// used to match accounts).
    pub email: Option<String>,
    /// When it was linked.
    pub created_at: Timestamp,
}

const IDENTITY_COLUMNS: &str = "i.provider AS provider, i.subject AS subject, \
                                i.user_id AS user_id, i.email AS email, i.created_at AS created_at";

fn identity_from_row(row: &AnyRow) -> Result<ExternalIdentity, StoreError> {
    let user: String = col(row, "user_id")?;
    Ok(ExternalIdentity {
        provider: col(row, "provider")?,
        subject: col(row, "subject")?,
        user: parse("external_identities.user_id", &user)?,
        email: col(row, "email")?,
        created_at: ts(col(row, "created_at")?),
    })
}

/// What a sign-in learned from the provider, for [`crate::Store::sign_in_external`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalSignIn {
    /// The configured provider name.
    pub provider: String,
    /// The provider's subject.
    pub subject: String,
    /// The verified email, if any.
    pub email: Option<String>,
    /// The account name to ask for if this is the first sign-in (already a valid name; a
    /// `-2`, `-3`, ... suffix is added while it is taken).
    pub wanted_name: String,
}

/// The outcome of [`crate::Store::sign_in_external`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedInUser {
    /// The user signed in.
    pub user: User,
    /// Its identity at the provider.
    pub identity: ExternalIdentity,
    /// Whether this sign-in created the user.
    pub created: bool,
}

/// Reads external identities. Get one from [`crate::Store::external_identities`].
#[derive(Clone, Copy, Debug)]
pub struct ExternalIdentityRepo<'a> {
    pool: &'a AnyPool,
}

impl<'a> ExternalIdentityRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self { pool: &pools.read }
    }

    /// The identity `(provider, subject)` and its user, if linked.
    pub async fn find(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<(ExternalIdentity, User)>, StoreError> {
        find_identity(self.pool, provider, subject).await
    }

    /// A user's identities, oldest first.
    pub async fn list_for_user(&self, user: UserId) -> Result<Vec<ExternalIdentity>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM external_identities i WHERE i.user_id = $1 \
             ORDER BY i.created_at, i.provider, i.subject"
        ))
        .bind(user.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(identity_from_row).collect()
    }

    /// How many identities exist (all users).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM external_identities")
            .fetch_one(self.pool)
            .await?;
        u64::try_from(n).map_err(|err| StoreError::corrupt("external_identities count", err))
    }
}

async fn find_identity<'e, E>(
    executor: E,
    provider: &str,
    subject: &str,
) -> Result<Option<(ExternalIdentity, User)>, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {IDENTITY_COLUMNS}, u.id AS u_id, u.name AS u_name, \
         u.is_admin AS u_is_admin, u.created_at AS u_created_at \
         FROM external_identities i JOIN users u ON u.id = i.user_id \
         WHERE i.provider = $1 AND i.subject = $2"
    ))
    .bind(provider)
    .bind(subject)
    .fetch_optional(executor)
    .await?;
    match row {
        Some(row) => Ok(Some((identity_from_row(&row)?, user_from_row(&row, true)?))),
        None => Ok(None),
    }
}

/// How many times [`sign_in_external`] retries a transaction that lost a race (a concurrent
/// first sign-in of the same subject, or of another person wanting the same name).
const SIGN_IN_ATTEMPTS: usize = 5;
/// The most suffixes tried for a taken name in one attempt.
const NAME_SUFFIXES: u32 = 1000;

/// See [`crate::Store::sign_in_external`].
pub(crate) async fn sign_in_external(
    pools: &Pools,
    sign_in: &ExternalSignIn,
    new_user: UserId,
    now: Timestamp,
) -> Result<SignedInUser, StoreError> {
    let mut last = None;
    for _ in 0..SIGN_IN_ATTEMPTS {
        let mut tx = pools.write.begin().await?;
        match sign_in_once(&mut tx, sign_in, new_user, now).await {
            Ok(done) => {
                tx.commit().await?;
                return Ok(done);
            }
            // A concurrent sign-in took the name or linked the subject first: try again,
            // which finds the identity or picks the next free name.
            Err(err @ StoreError::Duplicate { .. }) => {
                tx.rollback().await?;
                last = Some(err);
            }
            Err(err) => {
                tx.rollback().await?;
                return Err(err);
            }
        }
    }
    Err(last.unwrap_or(StoreError::Duplicate { what: "user" }))
}

async fn sign_in_once(
    tx: &mut Transaction<'static, Any>,
    sign_in: &ExternalSignIn,
    new_user: UserId,
    now: Timestamp,
) -> Result<SignedInUser, StoreError> {
    // Start with a write (it matches no row): SQLite then takes its write lock now, waiting
    // under busy_timeout, instead of failing with "database is locked" when this read
    // transaction later tries to write while another sign-in holds the lock.
    sqlx::query("UPDATE users SET name = name WHERE id = $1")
        .bind(new_user.to_string())
        .execute(&mut **tx)
        .await?;
    if let Some((identity, user)) =
        find_identity(&mut **tx, &sign_in.provider, &sign_in.subject).await?
    {
        return Ok(SignedInUser {
            user,
            identity,
            created: false,
        });
    }
    let mut name = None;
    for n in 1..=NAME_SUFFIXES {
        let candidate = if n == 1 {
            sign_in.wanted_name.clone()
        } else {
            format!("{}-{n}", sign_in.wanted_name)
        };
        let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE name = $1")
            .bind(candidate.as_str())
            .fetch_one(&mut **tx)
            .await?;
        if taken == 0 {
            name = Some(candidate);
            break;
        }
    }
    let name = name.ok_or(StoreError::Duplicate { what: "user" })?;
    let user = User {
        id: new_user,
        name,
        is_admin: false,
        created_at: now,
    };
    sqlx::query("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4)")
        .bind(user.id.to_string())
        .bind(user.name.as_str())
        .bind(i64::from(user.is_admin))
        .bind(ms(user.created_at))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from_write("user"))?;
    let identity = ExternalIdentity {
        provider: sign_in.provider.clone(),
        subject: sign_in.subject.clone(),
        user: user.id,
        email: sign_in.email.clone(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO external_identities (provider, subject, user_id, email, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(identity.provider.as_str())
    .bind(identity.subject.as_str())
    .bind(identity.user.to_string())
    .bind(identity.email.as_deref())
    .bind(ms(identity.created_at))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_write("external identity"))?;
    Ok(SignedInUser {
        user,
        identity,
        created: true,
    })
}

// ---------------------------------------------------------------------------------------------
// Sign-ins in progress

/// A sign-in in progress: what the callback needs to finish it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigninState {
    /// SHA-256 of the `state` parameter sent upstream (RFC 6749 section 10.12).
    pub state_hash: [u8; 32],
    /// The configured provider name the sign-in started with.
    pub provider: String,
    /// The PKCE code verifier (RFC 7636 section 4.1).
    pub pkce_verifier: String,
    /// The OpenID Connect nonce (Core 1.0 section 3.1.2.1); `None` for GitHub.
    pub nonce: Option<String>,
    /// Where to send the person afterwards: a same-origin path, checked before it was stored.
    pub return_to: String,
    /// When the sign-in started.
    pub created_at: Timestamp,
    /// When it can no longer be finished.
    pub expires_at: Timestamp,
    /// When the callback used it, if it did.
    pub used_at: Option<Timestamp>,
}

impl fmt::Debug for SigninState {
    /// Leaves out the hash, the verifier and the nonce.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigninState")
            .field("state_hash", &"<redacted>")
            .field("provider", &self.provider)
            .field("pkce_verifier", &"<redacted>")
            .field("nonce", &self.nonce.as_ref().map(|_| "<redacted>"))
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish()
    }
}

/// Why [`SigninStateRepo::take`] found nothing to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigninStateRefusal {
    /// No sign-in has this state (tampered, or purged long ago).
    Unknown,
    /// It was already used (a replayed callback).
    Used,
    /// It expired before the callback came.
    Expired,
}

const STATE_COLUMNS: &str = "state_hash, provider, pkce_verifier, nonce, return_to, created_at, \
                             expires_at, used_at";

fn state_from_row(row: &AnyRow) -> Result<SigninState, StoreError> {
    let hash: String = col(row, "state_hash")?;
    Ok(SigninState {
        state_hash: hash_from_hex("signin_states.state_hash", &hash)?,
        provider: col(row, "provider")?,
        pkce_verifier: col(row, "pkce_verifier")?,
        nonce: col(row, "nonce")?,
        return_to: col(row, "return_to")?,
        created_at: ts(col(row, "created_at")?),
        expires_at: ts(col(row, "expires_at")?),
        used_at: opt_ts(col(row, "used_at")?),
    })
}

/// Reads and writes sign-ins in progress. Get one from [`crate::Store::signin_states`].
#[derive(Clone, Copy, Debug)]
pub struct SigninStateRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> SigninStateRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records a sign-in in progress. Errors: [`StoreError::Duplicate`] (`what: "signin
    /// state"`) if the state hash exists.
    pub async fn insert(&self, state: &SigninState) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO signin_states ({STATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(hex::encode(state.state_hash))
        .bind(state.provider.as_str())
        .bind(state.pkce_verifier.as_str())
        .bind(state.nonce.as_deref())
        .bind(state.return_to.as_str())
        .bind(ms(state.created_at))
        .bind(ms(state.expires_at))
        .bind(state.used_at.map(ms))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("signin state"))?;
        Ok(())
    }

    /// Uses the sign-in with this state hash, once: a compare-and-set sets `used_at = now`
    /// only if it is unused and expires after `now`, so of two racing callbacks exactly one
    /// gets it. Returns the sign-in (with `used_at = now`), or why it cannot be used (a used
    /// one is reported as [`SigninStateRefusal::Used`] even when it has also expired).
    pub async fn take(
        &self,
        state_hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Result<SigninState, SigninStateRefusal>, StoreError> {
        let hash = hex::encode(state_hash);
        let done = sqlx::query(
            "UPDATE signin_states SET used_at = $2 \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash.as_str())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        let found = self.get(state_hash).await?;
        Ok(match found {
            None => Err(SigninStateRefusal::Unknown),
            Some(state) if done.rows_affected() == 1 => Ok(state),
            Some(state) if state.used_at.is_some() => Err(SigninStateRefusal::Used),
            Some(_) => Err(SigninStateRefusal::Expired),
        })
    }

    /// The sign-in with this state hash, in any state.
    pub async fn get(&self, state_hash: &[u8; 32]) -> Result<Option<SigninState>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM signin_states WHERE state_hash = $1"
        ))
        .bind(hex::encode(state_hash))
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(state_from_row).transpose()
    }

    /// Deletes sign-ins that expired before `before`. Returns how many.
    pub async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM signin_states WHERE expires_at < $1")
            .bind(ms(before))
            .execute(self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
