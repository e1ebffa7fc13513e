//! Accounts: users, personal access tokens, and authenticating a request's bearer token.
//!
//! Token secrets are generated here (from the OS RNG), shown once and stored only as their
//! SHA-256 hash (see `hangar-identity`). The first start makes the bootstrap admin.

use std::sync::Arc;

use hangar_core::{TokenId, UserId};
use hangar_identity::{
    parse_any_bearer, AuthError, BearerToken, InsufficientScope, PersonalAccessToken, Principal,
    Scope, ScopeSet, TokenHash,
};
use hangar_oauth::token::TokenKind;
use hangar_oauth::SecretHash;
use hangar_store::{Store, StoreError, TokenRecord, User};
use rand::rngs::OsRng;

use crate::clock::Clock;

/// Errors of account operations.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The request carries no valid credentials.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The caller may not do this (admin only, or more than its credential allows).
    #[error("not allowed for this caller")]
    Forbidden,
    /// The caller's credential lacks a scope (403 `insufficient_scope`).
    #[error(transparent)]
    InsufficientScope(#[from] InsufficientScope),
    /// No such user or token (for this caller).
    #[error("not found")]
    NotFound,
    /// The name is taken.
    #[error("{what} already exists")]
    Duplicate {
        /// What is duplicated.
        what: String,
    },
    /// A field is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("store")]
    Store(#[source] StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate { what } => Self::Duplicate {
                what: what.to_owned(),
            },
            other => Self::Store(other),
        }
    }
}

/// A freshly issued token: its record and its secret (shown once).
#[derive(Debug)]
pub struct IssuedToken {
    /// The stored record (hash only).
    pub record: TokenRecord,
    /// The secret, for the caller to hand over once.
    pub secret: PersonalAccessToken,
}

/// Users and tokens.
#[derive(Debug)]
pub struct Accounts {
    store: Store,
    clock: Arc<dyn Clock>,
}

/// Longest lifetime a token may ask for (1 year), in seconds.
pub const MAX_TOKEN_TTL_S: u64 = 365 * 24 * 3600;

impl Accounts {
    /// Accounts over `store`.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self { store, clock })
    }

    /// Resolves an `Authorization` header to the caller: a personal access token (with its
    /// scopes, every scope when it has none recorded) or an OAuth access token issued by
    /// hangar's authorization server (live, with its grant live; the scopes it was issued
    /// with). Errors are deliberately coarse.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AccountError> {
        let token = match parse_any_bearer(header)? {
            BearerToken::PersonalAccessToken(token) => token,
            BearerToken::OAuthAccessToken(token) => return self.authenticate_oauth(token).await,
        };
        let now = self.clock.now();
        let (record, user) = self
            .store
            .tokens()
            .find_active_by_hash(&TokenHash::of(token).0, now)
            .await?
            .ok_or(AuthError::Invalid)?;
        if let Err(e) = self.store.tokens().touch(record.id, now).await {
            tracing::debug!(error = %e, "token last-use not recorded");
        }
        Ok(Principal {
            user: user.id,
            name: user.name,
            is_admin: user.is_admin,
            scopes: record.scopes.unwrap_or_else(ScopeSet::all),
            client_id: None,
        })
    }

    async fn authenticate_oauth(&self, token: &str) -> Result<Principal, AccountError> {
        let record = self
            .store
            .oauth()
            .find_token(&SecretHash::of(token))
            .await?
            .filter(|t| t.kind == TokenKind::Access && t.is_active(self.clock.now()))
            .ok_or(AuthError::Invalid)?;
        Ok(Principal {
            user: record.user.id,
            name: record.user.name,
            is_admin: record.user.is_admin,
            scopes: record.scopes,
            client_id: Some(record.client_id.to_string()),
        })
    }

    /// On a store with no users, creates the admin `admin` and a token for it and returns the
    /// token; `None` when users already exist.
    pub async fn bootstrap_admin(&self) -> Result<Option<IssuedToken>, AccountError> {
        if self.store.users().count().await? > 0 {
            return Ok(None);
        }
        let user = self.insert_user("admin", true).await?;
        Ok(Some(self.issue(user.id, "bootstrap", None, None).await?))
    }

    /// Admin only: creates a user and a first token for it.
    pub async fn create_user(
        &self,
        caller: &Principal,
        name: &str,
        is_admin: bool,
    ) -> Result<(User, IssuedToken), AccountError> {
        require_admin(caller)?;
        validate_name("name", name)?;
        let user = self.insert_user(name, is_admin).await?;
        let token = self.issue(user.id, "initial", None, None).await?;
        Ok((user, token))
    }

    /// Admin only: every user.
    pub async fn list_users(&self, caller: &Principal) -> Result<Vec<User>, AccountError> {
        require_admin(caller)?;
        Ok(self.store.users().list().await?)
    }

    /// Issues a new token for the caller, expiring after `ttl_s` seconds if given, limited to
    /// `scopes` if given. A token never gets more than the caller's own credential carries
    /// (`Forbidden`), and an OAuth client acting for the user cannot manage tokens.
    pub async fn create_token(
        &self,
        caller: &Principal,
        name: &str,
        ttl_s: Option<u64>,
        scopes: Option<ScopeSet>,
    ) -> Result<IssuedToken, AccountError> {
        personal_credential(caller)?;
        validate_name("name", name)?;
        if let Some(scopes) = &scopes {
            if scopes.is_empty() {
                return Err(AccountError::Invalid {
                    field: "scopes",
                    reason: "at least one scope (leave it out for every scope)".into(),
                });
            }
            if !scopes.is_subset(&caller.scopes) {
                return Err(AccountError::Forbidden);
            }
        } else if caller.scopes != ScopeSet::all() {
            return Err(AccountError::Forbidden);
        }
        if let Some(ttl) = ttl_s {
            if ttl == 0 || ttl > MAX_TOKEN_TTL_S {
                return Err(AccountError::Invalid {
                    field: "expires_in_s",
                    reason: format!("must be between 1 and {MAX_TOKEN_TTL_S}"),
                });
            }
        }
        self.issue(caller.user, name, ttl_s, scopes).await
    }

    /// The caller's tokens (records only).
    pub async fn list_tokens(&self, caller: &Principal) -> Result<Vec<TokenRecord>, AccountError> {
        personal_credential(caller)?;
        Ok(self.store.tokens().list_for_user(caller.user).await?)
    }

    /// Revokes one of the caller's tokens.
    pub async fn revoke_token(&self, caller: &Principal, id: TokenId) -> Result<(), AccountError> {
        personal_credential(caller)?;
        if self
            .store
            .tokens()
            .revoke(caller.user, id, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(AccountError::NotFound)
        }
    }

    async fn insert_user(&self, name: &str, is_admin: bool) -> Result<User, AccountError> {
        let user = User {
            id: UserId::from_uuid(uuid::Uuid::now_v7()),
            name: name.to_owned(),
            is_admin,
            created_at: self.clock.now(),
        };
        self.store.users().create(&user).await?;
        Ok(user)
    }

    async fn issue(
        &self,
        user: UserId,
        name: &str,
        ttl_s: Option<u64>,
        scopes: Option<ScopeSet>,
    ) -> Result<IssuedToken, AccountError> {
        let secret = PersonalAccessToken::generate(&mut OsRng);
        let now = self.clock.now();
        let record = TokenRecord {
            id: TokenId::from_uuid(uuid::Uuid::now_v7()),
            user,
            name: name.to_owned(),
            hash: secret.hash().0,
            created_at: now,
            expires_at: ttl_s
                .map(|s| now.plus_ms(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))),
            revoked_at: None,
            last_used_at: None,
            scopes,
        };
        self.store.tokens().insert(&record).await?;
        Ok(IssuedToken { record, secret })
    }
}

/// Admin operations need an admin user whose credential carries the `admin` scope.
pub fn require_admin(caller: &Principal) -> Result<(), AccountError> {
    if !caller.is_admin {
        return Err(AccountError::Forbidden);
    }
    caller.require(Scope::Admin)?;
    Ok(())
}

/// Token management is for the person's own credentials, never for an OAuth client acting
/// for them.
fn personal_credential(caller: &Principal) -> Result<(), AccountError> {
    if caller.client_id.is_some() {
        Err(AccountError::Forbidden)
    } else {
        Ok(())
    }
}

fn validate_name(field: &'static str, name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid {
            field,
            reason: "1-64 characters: letters, digits, '-', '_', '.'".into(),
        })
    }
}
