//! Sign-in settings: where hangar is reached, the upstream providers, session lifetime and the
//! sign-in rate limit. Filled by the binary from its config file (`public_url`,
//! `[[signin.oidc]]`, `[signin.github]`).

use std::fmt;
use std::time::Duration;

use openidconnect::url::Url;
use zeroize::Zeroizing;

/// The default `public_url`: `hangar up`'s default listen address.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// GitHub's authorization endpoint (GitHub docs, "Authorizing OAuth apps", step 1).
pub const GITHUB_AUTHORIZE_URL: &str = "https://github.com/login/oauth/authorize";
/// GitHub's token endpoint (same document, step 2).
pub const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
/// GitHub's REST API root (`GET /user`, `GET /user/emails`).
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// A client secret from the config: zeroed on drop, `Debug` redacted.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret, for the token request only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One OpenID Connect provider (`[[signin.oidc]]`): authorization code flow with PKCE (S256)
/// and a nonce (OpenID Connect Core 1.0 section 3.1), endpoints found by discovery
/// (OpenID Connect Discovery 1.0 section 4: `{issuer}/.well-known/openid-configuration`).
#[derive(Clone, Debug)]
pub struct OidcProviderConfig {
    /// The provider's name in URLs (`/login/{name}`) and in stored identities: 1-32 of
    /// `a-z`, `0-9`, `-`, `_`; not `github` or `token`.
    pub name: String,
    /// The button's label (default: `name`).
    pub display_name: Option<String>,
    /// The issuer identifier; discovery is fetched from below it and the `iss` of every
    /// id_token must equal it.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret (sent with `client_secret_basic`).
    pub client_secret: Secret,
    /// Scopes besides `openid` (default `["email", "profile"]`).
    pub scopes: Vec<String>,
}

/// GitHub sign-in (`[signin.github]`) with an OAuth app. The endpoints default to GitHub's;
/// tests point them at a stand-in.
#[derive(Clone, Debug)]
pub struct GithubConfig {
    /// The OAuth app's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// Authorization endpoint (default [`GITHUB_AUTHORIZE_URL`]).
    pub authorize_url: String,
    /// Token endpoint (default [`GITHUB_TOKEN_URL`]).
    pub token_url: String,
    /// REST API root (default [`GITHUB_API_URL`]).
    pub api_url: String,
    /// Scopes (default `["read:user", "user:email"]`).
    pub scopes: Vec<String>,
}

impl GithubConfig {
    /// GitHub's real endpoints with this app's credentials.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            authorize_url: GITHUB_AUTHORIZE_URL.to_owned(),
            token_url: GITHUB_TOKEN_URL.to_owned(),
            api_url: GITHUB_API_URL.to_owned(),
            scopes: vec!["read:user".to_owned(), "user:email".to_owned()],
        }
    }
}

/// Per-address limit on the sign-in routes: `burst` requests at once, then one more every
/// `replenish_every` (a token bucket, per client IP address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed at once.
    pub burst: u32,
    /// How often one more is allowed.
    pub replenish_every: Duration,
}

impl Default for RateLimit {
    /// 30 at once, then one every 2 s.
    fn default() -> Self {
        Self {
            burst: 30,
            replenish_every: Duration::from_secs(2),
        }
    }
}

/// Everything sign-in needs.
#[derive(Clone, Debug)]
pub struct SigninConfig {
    /// The URL people use to reach hangar (scheme, host, port, no path): redirect URIs are
    /// built from it, `Origin` headers are compared with it, and cookies are `Secure` when it
    /// is `https`.
    pub public_url: Url,
    /// How long a browser session lasts (cookie `Max-Age`; default 7 days).
    pub session_lifetime: Duration,
    /// How long a person has to come back from the provider (default 10 minutes).
    pub signin_timeout: Duration,
    /// OpenID Connect providers.
    pub oidc: Vec<OidcProviderConfig>,
    /// GitHub, if configured.
    pub github: Option<GithubConfig>,
    /// The per-address limit on the sign-in routes.
    pub rate_limit: RateLimit,
}

impl Default for SigninConfig {
    fn default() -> Self {
        Self {
            public_url: Url::parse(DEFAULT_PUBLIC_URL).unwrap_or_else(|_| unreachable!()),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            signin_timeout: Duration::from_secs(600),
            oidc: Vec::new(),
            github: None,
            rate_limit: RateLimit::default(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SigninConfigError {
    /// The setting, e.g. `signin.oidc[0].name`.
    pub setting: String,
    /// What is wrong.
    pub reason: String,
}

impl SigninConfig {
    /// Parses and checks a `public_url`: `http` or `https`, a host, no path, query, fragment
    /// or credentials.
    pub fn parse_public_url(text: &str) -> Result<Url, SigninConfigError> {
        let bad = |reason: &str| SigninConfigError {
            setting: "public_url".into(),
            reason: reason.into(),
        };
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("must be http or https"));
        }
        if url.host_str().is_none() {
            return Err(bad("needs a host"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "must be an origin without a path, e.g. https://hangar.example.com",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        Ok(url)
    }

    /// Checks the provider settings: names valid and unique, URLs parse.
    pub fn validate(&self) -> Result<(), SigninConfigError> {
        Self::parse_public_url(self.public_url.as_str())?;
        let mut names = Vec::new();
        for (i, p) in self.oidc.iter().enumerate() {
            let bad = |field: &str, reason: &str| SigninConfigError {
                setting: format!("signin.oidc[{i}].{field}"),
                reason: reason.into(),
            };
            let ok = !p.name.is_empty()
                && p.name.len() <= 32
                && p.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                return Err(bad("name", "1-32 characters: a-z, 0-9, '-', '_'"));
            }
            if matches!(p.name.as_str(), "github" | "token") || names.contains(&p.name) {
                return Err(bad("name", "is reserved or used twice"));
            }
            names.push(p.name.clone());
            if Url::parse(&p.issuer).is_err() {
                return Err(bad("issuer", "not a URL"));
            }
            if p.client_id.is_empty() {
                return Err(bad("client_id", "is empty"));
            }
        }
        if let Some(g) = &self.github {
            for (field, url) in [
                ("authorize_url", &g.authorize_url),
                ("token_url", &g.token_url),
                ("api_url", &g.api_url),
            ] {
                if Url::parse(url).is_err() {
                    return Err(SigninConfigError {
                        setting: format!("signin.github.{field}"),
                        reason: "not a URL".into(),
                    });
                }
            }
            if g.client_id.is_empty() {
                return Err(SigninConfigError {
                    setting: "signin.github.client_id".into(),
                    reason: "is empty".into(),
                });
            }
        }
        if self.rate_limit.burst == 0 || self.rate_limit.replenish_every.is_zero() {
            return Err(SigninConfigError {
                setting: "signin.rate_limit".into(),
                reason: "burst and period must be above zero".into(),
            });
        }
        Ok(())
    }

    /// Whether cookies get `Secure` (the public URL is `https`).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// `{public_url}/login/{provider}/callback`, the redirect URI to register upstream.
    pub fn redirect_uri(&self, provider: &str) -> String {
        format!(
            "{}/login/{provider}/callback",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_origins() {
        for good in ["http://127.0.0.1:8080", "https://hangar.example.com/"] {
            assert!(SigninConfig::parse_public_url(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://x",
            "https://h.example/app",
            "https://u:p@h.example",
            "https://h.example/?q",
            "nope",
        ] {
            assert!(SigninConfig::parse_public_url(bad).is_err(), "{bad}");
        }
        let config = SigninConfig::default();
        assert_eq!(
            config.redirect_uri("corp"),
            "http://127.0.0.1:8080/login/corp/callback"
        );
        assert!(!config.secure_cookies());
    }

    #[test]
    fn provider_names_are_checked_and_secrets_redacted() {
        let oidc = |name: &str| OidcProviderConfig {
            name: name.into(),
            display_name: None,
            issuer: "https://idp.example".into(),
            client_id: "c".into(),
            client_secret: Secret::new("s3cr3t"),
            scopes: vec![],
        };
        let mut config = SigninConfig {
            oidc: vec![oidc("corp")],
            ..SigninConfig::default()
        };
        assert!(config.validate().is_ok());
        assert!(!format!("{config:?}").contains("s3cr3t"));
        for bad in ["github", "token", "Corp", "", "a/b"] {
            config.oidc = vec![oidc(bad)];
            assert!(config.validate().is_err(), "{bad:?}");
        }
        config.oidc = vec![oidc("corp"), oidc("corp")];
        assert!(config.validate().is_err());
    }
}
