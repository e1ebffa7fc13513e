//! Identity: who is calling hangar.
//!
//! Owns the personal access token format (`hgr_pat_` + 43 characters of URL-safe base64 from
//! 32 random bytes), the browser session token (`hgr_sess_`, same shape, carried in the
//! `hangar_session` cookie), their SHA-256 hash (the only form ever stored), parsing of the
//! `Authorization: Bearer` header (RFC 6750 section 2.1) including OAuth access tokens
//! (`hgr_at_`), the account name derived from an external identity ([`derive_user_name`]),
//! and the [`Principal`] that request handlers act for, with the scopes its credential
//! carries.
//!
//! **Architecture Invariant:** no I/O, no clock, no global RNG: the caller passes the random
//! source and does the lookups. A token secret is never logged or formatted with `Debug`.

use std::fmt;

use base64::Engine;
use hangar_core::UserId;
pub use hangar_oauth::{Scope, ScopeSet};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Every personal access token starts with this, so leaked tokens are easy to scan for.
pub const PAT_PREFIX: &str = "hgr_pat_";
/// Random bytes in a token (256 bits).
pub const PAT_RANDOM_BYTES: usize = 32;

/// A personal access token secret, shown to its owner once and never stored.
/// `Debug` prints a redacted form; the buffer is zeroed on drop.
pub struct PersonalAccessToken(Zeroizing<String>);

impl PersonalAccessToken {
    /// Draws a new token from `rng` (pass a cryptographically secure RNG such as `OsRng`).
    pub fn generate(rng: &mut impl RngCore) -> Self {
        Self(random_secret(PAT_PREFIX, rng))
    }

    /// The secret text, to hand to its owner exactly once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for PersonalAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonalAccessToken(<redacted>)")
    }
}

/// `prefix` followed by 256 random bits in URL-safe base64 (43 characters).
fn random_secret(prefix: &str, rng: &mut impl RngCore) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; PAT_RANDOM_BYTES]);
    rng.fill_bytes(bytes.as_mut());
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref());
    Zeroizing::new(format!("{prefix}{body}"))
}

/// Every viewer token starts with this.
pub const VIEWER_PREFIX: &str = "hgr_view_";

/// A connect session's viewer token: lets the remote-browser viewer page read that one
/// session and see its desktop, nothing else. Shown once, stored hashed; `Debug` is redacted.
pub struct ViewerToken(Zeroizing<String>);

impl ViewerToken {
    /// Draws a new token from `rng` (a cryptographically secure RNG).
    pub fn generate(rng: &mut impl RngCore) -> Self {
        Self(random_secret(VIEWER_PREFIX, rng))
    }

    /// The secret text, to hand over once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// Whether a presented bearer token is a viewer token (by its prefix and shape).
    pub fn is_viewer_token(token: &str) -> bool {
        token.strip_prefix(VIEWER_PREFIX).is_some_and(|body| {
            !body.is_empty()
                && body.len() <= 128
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

impl fmt::Debug for ViewerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ViewerToken(<redacted>)")
    }
}

/// Every browser session token starts with this.
pub const SESSION_PREFIX: &str = "hgr_sess_";

/// A browser session token: the value of the `hangar_session` cookie, made when a person signs
/// in (GitHub, OpenID Connect, or a personal access token typed into the sign-in page). 256
/// random bits after [`SESSION_PREFIX`]; stored only as its SHA-256 ([`TokenHash`]); shown to
/// the browser once, in `Set-Cookie`. `Debug` is redacted; the buffer is zeroed on drop.
pub struct SessionToken(Zeroizing<String>);

impl SessionToken {
    /// Draws a new token from `rng` (a cryptographically secure RNG such as `OsRng`).
    pub fn generate(rng: &mut impl RngCore) -> Self {
        Self(random_secret(SESSION_PREFIX, rng))
    }

    /// The secret text, for the `Set-Cookie` header only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// Checks a presented cookie value: [`SESSION_PREFIX`] followed by 1-128 URL-safe base64
    /// characters. Returns it unchanged, or [`AuthError::Malformed`] (a personal access token
    /// or a viewer token is never a session token).
    pub fn parse(value: &str) -> Result<&str, AuthError> {
        let body = value
            .strip_prefix(SESSION_PREFIX)
            .ok_or(AuthError::Malformed)?;
        if is_token_body(body) {
            Ok(value)
        } else {
            Err(AuthError::Malformed)
        }
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

fn is_token_body(body: &str) -> bool {
    !body.is_empty()
        && body.len() <= 128
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Longest account name [`derive_user_name`] returns before a collision suffix (`-2`, ...),
/// leaving room for the suffix within the 64 characters a name may have.
pub const DERIVED_NAME_MAX: usize = 48;

/// The account name a first sign-in asks for, from what the provider says: the first usable of
/// `candidates` (OpenID Connect `preferred_username`, GitHub `login`, the local part of the
/// email), else `user`. Lower-cased; characters other than letters, digits, `-`, `_`, `.`
/// become `-`; runs of `-` collapse; leading and trailing `-` `.` `_` are trimmed; at most
/// [`DERIVED_NAME_MAX`] characters. The store adds a suffix when the name is taken.
pub fn derive_user_name<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>) -> String {
    for candidate in candidates.into_iter().flatten() {
        let mut name = String::new();
        for ch in candidate.chars() {
            let ch = ch.to_ascii_lowercase();
            let ch = if ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.') {
                ch
            } else {
                '-'
            };
            if ch == '-' && name.ends_with('-') {
                continue;
            }
            name.push(ch);
            if name.len() >= DERIVED_NAME_MAX {
                break;
            }
        }
        let name = name.trim_matches(|c| matches!(c, '-' | '.' | '_'));
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    "user".to_owned()
}

/// SHA-256 of a bearer secret: what the store keeps and looks up by. A plain hash (not a slow
/// password hash) is right here because the secret carries 256 bits of entropy.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes any presented secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lower-case hex (64 characters), the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}..)", &self.to_hex()[..8])
    }
}

/// Why a request's credentials were refused. Deliberately coarse: the response must not say
/// whether a token exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token")]
    Missing,
    /// The header is not `Bearer <token>` with a hangar token.
    #[error("malformed authorization header")]
    Malformed,
    /// The token is unknown, revoked or expired.
    #[error("invalid or expired token")]
    Invalid,
}

/// Which kind of bearer token a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerToken<'a> {
    /// A personal access token (`hgr_pat_`).
    PersonalAccessToken(&'a str),
    /// An access token issued by hangar's authorization server (`hgr_at_`).
    OAuthAccessToken(&'a str),
}

/// Extracts the token from an `Authorization` header value, as [`parse_bearer`], accepting
/// personal access tokens and hangar's OAuth access tokens (`hgr_at_`).
pub fn parse_any_bearer(header: Option<&str>) -> Result<BearerToken<'_>, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    if let Some(token) = bearer_value(header) {
        if hangar_oauth::secret::has_shape(token, hangar_oauth::secret::ACCESS_TOKEN_PREFIX) {
            return Ok(BearerToken::OAuthAccessToken(token));
        }
    }
    parse_bearer(Some(header)).map(BearerToken::PersonalAccessToken)
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive), unchecked.
fn bearer_value(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Extracts the token from an `Authorization` header value: `Bearer <token>` (scheme
/// case-insensitive, RFC 6750 section 2.1), where the token has the [`PAT_PREFIX`] shape.
pub fn parse_bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    let body = token.strip_prefix(PAT_PREFIX).ok_or(AuthError::Malformed)?;
    if !is_token_body(body) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// The authenticated caller a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// The user's name.
    pub name: String,
    /// Admins may manage users and see every node.
    pub is_admin: bool,
    /// What the credential of this request allows: every scope for a personal access token
    /// made without `--scope`, the token's scopes otherwise (an OAuth access token carries
    /// the scopes its grant gave).
    pub scopes: ScopeSet,
    /// The OAuth client acting for the user, when the request carries an OAuth access token.
    pub client_id: Option<String>,
}

/// The caller's credential lacks a scope the operation needs (RFC 6750 section 3.1
/// `insufficient_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this needs the {0} scope")]
pub struct InsufficientScope(pub Scope);

impl Principal {
    /// A principal with every scope (a personal access token without `--scope`, or the
    /// system acting for the user).
    pub fn with_all_scopes(user: UserId, name: String, is_admin: bool) -> Self {
        Self {
            user,
            name,
            is_admin,
            scopes: ScopeSet::all(),
            client_id: None,
        }
    }

    /// Whether the credential carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), InsufficientScope> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(InsufficientScope(scope))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    #[test]
    fn generated_tokens_parse_and_hash_stably() {
        let mut rng = StepRng::new(1, 7);
        let token = PersonalAccessToken::generate(&mut rng);
        let secret = token.expose_secret().to_owned();
        assert!(secret.starts_with(PAT_PREFIX));
        assert_eq!(secret.len(), PAT_PREFIX.len() + 43);
        let header = format!("Bearer {secret}");
        assert_eq!(parse_bearer(Some(&header)), Ok(secret.as_str()));
        assert_eq!(token.hash(), TokenHash::of(&secret));
        assert_eq!(token.hash().to_hex().len(), 64);
        assert!(!format!("{token:?}").contains(&secret[PAT_PREFIX.len()..]));
    }

    #[test]
    fn different_rng_output_gives_different_tokens() {
        let a = PersonalAccessToken::generate(&mut StepRng::new(1, 1));
        let b = PersonalAccessToken::generate(&mut StepRng::new(2, 1));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn viewer_tokens_are_their_own_kind() {
        let token = ViewerToken::generate(&mut StepRng::new(3, 5));
        assert!(ViewerToken::is_viewer_token(token.expose_secret()));
        assert!(!ViewerToken::is_viewer_token("hgr_pat_abc"));
        assert!(!ViewerToken::is_viewer_token("hgr_view_"));
        // A viewer token is never accepted where a personal access token is expected.
        let header = format!("Bearer {}", token.expose_secret());
        assert_eq!(parse_bearer(Some(&header)), Err(AuthError::Malformed));
        assert!(!format!("{token:?}").contains(token.expose_secret()));
    }

    #[test]
    fn session_tokens_are_their_own_kind_and_redacted() {
        let token = SessionToken::generate(&mut StepRng::new(9, 3));
        let secret = token.expose_secret();
        assert!(secret.starts_with(SESSION_PREFIX));
        assert_eq!(secret.len(), SESSION_PREFIX.len() + 43);
        assert_eq!(SessionToken::parse(secret), Ok(secret));
        assert_eq!(token.hash(), TokenHash::of(secret));
        assert!(!format!("{token:?}").contains(&secret[SESSION_PREFIX.len()..]));
        // Neither kind is accepted as the other.
        assert_eq!(
            parse_bearer(Some(&format!("Bearer {secret}"))),
            Err(AuthError::Malformed)
        );
        let pat = PersonalAccessToken::generate(&mut StepRng::new(9, 3));
        assert_eq!(
            SessionToken::parse(pat.expose_secret()),
            Err(AuthError::Malformed)
        );
        for bad in [
            "",
            "hgr_sess_",
            "hgr_sess_a b",
            "hgr_sess_%00",
            "xhgr_sess_abc",
        ] {
            assert_eq!(
                SessionToken::parse(bad),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
        let long = format!("{SESSION_PREFIX}{}", "a".repeat(129));
        assert_eq!(SessionToken::parse(&long), Err(AuthError::Malformed));
    }

    #[test]
    fn derived_names_are_valid_account_names() {
        let cases: &[(&[Option<&str>], &str)] = &[
            (&[Some("Octocat")], "octocat"),
            (&[None, Some("Jane.Doe")], "jane.doe"),
            (&[Some("  "), Some("bob")], "bob"),
            (&[Some("--ünï code--")], "n-code"),
            (&[Some("a/b\\c")], "a-b-c"),
            (&[Some("._-")], "user"),
            (&[None, None], "user"),
            (&[], "user"),
        ];
        for (input, want) in cases {
            assert_eq!(derive_user_name(input.iter().copied()), *want, "{input:?}");
        }
        let long = "x".repeat(200);
        assert_eq!(
            derive_user_name([Some(long.as_str())]).len(),
            DERIVED_NAME_MAX
        );
    }

    #[test]
    fn oauth_access_tokens_are_told_apart() {
        assert_eq!(
            parse_any_bearer(Some("Bearer hgr_at_abc")),
            Ok(BearerToken::OAuthAccessToken("hgr_at_abc"))
        );
        assert_eq!(
            parse_any_bearer(Some("bearer hgr_pat_abc")),
            Ok(BearerToken::PersonalAccessToken("hgr_pat_abc"))
        );
        assert_eq!(
            parse_any_bearer(Some("Bearer hgr_rt_abc")),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            parse_bearer(Some("Bearer hgr_at_abc")),
            Err(AuthError::Malformed)
        );
        let p =
            Principal::with_all_scopes(UserId::from_uuid(Default::default()), "a".into(), false);
        assert!(p.require(Scope::Admin).is_ok());
        let limited = Principal {
            scopes: ScopeSet::parse("sandboxes:read").expect("scope"),
            ..p
        };
        assert_eq!(
            limited.require(Scope::SandboxesWrite),
            Err(InsufficientScope(Scope::SandboxesWrite))
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(parse_bearer(None), Err(AuthError::Missing));
        assert_eq!(parse_bearer(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(parse_bearer(Some("Bearer")), Err(AuthError::Malformed));
        assert_eq!(parse_bearer(Some("Bearer nope")), Err(AuthError::Malformed));
        assert_eq!(
            parse_bearer(Some("Bearer hgr_pat_a b")),
            Err(AuthError::Malformed)
        );
        assert_eq!(parse_bearer(Some("bearer hgr_pat_abc")), Ok("hgr_pat_abc"));
    }
}
