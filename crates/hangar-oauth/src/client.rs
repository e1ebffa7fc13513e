//! Registered clients (RFC 6749 section 2): id, type, exact redirect URIs, allowed scopes and
//! grant types, and the client secret of confidential clients.
//!
//! A client secret (`hgr_cs_` + 256 random bits) is shown once at registration and stored as
//! an Argon2id password hash (PHC string); [`verify_client_secret`] compares in constant time
//! (the comparison inside `argon2` is constant-time).

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use hangar_core::Timestamp;
use rand::{CryptoRng, RngCore};

use crate::error::OAuthError;
use crate::scope::ScopeSet;
use crate::secret::{has_shape, Secret, CLIENT_SECRET_PREFIX};

/// A client identifier (RFC 6749 section 2.2): `hgr_ci_` + 128 random bits, URL-safe base64.
/// Not a secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(String);

/// Prefix of generated client ids.
pub const CLIENT_ID_PREFIX: &str = "hgr_ci_";

impl ClientId {
    /// A new id drawn from `rng`.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(format!(
            "{CLIENT_ID_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientId {
    type Err = OAuthError;

    /// 1 to 128 characters of `A-Z a-z 0-9 - _ .`; anything else cannot name a client.
    fn from_str(s: &str) -> Result<Self, OAuthError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(OAuthError::invalid_client())
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Client type (RFC 6749 section 2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientType {
    /// Can keep a secret: authenticates at the token endpoint.
    Confidential,
    /// Cannot keep a secret (native and browser apps): no secret, PKCE `S256` required.
    Public,
}

impl ClientType {
    /// `confidential` or `public`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }
}

impl FromStr for ClientType {
    type Err = OAuthError;

    fn from_str(s: &str) -> Result<Self, OAuthError> {
        match s {
            "confidential" => Ok(Self::Confidential),
            "public" => Ok(Self::Public),
            _ => Err(OAuthError::invalid_request("unknown client type")),
        }
    }
}

/// A grant type the token endpoint supports (RFC 6749 section 4, RFC 8628 section 3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantType {
    /// `authorization_code` (RFC 6749 section 4.1.3).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 section 6).
    RefreshToken,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 section 3.4).
    DeviceCode,
}

impl GrantType {
    /// Every supported grant type.
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::DeviceCode,
    ];

    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }
}

impl FromStr for GrantType {
    type Err = OAuthError;

    /// Errors: `unsupported_grant_type`.
    fn from_str(s: &str) -> Result<Self, OAuthError> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                OAuthError::new(
                    crate::ErrorCode::UnsupportedGrantType,
                    "unsupported grant_type",
                )
            })
    }
}

/// A registered client.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// Its id.
    pub id: ClientId,
    /// The name shown on the consent page and in the user's linked apps.
    pub name: String,
    /// Confidential or public.
    pub client_type: ClientType,
    /// Argon2id PHC string of the secret (confidential clients only).
    pub secret_hash: Option<String>,
    /// Redirect URIs, compared exactly (RFC 9700 section 2.1).
    pub redirect_uris: Vec<String>,
    /// The most a token of this client may carry.
    pub scopes: ScopeSet,
    /// The grant types it may use.
    pub grant_types: Vec<GrantType>,
    /// When it was registered.
    pub created_at: Timestamp,
}

impl fmt::Debug for OAuthClient {
    /// Leaves the secret hash out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("client_type", &self.client_type)
            .field("redirect_uris", &self.redirect_uris)
            .field("scopes", &self.scopes)
            .field("grant_types", &self.grant_types)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// Whether the client may use `grant`. Errors: `unauthorized_client`.
    pub fn check_grant_type(&self, grant: GrantType) -> Result<(), OAuthError> {
        if self.grant_types.contains(&grant) {
            Ok(())
        } else {
            Err(OAuthError::unauthorized_client(
                "the client may not use this grant type",
            ))
        }
    }

    /// Whether `uri` is one of the registered redirect URIs, compared as strings, exactly
    /// (RFC 9700 section 2.1; RFC 6749 section 3.1.2.3).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// The scopes a request may get: `requested`, which must lie within the client's
    /// allowed scopes (`invalid_scope` otherwise), or all the client's scopes if none are
    /// requested (RFC 6749 section 3.3 lets the server pick a documented default).
    pub fn allowed_scopes(&self, requested: Option<&ScopeSet>) -> Result<ScopeSet, OAuthError> {
        match requested {
            None => Ok(self.scopes.clone()),
            Some(req) if req.is_subset(&self.scopes) => Ok(req.clone()),
            Some(_) => Err(OAuthError::invalid_scope(
                "the requested scope exceeds what the client is allowed",
            )),
        }
    }
}

/// What a registration asks for, checked by [`NewClient::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewClient {
    /// Display name: 1 to 100 printable characters.
    pub name: String,
    /// Confidential (gets a secret) or public.
    pub client_type: ClientType,
    /// 1 to 10 redirect URIs (see [`validate_redirect_uri`]).
    pub redirect_uris: Vec<String>,
    /// Allowed scopes (at least one).
    pub scopes: ScopeSet,
    /// Allowed grant types; all when empty.
    pub grant_types: Vec<GrantType>,
}

impl NewClient {
    /// Checks the registration and builds the client with a fresh id and, for a
    /// confidential client, a fresh secret (returned once; only its hash is in the client).
    /// Errors: `invalid_request` naming the field.
    pub fn register(
        self,
        now: Timestamp,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(OAuthClient, Option<ClientSecret>), OAuthError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(OAuthError::invalid_request(
                "name: 1 to 100 printable characters",
            ));
        }
        if self.redirect_uris.is_empty() || self.redirect_uris.len() > 10 {
            return Err(OAuthError::invalid_request(
                "redirect_uris: between 1 and 10",
            ));
        }
        for uri in &self.redirect_uris {
            validate_redirect_uri(uri)?;
        }
        if self.scopes.is_empty() {
            return Err(OAuthError::invalid_request("scopes: at least one"));
        }
        let mut grant_types = if self.grant_types.is_empty() {
            GrantType::ALL.to_vec()
        } else {
            self.grant_types
        };
        grant_types.sort();
        grant_types.dedup();
        let id = ClientId::generate(rng);
        let secret = match self.client_type {
            ClientType::Confidential => Some(ClientSecret::generate(rng)),
            ClientType::Public => None,
        };
        let secret_hash = secret.as_ref().map(|s| s.password_hash(rng)).transpose()?;
        Ok((
            OAuthClient {
                id,
                name: name.to_owned(),
                client_type: self.client_type,
                secret_hash,
                redirect_uris: self.redirect_uris,
                scopes: self.scopes,
                grant_types,
                created_at: now,
            },
            secret,
        ))
    }
}

/// Checks a redirect URI at registration: an absolute URI without a fragment (RFC 6749
/// section 3.1.2), `https`, or `http` only for a loopback host (RFC 8252 section 7.3), or a
/// private-use scheme with a dot (RFC 8252 section 7.1); never `javascript:`, `data:`,
/// `file:` or the like. At most 2000 bytes. Errors: `invalid_request`.
pub fn validate_redirect_uri(uri: &str) -> Result<(), OAuthError> {
    let bad = |why: &'static str| Err(OAuthError::invalid_request(why));
    if uri.len() > 2000 {
        return bad("redirect_uri: at most 2000 bytes");
    }
    let Ok(parsed) = url::Url::parse(uri) else {
        return bad("redirect_uri: not an absolute URI");
    };
    if parsed.fragment().is_some() || uri.contains('#') {
        return bad("redirect_uri: must not have a fragment");
    }
    if parsed.username() != "" || parsed.password().is_some() {
        return bad("redirect_uri: must not carry user information");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Domain("localhost")) => Ok(()),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => bad("redirect_uri: http is only allowed for loopback hosts"),
        },
        scheme if scheme.contains('.') => Ok(()),
        _ => bad("redirect_uri: use https, loopback http, or a reverse-domain scheme"),
    }
}

/// A client secret (`hgr_cs_` + 256 random bits), shown once. `Debug` is redacted.
#[derive(Debug)]
pub struct ClientSecret(Secret);

impl ClientSecret {
    /// A new secret from `rng`.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self(Secret::generate(CLIENT_SECRET_PREFIX, rng))
    }

    /// The secret, to show exactly once.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// Its Argon2id hash (PHC string) with a salt from `rng`.
    pub fn password_hash(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<String, OAuthError> {
        let salt = SaltString::generate(rng);
        Argon2::default()
            .hash_password(self.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| OAuthError::server_error())
    }
}

/// Whether `presented` is the secret hashed in `stored` (an Argon2 PHC string). Malformed
/// input or a stored hash that does not parse is `false`; the comparison is constant-time.
pub fn verify_client_secret(stored: &str, presented: &str) -> bool {
    if !has_shape(presented, CLIENT_SECRET_PREFIX) {
        return false;
    }
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(presented.as_bytes(), &hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn new_client(client_type: ClientType) -> NewClient {
        NewClient {
            name: "Voice skill".into(),
            client_type,
            redirect_uris: vec!["https://example.test/cb".into()],
            scopes: ScopeSet::parse("sandboxes:read openid").expect("scopes"),
            grant_types: vec![],
        }
    }

    #[test]
    fn confidential_clients_get_a_hashed_secret() {
        let mut rng = StdRng::seed_from_u64(1);
        let (client, secret) = new_client(ClientType::Confidential)
            .register(Timestamp::from_unix_ms(0), &mut rng)
            .expect("register");
        let secret = secret.expect("secret");
        assert!(secret.expose_secret().starts_with(CLIENT_SECRET_PREFIX));
        let hash = client.secret_hash.clone().expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains(secret.expose_secret()));
        assert!(verify_client_secret(&hash, secret.expose_secret()));
        assert!(!verify_client_secret(&hash, "hgr_cs_wrong"));
        assert!(!verify_client_secret("not a hash", secret.expose_secret()));
        assert!(!format!("{client:?}").contains(&hash));
        assert!(!format!("{secret:?}").contains(secret.expose_secret()));
        assert_eq!(client.grant_types, GrantType::ALL.to_vec());
        assert!(client.id.as_str().starts_with(CLIENT_ID_PREFIX));
    }

    #[test]
    fn public_clients_have_no_secret() {
        let (client, secret) = new_client(ClientType::Public)
            .register(Timestamp::from_unix_ms(0), &mut StdRng::seed_from_u64(2))
            .expect("register");
        assert!(secret.is_none() && client.secret_hash.is_none());
    }

    #[test]
    fn redirect_uris_are_checked_at_registration() {
        for ok in [
            "https://example.test/cb",
            "https://example.test/cb?x=1",
            "http://127.0.0.1:8123/callback",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "com.example.app:/oauth2redirect",
        ] {
            validate_redirect_uri(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "/relative",
            "https://example.test/cb#frag",
            "http://example.test/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "https://user:pw@example.test/cb",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_and_grants_are_limited_by_the_registration() {
        let (client, _) = new_client(ClientType::Public)
            .register(Timestamp::from_unix_ms(0), &mut StdRng::seed_from_u64(3))
            .expect("register");
        let read = ScopeSet::parse("sandboxes:read").expect("read");
        assert_eq!(client.allowed_scopes(Some(&read)).expect("subset"), read);
        assert_eq!(client.allowed_scopes(None).expect("default"), client.scopes);
        let admin = ScopeSet::parse("admin").expect("admin");
        assert!(client.allowed_scopes(Some(&admin)).is_err());
        assert!(client.has_redirect_uri("https://example.test/cb"));
        assert!(!client.has_redirect_uri("https://example.test/cb/"));
        assert!(!client.has_redirect_uri("https://EXAMPLE.test/cb"));
        assert!("authorization_code".parse::<GrantType>().is_ok());
        assert!("password".parse::<GrantType>().is_err());
        assert!("bad id!".parse::<ClientId>().is_err());
    }
}
