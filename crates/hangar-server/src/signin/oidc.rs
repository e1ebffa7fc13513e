//! One OpenID Connect provider, with the `openidconnect` crate: discovery (cached for
//! [`DISCOVERY_TTL`]), the authorization request with PKCE S256, `state` and `nonce`
//! (OpenID Connect Core 1.0 section 3.1.2.1, RFC 7636 section 4.2), and the callback: code
//! exchange with the verifier, then id_token verification (signature by the provider's JWKS,
//! `iss`, `aud`/`azp`, expiry, and `nonce`: Core 1.0 section 3.1.3.7).

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::Mutex;

use super::config::OidcProviderConfig;
use super::{Begun, Profile, UpstreamError};

/// How long discovered metadata (endpoints and keys) is reused before it is fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// A configured OpenID Connect provider and its cached discovery document.
#[derive(Debug)]
pub struct OidcProvider {
    config: OidcProviderConfig,
    metadata: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl OidcProvider {
    /// The provider of `config` (nothing is fetched until the first sign-in).
    pub fn new(config: OidcProviderConfig) -> Self {
        Self {
            config,
            metadata: Mutex::new(None),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &OidcProviderConfig {
        &self.config
    }

    async fn metadata(
        &self,
        http: &reqwest::Client,
        fresh: bool,
    ) -> Result<CoreProviderMetadata, UpstreamError> {
        let mut cached = self.metadata.lock().await;
        if let Some((meta, at)) = cached.as_ref() {
            if !fresh && at.elapsed() < DISCOVERY_TTL {
                return Ok(meta.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| UpstreamError::Discovery(e.to_string()))?;
        let meta = CoreProviderMetadata::discover_async(issuer, http)
            .await
            .map_err(|e| UpstreamError::Discovery(error_chain(&e)))?;
        *cached = Some((meta.clone(), Instant::now()));
        Ok(meta)
    }

    fn client(
        &self,
        meta: CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        UpstreamError,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| UpstreamError::Config(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect))
    }

    /// The authorization request: where to send the browser, and the `state`, PKCE verifier
    /// and nonce to keep for the callback.
    pub async fn begin(
        &self,
        http: &reqwest::Client,
        redirect_uri: &str,
    ) -> Result<Begun, UpstreamError> {
        let client = self.client(self.metadata(http, false).await?, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        let scopes = if self.config.scopes.is_empty() {
            vec!["email".to_owned(), "profile".to_owned()]
        } else {
            self.config.scopes.clone()
        };
        for scope in scopes.into_iter().filter(|s| s != "openid") {
            request = request.add_scope(Scope::new(scope));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Begun {
            url,
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: Some(nonce.secret().clone()),
        })
    }

    /// The issuer `iss` must equal when the authorization response carries one (RFC 9207).
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Exchanges `code` (with the PKCE verifier) and verifies the id_token, its nonce
    /// included. Returns who signed in.
    pub async fn finish(
        &self,
        http: &reqwest::Client,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: Option<&str>,
    ) -> Result<Profile, UpstreamError> {
        let nonce = Nonce::new(
            nonce
                .ok_or(UpstreamError::IdToken("no nonce was kept".into()))?
                .to_owned(),
        );
        let client = self.client(self.metadata(http, false).await?, redirect_uri)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| UpstreamError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(|e| UpstreamError::TokenExchange(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| UpstreamError::IdToken("the token response has no id_token".into()))?;
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(first) => {
                // The provider may have rotated its keys since discovery: fetch once more.
                let client = self.client(self.metadata(http, true).await?, redirect_uri)?;
                let verifier = client.id_token_verifier();
                let claims = id_token
                    .claims(&verifier, &nonce)
                    .map_err(|_| UpstreamError::IdToken(error_chain(&first)))?
                    .clone();
                claims
            }
        };
        let subject = claims.subject().clone();
        let mut preferred = claims.preferred_username().map(|u| u.as_str().to_owned());
        // An email is kept only when the provider says it is verified.
        let mut email = claims
            .email()
            .filter(|_| claims.email_verified() == Some(true))
            .map(|e| e.as_str().to_owned());
        // Providers may keep profile claims out of the id_token (OpenID Connect Core 1.0
        // section 5.4): ask the UserInfo endpoint, whose `sub` must be the same (section 5.3.2).
        if preferred.is_none() || email.is_none() {
            if let Ok(request) =
                client.user_info(response.access_token().clone(), Some(subject.clone()))
            {
                match request.request_async::<openidconnect::EmptyAdditionalClaims, _, openidconnect::core::CoreGenderClaim>(http).await {
                    Ok(info) => {
                        if preferred.is_none() {
                            preferred = info.preferred_username().map(|u| u.as_str().to_owned());
                        }
                        if email.is_none() {
                            email = info
                                .email()
                                .filter(|_| info.email_verified() == Some(true))
                                .map(|e| e.as_str().to_owned());
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %error_chain(&e), "userinfo not used");
                    }
                }
            }
        }
        let local = email
            .as_deref()
            .and_then(|e| e.split('@').next())
            .map(str::to_owned);
        Ok(Profile {
            subject: subject.as_str().to_owned(),
            email,
            name_candidates: [preferred, local].into_iter().flatten().collect(),
        })
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
