//! Scopes (RFC 6749 section 3.3): what a token lets its bearer do.
//!
//! A scope string is a space-delimited list of scope tokens; order does not matter and
//! repeats are one. hangar knows exactly the scopes of [`Scope`]; an unknown one is
//! `invalid_scope`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::OAuthError;

/// One scope hangar knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read sandboxes, images and their state (`GET /api/v1/sandboxes...`).
    SandboxesRead,
    /// Create, exec into, stop, start and destroy sandboxes.
    SandboxesWrite,
    /// See which provider credentials are connected (never the secrets).
    CredentialsRead,
    /// Remove connected credentials.
    CredentialsWrite,
    /// Start and drive connect sessions.
    Connect,
    /// Administration: users, OAuth clients (still only for admins).
    Admin,
    /// OpenID Connect: an id_token and `/oauth/userinfo` (OIDC Core section 3.1.2.1).
    Openid,
    /// OpenID Connect: the `name` and `preferred_username` claims (OIDC Core section 5.4).
    Profile,
    /// OpenID Connect: the `email` claim (OIDC Core section 5.4).
    Email,
    /// A refresh token is issued (OIDC Core section 11).
    OfflineAccess,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 10] = [
        Scope::SandboxesRead,
        Scope::SandboxesWrite,
        Scope::CredentialsRead,
        Scope::CredentialsWrite,
        Scope::Connect,
        Scope::Admin,
        Scope::Openid,
        Scope::Profile,
        Scope::Email,
        Scope::OfflineAccess,
    ];

    /// The scope token (`sandboxes:read`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SandboxesRead => "sandboxes:read",
            Scope::SandboxesWrite => "sandboxes:write",
            Scope::CredentialsRead => "credentials:read",
            Scope::CredentialsWrite => "credentials:write",
            Scope::Connect => "connect",
            Scope::Admin => "admin",
            Scope::Openid => "openid",
            Scope::Profile => "profile",
            Scope::Email => "email",
            Scope::OfflineAccess => "offline_access",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = OAuthError;

    /// Exactly one known scope token. Errors: `invalid_scope` naming the token (scope tokens
    /// are `%x21 / %x23-5B / %x5D-7E`, never secret, but only the first 64 bytes are echoed).
    fn from_str(s: &str) -> Result<Self, OAuthError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let shown: String = s
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                    .take(64)
                    .collect();
                OAuthError::invalid_scope(format!("unknown scope \"{shown}\""))
            })
    }
}

/// A set of scopes. Formats as the space-delimited scope string, sorted.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// No scope.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every scope hangar knows (what a personal access token without `--scope` carries).
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Parses a scope string (RFC 6749 section 3.3): scope tokens separated by single
    /// spaces. Leading, trailing or doubled spaces are `invalid_scope`, as is any unknown
    /// token; a repeated token counts once. The empty string is the empty set.
    pub fn parse(text: &str) -> Result<Self, OAuthError> {
        if text.is_empty() {
            return Ok(Self::empty());
        }
        text.split(' ')
            .map(|token| {
                if token.is_empty() {
                    Err(OAuthError::invalid_scope(
                        "scope tokens are separated by single spaces",
                    ))
                } else {
                    token.parse()
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Parses a comma-separated list (`--scope a,b` on the command line); spaces around
    /// the commas are allowed.
    pub fn parse_list(text: &str) -> Result<Self, OAuthError> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether there is no scope.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes of both.
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.union(&other.0).copied().collect())
    }

    /// The scopes in both.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).copied().collect())
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) {
        self.0.insert(scope);
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Display for ScopeSet {
    /// The scope string: tokens sorted, separated by single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeSet({:?})", self.to_string())
    }
}

impl FromStr for ScopeSet {
    type Err = OAuthError;

    fn from_str(s: &str) -> Result<Self, OAuthError> {
        ScopeSet::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn scope_strings_round_trip_sorted_and_deduplicated() {
        let set = ScopeSet::parse("openid sandboxes:read openid admin").expect("parse");
        assert_eq!(set.to_string(), "sandboxes:read admin openid");
        assert_eq!(ScopeSet::parse(&set.to_string()).expect("again"), set);
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().expect("known"), scope);
        }
        assert_eq!(ScopeSet::all().iter().count(), Scope::ALL.len());
        assert!(ScopeSet::parse("").expect("empty").is_empty());
    }

    #[test]
    fn unknown_or_malformed_scopes_are_invalid_scope() {
        for bad in [
            "sandboxes:delete",
            "openid  admin",
            " openid",
            "openid ",
            "OPENID",
            "openid\tadmin",
        ] {
            let err = ScopeSet::parse(bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidScope, "{bad:?}");
        }
    }

    #[test]
    fn subsets_and_lists() {
        let read = ScopeSet::parse("sandboxes:read").expect("read");
        let both = ScopeSet::parse_list("sandboxes:read, sandboxes:write").expect("list");
        assert!(read.is_subset(&both));
        assert!(!both.is_subset(&read));
        assert!(ScopeSet::empty().is_subset(&read));
        assert_eq!(both.intersection(&read), read);
        assert_eq!(read.union(&both), both);
        assert!(ScopeSet::parse_list("admin,nope").is_err());
    }
}
