//! hangar's OAuth 2.0 authorization server: the service every OAuth front end calls (the
//! endpoints in `api/oauth.rs`, the admin and account routes, the browser pages, the CLI).
//!
//! The rules live in `hangar-oauth`; this service loads what they need from the store, asks
//! them, and applies the answer with the store's compare-and-set writes. It parses nothing:
//! handlers hand it typed requests. Secrets are generated here from the OS RNG, handed out
//! once, and stored hashed; none is logged.
//!
//! | operation | RFC |
//! |---|---|
//! | [`OAuthService::validate_authorization_request`], [`OAuthService::approve`], [`OAuthService::deny`] | 6749 section 4.1.1-4.1.2, 7636, 9207 |
//! | [`OAuthService::token`] | 6749 sections 4.1.3, 5, 6; 8628 section 3.4-3.5 |
//! | [`OAuthService::revoke`] | 7009 |
//! | [`OAuthService::introspect`] | 7662 |
//! | [`OAuthService::device_authorization`], [`OAuthService::approve_device`] | 8628 section 3.1-3.3 |
//! | [`OAuthService::userinfo`] | OpenID Connect Core section 5.3 |
//! | [`OAuthService::metadata`], [`OAuthService::jwks`] | 8414, 7517 |

pub mod client_cache;
pub mod keys;
pub mod ratelimit;
pub mod secret_cache;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hangar_core::{GrantId, Timestamp};
use hangar_identity::Principal;
use hangar_oauth::authorize::{self, AuthorizationRequest, AuthorizeError, ValidatedAuthorization};
use hangar_oauth::client::{
    verify_client_secret, ClientId, ClientSecret, ClientType, GrantType, NewClient, OAuthClient,
};
use hangar_oauth::code::{CodeGrant, CodeRedemption, CodeRefusal};
use hangar_oauth::device::{
    DevicePollState, DeviceState, PollDecision, UserCode, DEFAULT_INTERVAL_S,
};
use hangar_oauth::oidc::IdTokenClaims;
use hangar_oauth::secret::{
    has_shape, Secret, ACCESS_TOKEN_PREFIX, CODE_PREFIX, DEVICE_CODE_PREFIX, REFRESH_TOKEN_PREFIX,
};
use hangar_oauth::token::{expiry, RefreshRefusal, RefreshTokenState, TokenKind};
use hangar_oauth::{ErrorCode, OAuthError, Scope, ScopeSet, SecretHash};
use hangar_store::{
    DeviceRecord, GrantRecord, NewOAuthToken, OAuthTokenRecord, RefreshedTokens, Store, StoreError,
};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::accounts::{require_admin, AccountError};
use crate::clock::Clock;
use crate::credentials::CredentialVault;
pub use ratelimit::RateConfig;
use ratelimit::RateLimits;

/// Settings of the authorization server.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer identifier (RFC 8414 section 2): the public base URL of hangar, no trailing
    /// slash (`https://hangar.example`). Endpoints are under it.
    pub issuer: String,
    /// Authorization code lifetime (default 60 s).
    pub code_ttl: Duration,
    /// Access token lifetime (default 1 h).
    pub access_token_ttl: Duration,
    /// Refresh token lifetime, renewed at each rotation (default 30 days).
    pub refresh_token_ttl: Duration,
    /// Device code lifetime (default 10 min).
    pub device_code_ttl: Duration,
    /// id_token lifetime (default 1 h; at most `keys::PUBLISH_RETIRED_FOR`).
    pub id_token_ttl: Duration,
    /// Rate limits of the token, revocation, introspection and device endpoints.
    pub rate: RateConfig,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".to_owned(),
            code_ttl: hangar_oauth::code::CODE_TTL,
            access_token_ttl: hangar_oauth::token::ACCESS_TOKEN_TTL,
            refresh_token_ttl: hangar_oauth::token::REFRESH_TOKEN_TTL,
            device_code_ttl: hangar_oauth::device::DEVICE_CODE_TTL,
            id_token_ttl: Duration::from_secs(3600),
            rate: RateConfig::default(),
        }
    }
}

/// How a client authenticates at the token-style endpoints (RFC 6749 section 2.3).
/// `Debug` never shows the secret.
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-decoded id and secret.
    Basic {
        /// `client_id`.
        client_id: String,
        /// `client_secret`.
        secret: Zeroizing<String>,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post {
        /// `client_id`.
        client_id: String,
        /// `client_secret`.
        secret: Zeroizing<String>,
    },
    /// `none`: a public client names itself with `client_id` only.
    None {
        /// `client_id`.
        client_id: String,
    },
}

impl ClientAuth {
    /// The claimed client id.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::None { client_id } => client_id,
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self {
            ClientAuth::Basic { .. } => "client_secret_basic",
            ClientAuth::Post { .. } => "client_secret_post",
            ClientAuth::None { .. } => "none",
        };
        write!(f, "ClientAuth({method}, {:?})", self.client_id())
    }
}

/// A token request's grant (RFC 6749 sections 4.1.3 and 6, RFC 8628 section 3.4).
/// `Debug` never shows the secrets.
pub enum TokenGrant {
    /// `authorization_code`.
    AuthorizationCode {
        /// `code`.
        code: Zeroizing<String>,
        /// `redirect_uri`.
        redirect_uri: Option<String>,
        /// `code_verifier`.
        code_verifier: Option<Zeroizing<String>>,
    },
    /// `refresh_token`.
    RefreshToken {
        /// `refresh_token`.
        refresh_token: Zeroizing<String>,
        /// `scope`, if narrowed.
        scope: Option<ScopeSet>,
    },
    /// `urn:ietf:params:oauth:grant-type:device_code`.
    DeviceCode {
        /// `device_code`.
        device_code: Zeroizing<String>,
    },
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            TokenGrant::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            TokenGrant::RefreshToken { .. } => GrantType::RefreshToken,
            TokenGrant::DeviceCode { .. } => GrantType::DeviceCode,
        };
        write!(f, "TokenGrant({})", kind.as_str())
    }
}

/// A successful token response (RFC 6749 section 5.1). `Debug` is redacted.
pub struct IssuedTokens {
    /// The access token.
    pub access_token: Secret,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The refresh token, if the client may refresh.
    pub refresh_token: Option<Secret>,
    /// The scopes granted.
    pub scope: ScopeSet,
    /// A signed id_token when `openid` was granted (codes and device codes).
    pub id_token: Option<String>,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// An introspection answer (RFC 7662 section 2.2). Inactive tokens say only `active: false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Introspection {
    /// Whether the token is live.
    pub active: bool,
    /// Its scopes.
    pub scope: Option<ScopeSet>,
    /// The client it was issued to.
    pub client_id: Option<String>,
    /// The user's name.
    pub username: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    pub token_type: Option<&'static str>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<i64>,
    /// Issued at, seconds since the epoch.
    pub iat: Option<i64>,
    /// The user id.
    pub sub: Option<String>,
    /// The client id (audience).
    pub aud: Option<String>,
    /// The issuer.
    pub iss: Option<String>,
}

/// The device authorization response (RFC 8628 section 3.2). `Debug` is redacted.
pub struct DeviceAuthorization {
    /// The device code (secret: the device polls with it).
    pub device_code: Secret,
    /// The user code, shown as `XXXX-XXXX`.
    pub user_code: String,
    /// Where the person goes.
    pub verification_uri: String,
    /// The same with the user code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u32,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// What the device verification page shows about a pending device request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequestView {
    /// The client.
    pub client_id: String,
    /// The client's name.
    pub client_name: String,
    /// The scopes asked for.
    pub scopes: ScopeSet,
}

/// OpenID Connect userinfo (Core section 5.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userinfo {
    /// The user id.
    pub sub: String,
    /// The user's name (scope `profile`).
    pub name: Option<String>,
    /// The user's login (scope `profile`).
    pub preferred_username: Option<String>,
}

/// A failed protocol request: the RFC error, and how long to wait when rate-limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    /// The error.
    pub error: OAuthError,
    /// For `429`: when to retry (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl From<OAuthError> for EndpointError {
    fn from(error: OAuthError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl From<StoreError> for EndpointError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %crate::error::chain(&e), "oauth store error");
        OAuthError::server_error().into()
    }
}

impl From<keys::KeyError> for EndpointError {
    fn from(e: keys::KeyError) -> Self {
        tracing::error!(error = %crate::error::chain(&e), "oauth signing error");
        OAuthError::server_error().into()
    }
}

/// Errors of the operations people and admins call (through the JSON API and the pages).
#[derive(Debug, thiserror::Error)]
pub enum OAuthManageError {
    /// Not allowed for this caller.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// No such client, grant or pending device request (for this caller).
    #[error("not found")]
    NotFound,
    /// The input is not acceptable.
    #[error("{0}")]
    Invalid(OAuthError),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// The authorization server.
#[derive(Debug)]
pub struct OAuthService {
    store: Store,
    clock: Arc<dyn Clock>,
    vault: Arc<CredentialVault>,
    config: OAuthConfig,
    limits: RateLimits,
    /// Client secrets that passed Argon2 recently.
    verified: secret_cache::SecretCache,
    /// Client records read recently.
    clients: client_cache::ClientCache,
}

/// `invalid_grant` for a refresh token that is not one of ours (RFC 6749 section 5.2).
fn unknown_refresh_token() -> OAuthError {
    OAuthError::invalid_grant("unknown refresh token")
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

fn unix_s(t: Timestamp) -> i64 {
    t.unix_ms().div_euclid(1000)
}

fn new_grant_id() -> GrantId {
    GrantId::from_uuid(uuid::Uuid::now_v7())
}

impl OAuthService {
    /// The service; makes the first signing key if there is none.
    pub async fn open(
        store: Store,
        clock: Arc<dyn Clock>,
        vault: Arc<CredentialVault>,
        config: OAuthConfig,
    ) -> Result<Arc<Self>, keys::KeyError> {
        keys::ensure_key(&store, &vault, clock.now()).await?;
        let limits = RateLimits::new(config.rate);
        Ok(Arc::new(Self {
            store,
            clock,
            vault,
            config,
            limits,
            verified: secret_cache::SecretCache::default(),
            clients: client_cache::ClientCache::default(),
        }))
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The settings.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    // ---- rate limits ----

    /// Counts one request from `peer` (before anything else is done).
    fn limit_addr(&self, peer: Option<IpAddr>) -> Result<(), EndpointError> {
        if let Some(addr) = peer {
            self.limits.check_addr(addr).map_err(rate_limited)?;
        }
        Ok(())
    }

    fn limit_client(&self, client_id: &str) -> Result<(), EndpointError> {
        self.limits.check_client(client_id).map_err(rate_limited)
    }

    // ---- clients (admin) ----

    /// Registers a client (admin). Returns it and, for a confidential client, its secret
    /// (to show once).
    pub async fn register_client(
        &self,
        caller: &Principal,
        new: NewClient,
    ) -> Result<(OAuthClient, Option<ClientSecret>), OAuthManageError> {
        require_admin(caller)?;
        let now = self.clock.now();
        let (client, secret) = tokio::task::spawn_blocking(move || new.register(now, &mut OsRng))
            .await
            .map_err(|_| OAuthManageError::Invalid(OAuthError::server_error()))?
            .map_err(OAuthManageError::Invalid)?;
        self.store.oauth().insert_client(&client).await?;
        tracing::info!(client_id = %client.id, client_type = client.client_type.as_str(), "oauth client registered");
        Ok((client, secret))
    }

    /// Every client (admin).
    pub async fn list_clients(
        &self,
        caller: &Principal,
    ) -> Result<Vec<OAuthClient>, OAuthManageError> {
        require_admin(caller)?;
        Ok(self.store.oauth().list_clients().await?)
    }

    /// Removes a client and everything issued to it (admin).
    pub async fn delete_client(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<(), OAuthManageError> {
        require_admin(caller)?;
        let id: ClientId = id.parse().map_err(|_| OAuthManageError::NotFound)?;
        let removed = self.store.oauth().delete_client(&id).await?;
        self.clients.forget(&id);
        if removed {
            tracing::info!(client_id = %id, "oauth client removed");
            Ok(())
        } else {
            Err(OAuthManageError::NotFound)
        }
    }

    // ---- the authorization endpoint (for the browser pages) ----

    /// Checks an authorization request (RFC 6749 section 4.1.1). On error, a
    /// [`AuthorizeError::Page`] is shown on hangar's page; a [`AuthorizeError::Redirect`]
    /// goes back to the client (`redirect_url(issuer)`).
    pub async fn validate_authorization_request(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<ValidatedAuthorization, AuthorizeError> {
        let client = match request.client_id.as_deref().map(str::parse::<ClientId>) {
            Some(Ok(id)) => self.client(&id).await.map_err(|e| {
                tracing::error!(error = %crate::error::chain(&e), "oauth store error");
                AuthorizeError::Page(OAuthError::server_error())
            })?,
            _ => None,
        };
        authorize::validate(request, client.as_ref())
    }

    /// The person `principal` approves a validated request: the grant is recorded (or
    /// widened), a code issued, and the URL to send the browser to returned (`code`, `state`,
    /// `iss`). The request must still hold (the client may have changed meanwhile).
    pub async fn approve(
        &self,
        principal: &Principal,
        validated: &ValidatedAuthorization,
    ) -> Result<String, OAuthManageError> {
        if principal.client_id.is_some() {
            return Err(AccountError::Forbidden.into());
        }
        let client = self
            .client(&validated.client_id)
            .await?
            .ok_or(OAuthManageError::NotFound)?;
        if !client.has_redirect_uri(&validated.redirect_uri)
            || !validated.scopes.is_subset(&client.scopes)
        {
            return Err(OAuthManageError::Invalid(OAuthError::invalid_request(
                "the client's registration changed; start again",
            )));
        }
        let now = self.clock.now();
        let grant = self
            .store
            .oauth()
            .upsert_grant(
                principal.user,
                &client.id,
                &validated.scopes,
                new_grant_id(),
                now,
            )
            .await?;
        let code = Secret::generate(CODE_PREFIX, &mut OsRng);
        let record = CodeGrant {
            client_id: client.id.clone(),
            user: principal.user,
            redirect_uri: validated
                .redirect_uri_given
                .then(|| validated.redirect_uri.clone()),
            scopes: validated.scopes.clone(),
            code_challenge: validated.code_challenge.clone(),
            nonce: validated.nonce.clone(),
            auth_time: now,
            created_at: now,
            expires_at: expiry(now, self.config.code_ttl),
            redeemed_at: None,
        };
        self.store
            .oauth()
            .insert_code(&code.hash(), grant.id, &record)
            .await?;
        Ok(authorize::code_redirect(
            validated,
            code.expose_secret(),
            &self.config.issuer,
        ))
    }

    /// The person denies: the URL to send the browser to (`error=access_denied`, `state`,
    /// `iss`). Nothing is stored.
    pub fn deny(&self, validated: &ValidatedAuthorization) -> String {
        authorize::error_redirect(
            &validated.redirect_uri,
            &OAuthError::new(ErrorCode::AccessDenied, "the person denied the request"),
            validated.state.as_deref(),
            &self.config.issuer,
        )
    }

    // ---- linked apps ----

    /// The person's live grants.
    pub async fn list_grants(
        &self,
        principal: &Principal,
    ) -> Result<Vec<GrantRecord>, OAuthManageError> {
        personal(principal)?;
        Ok(self.store.oauth().list_grants(principal.user).await?)
    }

    /// Revokes one of the person's grants and every token of it.
    pub async fn revoke_grant(
        &self,
        principal: &Principal,
        grant: GrantId,
    ) -> Result<(), OAuthManageError> {
        personal(principal)?;
        if self
            .store
            .oauth()
            .revoke_grant(Some(principal.user), grant, self.clock.now())
            .await?
        {
            tracing::info!(%grant, "oauth grant revoked by its owner");
            Ok(())
        } else {
            Err(OAuthManageError::NotFound)
        }
    }

    // ---- client authentication ----

    /// The registered client `id`, from [`client_cache::ClientCache`] or else the store.
    async fn client(&self, id: &ClientId) -> Result<Option<OAuthClient>, StoreError> {
        let now = std::time::Instant::now();
        if let Some(client) = self.clients.get(id, now) {
            return Ok(Some(client));
        }
        let client = self.store.oauth().get_client(id).await?;
        if let Some(client) = &client {
            self.clients.put(client, now);
        }
        Ok(client)
    }

    /// Authenticates the client of a token-style request (RFC 6749 section 2.3). Counts the
    /// request against the client's rate limit first. Every failure is `invalid_client`.
    async fn authenticate_client(&self, auth: &ClientAuth) -> Result<OAuthClient, EndpointError> {
        self.limit_client(auth.client_id())?;
        let id: ClientId = auth
            .client_id()
            .parse()
            .map_err(|_| OAuthError::invalid_client())?;
        let client = self
            .client(&id)
            .await?
            .ok_or_else(OAuthError::invalid_client)?;
        match (client.client_type, auth) {
            (ClientType::Public, ClientAuth::None { .. }) => Ok(client),
            (
                ClientType::Confidential,
                ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. },
            ) => {
                let stored = client.secret_hash.clone().unwrap_or_default();
                let id = client.id.to_string();
                let now = std::time::Instant::now();
                let ok = self.verified.is_verified(&id, &stored, secret, now) || {
                    let (hash, presented) = (stored.clone(), secret.clone());
                    let ok = tokio::task::spawn_blocking(move || {
                        verify_client_secret(&hash, &presented)
                    })
                    .await
                    .unwrap_or(false);
                    if ok {
                        self.verified.remember(&id, &stored, secret, now);
                    }
                    ok
                };
                if ok {
                    Ok(client)
                } else {
                    Err(OAuthError::invalid_client().into())
                }
            }
            _ => Err(OAuthError::invalid_client().into()),
        }
    }

    // ---- the token endpoint ----

    /// `POST /oauth/token`: authenticates the client and answers the grant.
    pub async fn token(
        &self,
        peer: Option<IpAddr>,
        auth: ClientAuth,
        grant: TokenGrant,
    ) -> Result<IssuedTokens, EndpointError> {
        self.limit_addr(peer)?;
        let client = self.authenticate_client(&auth).await?;
        match grant {
            TokenGrant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                client.check_grant_type(GrantType::AuthorizationCode)?;
                self.redeem_code(
                    &client,
                    &code,
                    redirect_uri.as_deref(),
                    code_verifier.as_deref().map(String::as_str),
                )
                .await
            }
            TokenGrant::RefreshToken {
                refresh_token,
                scope,
            } => {
                client.check_grant_type(GrantType::RefreshToken)?;
                self.refresh(&client, &refresh_token, scope.as_ref()).await
            }
            TokenGrant::DeviceCode { device_code } => {
                client.check_grant_type(GrantType::DeviceCode)?;
                self.redeem_device(&client, &device_code).await
            }
        }
    }

    async fn redeem_code(
        &self,
        client: &OAuthClient,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<IssuedTokens, EndpointError> {
        let unknown = || OAuthError::invalid_grant("unknown or expired code");
        if !has_shape(code, CODE_PREFIX) {
            return Err(unknown().into());
        }
        let hash = SecretHash::of(code);
        let (grant_id, record) = self
            .store
            .oauth()
            .find_code(&hash)
            .await?
            .ok_or_else(unknown)?;
        let now = self.clock.now();
        let request = CodeRedemption {
            client_id: &client.id,
            redirect_uri,
            code_verifier,
        };
        match record.check_redemption(&request, now) {
            Ok(()) => {}
            Err(CodeRefusal::Replayed) => {
                return Err(self.code_replayed(grant_id, &hash, now).await);
            }
            Err(CodeRefusal::Invalid(e)) => return Err(e.into()),
        }
        let (tokens, issued) = self.mint(
            client,
            grant_id,
            record.user,
            hash,
            &record.scopes,
            record.auth_time,
            now,
        );
        match self.store.oauth().redeem_code(&hash, now, &tokens).await {
            Ok(()) => {}
            Err(StoreError::Stale { .. }) => {
                // Lost a race with another redemption (a replay), or the grant went.
                let replayed = self
                    .store
                    .oauth()
                    .find_code(&hash)
                    .await?
                    .is_some_and(|(_, c)| c.redeemed_at.is_some());
                if replayed {
                    return Err(self.code_replayed(grant_id, &hash, now).await);
                }
                return Err(unknown().into());
            }
            Err(e) => return Err(e.into()),
        }
        self.finish(
            issued,
            &record.scopes,
            record.user,
            client,
            record.nonce,
            record.auth_time,
            now,
        )
        .await
    }

    /// RFC 6749 section 4.1.2: a code used twice revokes every token it produced.
    async fn code_replayed(
        &self,
        grant: GrantId,
        hash: &SecretHash,
        now: Timestamp,
    ) -> EndpointError {
        match self.store.oauth().revoke_family(grant, hash, now).await {
            Ok(n) => tracing::warn!(
                revoked = n,
                "authorization code replayed; its tokens are revoked"
            ),
            Err(e) => return e.into(),
        }
        CodeRefusal::Replayed.into_error().into()
    }

    /// The refresh_token grant (RFC 6749 section 6) with rotation (RFC 9700 section
    /// 4.14.2). The rotation is one compare-and-set write that copies the grant from the old
    /// token, so the old token is read first only when the request narrows the scope, and
    /// afterwards only when the rotation lost, to say why.
    async fn refresh(
        &self,
        client: &OAuthClient,
        refresh_token: &str,
        requested: Option<&ScopeSet>,
    ) -> Result<IssuedTokens, EndpointError> {
        if !has_shape(refresh_token, REFRESH_TOKEN_PREFIX) {
            return Err(unknown_refresh_token().into());
        }
        let hash = SecretHash::of(refresh_token);
        let now = self.clock.now();
        let access_scopes = match requested {
            None => None,
            Some(_) => Some(
                self.check_stored_refresh(client, &hash, requested, now)
                    .await?,
            ),
        };
        let access = Secret::generate(ACCESS_TOKEN_PREFIX, &mut OsRng);
        let refresh = Secret::generate(REFRESH_TOKEN_PREFIX, &mut OsRng);
        let tokens = RefreshedTokens {
            client_id: client.id.clone(),
            access: access.hash(),
            access_scopes: access_scopes.clone(),
            access_expires_at: expiry(now, self.config.access_token_ttl),
            refresh: refresh.hash(),
            refresh_expires_at: expiry(now, self.config.refresh_token_ttl),
        };
        match self.store.oauth().rotate_refresh(&hash, now, &tokens).await {
            Ok(rotated) => Ok(IssuedTokens {
                access_token: access,
                expires_in: secs(self.config.access_token_ttl),
                refresh_token: Some(refresh),
                scope: access_scopes.unwrap_or(rotated.scopes),
                id_token: None,
            }),
            Err(StoreError::Stale { .. }) => {
                // Lost: the old token says why (or, still refreshable, lost to a revocation).
                self.check_stored_refresh(client, &hash, requested, now)
                    .await?;
                Err(unknown_refresh_token().into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the refresh token `hash` and checks a refresh of it by `client` at `now`
    /// (`RefreshTokenState::check_refresh`). Returns the access token's scope if it may be
    /// refreshed; otherwise the refusal, after revoking the grant if the token was reused.
    async fn check_stored_refresh(
        &self,
        client: &OAuthClient,
        hash: &SecretHash,
        requested: Option<&ScopeSet>,
        now: Timestamp,
    ) -> Result<ScopeSet, EndpointError> {
        let record = self
            .store
            .oauth()
            .find_token(hash)
            .await?
            .filter(|t| t.kind == TokenKind::Refresh)
            .ok_or_else(unknown_refresh_token)?;
        let state = RefreshTokenState {
            client_id: record.client_id.clone(),
            scopes: record.scopes.clone(),
            expires_at: record.expires_at,
            rotated_at: record.rotated_at,
            revoked_at: record.revoked_at,
        };
        match state.check_refresh(&client.id, requested, now) {
            Ok(scopes) => Ok(scopes),
            Err(RefreshRefusal::Reused) => Err(self.refresh_reused(&record, now).await),
            Err(RefreshRefusal::Invalid(e)) => Err(e.into()),
        }
    }

    /// RFC 9700 section 4.14.2: a rotated refresh token presented again revokes the grant.
    async fn refresh_reused(&self, record: &OAuthTokenRecord, now: Timestamp) -> EndpointError {
        if let Err(e) = self
            .store
            .oauth()
            .revoke_grant(None, record.grant_id, now)
            .await
        {
            return e.into();
        }
        tracing::warn!(grant = %record.grant_id, client_id = %record.client_id, "refresh token reused; the grant is revoked");
        RefreshRefusal::Reused.into_error().into()
    }

    async fn redeem_device(
        &self,
        client: &OAuthClient,
        device_code: &str,
    ) -> Result<IssuedTokens, EndpointError> {
        let unknown = || OAuthError::invalid_grant("unknown device code");
        if !has_shape(device_code, DEVICE_CODE_PREFIX) {
            return Err(unknown().into());
        }
        let hash = SecretHash::of(device_code);
        let device = self
            .store
            .oauth()
            .find_device(&hash)
            .await?
            .filter(|d| d.client_id == client.id)
            .ok_or_else(unknown)?;
        let now = self.clock.now();
        let poll = DevicePollState {
            state: device.state,
            expires_at: device.expires_at,
            interval_s: device.interval_s,
            last_polled_at: device.last_polled_at,
        };
        match poll.poll(now) {
            PollDecision::Refuse {
                error,
                interval_s,
                expire,
            } => {
                if expire {
                    let _ = self
                        .store
                        .oauth()
                        .transition_device(
                            &hash,
                            device.state,
                            DeviceState::Expired,
                            device.version,
                            None,
                        )
                        .await;
                } else if !device.state.is_final() {
                    // A concurrent poll may win this compare-and-set; then this one was too
                    // soon anyway.
                    if let Err(StoreError::Stale { .. }) = self
                        .store
                        .oauth()
                        .record_poll(&hash, device.version, interval_s, now)
                        .await
                    {
                        return Err(
                            OAuthError::new(ErrorCode::SlowDown, "polling too often").into()
                        );
                    }
                }
                Err(error.into())
            }
            PollDecision::Issue => {
                let (Some(user), Some(grant_id)) = (device.user, device.grant_id) else {
                    return Err(OAuthError::server_error().into());
                };
                let auth_time = device.auth_time.unwrap_or(now);
                let (tokens, issued) =
                    self.mint(client, grant_id, user, hash, &device.scopes, auth_time, now);
                match self
                    .store
                    .oauth()
                    .redeem_device(&hash, device.version, now, &tokens)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::Stale { .. }) => {
                        return Err(OAuthError::new(ErrorCode::SlowDown, "polling too often").into())
                    }
                    Err(e) => return Err(e.into()),
                }
                self.finish(issued, &device.scopes, user, client, None, auth_time, now)
                    .await
            }
        }
    }

    /// New secrets and their records for a code or a device code: an access token and, when
    /// the client may refresh, a refresh token, both for `scopes`. (A refresh mints its own:
    /// its tokens copy the old one's grant in the rotation's write.)
    #[allow(clippy::too_many_arguments)]
    fn mint(
        &self,
        client: &OAuthClient,
        grant_id: GrantId,
        user: hangar_core::UserId,
        family: SecretHash,
        scopes: &ScopeSet,
        auth_time: Timestamp,
        now: Timestamp,
    ) -> (Vec<NewOAuthToken>, IssuedTokens) {
        let record = |hash, kind, ttl| NewOAuthToken {
            hash,
            kind,
            grant_id,
            client_id: client.id.clone(),
            user,
            family,
            scopes: scopes.clone(),
            auth_time,
            created_at: now,
            expires_at: Some(expiry(now, ttl)),
        };
        let access = Secret::generate(ACCESS_TOKEN_PREFIX, &mut OsRng);
        let mut tokens = vec![record(
            access.hash(),
            TokenKind::Access,
            self.config.access_token_ttl,
        )];
        let refresh = client
            .grant_types
            .contains(&GrantType::RefreshToken)
            .then(|| Secret::generate(REFRESH_TOKEN_PREFIX, &mut OsRng));
        if let Some(refresh) = &refresh {
            tokens.push(record(
                refresh.hash(),
                TokenKind::Refresh,
                self.config.refresh_token_ttl,
            ));
        }
        (
            tokens,
            IssuedTokens {
                access_token: access,
                expires_in: secs(self.config.access_token_ttl),
                refresh_token: refresh,
                scope: scopes.clone(),
                id_token: None,
            },
        )
    }

    /// Adds the id_token (OpenID Connect Core section 3.1.3.3) when `openid` was granted.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        mut issued: IssuedTokens,
        scopes: &ScopeSet,
        user: hangar_core::UserId,
        client: &OAuthClient,
        nonce: Option<String>,
        auth_time: Timestamp,
        now: Timestamp,
    ) -> Result<IssuedTokens, EndpointError> {
        if !scopes.contains(Scope::Openid) {
            return Ok(issued);
        }
        let name = match scopes.contains(Scope::Profile) {
            true => self.store.users().get(user).await?.map(|u| u.name),
            false => None,
        };
        let claims = IdTokenClaims {
            iss: self.config.issuer.clone(),
            sub: user.to_string(),
            aud: client.id.to_string(),
            exp: unix_s(expiry(now, self.config.id_token_ttl)),
            iat: unix_s(now),
            auth_time: unix_s(auth_time),
            nonce,
            name: name.clone(),
            preferred_username: name,
            email: None,
        };
        issued.id_token = Some(keys::sign(&self.store, &self.vault, &claims).await?);
        Ok(issued)
    }

    // ---- revocation and introspection ----

    /// `POST /oauth/revoke` (RFC 7009): revokes a token of the authenticated client. An
    /// unknown token, or another client's, changes nothing and still succeeds (section 2.2).
    /// Revoking a refresh token revokes the tokens descending from the same code (section
    /// 2.1). Personal access tokens are `unsupported_token_type`.
    pub async fn revoke(
        &self,
        peer: Option<IpAddr>,
        auth: ClientAuth,
        token: &str,
    ) -> Result<(), EndpointError> {
        self.limit_addr(peer)?;
        let client = self.authenticate_client(&auth).await?;
        if token.starts_with(hangar_identity::PAT_PREFIX) {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedTokenType,
                "personal access tokens are revoked with hangar token revoke",
            )
            .into());
        }
        if TokenKind::of_secret(token).is_none() {
            return Ok(());
        }
        let hash = SecretHash::of(token);
        let Some(record) = self.store.oauth().find_token(&hash).await? else {
            return Ok(());
        };
        if record.client_id != client.id {
            return Ok(());
        }
        let now = self.clock.now();
        match record.kind {
            TokenKind::Access => {
                self.store.oauth().revoke_token(&hash, now).await?;
            }
            TokenKind::Refresh => {
                self.store
                    .oauth()
                    .revoke_family(record.grant_id, &record.family, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// `POST /oauth/introspect` (RFC 7662): a confidential client asks about a token issued
    /// to it; anything else (unknown, inactive, another client's) is `active: false`.
    pub async fn introspect(
        &self,
        peer: Option<IpAddr>,
        auth: ClientAuth,
        token: &str,
    ) -> Result<Introspection, EndpointError> {
        self.limit_addr(peer)?;
        let client = self.authenticate_client(&auth).await?;
        if client.client_type != ClientType::Confidential {
            return Err(OAuthError::invalid_client().into());
        }
        if TokenKind::of_secret(token).is_none() {
            return Ok(Introspection::default());
        }
        let now = self.clock.now();
        let Some(record) = self
            .store
            .oauth()
            .find_token(&SecretHash::of(token))
            .await?
            .filter(|t| t.client_id == client.id && t.is_active(now))
        else {
            return Ok(Introspection::default());
        };
        Ok(Introspection {
            active: true,
            scope: Some(record.scopes),
            client_id: Some(record.client_id.to_string()),
            username: Some(record.user.name),
            token_type: Some(match record.kind {
                TokenKind::Access => "Bearer",
                TokenKind::Refresh => "refresh_token",
            }),
            exp: record.expires_at.map(unix_s),
            iat: Some(unix_s(record.created_at)),
            sub: Some(record.user.id.to_string()),
            aud: Some(record.client_id.to_string()),
            iss: Some(self.config.issuer.clone()),
        })
    }

    // ---- the device flow ----

    /// `POST /oauth/device_authorization` (RFC 8628 section 3.1-3.2).
    pub async fn device_authorization(
        &self,
        peer: Option<IpAddr>,
        auth: ClientAuth,
        scope: Option<ScopeSet>,
    ) -> Result<DeviceAuthorization, EndpointError> {
        self.limit_addr(peer)?;
        let client = self.authenticate_client(&auth).await?;
        client.check_grant_type(GrantType::DeviceCode)?;
        let scopes = client.allowed_scopes(scope.as_ref())?;
        let now = self.clock.now();
        let device_code = Secret::generate(DEVICE_CODE_PREFIX, &mut OsRng);
        for _ in 0..5 {
            let user_code = UserCode::generate(&mut OsRng);
            let record = DeviceRecord {
                hash: device_code.hash(),
                user_code: user_code.as_str().to_owned(),
                client_id: client.id.clone(),
                scopes: scopes.clone(),
                state: DeviceState::Pending,
                user: None,
                grant_id: None,
                auth_time: None,
                interval_s: DEFAULT_INTERVAL_S,
                last_polled_at: None,
                created_at: now,
                expires_at: expiry(now, self.config.device_code_ttl),
                version: 0,
            };
            match self.store.oauth().insert_device(&record).await {
                Ok(()) => {
                    let verification_uri = format!("{}/oauth/device", self.config.issuer);
                    let shown = user_code.display();
                    return Ok(DeviceAuthorization {
                        device_code,
                        verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                        verification_uri,
                        user_code: shown,
                        expires_in: secs(self.config.device_code_ttl),
                        interval: DEFAULT_INTERVAL_S,
                    });
                }
                // A user code already in use: draw another.
                Err(StoreError::Duplicate { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OAuthError::server_error().into())
    }

    async fn pending_device(&self, user_code: &str) -> Result<DeviceRecord, OAuthManageError> {
        let code = UserCode::parse(user_code).ok_or(OAuthManageError::NotFound)?;
        let now = self.clock.now();
        self.store
            .oauth()
            .find_device_by_user_code(code.as_str())
            .await?
            .filter(|d| d.state == DeviceState::Pending && now < d.expires_at)
            .ok_or(OAuthManageError::NotFound)
    }

    /// What the device verification page shows for a user code (pending and unexpired only).
    pub async fn device_request(
        &self,
        user_code: &str,
    ) -> Result<DeviceRequestView, OAuthManageError> {
        let device = self.pending_device(user_code).await?;
        let client = self
            .client(&device.client_id)
            .await?
            .ok_or(OAuthManageError::NotFound)?;
        Ok(DeviceRequestView {
            client_id: client.id.to_string(),
            client_name: client.name,
            scopes: device.scopes,
        })
    }

    /// The person approves the device request with `user_code` (RFC 8628 section 3.3): the
    /// grant is recorded and the next poll gets tokens.
    pub async fn approve_device(
        &self,
        principal: &Principal,
        user_code: &str,
    ) -> Result<DeviceRequestView, OAuthManageError> {
        personal(principal)?;
        let view = self.device_request(user_code).await?;
        let device = self.pending_device(user_code).await?;
        let now = self.clock.now();
        let grant = self
            .store
            .oauth()
            .upsert_grant(
                principal.user,
                &device.client_id,
                &device.scopes,
                new_grant_id(),
                now,
            )
            .await?;
        self.store
            .oauth()
            .transition_device(
                &device.hash,
                DeviceState::Pending,
                DeviceState::Approved,
                device.version,
                Some((principal.user, grant.id, now)),
            )
            .await
            .map_err(|e| match e {
                StoreError::Stale { .. } => OAuthManageError::NotFound,
                other => other.into(),
            })?;
        Ok(view)
    }

    /// The person denies the device request: the next poll gets `access_denied`.
    pub async fn deny_device(
        &self,
        principal: &Principal,
        user_code: &str,
    ) -> Result<(), OAuthManageError> {
        personal(principal)?;
        let device = self.pending_device(user_code).await?;
        self.store
            .oauth()
            .transition_device(
                &device.hash,
                DeviceState::Pending,
                DeviceState::Denied,
                device.version,
                None,
            )
            .await
            .map_err(|e| match e {
                StoreError::Stale { .. } => OAuthManageError::NotFound,
                other => other.into(),
            })
    }

    // ---- OpenID Connect, metadata, keys ----

    /// `GET /oauth/userinfo`: the claims of the access token's user (scope `openid`).
    pub async fn userinfo(&self, access_token: Option<&str>) -> Result<Userinfo, EndpointError> {
        let token = access_token
            .filter(|t| has_shape(t, ACCESS_TOKEN_PREFIX))
            .ok_or_else(OAuthError::invalid_token)?;
        let now = self.clock.now();
        let record = self
            .store
            .oauth()
            .find_token(&SecretHash::of(token))
            .await?
            .filter(|t| t.kind == TokenKind::Access && t.is_active(now))
            .ok_or_else(OAuthError::invalid_token)?;
        if !record.scopes.contains(Scope::Openid) {
            return Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                "this needs the openid scope",
            )
            .into());
        }
        let profile = record.scopes.contains(Scope::Profile);
        Ok(Userinfo {
            sub: record.user.id.to_string(),
            name: profile.then(|| record.user.name.clone()),
            preferred_username: profile.then_some(record.user.name),
        })
    }

    /// The JWK Set.
    pub async fn jwks(&self) -> Result<serde_json::Value, EndpointError> {
        Ok(keys::jwks(&self.store, self.clock.now()).await?)
    }

    /// The authorization server metadata (RFC 8414 section 2), also served as the OpenID
    /// provider configuration (OpenID Connect Discovery section 3).
    pub fn metadata(&self) -> serde_json::Value {
        let iss = &self.config.issuer;
        let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        let grants: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
        serde_json::json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oauth/authorize"),
            "token_endpoint": format!("{iss}/oauth/token"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "introspection_endpoint": format!("{iss}/oauth/introspect"),
            "device_authorization_endpoint": format!("{iss}/oauth/device_authorization"),
            "userinfo_endpoint": format!("{iss}/oauth/userinfo"),
            "jwks_uri": format!("{iss}/oauth/jwks"),
            "scopes_supported": scopes,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [keys::ALG],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name", "preferred_username"],
        })
    }

    /// Adds a signing key (the old ones stay published for `keys::PUBLISH_RETIRED_FOR`).
    pub async fn rotate_signing_key(&self) -> Result<String, keys::KeyError> {
        keys::add_key(&self.store, &self.vault, self.clock.now()).await
    }
}

fn rate_limited(retry_after: Duration) -> EndpointError {
    EndpointError {
        error: OAuthError::new(ErrorCode::RateLimited, "too many requests"),
        retry_after: Some(retry_after),
    }
}

/// Operations only the person may do, never an OAuth client acting for them.
fn personal(principal: &Principal) -> Result<(), OAuthManageError> {
    if principal.client_id.is_some() {
        Err(AccountError::Forbidden.into())
    } else {
        Ok(())
    }
}
