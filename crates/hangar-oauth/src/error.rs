//! [`OAuthError`]: the error responses of RFC 6749 section 5.2 (token endpoint), section
//! 4.1.2.1 (authorization endpoint), RFC 7009 section 2.2.1, RFC 8628 section 3.5 and RFC 6750
//! section 3.1, with the HTTP status each is answered with.

use std::borrow::Cow;
use std::fmt;

/// An OAuth error code, as registered in the IANA "OAuth Extensions Error Registry".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is missing a parameter, repeats one, or is otherwise malformed
    /// (RFC 6749 section 5.2).
    InvalidRequest,
    /// Client authentication failed (RFC 6749 section 5.2): answered 401.
    InvalidClient,
    /// The grant (code, refresh token, device code) is invalid, expired, revoked, or was issued
    /// to another client or redirect URI (RFC 6749 section 5.2).
    InvalidGrant,
    /// The client may not use this grant type (RFC 6749 section 5.2).
    UnauthorizedClient,
    /// The grant type is not supported (RFC 6749 section 5.2).
    UnsupportedGrantType,
    /// The scope is unknown, malformed, or exceeds what is allowed (RFC 6749 section 3.3).
    InvalidScope,
    /// The resource owner or the server denied the request (RFC 6749 section 4.1.2.1,
    /// RFC 8628 section 3.5).
    AccessDenied,
    /// Only `response_type=code` is supported (RFC 6749 section 4.1.2.1).
    UnsupportedResponseType,
    /// The server failed; never carries the cause (RFC 6749 section 4.1.2.1).
    ServerError,
    /// The device authorization is still pending (RFC 8628 section 3.5).
    AuthorizationPending,
    /// The device polls too often: add 5 seconds to the interval (RFC 8628 section 3.5).
    SlowDown,
    /// The device code expired (RFC 8628 section 3.5).
    ExpiredToken,
    /// The access token is invalid, expired or revoked (RFC 6750 section 3.1).
    InvalidToken,
    /// The token has the right scopes missing (RFC 6750 section 3.1): answered 403.
    InsufficientScope,
    /// Revocation of this token type is not supported (RFC 7009 section 2.2.1).
    UnsupportedTokenType,
    /// Too many requests (not an RFC 6749 code; answered 429 with `Retry-After`).
    RateLimited,
}

impl ErrorCode {
    /// The wire form (`invalid_request`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::RateLimited => "rate_limited",
        }
    }

    /// The HTTP status this code is answered with at the token-style endpoints: 400 for
    /// everything of RFC 6749 section 5.2 but `invalid_client` (401, with `WWW-Authenticate`);
    /// 401 for `invalid_token` and 403 for `insufficient_scope` (RFC 6750 section 3.1); 429 for
    /// rate limiting; 500 for `server_error`.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope => 403,
            ErrorCode::RateLimited => 429,
            ErrorCode::ServerError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error: a code and a human-readable description (`error_description`). The
/// description is safe to show: it never carries a secret or a stored value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The RFC error code.
    pub code: ErrorCode,
    /// What went wrong (ASCII, for `error_description`).
    pub description: Cow<'static, str>,
}

impl OAuthError {
    /// An error with a description.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client` (deliberately says nothing about which part was wrong).
    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_scope`.
    pub fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    /// `unauthorized_client`.
    pub fn unauthorized_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, description)
    }

    /// `invalid_token`.
    pub fn invalid_token() -> Self {
        Self::new(
            ErrorCode::InvalidToken,
            "the access token is invalid, expired or revoked",
        )
    }

    /// `server_error` (the cause is logged by the caller, never shown).
    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "internal error")
    }

    /// The HTTP status to answer with ([`ErrorCode::http_status`]).
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The `WWW-Authenticate` header value this error needs, if any: `Basic realm="hangar"`
    /// for `invalid_client` (RFC 6749 section 5.2: a 401 must name the scheme the client can
    /// use), `Bearer` with `error=` for the protected-resource errors of RFC 6750 section 3.
    pub fn www_authenticate(&self) -> Option<String> {
        match self.code {
            ErrorCode::InvalidClient => Some("Basic realm=\"hangar\"".to_owned()),
            ErrorCode::InvalidToken | ErrorCode::InsufficientScope => Some(format!(
                "Bearer realm=\"hangar\", error=\"{}\"",
                self.code.as_str()
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_rfcs() {
        let table = [
            (ErrorCode::InvalidRequest, "invalid_request", 400),
            (ErrorCode::InvalidClient, "invalid_client", 401),
            (ErrorCode::InvalidGrant, "invalid_grant", 400),
            (ErrorCode::UnauthorizedClient, "unauthorized_client", 400),
            (
                ErrorCode::UnsupportedGrantType,
                "unsupported_grant_type",
                400,
            ),
            (ErrorCode::InvalidScope, "invalid_scope", 400),
            (ErrorCode::AccessDenied, "access_denied", 400),
            (
                ErrorCode::AuthorizationPending,
                "authorization_pending",
                400,
            ),
            (ErrorCode::SlowDown, "slow_down", 400),
            (ErrorCode::ExpiredToken, "expired_token", 400),
            (ErrorCode::InvalidToken, "invalid_token", 401),
            (ErrorCode::InsufficientScope, "insufficient_scope", 403),
            (
                ErrorCode::UnsupportedTokenType,
                "unsupported_token_type",
                400,
            ),
            (ErrorCode::RateLimited, "rate_limited", 429),
            (ErrorCode::ServerError, "server_error", 500),
        ];
        for (code, text, status) in table {
            assert_eq!((code.as_str(), code.http_status()), (text, status));
        }
        assert_eq!(
            OAuthError::invalid_client().www_authenticate().as_deref(),
            Some("Basic realm=\"hangar\"")
        );
        assert_eq!(OAuthError::invalid_grant("x").www_authenticate(), None);
    }
}
