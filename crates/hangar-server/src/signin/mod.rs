//! Sign-in: people sign in with GitHub or any OpenID Connect provider (or, on a local install,
//! by typing a personal access token into the sign-in page) and get a browser session, a
//! `hangar_session` cookie backed by the store.
//!
//! - [`SigninService::begin`]: checks `return_to`, asks the provider for its authorization URL
//!   (PKCE S256, `state`, and for OpenID Connect a `nonce`), stores the sign-in keyed by the
//!   SHA-256 of `state` (single use, expires after `signin_timeout`), returns the URL.
//! - [`SigninService::finish`]: uses the stored sign-in once (compare-and-set), refuses
//!   upstream errors and mismatches, exchanges the code, verifies (id_token or GitHub API),
//!   finds or creates the user and its external identity in one transaction, creates a session.
//! - Sessions: [`SigninService::authenticate_session`] for the `Caller` extractor,
//!   [`SigninService::logout`].
//!
//! Handlers live in [`routes`]; pages in [`pages`].
//!
//! **Architecture Invariant:** a failed sign-in creates nothing (no user, identity or session);
//! secrets (session tokens, `state`, codes, verifiers, nonces, client secrets, upstream tokens)
//! are never logged or in `Debug`; only the SHA-256 of a session token or `state` is stored;
//! a sign-in only ever redirects to a path on hangar.

pub mod config;
pub mod github;
pub mod oidc;
pub mod pages;
pub mod return_to;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use hangar_core::{BrowserSessionId, UserId};
use hangar_identity::{derive_user_name, AuthError, Principal, SessionToken, TokenHash};
use hangar_store::{
    BrowserSessionRecord, ExternalIdentity, ExternalSignIn, SigninState, SigninStateRefusal, Store,
    StoreError, User,
};
use openidconnect::url::Url;
use rand::rngs::OsRng;

use crate::accounts::{AccountError, Accounts};
use crate::clock::Clock;
pub use config::{
    GithubConfig, OidcProviderConfig, RateLimit, Secret, SigninConfig, SigninConfigError,
};
use github::GithubProvider;
use oidc::OidcProvider;
pub use return_to::{check_return_to, BadReturnTo, DEFAULT_RETURN_TO};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hangar_session";
/// How long one upstream HTTP call may take.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY_MS: i64 = 60_000;

/// What starting a sign-in at a provider gives: the URL to send the browser to and what the
/// callback needs (secrets: never logged).
pub struct Begun {
    /// The authorization URL.
    pub url: Url,
    /// The `state` parameter in it.
    pub state: String,
    /// The PKCE verifier whose S256 challenge is in it.
    pub pkce_verifier: String,
    /// The nonce in it (OpenID Connect only).
    pub nonce: Option<String>,
}

/// Who signed in, as the provider says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The provider's stable subject.
    pub subject: String,
    /// A verified email, if given.
    pub email: Option<String>,
    /// Names to derive the account name from, best first.
    pub name_candidates: Vec<String>,
}

/// A failure talking to the provider. The text is for the server log (it never carries a
/// secret: codes, tokens and verifiers are not in these errors).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Discovery failed.
    #[error("discovery: {0}")]
    Discovery(String),
    /// A URL in the settings does not work.
    #[error("configuration: {0}")]
    Config(String),
    /// The code exchange was refused or failed.
    #[error("code exchange: {0}")]
    TokenExchange(String),
    /// The id_token did not verify (signature, issuer, audience, expiry, nonce).
    #[error("id_token: {0}")]
    IdToken(String),
    /// GitHub's API failed.
    #[error("profile: {0}")]
    Profile(String),
}

/// Why a sign-in or a session operation failed. Each variant is shown to the person on
/// hangar's own error page (never redirected anywhere).
#[derive(Debug, thiserror::Error)]
pub enum SigninError {
    /// No provider has this name.
    #[error("no sign-in provider is called {name:?}")]
    UnknownProvider {
        /// The name asked for.
        name: String,
    },
    /// `return_to` is not a path on hangar.
    #[error(transparent)]
    BadReturnTo(#[from] BadReturnTo),
    /// The callback's `state` is missing, unknown, or from another provider.
    #[error("this sign-in link is not valid (unknown state); start again")]
    BadState,
    /// The callback's `state` was already used.
    #[error("this sign-in link was already used; start again")]
    StateReplayed,
    /// The sign-in took too long.
    #[error("this sign-in took too long; start again")]
    StateExpired,
    /// The provider answered with an error (`error=access_denied`, ...).
    #[error("the provider refused the sign-in ({error})")]
    Denied {
        /// The RFC 6749 section 4.1.2.1 error code (letters and `_` only).
        error: String,
    },
    /// The callback has no code, or an `iss` that is not the provider's (RFC 9207).
    #[error("the provider's answer is malformed ({what})")]
    BadCallback {
        /// What is wrong.
        what: &'static str,
    },
    /// Talking to the provider failed, or what it said did not verify.
    #[error("the sign-in could not be verified with the provider")]
    Upstream(#[source] UpstreamError),
    /// The personal access token typed into the form is not valid.
    #[error("that token is not valid")]
    InvalidToken,
    /// Accounts failed.
    #[error("accounts")]
    Accounts(#[source] AccountError),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// A completed sign-in: the new session's secret (for `Set-Cookie` only) and where to go.
#[derive(Debug)]
pub struct SignedIn {
    /// The session token.
    pub session: SessionToken,
    /// How long the cookie lives.
    pub max_age: Duration,
    /// A checked same-origin path.
    pub return_to: String,
    /// The user signed in.
    pub user: User,
    /// Whether this sign-in created the user.
    pub created: bool,
}

/// A provider as the sign-in page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderButton {
    /// Its name in URLs.
    pub name: String,
    /// Its label.
    pub label: String,
}

enum Upstream<'a> {
    Oidc(&'a OidcProvider),
    Github(&'a GithubProvider),
}

/// Sign-in and browser sessions.
#[derive(Debug)]
pub struct SigninService {
    store: Store,
    clock: Arc<dyn Clock>,
    accounts: Arc<Accounts>,
    config: SigninConfig,
    http: reqwest::Client,
    oidc: Vec<OidcProvider>,
    github: Option<GithubProvider>,
}

impl SigninService {
    /// The service over `store`. Errors if the settings cannot work
    /// ([`SigninConfig::validate`]).
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        accounts: Arc<Accounts>,
        config: SigninConfig,
    ) -> Result<Arc<Self>, SigninConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            // Never follow redirects from an identity provider (SSRF), and bound every call.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .map_err(|e| SigninConfigError {
                setting: "http client".into(),
                reason: e.to_string(),
            })?;
        Ok(Arc::new(Self {
            store,
            clock,
            accounts,
            oidc: config.oidc.iter().cloned().map(OidcProvider::new).collect(),
            github: config.github.clone().map(GithubProvider::new),
            config,
            http,
        }))
    }

    /// The settings.
    pub fn config(&self) -> &SigninConfig {
        &self.config
    }

    /// The configured providers, GitHub first.
    pub fn providers(&self) -> Vec<ProviderButton> {
        let mut list = Vec::new();
        if self.github.is_some() {
            list.push(ProviderButton {
                name: "github".into(),
                label: "GitHub".into(),
            });
        }
        for p in &self.oidc {
            let c = p.config();
            list.push(ProviderButton {
                name: c.name.clone(),
                label: c.display_name.clone().unwrap_or_else(|| c.name.clone()),
            });
        }
        list
    }

    fn upstream(&self, name: &str) -> Result<Upstream<'_>, SigninError> {
        if name == "github" {
            if let Some(g) = &self.github {
                return Ok(Upstream::Github(g));
            }
        }
        self.oidc
            .iter()
            .find(|p| p.config().name == name)
            .map(Upstream::Oidc)
            .ok_or_else(|| SigninError::UnknownProvider {
                name: name.chars().take(64).collect(),
            })
    }

    /// Starts a sign-in at `provider`; returns the URL to redirect the browser to.
    ///
    /// Errors: [`SigninError::UnknownProvider`], [`SigninError::BadReturnTo`] (nothing is
    /// stored), [`SigninError::Upstream`] (discovery failed), [`SigninError::Store`].
    pub async fn begin(&self, provider: &str, return_to: Option<&str>) -> Result<Url, SigninError> {
        let return_to = check_return_to(return_to)?;
        let upstream = self.upstream(provider)?;
        let redirect_uri = self.config.redirect_uri(provider);
        let begun = match upstream {
            Upstream::Oidc(p) => p.begin(&self.http, &redirect_uri).await,
            Upstream::Github(g) => g.begin(&redirect_uri),
        }
        .map_err(SigninError::Upstream)?;
        let now = self.clock.now();
        self.store
            .signin_states()
            .insert(&SigninState {
                state_hash: TokenHash::of(&begun.state).0,
                provider: provider.to_owned(),
                pkce_verifier: begun.pkce_verifier,
                nonce: begun.nonce,
                return_to,
                created_at: now,
                expires_at: now.plus_ms(duration_ms(self.config.signin_timeout)),
                used_at: None,
            })
            .await?;
        // Old sign-ins are of no use to anyone: drop those that expired an hour ago.
        if let Err(e) = self
            .store
            .signin_states()
            .purge_expired(now.plus_ms(-3_600_000))
            .await
        {
            tracing::debug!(error = %e, "expired sign-ins not purged");
        }
        Ok(begun.url)
    }

    /// Finishes a sign-in from the provider's redirect to `/login/{provider}/callback`.
    ///
    /// The stored sign-in is used first (once, compare-and-set), so an upstream error or a
    /// failed verification also spends it. Only after the provider's answer verifies are the
    /// user (first sign-in), its identity and the session written.
    ///
    /// Errors: [`SigninError::BadState`], [`SigninError::StateReplayed`],
    /// [`SigninError::StateExpired`], [`SigninError::Denied`], [`SigninError::BadCallback`],
    /// [`SigninError::Upstream`] (token exchange, id_token or nonce, GitHub API),
    /// [`SigninError::UnknownProvider`], [`SigninError::Store`].
    pub async fn finish(
        &self,
        provider: &str,
        callback: &Callback,
    ) -> Result<SignedIn, SigninError> {
        let upstream = self.upstream(provider)?;
        let state = callback.state.as_deref().ok_or(SigninError::BadState)?;
        let now = self.clock.now();
        let stored = match self
            .store
            .signin_states()
            .take(&TokenHash::of(state).0, now)
            .await?
        {
            Ok(stored) => stored,
            Err(SigninStateRefusal::Unknown) => return Err(SigninError::BadState),
            Err(SigninStateRefusal::Used) => return Err(SigninError::StateReplayed),
            Err(SigninStateRefusal::Expired) => return Err(SigninError::StateExpired),
        };
        if stored.provider != provider {
            return Err(SigninError::BadState);
        }
        if let Some(error) = &callback.error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(SigninError::Denied { error });
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(SigninError::BadCallback { what: "no code" })?;
        let redirect_uri = self.config.redirect_uri(provider);
        let profile = match upstream {
            Upstream::Oidc(p) => {
                if callback.iss.as_deref().is_some_and(|iss| iss != p.issuer()) {
                    return Err(SigninError::BadCallback {
                        what: "iss is not this provider",
                    });
                }
                p.finish(
                    &self.http,
                    &redirect_uri,
                    code,
                    &stored.pkce_verifier,
                    stored.nonce.as_deref(),
                )
                .await
            }
            Upstream::Github(g) => {
                g.finish(&self.http, &redirect_uri, code, &stored.pkce_verifier)
                    .await
            }
        }
        .map_err(|e| {
            tracing::warn!(provider, error = %e, "sign-in refused");
            SigninError::Upstream(e)
        })?;
        let wanted_name =
            derive_user_name(profile.name_candidates.iter().map(|n| Some(n.as_str())));
        let signed = self
            .store
            .sign_in_external(
                &ExternalSignIn {
                    provider: provider.to_owned(),
                    subject: profile.subject,
                    email: profile.email,
                    wanted_name,
                },
                UserId::from_uuid(uuid::Uuid::now_v7()),
                self.clock.now(),
            )
            .await?;
        if signed.created {
            tracing::info!(provider, user = %signed.user.name, "first sign-in created a user");
        }
        let session = self.create_session(signed.user.id).await?;
        Ok(SignedIn {
            session,
            max_age: self.config.session_lifetime,
            return_to: stored.return_to,
            user: signed.user,
            created: signed.created,
        })
    }

    /// Signs in with a personal access token typed into the sign-in page: a session for the
    /// token's user.
    ///
    /// Errors: [`SigninError::BadReturnTo`], [`SigninError::InvalidToken`] (unknown, revoked,
    /// expired or malformed), [`SigninError::Store`].
    pub async fn sign_in_with_token(
        &self,
        token: &str,
        return_to: Option<&str>,
    ) -> Result<SignedIn, SigninError> {
        let return_to = check_return_to(return_to)?;
        let header = format!("Bearer {}", token.trim());
        let principal = match self.accounts.authenticate(Some(&header)).await {
            Ok(p) => p,
            Err(AccountError::Unauthenticated(_)) => return Err(SigninError::InvalidToken),
            Err(e) => return Err(SigninError::Accounts(e)),
        };
        let user = self
            .store
            .users()
            .get(principal.user)
            .await?
            .ok_or(SigninError::InvalidToken)?;
        let session = self.create_session(user.id).await?;
        Ok(SignedIn {
            session,
            max_age: self.config.session_lifetime,
            return_to,
            user,
            created: false,
        })
    }

    async fn create_session(&self, user: UserId) -> Result<SessionToken, StoreError> {
        let session = SessionToken::generate(&mut OsRng);
        let now = self.clock.now();
        self.store
            .browser_sessions()
            .insert(&BrowserSessionRecord {
                id: BrowserSessionId::from_uuid(uuid::Uuid::now_v7()),
                user,
                hash: session.hash().0,
                created_at: now,
                expires_at: now.plus_ms(duration_ms(self.config.session_lifetime)),
                last_seen_at: now,
                revoked_at: None,
            })
            .await?;
        Ok(session)
    }

    /// The caller a `hangar_session` cookie value stands for, if the session is active (not
    /// revoked, not expired). Errors are as coarse as for bearer tokens.
    pub async fn authenticate_session(&self, cookie: &str) -> Result<Principal, AccountError> {
        let secret = SessionToken::parse(cookie)?;
        let now = self.clock.now();
        let (session, user) = self
            .store
            .browser_sessions()
            .find_active_by_hash(&TokenHash::of(secret).0, now)
            .await
            .map_err(AccountError::Store)?
            .ok_or(AuthError::Invalid)?;
        if now.unix_ms() - session.last_seen_at.unix_ms() >= TOUCH_EVERY_MS {
            if let Err(e) = self.store.browser_sessions().touch(session.id, now).await {
                tracing::debug!(error = %e, "session last-seen not recorded");
            }
        }
        // A browser session acts as the person, with every scope.
        Ok(Principal::with_all_scopes(
            user.id,
            user.name,
            user.is_admin,
        ))
    }

    /// Signs out: revokes the session of this cookie value (if it is one). Idempotent.
    pub async fn logout(&self, cookie: Option<&str>) -> Result<(), SigninError> {
        if let Some(secret) = cookie.and_then(|c| SessionToken::parse(c).ok()) {
            self.store
                .browser_sessions()
                .revoke_by_hash(&TokenHash::of(secret).0, self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// The caller's account: the user and its external identities.
    pub async fn account(
        &self,
        caller: &Principal,
    ) -> Result<(User, Vec<ExternalIdentity>), SigninError> {
        let user = self
            .store
            .users()
            .get(caller.user)
            .await?
            .ok_or(SigninError::Accounts(AccountError::NotFound))?;
        let identities = self
            .store
            .external_identities()
            .list_for_user(caller.user)
            .await?;
        Ok((user, identities))
    }
}

/// The authorization response's parameters (RFC 6749 section 4.1.2 and 4.1.2.1, RFC 9207).
#[derive(Default, Clone, serde::Deserialize)]
pub struct Callback {
    /// The code.
    pub code: Option<String>,
    /// The state echoed back.
    pub state: Option<String>,
    /// An error code instead of a code.
    pub error: Option<String>,
    /// The error's description (ignored: never shown, it is the provider's text).
    pub error_description: Option<String>,
    /// The issuer (RFC 9207), checked when present.
    pub iss: Option<String>,
}

impl std::fmt::Debug for Callback {
    /// Leaves out the code and the state.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("state", &self.state.as_ref().map(|_| "<redacted>"))
            .field("error", &self.error)
            .field("iss", &self.iss)
            .finish()
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
