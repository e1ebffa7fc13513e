//! Sealed credentials: table `credentials`, one row per (owner, provider).
//!
//! | column | holds |
//! |---|---|
//! | `owner_id`, `provider` | the primary key: user UUID (-> `users`) and [`ProviderId`] |
//! | `record_version` | the vault's associated-data version: 1 or more, +1 on every reseal, unchanged by a rewrap |
//! | `sealed` | BLOB / BYTEA: the opaque bytes of the vault's sealed record (`SealedRecord::to_bytes`) |
//! | `kek_version` | the key-encryption key version that wraps the record's data key |
//! | `connected_at`, `updated_at` | unix milliseconds: when this credential was sealed by a connect, when its sealed bytes last changed |
//! | `access_token_expires_at`, `last_refresh_at` | unix milliseconds or NULL |
//! | `last_check_at`, `last_check_ok`, `last_check_output` | the latest status check: all NULL, or time, 0/1 and output text |
//!
//! The store never looks inside `sealed` and never prints it: [`CredentialRecord`],
//! [`NewCredential`] and [`NewSeal`] show only its length in `Debug`, and errors name the
//! provider and versions, nothing else.
//!
//! Writes of the sealed bytes are compare-and-set on `record_version`
//! ([`CredentialRepo::replace_sealed`], [`crate::Store::complete_connect`]), so a refresh and a
//! reconnect (or two refreshes) can never both land on the same version.

use std::fmt;

use hangar_core::{
    ConnectSession, ConnectSessionId, ConnectState, CredentialStatus, ProviderId, Timestamp, UserId,
};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Executor};

use crate::codec::{bool_col, col, ms, opt_ms, opt_ts, parse, ts, u32_col};
use crate::connect::get_versioned as get_session_versioned;
use crate::error::StoreError;
use crate::Pools;

/// The latest run of a credential's status check (the CLI's own status command).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCheck {
    /// When it ran.
    pub at: Timestamp,
    /// Whether it said "logged in".
    pub ok: bool,
    /// What it printed (trimmed by the caller, never a secret).
    pub output: String,
}

/// One sealed credential as stored. `Debug` shows the length of `sealed`, never its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Whose it is.
    pub owner: UserId,
    /// Which provider it is for.
    pub provider: ProviderId,
    /// The vault's associated-data version (1, 2, ...): +1 on every reseal.
    pub record_version: u64,
    /// The vault's sealed record, opaque to the store.
    pub sealed: Vec<u8>,
    /// The key-encryption key version that wraps the data key.
    pub kek_version: u32,
    /// When a connect session sealed this credential.
    pub connected_at: Timestamp,
    /// When the sealed bytes last changed (connect, refresh, rewrap).
    pub updated_at: Timestamp,
    /// When the current access token expires, if the credential says.
    pub access_token_expires_at: Option<Timestamp>,
    /// When hangar last refreshed the tokens.
    pub last_refresh_at: Option<Timestamp>,
    /// The latest status check, if any ran since the credential was connected.
    pub last_check: Option<StatusCheck>,
}

impl fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("owner", &self.owner)
            .field("provider", &self.provider)
            .field("record_version", &self.record_version)
            .field("sealed_len", &self.sealed.len())
            .field("kek_version", &self.kek_version)
            .field("connected_at", &self.connected_at)
            .field("updated_at", &self.updated_at)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("last_refresh_at", &self.last_refresh_at)
            .field("last_check", &self.last_check)
            .finish()
    }
}

impl CredentialRecord {
    /// What `hangar connect status` shows for it.
    pub fn status(&self) -> CredentialStatus {
        CredentialStatus {
            provider: self.provider.clone(),
            connected_since: self.connected_at,
            last_check_at: self.last_check.as_ref().map(|c| c.at),
            last_check_output: self.last_check.as_ref().map(|c| c.output.clone()),
            last_check_ok: self.last_check.as_ref().map(|c| c.ok),
            access_token_expires_at: self.access_token_expires_at,
            last_refresh_at: self.last_refresh_at,
        }
    }
}

/// A credential sealed by a connect session, for [`crate::Store::complete_connect`].
/// `Debug` shows the length of `sealed`, never its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// Whose it is (must be the session's owner).
    pub owner: UserId,
    /// Which provider (must be the session's provider).
    pub provider: ProviderId,
    /// The record version it was sealed under: 1 or more for a first credential, exactly the
    /// previous + 1 when it replaces one.
    pub record_version: u64,
    /// The vault's sealed record.
    pub sealed: Vec<u8>,
    /// The key-encryption key version that wraps the data key.
    pub kek_version: u32,
    /// When the access token expires, if the credential says.
    pub access_token_expires_at: Option<Timestamp>,
}

impl fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewCredential")
            .field("owner", &self.owner)
            .field("provider", &self.provider)
            .field("record_version", &self.record_version)
            .field("sealed_len", &self.sealed.len())
            .field("kek_version", &self.kek_version)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .finish()
    }
}

/// New sealed bytes for an existing credential, for [`CredentialRepo::replace_sealed`].
/// `Debug` shows the length of `sealed`, never its bytes.
///
/// `record_version` is `expected + 1` for a **reseal** (new plaintext, e.g. refreshed tokens,
/// sealed by the vault under the next version) and `expected` itself for a pure **rewrap**
/// (`hangar vault rotate`: the data key is re-wrapped under a new key-encryption key, the
/// ciphertext and its associated data, which binds the record version, are unchanged).
#[derive(Clone, PartialEq, Eq)]
pub struct NewSeal {
    /// The vault's sealed record.
    pub sealed: Vec<u8>,
    /// The key-encryption key version that wraps the data key.
    pub kek_version: u32,
    /// `expected + 1` (reseal) or `expected` (rewrap).
    pub record_version: u64,
    /// Replaces the stored expiry (`None` clears it: a rewrap passes the current value on).
    pub access_token_expires_at: Option<Timestamp>,
    /// Sets `last_refresh_at` (a refresh); `None` leaves it (a rewrap).
    pub refreshed_at: Option<Timestamp>,
}

impl fmt::Debug for NewSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSeal")
            .field("sealed_len", &self.sealed.len())
            .field("kek_version", &self.kek_version)
            .field("record_version", &self.record_version)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refreshed_at", &self.refreshed_at)
            .finish()
    }
}

const CREDENTIAL_COLUMNS: &str = "owner_id, provider, record_version, sealed, kek_version, \
     connected_at, updated_at, access_token_expires_at, last_refresh_at, last_check_at, \
     last_check_ok, last_check_output";

fn credential_from_row(row: &AnyRow) -> Result<CredentialRecord, StoreError> {
    let owner: String = col(row, "owner_id")?;
    let provider: String = col(row, "provider")?;
    let record_version: i64 = col(row, "record_version")?;
    let check_at: Option<i64> = col(row, "last_check_at")?;
    let check_ok: Option<i64> = col(row, "last_check_ok")?;
    let check_output: Option<String> = col(row, "last_check_output")?;
    let last_check = match (check_at, check_ok, check_output) {
        (None, None, None) => None,
        (Some(at), Some(ok), Some(output)) => Some(StatusCheck {
            at: ts(at),
            ok: bool_col("credentials.last_check_ok", ok)?,
            output,
        }),
        _ => {
            return Err(StoreError::corrupt(
                "credentials.last_check_at",
                "status check columns are partly NULL",
            ))
        }
    };
    Ok(CredentialRecord {
        owner: parse("credentials.owner_id", &owner)?,
        provider: parse("credentials.provider", &provider)?,
        record_version: u64::try_from(record_version)
            .map_err(|err| StoreError::corrupt("credentials.record_version", err))?,
        sealed: col(row, "sealed")?,
        kek_version: u32_col("credentials.kek_version", col(row, "kek_version")?)?,
        connected_at: ts(col(row, "connected_at")?),
        updated_at: ts(col(row, "updated_at")?),
        access_token_expires_at: opt_ts(col(row, "access_token_expires_at")?),
        last_refresh_at: opt_ts(col(row, "last_refresh_at")?),
        last_check,
    })
}

/// A record version as a column value: 1 ..= `i64::MAX`.
fn version_col(previous: Option<u64>, given: u64) -> Result<i64, StoreError> {
    match i64::try_from(given) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(StoreError::InvalidRecordVersion { previous, given }),
    }
}

/// The credential of `owner` for `provider`, through any executor (pool or transaction).
async fn get_credential<'e, E>(
    executor: E,
    owner: UserId,
    provider: &ProviderId,
) -> Result<Option<CredentialRecord>, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE owner_id = $1 AND provider = $2"
    ))
    .bind(owner.to_string())
    .bind(provider.as_str())
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(credential_from_row).transpose()
}

/// Reads and writes sealed credentials. Get one from [`crate::Store::credentials`].
/// A credential is created only by [`crate::Store::complete_connect`].
#[derive(Clone, Copy, Debug)]
pub struct CredentialRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> CredentialRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// `owner`'s credential for `provider`, if any (owner-scoped: another user's is `None`).
    pub async fn get(
        &self,
        owner: UserId,
        provider: &ProviderId,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        get_credential(self.pool, owner, provider).await
    }

    /// `owner`'s credentials, by provider.
    pub async fn list_for_owner(&self, owner: UserId) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE owner_id = $1 ORDER BY provider"
        ))
        .bind(owner.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Every credential of every user, by owner then provider (for `hangar vault rotate`).
    pub async fn list_all(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY owner_id, provider"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Removes `owner`'s credential for `provider`. Returns `false` if there was none.
    pub async fn delete(&self, owner: UserId, provider: &ProviderId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM credentials WHERE owner_id = $1 AND provider = $2")
            .bind(owner.to_string())
            .bind(provider.as_str())
            .execute(self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the latest status check of `owner`'s credential for `provider`, replacing the
    /// previous one (`updated_at` is left alone: it tracks the sealed bytes).
    /// Errors: [`StoreError::NotFound`] if there is no such credential.
    pub async fn record_check(
        &self,
        owner: UserId,
        provider: &ProviderId,
        check: StatusCheck,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE credentials SET last_check_at = $3, last_check_ok = $4, \
             last_check_output = $5 WHERE owner_id = $1 AND provider = $2",
        )
        .bind(owner.to_string())
        .bind(provider.as_str())
        .bind(ms(check.at))
        .bind(i64::from(check.ok))
        .bind(check.output)
        .execute(self.write)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// Replaces the sealed bytes of `owner`'s credential for `provider` as a compare-and-set
    /// on `record_version = expected_record_version`, setting `updated_at = now`. See
    /// [`NewSeal`] for reseal (`expected + 1`) versus rewrap (`expected`). Returns the record
    /// as written.
    ///
    /// Errors: [`StoreError::InvalidRecordVersion`] if `seal.record_version` is neither
    /// `expected` nor `expected + 1` (nothing is written); [`StoreError::CredentialConflict`]
    /// with the version found (`None`: no credential) if the stored record is not at
    /// `expected_record_version`.
    pub async fn replace_sealed(
        &self,
        owner: UserId,
        provider: &ProviderId,
        expected_record_version: u64,
        seal: NewSeal,
        now: Timestamp,
    ) -> Result<CredentialRecord, StoreError> {
        let previous = Some(expected_record_version);
        let next = seal.record_version;
        if next != expected_record_version && Some(next) != expected_record_version.checked_add(1) {
            return Err(StoreError::InvalidRecordVersion {
                previous,
                given: next,
            });
        }
        let next = version_col(previous, next)?;
        let Ok(expected) = i64::try_from(expected_record_version) else {
            // No stored version can be this large: the compare-and-set cannot match.
            return Err(self.conflict(owner, provider, previous).await);
        };
        // One statement: the compare-and-set and the read of what it wrote (`RETURNING` is
        // spelled the same in SQLite and PostgreSQL).
        let row = sqlx::query(&format!(
            "UPDATE credentials SET record_version = $3, sealed = $4, kek_version = $5, \
             access_token_expires_at = $6, \
             last_refresh_at = COALESCE($7, last_refresh_at), updated_at = $8 \
             WHERE owner_id = $1 AND provider = $2 AND record_version = $9 \
             RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(owner.to_string())
        .bind(provider.as_str())
        .bind(next)
        .bind(seal.sealed)
        .bind(i64::from(seal.kek_version))
        .bind(opt_ms(seal.access_token_expires_at))
        .bind(opt_ms(seal.refreshed_at))
        .bind(ms(now))
        .bind(expected)
        .fetch_optional(self.write)
        .await?;
        match row {
            Some(row) => credential_from_row(&row),
            None => Err(self.conflict(owner, provider, previous).await),
        }
    }

    /// `owner`'s credentials as `hangar connect status` shows them, by provider.
    pub async fn status(&self, owner: UserId) -> Result<Vec<CredentialStatus>, StoreError> {
        Ok(self
            .list_for_owner(owner)
            .await?
            .iter()
            .map(CredentialRecord::status)
            .collect())
    }

    /// The conflict error for a lost compare-and-set, with the version now stored.
    async fn conflict(
        &self,
        owner: UserId,
        provider: &ProviderId,
        expected: Option<u64>,
    ) -> StoreError {
        match get_credential(self.pool, owner, provider).await {
            Ok(found) => StoreError::CredentialConflict {
                provider: provider.clone(),
                expected,
                actual: found.map(|c| c.record_version),
            },
            Err(err) => err,
        }
    }
}

/// [`crate::Store::complete_connect`]: one transaction that moves the session to `completed`
/// and stores the credential, or changes nothing.
pub(crate) async fn complete_connect(
    pools: &Pools,
    session_id: ConnectSessionId,
    from: ConnectState,
    credential: NewCredential,
    expected_previous_version: Option<u64>,
    now: Timestamp,
) -> Result<(ConnectSession, CredentialRecord), StoreError> {
    // Everything that can be refused without the database is refused before it.
    from.transition(ConnectState::Completed)?;
    let new_version = match expected_previous_version {
        None => version_col(None, credential.record_version)?,
        Some(previous) if previous.checked_add(1) == Some(credential.record_version) => {
            version_col(Some(previous), credential.record_version)?
        }
        Some(previous) => {
            return Err(StoreError::InvalidRecordVersion {
                previous: Some(previous),
                given: credential.record_version,
            })
        }
    };
    let provider = credential.provider.clone();
    let owner = credential.owner;

    let mut tx = pools.write.begin().await?;
    match complete_in(
        &mut tx,
        session_id,
        from,
        credential,
        expected_previous_version,
        new_version,
        now,
    )
    .await
    {
        Ok(done) => {
            tx.commit().await?;
            Ok(done)
        }
        Err(failure) => {
            // Undo whatever part was written before reading what is really there.
            tx.rollback().await?;
            Err(match failure {
                Refused::Session => {
                    match get_session_versioned(&pools.read, session_id).await? {
                        Some((session, _))
                            if session.owner == owner && session.provider == provider =>
                        {
                            StoreError::ConnectConflict {
                                id: session_id,
                                expected: from,
                                actual: Some(session.state),
                            }
                        }
                        // No such session, or not this owner's session for this provider.
                        _ => StoreError::NotFound,
                    }
                }
                Refused::Credential => StoreError::CredentialConflict {
                    actual: get_credential(&pools.read, owner, &provider)
                        .await?
                        .map(|c| c.record_version),
                    provider,
                    expected: expected_previous_version,
                },
                Refused::Store(err) => err,
            })
        }
    }
}

/// Why the work inside the transaction stopped (the caller rolls back, then explains).
enum Refused {
    /// The session's compare-and-set matched no row.
    Session,
    /// The credential's compare-and-set (or insert) found another record version.
    Credential,
    Store(StoreError),
}

impl From<sqlx::Error> for Refused {
    fn from(err: sqlx::Error) -> Self {
        Refused::Store(StoreError::Database(err))
    }
}

impl From<StoreError> for Refused {
    fn from(err: StoreError) -> Self {
        Refused::Store(err)
    }
}

/// The statements of [`complete_connect`], on its transaction. The session is written first:
/// on SQLite the first statement of a deferred transaction being a write takes the write lock
/// at once (waiting up to `busy_timeout` for it) instead of failing to upgrade a read snapshot.
async fn complete_in(
    conn: &mut sqlx::AnyConnection,
    session_id: ConnectSessionId,
    from: ConnectState,
    credential: NewCredential,
    expected_previous_version: Option<u64>,
    new_version: i64,
    now: Timestamp,
) -> Result<(ConnectSession, CredentialRecord), Refused> {
    let done = sqlx::query(
        "UPDATE connect_sessions SET state = $1, completed_at = $2, updated_at = $2, \
         version = version + 1 \
         WHERE id = $3 AND state = $4 AND owner_id = $5 AND provider = $6",
    )
    .bind(ConnectState::Completed.as_str())
    .bind(ms(now))
    .bind(session_id.to_string())
    .bind(from.as_str())
    .bind(credential.owner.to_string())
    .bind(credential.provider.as_str())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(Refused::Session);
    }

    let owner = credential.owner;
    let provider = credential.provider.clone();
    match expected_previous_version {
        None => {
            let inserted = sqlx::query(&format!(
                "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $6, $7, NULL, NULL, NULL, NULL)"
            ))
            .bind(owner.to_string())
            .bind(provider.as_str())
            .bind(new_version)
            .bind(credential.sealed)
            .bind(i64::from(credential.kek_version))
            .bind(ms(now))
            .bind(opt_ms(credential.access_token_expires_at))
            .execute(&mut *conn)
            .await;
            match inserted.map_err(StoreError::from_write("credential")) {
                Ok(_) => {}
                // Someone stored a credential for this provider meanwhile.
                Err(StoreError::Duplicate { .. }) => return Err(Refused::Credential),
                Err(err) => return Err(Refused::Store(err)),
            }
        }
        Some(previous) => {
            let Ok(previous) = i64::try_from(previous) else {
                return Err(Refused::Credential);
            };
            // A new connect replaces the credential: a fresh `connected_at`, and the refresh
            // and status check of the old one no longer apply.
            let done = sqlx::query(
                "UPDATE credentials SET record_version = $3, sealed = $4, kek_version = $5, \
                 connected_at = $6, updated_at = $6, access_token_expires_at = $7, \
                 last_refresh_at = NULL, last_check_at = NULL, last_check_ok = NULL, \
                 last_check_output = NULL \
                 WHERE owner_id = $1 AND provider = $2 AND record_version = $8",
            )
            .bind(owner.to_string())
            .bind(provider.as_str())
            .bind(new_version)
            .bind(credential.sealed)
            .bind(i64::from(credential.kek_version))
            .bind(ms(now))
            .bind(opt_ms(credential.access_token_expires_at))
            .bind(previous)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(Refused::Credential);
            }
        }
    }

    // Read both back inside the transaction: exactly what the commit makes visible.
    let (session, _) = get_session_versioned(&mut *conn, session_id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let stored = get_credential(&mut *conn, owner, &provider)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((session, stored))
}
