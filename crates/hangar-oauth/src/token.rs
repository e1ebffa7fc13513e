//! Access and refresh tokens (RFC 6749 sections 1.4, 1.5, 5.1 and 6; RFC 9700 section 4.14).
//!
//! Both are opaque bearer secrets (`hgr_at_`, `hgr_rt_`) stored as their SHA-256, each
//! belonging to a grant (a person's consent to a client) and to a *family*: the tokens that
//! descend from one authorization code or one device code through refreshes. Refresh tokens
//! rotate on every use; presenting a rotated one again means it was copied, and the whole
//! grant is revoked ([`RefreshRefusal::Reused`]).

use std::time::Duration;

use hangar_core::Timestamp;

use crate::client::ClientId;
use crate::error::OAuthError;
use crate::scope::ScopeSet;

/// Default lifetime of an access token (1 hour).
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of a refresh token (30 days; each rotation starts a new one).
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What kind of token a stored token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An access token (`hgr_at_`).
    Access,
    /// A refresh token (`hgr_rt_`).
    Refresh,
}

impl TokenKind {
    /// `access` or `refresh` (the stored form, and RFC 7009's `token_type_hint` values
    /// `access_token` / `refresh_token` without the suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            _ => None,
        }
    }

    /// The kind a presented token claims by its prefix.
    pub fn of_secret(secret: &str) -> Option<Self> {
        if crate::secret::has_shape(secret, crate::secret::ACCESS_TOKEN_PREFIX) {
            Some(Self::Access)
        } else if crate::secret::has_shape(secret, crate::secret::REFRESH_TOKEN_PREFIX) {
            Some(Self::Refresh)
        } else {
            None
        }
    }
}

/// `now + ttl`, saturating.
pub fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    now.plus_ms(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// The stored state of a refresh token, as needed to decide a refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenState {
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The scopes of its grant at issue (the most a refresh may ask for).
    pub scopes: ScopeSet,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
    /// When it was used (rotated), if it was.
    pub rotated_at: Option<Timestamp>,
    /// When it (or its grant) was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// Why a refresh is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// The token was rotated before: it has been copied. Revoke the whole grant.
    Reused,
    /// Any other reason: refuse, change nothing.
    Invalid(OAuthError),
}

impl RefreshRefusal {
    /// The error to answer with.
    pub fn into_error(self) -> OAuthError {
        match self {
            RefreshRefusal::Reused => {
                OAuthError::invalid_grant("the refresh token was already used")
            }
            RefreshRefusal::Invalid(e) => e,
        }
    }
}

impl RefreshTokenState {
    /// Decides a refresh by `client` at `now` asking for `requested` scopes (RFC 6749 section
    /// 6): the token must be live and the client's own, and the scopes (default: the
    /// original ones) must not exceed the original ones (`invalid_scope`). Returns the scopes
    /// of the new tokens.
    pub fn check_refresh(
        &self,
        client: &ClientId,
        requested: Option<&ScopeSet>,
        now: Timestamp,
    ) -> Result<ScopeSet, RefreshRefusal> {
        let invalid =
            |why: &'static str| Err(RefreshRefusal::Invalid(OAuthError::invalid_grant(why)));
        if self.revoked_at.is_some() {
            return invalid("the refresh token was revoked");
        }
        if &self.client_id != client {
            return invalid("the refresh token was issued to another client");
        }
        if self.rotated_at.is_some() {
            return Err(RefreshRefusal::Reused);
        }
        if self.expires_at.is_some_and(|e| now >= e) {
            return invalid("the refresh token has expired");
        }
        match requested {
            None => Ok(self.scopes.clone()),
            Some(req) if req.is_subset(&self.scopes) => Ok(req.clone()),
            Some(_) => Err(RefreshRefusal::Invalid(OAuthError::invalid_scope(
                "the requested scope exceeds the original grant",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn refresh_rules() {
        let app: ClientId = "app".parse().expect("id");
        let state = RefreshTokenState {
            client_id: app.clone(),
            scopes: ScopeSet::parse("sandboxes:read sandboxes:write").expect("scopes"),
            expires_at: Some(Timestamp::from_unix_ms(1000)),
            rotated_at: None,
            revoked_at: None,
        };
        let now = Timestamp::from_unix_ms(10);
        assert_eq!(
            state.check_refresh(&app, None, now),
            Ok(state.scopes.clone())
        );
        let read = ScopeSet::parse("sandboxes:read").expect("read");
        assert_eq!(state.check_refresh(&app, Some(&read), now), Ok(read));
        let admin = ScopeSet::parse("sandboxes:read admin").expect("admin");
        match state.check_refresh(&app, Some(&admin), now) {
            Err(RefreshRefusal::Invalid(e)) => assert_eq!(e.code, ErrorCode::InvalidScope),
            other => panic!("{other:?}"),
        }
        let other: ClientId = "other".parse().expect("id");
        assert!(matches!(
            state.check_refresh(&other, None, now),
            Err(RefreshRefusal::Invalid(_))
        ));
        assert!(matches!(
            state.check_refresh(&app, None, Timestamp::from_unix_ms(1000)),
            Err(RefreshRefusal::Invalid(_))
        ));
        let rotated = RefreshTokenState {
            rotated_at: Some(now),
            ..state.clone()
        };
        assert_eq!(
            rotated.check_refresh(&app, None, now),
            Err(RefreshRefusal::Reused)
        );
        let revoked = RefreshTokenState {
            revoked_at: Some(now),
            ..rotated
        };
        assert!(matches!(
            revoked.check_refresh(&app, None, now),
            Err(RefreshRefusal::Invalid(_))
        ));
        assert_eq!(TokenKind::of_secret("hgr_rt_abc"), Some(TokenKind::Refresh));
        assert_eq!(TokenKind::of_secret("hgr_at_abc"), Some(TokenKind::Access));
        assert_eq!(TokenKind::of_secret("hgr_pat_abc"), None);
    }
}
