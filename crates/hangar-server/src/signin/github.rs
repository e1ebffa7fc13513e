//! GitHub sign-in with an OAuth app, following GitHub's published contract ("Authorizing OAuth
//! apps", web application flow), with the `oauth2` crate: redirect to
//! `/login/oauth/authorize` (`client_id`, `redirect_uri`, `scope`, `state`, PKCE S256),
//! exchange the code at `/login/oauth/access_token` (client id and secret in the form body,
//! `Accept: application/json`), then `GET /user` (the numeric `id` is the subject, `login` the
//! wanted name) and `GET /user/emails` (the primary verified address).

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::config::GithubConfig;
use super::oidc::error_chain;
use super::{Begun, Profile, UpstreamError};

/// GitHub's REST API media type.
const GITHUB_JSON: &str = "application/vnd.github+json";

/// `GET /user`: the fields hangar reads.
#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
}

/// One entry of `GET /user/emails`.
#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// The configured GitHub OAuth app.
#[derive(Debug)]
pub struct GithubProvider {
    config: GithubConfig,
}

impl GithubProvider {
    /// The provider of `config`.
    pub fn new(config: GithubConfig) -> Self {
        Self { config }
    }

    fn client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        UpstreamError,
    > {
        let config = |e: oauth2::url::ParseError| UpstreamError::Config(e.to_string());
        Ok(
            BasicClient::new(ClientId::new(self.config.client_id.clone()))
                .set_client_secret(ClientSecret::new(
                    self.config.client_secret.expose_secret().to_owned(),
                ))
                .set_auth_uri(AuthUrl::new(self.config.authorize_url.clone()).map_err(config)?)
                .set_token_uri(TokenUrl::new(self.config.token_url.clone()).map_err(config)?)
                .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(config)?)
                // GitHub documents the client credentials as form parameters.
                .set_auth_type(AuthType::RequestBody),
        )
    }

    /// The authorization request.
    pub fn begin(&self, redirect_uri: &str) -> Result<Begun, UpstreamError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(redirect_uri)?;
        let mut request = client.authorize_url(CsrfToken::new_random);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.set_pkce_challenge(challenge).url();
        Ok(Begun {
            url,
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: None,
        })
    }

    /// Exchanges `code` and reads the profile.
    pub async fn finish(
        &self,
        http: &reqwest::Client,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<Profile, UpstreamError> {
        let token = self
            .client(redirect_uri)?
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(|e| UpstreamError::TokenExchange(error_chain(&e)))?;
        let access = token.access_token().secret();
        let api = self.config.api_url.trim_end_matches('/');
        let user: GithubUser = self.get(http, &format!("{api}/user"), access).await?;
        let emails: Vec<GithubEmail> = self
            .get(http, &format!("{api}/user/emails"), access)
            .await?;
        let email = emails
            .into_iter()
            .find(|e| e.primary && e.verified)
            .map(|e| e.email);
        Ok(Profile {
            subject: user.id.to_string(),
            email,
            name_candidates: vec![user.login],
        })
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        http: &reqwest::Client,
        url: &str,
        access_token: &str,
    ) -> Result<T, UpstreamError> {
        let profile = |e: &dyn std::error::Error| UpstreamError::Profile(error_chain(e));
        let response = http
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, GITHUB_JSON)
            .header(reqwest::header::USER_AGENT, "hangar")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| profile(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(UpstreamError::Profile(format!("{url} answered {status}")));
        }
        response.json().await.map_err(|e| profile(&e))
    }
}
