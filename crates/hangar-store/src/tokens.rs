//! Personal access tokens: table `api_tokens`.
//!
//! The secret is never stored: the caller hashes it (SHA-256) and the store keeps the hash as 64
//! lowercase hex characters in `token_hash` (unique). Times are unix milliseconds; `expires_at`,
//! `revoked_at` and `last_used_at` are NULL until set; `scopes` (a scope string) is NULL for a
//! token with every scope.

use std::fmt;

use hangar_core::{Timestamp, TokenId, UserId};
use hangar_oauth::ScopeSet;
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use crate::codec::{col, ms, opt_ms, opt_ts, parse, ts};
use crate::error::StoreError;
use crate::users::{user_from_row, User};
use crate::Pools;

/// One personal access token, as stored (no secret).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Its id (shown in `hangar token ls`, used to revoke).
    pub id: TokenId,
    /// The user it acts as.
    pub user: UserId,
    /// The label its owner gave it.
    pub name: String,
    /// SHA-256 of the secret, computed by the caller.
    pub hash: [u8; 32],
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working, if ever (a token is expired at and after this instant).
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// When it last authenticated a request, if ever (updated by [`TokenRepo::touch`]).
    pub last_used_at: Option<Timestamp>,
    /// The scopes it is limited to; `None` means every scope (column `scopes`, a scope
    /// string, NULL for tokens made before scopes existed).
    pub scopes: Option<ScopeSet>,
}

impl fmt::Debug for TokenRecord {
    /// Leaves the hash out: it is a lookup key for a bearer secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("name", &self.name)
            .field("hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

const TOKEN_COLUMNS: &str = "t.id AS id, t.user_id AS user_id, t.name AS name, \
                             t.token_hash AS token_hash, t.created_at AS created_at, \
                             t.expires_at AS expires_at, t.revoked_at AS revoked_at, \
                             t.last_used_at AS last_used_at, t.scopes AS scopes";

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let id: String = col(row, "id")?;
    let user: String = col(row, "user_id")?;
    let hash_hex: String = col(row, "token_hash")?;
    let scopes: Option<String> = col(row, "scopes")?;
    let mut hash = [0u8; 32];
    // The error names the problem, never the value.
    hex::decode_to_slice(&hash_hex, &mut hash)
        .map_err(|_| StoreError::corrupt("api_tokens.token_hash", "not 64 hex characters"))?;
    Ok(TokenRecord {
        id: parse("api_tokens.id", &id)?,
        user: parse("api_tokens.user_id", &user)?,
        name: col(row, "name")?,
        hash,
        created_at: ts(col(row, "created_at")?),
        expires_at: opt_ts(col(row, "expires_at")?),
        revoked_at: opt_ts(col(row, "revoked_at")?),
        last_used_at: opt_ts(col(row, "last_used_at")?),
        scopes: scopes
            .map(|s| ScopeSet::parse(&s))
            .transpose()
            .map_err(|err| StoreError::corrupt("api_tokens.scopes", err))?,
    })
}

/// Reads and writes personal access tokens. Get one from [`crate::Store::tokens`].
#[derive(Clone, Copy, Debug)]
pub struct TokenRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> TokenRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records a new token. Errors: [`StoreError::Duplicate`] (`what: "token"`) if the id or
    /// hash exists, [`StoreError::MissingReference`] if the user does not.
    pub async fn insert(&self, token: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at, \
             revoked_at, last_used_at, scopes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(token.id.to_string())
        .bind(token.user.to_string())
        .bind(token.name.as_str())
        .bind(hex::encode(token.hash))
        .bind(ms(token.created_at))
        .bind(opt_ms(token.expires_at))
        .bind(opt_ms(token.revoked_at))
        .bind(opt_ms(token.last_used_at))
        .bind(token.scopes.as_ref().map(ToString::to_string))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("token"))?;
        Ok(())
    }

    /// The token whose secret hashes to `hash`, with its user, if it is usable at `now`: not
    /// revoked, and either without expiry or expiring after `now`.
    pub async fn find_active_by_hash(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<(TokenRecord, User)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, u.id AS u_id, u.name AS u_name, \
             u.is_admin AS u_is_admin, u.created_at AS u_created_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > $2)"
        ))
        .bind(hex::encode(hash))
        .bind(ms(now))
        .fetch_optional(self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((token_from_row(&row)?, user_from_row(&row, true)?))),
            None => Ok(None),
        }
    }

    /// All of a user's tokens, revoked and expired included, newest first.
    pub async fn list_for_user(&self, user: UserId) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.user_id = $1 \
             ORDER BY t.created_at DESC, t.id DESC"
        ))
        .bind(user.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes `user`'s token `id` at `now`. Returns `false` if there is no such token of that
    /// user or it was already revoked (the first revocation time is kept).
    pub async fn revoke(
        &self,
        user: UserId,
        id: TokenId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that token `id` was used at `now`. Never moves `last_used_at` backwards; a
    /// missing token is not an error.
    pub async fn touch(&self, id: TokenId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id.to_string())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        Ok(())
    }
}
