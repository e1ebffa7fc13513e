//! The OAuth 2.0 authorization server's records (migration `0005_oauth`).
//!
//! | table | holds |
//! |---|---|
//! | `oauth_clients` | registered clients: type, Argon2id `secret_hash` (confidential only), redirect URIs and grant types as JSON arrays, `scopes` as a scope string |
//! | `oauth_grants` | a person's consent to a client (user x client x scopes); at most one live (`revoked_at IS NULL`) per pair |
//! | `oauth_codes` | authorization codes by SHA-256 hex, bound to grant, client, redirect URI, PKCE challenge (S256 only), nonce; `redeemed_at` set once |
//! | `oauth_tokens` | access and refresh tokens by SHA-256 hex; `family` is the hash of the code or device code they descend from; `rotated_at` marks a used refresh token |
//! | `oauth_device_codes` | RFC 8628 device authorizations by device-code hash, with the user code, the state and a `version` for compare-and-set |
//! | `oauth_signing_keys` | id_token signing keys, sealed by the vault, with their public JWK |
//!
//! Every state change is a compare-and-set; code redemption, refresh rotation and device
//! redemption are single transactions that mark the old secret used and insert the new
//! tokens, so two concurrent redemptions of one code (or rotations of one refresh token) can
//! never both succeed: the loser gets [`StoreError::Stale`] and nothing is written.

use std::fmt::Write as _;

use std::fmt;

use hangar_core::{GrantId, Timestamp, UserId};
use hangar_oauth::client::{ClientId, ClientType, GrantType, OAuthClient};
use hangar_oauth::code::CodeGrant;
use hangar_oauth::device::DeviceState;
use hangar_oauth::pkce::CodeChallenge;
use hangar_oauth::token::TokenKind;
use hangar_oauth::{ScopeSet, SecretHash};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::codec::{col, ms, opt_ms, opt_ts, parse, ts, u32_col};
use crate::error::StoreError;
use crate::rotations::RotationQueue;
use crate::users::{user_from_row, User};
use crate::Pools;

/// A grant with its client's name, as the person's "linked apps" list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// Its id.
    pub id: GrantId,
    /// The person.
    pub user: UserId,
    /// The client.
    pub client_id: ClientId,
    /// The client's name.
    pub client_name: String,
    /// The scopes consented to (the union of every approval).
    pub scopes: ScopeSet,
    /// First approval.
    pub created_at: Timestamp,
    /// Latest approval.
    pub updated_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A token to insert. `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewOAuthToken {
    /// SHA-256 of the secret.
    pub hash: SecretHash,
    /// Access or refresh.
    pub kind: TokenKind,
    /// Its grant.
    pub grant_id: GrantId,
    /// The client.
    pub client_id: ClientId,
    /// The person.
    pub user: UserId,
    /// The family: hash of the code or device code it descends from.
    pub family: SecretHash,
    /// Its scopes.
    pub scopes: ScopeSet,
    /// When the person authenticated.
    pub auth_time: Timestamp,
    /// Issued at.
    pub created_at: Timestamp,
    /// Expires at, if ever.
    pub expires_at: Option<Timestamp>,
}

impl fmt::Debug for NewOAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewOAuthToken")
            .field("kind", &self.kind)
            .field("grant_id", &self.grant_id)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The tokens a refresh (RFC 6749 section 6) issues in place of an old refresh token, for
/// [`OAuthRepo::rotate_refresh`]. Both copy the grant, client, person, family and
/// authentication time of the old token inside the rotation's own write, so a refresh reads
/// nothing first. `Debug` leaves the hashes out.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshedTokens {
    /// The client presenting the old token: the rotation loses unless the old token was
    /// issued to it.
    pub client_id: ClientId,
    /// SHA-256 of the new access token.
    pub access: SecretHash,
    /// The new access token's scope when the request narrowed it (checked by the caller
    /// against the old token's); `None`: the old token's scope.
    pub access_scopes: Option<ScopeSet>,
    /// When the new access token expires.
    pub access_expires_at: Timestamp,
    /// SHA-256 of the new refresh token, which keeps the old token's scope.
    pub refresh: SecretHash,
    /// When the new refresh token expires.
    pub refresh_expires_at: Timestamp,
}

impl fmt::Debug for RefreshedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshedTokens")
            .field("client_id", &self.client_id)
            .field("access_scopes", &self.access_scopes)
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

/// What a won rotation read from the old refresh token as it marked it rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotatedRefresh {
    /// The grant both the old and the new tokens belong to.
    pub grant_id: GrantId,
    /// The person.
    pub user: UserId,
    /// The old token's scope, which the new refresh token keeps.
    pub scopes: ScopeSet,
}

/// A stored token with its user. `revoked_at` is the token's own revocation or, if earlier
/// or alone, its grant's.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthTokenRecord {
    /// SHA-256 of the secret.
    pub hash: SecretHash,
    /// Access or refresh.
    pub kind: TokenKind,
    /// Its grant.
    pub grant_id: GrantId,
    /// The client.
    pub client_id: ClientId,
    /// The person.
    pub user: User,
    /// Hash of the code or device code it descends from.
    pub family: SecretHash,
    /// Its scopes.
    pub scopes: ScopeSet,
    /// When the person authenticated.
    pub auth_time: Timestamp,
    /// Issued at.
    pub created_at: Timestamp,
    /// Expires at, if ever.
    pub expires_at: Option<Timestamp>,
    /// For a refresh token: when it was used.
    pub rotated_at: Option<Timestamp>,
    /// When it (or its grant) was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl fmt::Debug for OAuthTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokenRecord")
            .field("kind", &self.kind)
            .field("grant_id", &self.grant_id)
            .field("client_id", &self.client_id)
            .field("user", &self.user.id)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("rotated_at", &self.rotated_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl OAuthTokenRecord {
    /// Whether it works at `now`: not revoked, not rotated, not expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none()
            && self.rotated_at.is_none()
            && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A stored device authorization (RFC 8628). `Debug` leaves the hash and user code out.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// SHA-256 of the device code.
    pub hash: SecretHash,
    /// The user code, normalized (8 characters, no dash).
    pub user_code: String,
    /// The client.
    pub client_id: ClientId,
    /// The scopes asked for.
    pub scopes: ScopeSet,
    /// Where it stands.
    pub state: DeviceState,
    /// Who approved or denied it.
    pub user: Option<UserId>,
    /// The grant made when it was approved.
    pub grant_id: Option<GrantId>,
    /// When the approver authenticated.
    pub auth_time: Option<Timestamp>,
    /// The polling interval, seconds.
    pub interval_s: u32,
    /// The last poll.
    pub last_polled_at: Option<Timestamp>,
    /// Issued at.
    pub created_at: Timestamp,
    /// Expires at.
    pub expires_at: Timestamp,
    /// Compare-and-set version, +1 on every change.
    pub version: u64,
}

impl fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("state", &self.state)
            .field("user", &self.user)
            .field("interval_s", &self.interval_s)
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An id_token signing key. `Debug` shows the length of `sealed`, never its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// JWS algorithm (`ES256`).
    pub alg: String,
    /// The private key, sealed by the vault.
    pub sealed: Vec<u8>,
    /// The vault key version that wraps it.
    pub kek_version: u32,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When a newer key replaced it for signing (it stays published a while).
    pub retired_at: Option<Timestamp>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("sealed_len", &self.sealed.len())
            .field("kek_version", &self.kek_version)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

pub(crate) fn hash_col(what: &'static str, text: &str) -> Result<SecretHash, StoreError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|_| StoreError::corrupt(what, "not 64 hex characters"))?;
    Ok(SecretHash(hash))
}

pub(crate) fn scopes_col(what: &'static str, text: &str) -> Result<ScopeSet, StoreError> {
    ScopeSet::parse(text).map_err(|err| StoreError::corrupt(what, err))
}

fn client_id_col(what: &'static str, text: &str) -> Result<ClientId, StoreError> {
    text.parse()
        .map_err(|_| StoreError::corrupt(what, "not a client id"))
}

fn json_strings(what: &'static str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::corrupt(what, err))
}

const CLIENT_COLUMNS: &str =
    "id, name, client_type, secret_hash, redirect_uris, scopes, grant_types, created_at";

fn client_from_row(row: &AnyRow) -> Result<OAuthClient, StoreError> {
    let id: String = col(row, "id")?;
    let client_type: String = col(row, "client_type")?;
    let redirect_uris: String = col(row, "redirect_uris")?;
    let scopes: String = col(row, "scopes")?;
    let grant_types: String = col(row, "grant_types")?;
    Ok(OAuthClient {
        id: client_id_col("oauth_clients.id", &id)?,
        name: col(row, "name")?,
        client_type: client_type
            .parse::<ClientType>()
            .map_err(|err| StoreError::corrupt("oauth_clients.client_type", err))?,
        secret_hash: col(row, "secret_hash")?,
        redirect_uris: json_strings("oauth_clients.redirect_uris", &redirect_uris)?,
        scopes: scopes_col("oauth_clients.scopes", &scopes)?,
        grant_types: json_strings("oauth_clients.grant_types", &grant_types)?
            .iter()
            .map(|g| g.parse::<GrantType>())
            .collect::<Result<_, _>>()
            .map_err(|err| StoreError::corrupt("oauth_clients.grant_types", err))?,
        created_at: ts(col(row, "created_at")?),
    })
}

const GRANT_COLUMNS: &str = "g.id AS id, g.user_id AS user_id, g.client_id AS client_id, \
     c.name AS client_name, g.scopes AS scopes, g.created_at AS created_at, \
     g.updated_at AS updated_at, g.revoked_at AS revoked_at";

fn grant_from_row(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    let id: String = col(row, "id")?;
    let user: String = col(row, "user_id")?;
    let client: String = col(row, "client_id")?;
    let scopes: String = col(row, "scopes")?;
    Ok(GrantRecord {
        id: parse("oauth_grants.id", &id)?,
        user: parse("oauth_grants.user_id", &user)?,
        client_id: client_id_col("oauth_grants.client_id", &client)?,
        client_name: col(row, "client_name")?,
        scopes: scopes_col("oauth_grants.scopes", &scopes)?,
        created_at: ts(col(row, "created_at")?),
        updated_at: ts(col(row, "updated_at")?),
        revoked_at: opt_ts(col(row, "revoked_at")?),
    })
}

const CODE_COLUMNS: &str = "grant_id, client_id, user_id, redirect_uri, scopes, \
     code_challenge, nonce, auth_time, created_at, expires_at, redeemed_at";

fn code_from_row(row: &AnyRow) -> Result<(GrantId, CodeGrant), StoreError> {
    let grant: String = col(row, "grant_id")?;
    let client: String = col(row, "client_id")?;
    let user: String = col(row, "user_id")?;
    let scopes: String = col(row, "scopes")?;
    let challenge: Option<String> = col(row, "code_challenge")?;
    Ok((
        parse("oauth_codes.grant_id", &grant)?,
        CodeGrant {
            client_id: client_id_col("oauth_codes.client_id", &client)?,
            user: parse("oauth_codes.user_id", &user)?,
            redirect_uri: col(row, "redirect_uri")?,
            scopes: scopes_col("oauth_codes.scopes", &scopes)?,
            code_challenge: challenge
                .map(|c| CodeChallenge::new(&c, Some("S256")))
                .transpose()
                .map_err(|err| StoreError::corrupt("oauth_codes.code_challenge", err))?,
            nonce: col(row, "nonce")?,
            auth_time: ts(col(row, "auth_time")?),
            created_at: ts(col(row, "created_at")?),
            expires_at: ts(col(row, "expires_at")?),
            redeemed_at: opt_ts(col(row, "redeemed_at")?),
        },
    ))
}

const TOKEN_COLUMNS: &str = "t.token_hash AS token_hash, t.kind AS kind, t.grant_id AS grant_id, \
     t.client_id AS client_id, t.family AS family, t.scopes AS scopes, \
     t.auth_time AS auth_time, t.created_at AS created_at, t.expires_at AS expires_at, \
     t.rotated_at AS rotated_at, COALESCE(t.revoked_at, g.revoked_at) AS revoked_at, \
     u.id AS u_id, u.name AS u_name, u.is_admin AS u_is_admin, u.created_at AS u_created_at";

fn token_from_row(row: &AnyRow) -> Result<OAuthTokenRecord, StoreError> {
    let hash: String = col(row, "token_hash")?;
    let kind: String = col(row, "kind")?;
    let grant: String = col(row, "grant_id")?;
    let client: String = col(row, "client_id")?;
    let family: String = col(row, "family")?;
    let scopes: String = col(row, "scopes")?;
    Ok(OAuthTokenRecord {
        hash: hash_col("oauth_tokens.token_hash", &hash)?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt("oauth_tokens.kind", "unknown kind"))?,
        grant_id: parse("oauth_tokens.grant_id", &grant)?,
        client_id: client_id_col("oauth_tokens.client_id", &client)?,
        user: user_from_row(row, true)?,
        family: hash_col("oauth_tokens.family", &family)?,
        scopes: scopes_col("oauth_tokens.scopes", &scopes)?,
        auth_time: ts(col(row, "auth_time")?),
        created_at: ts(col(row, "created_at")?),
        expires_at: opt_ts(col(row, "expires_at")?),
        rotated_at: opt_ts(col(row, "rotated_at")?),
        revoked_at: opt_ts(col(row, "revoked_at")?),
    })
}

const DEVICE_COLUMNS: &str = "device_code_hash, user_code, client_id, scopes, state, user_id, \
     grant_id, auth_time, interval_s, last_polled_at, created_at, expires_at, version";

fn device_from_row(row: &AnyRow) -> Result<DeviceRecord, StoreError> {
    let hash: String = col(row, "device_code_hash")?;
    let client: String = col(row, "client_id")?;
    let scopes: String = col(row, "scopes")?;
    let state: String = col(row, "state")?;
    let user: Option<String> = col(row, "user_id")?;
    let grant: Option<String> = col(row, "grant_id")?;
    let version: i64 = col(row, "version")?;
    Ok(DeviceRecord {
        hash: hash_col("oauth_device_codes.device_code_hash", &hash)?,
        user_code: col(row, "user_code")?,
        client_id: client_id_col("oauth_device_codes.client_id", &client)?,
        scopes: scopes_col("oauth_device_codes.scopes", &scopes)?,
        state: DeviceState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("oauth_device_codes.state", "unknown state"))?,
        user: user
            .map(|u| parse("oauth_device_codes.user_id", &u))
            .transpose()?,
        grant_id: grant
            .map(|g| parse("oauth_device_codes.grant_id", &g))
            .transpose()?,
        auth_time: opt_ts(col(row, "auth_time")?),
        interval_s: u32_col("oauth_device_codes.interval_s", col(row, "interval_s")?)?,
        last_polled_at: opt_ts(col(row, "last_polled_at")?),
        created_at: ts(col(row, "created_at")?),
        expires_at: ts(col(row, "expires_at")?),
        version: u64::try_from(version)
            .map_err(|err| StoreError::corrupt("oauth_device_codes.version", err))?,
    })
}

const KEY_COLUMNS: &str = "kid, alg, sealed, kek_version, public_jwk, created_at, retired_at";

fn key_from_row(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: col(row, "kid")?,
        alg: col(row, "alg")?,
        sealed: col(row, "sealed")?,
        kek_version: u32_col("oauth_signing_keys.kek_version", col(row, "kek_version")?)?,
        public_jwk: col(row, "public_jwk")?,
        created_at: ts(col(row, "created_at")?),
        retired_at: opt_ts(col(row, "retired_at")?),
    })
}

/// The columns [`token_rows`] fills, in its order (`rotated_at` and `revoked_at` start NULL).
pub(crate) const NEW_TOKEN_COLUMNS: &str =
    "token_hash, kind, grant_id, client_id, user_id, family, \
     scopes, auth_time, created_at, expires_at";

/// `($first, ..., $first+9), (...)`: one row of [`NEW_TOKEN_COLUMNS`] placeholders per token,
/// numbered from `$first`, for [`bind_tokens`].
fn token_rows(count: usize, first: usize) -> String {
    let mut rows = String::new();
    for i in 0..count {
        let p = first + i * 10;
        if i > 0 {
            rows.push_str(", ");
        }
        rows.push('(');
        for column in 0..10 {
            if column > 0 {
                rows.push_str(", ");
            }
            let _ = write!(rows, "${}", p + column);
        }
        rows.push(')');
    }
    rows
}

/// Binds `tokens` in the order of [`token_rows`].
fn bind_tokens<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    tokens: &[NewOAuthToken],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for t in tokens {
        query = query
            .bind(t.hash.to_hex())
            .bind(t.kind.as_str())
            .bind(t.grant_id.to_string())
            .bind(t.client_id.as_str().to_owned())
            .bind(t.user.to_string())
            .bind(t.family.to_hex())
            .bind(t.scopes.to_string())
            .bind(ms(t.auth_time))
            .bind(ms(t.created_at))
            .bind(opt_ms(t.expires_at));
    }
    query
}

async fn insert_tokens(
    tx: &mut Transaction<'_, Any>,
    tokens: &[NewOAuthToken],
) -> Result<(), StoreError> {
    if tokens.is_empty() {
        return Ok(());
    }
    // One statement for all of them (an access token and its refresh token): a round trip
    // per statement is most of the cost of a refresh.
    let sql = format!(
        "INSERT INTO oauth_tokens ({NEW_TOKEN_COLUMNS}) VALUES {}",
        token_rows(tokens.len(), 1)
    );
    bind_tokens(sqlx::query(&sql), tokens)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from_write("oauth token"))?;
    Ok(())
}

/// Revokes a grant and every token of it, through any executor.
async fn revoke_grant_in<'e, E>(
    executor: E,
    grant: GrantId,
    now: Timestamp,
) -> Result<u64, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let done = sqlx::query(
        "UPDATE oauth_tokens SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL",
    )
    .bind(grant.to_string())
    .bind(ms(now))
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}

/// Reads and writes the authorization server's records. Get one from
/// [`crate::Store::oauth`].
#[derive(Clone, Copy, Debug)]
pub struct OAuthRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
    rotations: &'a RotationQueue,
}

impl<'a> OAuthRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
            rotations: &pools.rotations,
        }
    }

    // ---- clients ----

    /// Registers a client. Errors: [`StoreError::Duplicate`] (`what: "oauth client"`).
    pub async fn insert_client(&self, client: &OAuthClient) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|err| StoreError::corrupt("oauth_clients.redirect_uris", err))?;
        let grants: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
        let grants = serde_json::to_string(&grants)
            .map_err(|err| StoreError::corrupt("oauth_clients.grant_types", err))?;
        sqlx::query(&format!(
            "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(client.id.as_str())
        .bind(client.name.as_str())
        .bind(client.client_type.as_str())
        .bind(client.secret_hash.clone())
        .bind(uris)
        .bind(client.scopes.to_string())
        .bind(grants)
        .bind(ms(client.created_at))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("oauth client"))?;
        Ok(())
    }

    /// The client with this id, if any.
    pub async fn get_client(&self, id: &ClientId) -> Result<Option<OAuthClient>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Every client, oldest first.
    pub async fn list_clients(&self) -> Result<Vec<OAuthClient>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, id"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Removes a client and, by cascade, its grants, codes, tokens and device codes.
    /// Returns whether it existed.
    pub async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id.as_str())
            .execute(self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- grants ----

    /// Records that `user` consents to `client` for `scopes`: the live grant of the pair gets
    /// the union of its scopes and these (compare-and-set on the old scopes, retried), or a
    /// new grant `new_id` is made. Returns the grant as stored.
    pub async fn upsert_grant(
        &self,
        user: UserId,
        client: &ClientId,
        scopes: &ScopeSet,
        new_id: GrantId,
        now: Timestamp,
    ) -> Result<GrantRecord, StoreError> {
        for _ in 0..5 {
            if let Some(live) = self.live_grant(user, client).await? {
                let merged = live.scopes.union(scopes);
                let done = sqlx::query(
                    "UPDATE oauth_grants SET scopes = $2, updated_at = $3 \
                     WHERE id = $1 AND scopes = $4 AND revoked_at IS NULL",
                )
                .bind(live.id.to_string())
                .bind(merged.to_string())
                .bind(ms(now))
                .bind(live.scopes.to_string())
                .execute(self.write)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(GrantRecord {
                        scopes: merged,
                        updated_at: now,
                        ..live
                    });
                }
                continue;
            }
            let inserted = sqlx::query(
                "INSERT INTO oauth_grants (id, user_id, client_id, scopes, created_at, \
                 updated_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $5, NULL)",
            )
            .bind(new_id.to_string())
            .bind(user.to_string())
            .bind(client.as_str())
            .bind(scopes.to_string())
            .bind(ms(now))
            .execute(self.write)
            .await
            .map_err(StoreError::from_write("oauth grant"));
            match inserted {
                Ok(_) => {
                    return self.get_grant(new_id).await?.ok_or(StoreError::NotFound);
                }
                // A concurrent approval made the live grant first: merge into it.
                Err(StoreError::Duplicate { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Stale {
            what: "oauth grant",
        })
    }

    async fn live_grant(
        &self,
        user: UserId,
        client: &ClientId,
    ) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id \
             WHERE g.user_id = $1 AND g.client_id = $2 AND g.revoked_at IS NULL"
        ))
        .bind(user.to_string())
        .bind(client.as_str())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// The grant with this id, revoked or not.
    pub async fn get_grant(&self, id: GrantId) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id \
             WHERE g.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// `user`'s live grants (their linked apps), newest approval first.
    pub async fn list_grants(&self, user: UserId) -> Result<Vec<GrantRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id \
             WHERE g.user_id = $1 AND g.revoked_at IS NULL ORDER BY g.updated_at DESC, g.id"
        ))
        .bind(user.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Revokes grant `id` (only `user`'s, when given) and every token of it, in one
    /// transaction. Returns whether a live grant was revoked (`false`: no such live grant of
    /// that user; nothing changes).
    pub async fn revoke_grant(
        &self,
        user: Option<UserId>,
        id: GrantId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $2 \
             WHERE id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR user_id = $3)",
        )
        .bind(id.to_string())
        .bind(ms(now))
        .bind(user.map(|u| u.to_string()))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        revoke_grant_in(&mut *tx, id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- codes ----

    /// Stores a code (by hash) for grant `grant_id`.
    pub async fn insert_code(
        &self,
        hash: &SecretHash,
        grant_id: GrantId,
        code: &CodeGrant,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, grant_id, client_id, user_id, redirect_uri, \
             scopes, code_challenge, nonce, auth_time, created_at, expires_at, redeemed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(hash.to_hex())
        .bind(grant_id.to_string())
        .bind(code.client_id.as_str())
        .bind(code.user.to_string())
        .bind(code.redirect_uri.clone())
        .bind(code.scopes.to_string())
        .bind(code.code_challenge.as_ref().map(|c| c.as_str().to_owned()))
        .bind(code.nonce.clone())
        .bind(ms(code.auth_time))
        .bind(ms(code.created_at))
        .bind(ms(code.expires_at))
        .bind(opt_ms(code.redeemed_at))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("oauth code"))?;
        Ok(())
    }

    /// The code with this hash and its grant id, redeemed or not.
    pub async fn find_code(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<(GrantId, CodeGrant)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CODE_COLUMNS} FROM oauth_codes WHERE code_hash = $1"
        ))
        .bind(hash.to_hex())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(code_from_row).transpose()
    }

    /// Redeems a code and stores the tokens it buys, in **one transaction**: the code moves
    /// to redeemed as a compare-and-set (it must be unredeemed, unexpired at `now`, and its
    /// grant live), then `tokens` are inserted. Errors: [`StoreError::Stale`] if the
    /// compare-and-set lost (redeemed concurrently, expired, or the grant revoked); nothing
    /// is written then.
    pub async fn redeem_code(
        &self,
        hash: &SecretHash,
        now: Timestamp,
        tokens: &[NewOAuthToken],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE oauth_codes SET redeemed_at = $2 \
             WHERE code_hash = $1 AND redeemed_at IS NULL AND expires_at > $2 \
             AND EXISTS (SELECT 1 FROM oauth_grants g \
                         WHERE g.id = oauth_codes.grant_id AND g.revoked_at IS NULL)",
        )
        .bind(hash.to_hex())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(StoreError::Stale { what: "oauth code" });
        }
        insert_tokens(&mut tx, tokens).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes every live token of a family of `grant` (all descendants of one code or device
    /// code; found through the index by grant and family). Returns how many were revoked.
    pub async fn revoke_family(
        &self,
        grant: GrantId,
        family: &SecretHash,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $3 \
             WHERE grant_id = $1 AND family = $2 AND revoked_at IS NULL",
        )
        .bind(grant.to_string())
        .bind(family.to_hex())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        Ok(done.rows_affected())
    }

    // ---- tokens ----

    /// Stores tokens (outside a redemption; tests and tools).
    pub async fn insert_tokens(&self, tokens: &[NewOAuthToken]) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        insert_tokens(&mut tx, tokens).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The token with this hash and its user, in any state.
    pub async fn find_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<OAuthTokenRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1"
        ))
        .bind(hash.to_hex())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Every token of a grant (tests and tools), oldest first.
    pub async fn list_tokens_of_grant(
        &self,
        grant: GrantId,
    ) -> Result<Vec<OAuthTokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM oauth_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id JOIN users u ON u.id = t.user_id \
             WHERE t.grant_id = $1 ORDER BY t.created_at, t.token_hash"
        ))
        .bind(grant.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Rotates a refresh token, atomically: the old token is marked rotated as a
    /// compare-and-set (it must be a refresh token of `tokens.client_id`, unrotated,
    /// unrevoked, unexpired at `now`, with a live grant), and only if it won, the new access
    /// and refresh tokens are inserted with the old token's grant, person, family and
    /// authentication time. Returns what the rotation read from the old token. Errors:
    /// [`StoreError::Stale`] if the compare-and-set lost (nothing is written; the caller
    /// looks the token up to say why), [`StoreError::Timeout`] (30 s in line for the writer),
    /// a database error (a new hash already taken; nothing is written).
    ///
    /// This is the hot write of the token endpoint: it joins a group commit (`rotations.rs`),
    /// every rotation waiting written in one transaction and one round trip.
    pub async fn rotate_refresh(
        &self,
        hash: &SecretHash,
        now: Timestamp,
        tokens: &RefreshedTokens,
    ) -> Result<RotatedRefresh, StoreError> {
        self.rotations
            .rotate(hash, now, tokens)
            .await?
            .ok_or(StoreError::Stale {
                what: "refresh token",
            })
    }

    /// Revokes one token. Returns whether it was live before.
    pub async fn revoke_token(
        &self,
        hash: &SecretHash,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash.to_hex())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- device authorizations ----

    /// Stores a new device authorization. Errors: [`StoreError::Duplicate`] if the user
    /// code is taken (draw another).
    pub async fn insert_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO oauth_device_codes ({DEVICE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(device.hash.to_hex())
        .bind(device.user_code.as_str())
        .bind(device.client_id.as_str())
        .bind(device.scopes.to_string())
        .bind(device.state.as_str())
        .bind(device.user.map(|u| u.to_string()))
        .bind(device.grant_id.map(|g| g.to_string()))
        .bind(opt_ms(device.auth_time))
        .bind(i64::from(device.interval_s))
        .bind(opt_ms(device.last_polled_at))
        .bind(ms(device.created_at))
        .bind(ms(device.expires_at))
        .bind(
            i64::try_from(device.version)
                .map_err(|_| StoreError::OutOfRange { what: "version" })?,
        )
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("device code"))?;
        Ok(())
    }

    /// The device authorization with this device-code hash.
    pub async fn find_device(&self, hash: &SecretHash) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM oauth_device_codes WHERE device_code_hash = $1"
        ))
        .bind(hash.to_hex())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// The device authorization with this (normalized) user code.
    pub async fn find_device_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM oauth_device_codes WHERE user_code = $1"
        ))
        .bind(user_code)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Moves a device authorization `from -> to` as a compare-and-set on `(state, version)`,
    /// setting who answered (`user`, `grant_id`, `auth_time`) when given. The transition is
    /// checked with [`DeviceState::transition`] first. Errors:
    /// [`StoreError::InvalidDeviceTransition`], [`StoreError::Stale`] when the record moved.
    pub async fn transition_device(
        &self,
        hash: &SecretHash,
        from: DeviceState,
        to: DeviceState,
        version: u64,
        answered_by: Option<(UserId, GrantId, Timestamp)>,
    ) -> Result<(), StoreError> {
        from.transition(to)?;
        let version =
            i64::try_from(version).map_err(|_| StoreError::OutOfRange { what: "version" })?;
        let done = sqlx::query(
            "UPDATE oauth_device_codes SET state = $3, version = version + 1, \
             user_id = COALESCE($5, user_id), grant_id = COALESCE($6, grant_id), \
             auth_time = COALESCE($7, auth_time) \
             WHERE device_code_hash = $1 AND state = $2 AND version = $4",
        )
        .bind(hash.to_hex())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(version)
        .bind(answered_by.map(|(u, _, _)| u.to_string()))
        .bind(answered_by.map(|(_, g, _)| g.to_string()))
        .bind(answered_by.map(|(_, _, t)| ms(t)))
        .execute(self.write)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Stale {
                what: "device code",
            })
        }
    }

    /// Records a poll at `now` with the interval from now on, as a compare-and-set on
    /// `version` (two polls at once: one is recorded, the other gets [`StoreError::Stale`]).
    pub async fn record_poll(
        &self,
        hash: &SecretHash,
        version: u64,
        interval_s: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let version =
            i64::try_from(version).map_err(|_| StoreError::OutOfRange { what: "version" })?;
        let done = sqlx::query(
            "UPDATE oauth_device_codes SET last_polled_at = $3, interval_s = $4, \
             version = version + 1 WHERE device_code_hash = $1 AND version = $2",
        )
        .bind(hash.to_hex())
        .bind(version)
        .bind(ms(now))
        .bind(i64::from(interval_s))
        .execute(self.write)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Stale {
                what: "device code",
            })
        }
    }

    /// Redeems an approved device authorization and stores its tokens, in **one
    /// transaction**: `approved -> redeemed` as a compare-and-set on `version` (and unexpired
    /// at `now`), then the tokens. Errors: [`StoreError::Stale`] (nothing written).
    pub async fn redeem_device(
        &self,
        hash: &SecretHash,
        version: u64,
        now: Timestamp,
        tokens: &[NewOAuthToken],
    ) -> Result<(), StoreError> {
        let version =
            i64::try_from(version).map_err(|_| StoreError::OutOfRange { what: "version" })?;
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE oauth_device_codes SET state = 'redeemed', version = version + 1, \
             last_polled_at = $3 \
             WHERE device_code_hash = $1 AND state = 'approved' AND version = $2 \
             AND expires_at > $3",
        )
        .bind(hash.to_hex())
        .bind(version)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(StoreError::Stale {
                what: "device code",
            });
        }
        insert_tokens(&mut tx, tokens).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- signing keys ----

    /// Adds a signing key and retires (at `now`) every key that was signing before, in one
    /// transaction: the new key signs from now on.
    pub async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE oauth_signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO oauth_signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(key.kid.as_str())
        .bind(key.alg.as_str())
        .bind(key.sealed.clone())
        .bind(i64::from(key.kek_version))
        .bind(key.public_jwk.as_str())
        .bind(ms(key.created_at))
        .bind(opt_ms(key.retired_at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write("signing key"))?;
        tx.commit().await?;
        Ok(())
    }

    /// Every signing key, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM oauth_signing_keys ORDER BY created_at DESC, kid"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Replaces a key's sealed bytes (vault rotation re-wraps them), compare-and-set on the
    /// old bytes. Returns whether it was replaced.
    pub async fn replace_sealed_key(
        &self,
        kid: &str,
        old: &[u8],
        sealed: &[u8],
        kek_version: u32,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_signing_keys SET sealed = $3, kek_version = $4 \
             WHERE kid = $1 AND sealed = $2",
        )
        .bind(kid)
        .bind(old.to_vec())
        .bind(sealed.to_vec())
        .bind(i64::from(kek_version))
        .execute(self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
