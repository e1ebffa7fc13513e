//! Authorization codes (RFC 6749 sections 4.1.2 and 4.1.3): opaque (`hgr_ac_`), stored as
//! their SHA-256, single use, short-lived ([`CODE_TTL`]), bound to the client, the redirect
//! URI, the PKCE challenge, the scopes and the nonce.
//!
//! A code presented a second time is refused, and every token it produced is revoked
//! (section 4.1.2: "the authorization server MUST deny the request and SHOULD revoke (when
//! possible) all tokens previously issued based on that authorization code").

use std::time::Duration;

use hangar_core::{Timestamp, UserId};

use crate::client::ClientId;
use crate::error::OAuthError;
use crate::pkce::CodeChallenge;
use crate::scope::ScopeSet;

/// How long a code lives by default (RFC 6749 section 4.1.2 recommends at most 10 minutes;
/// hangar uses 60 seconds).
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// What a code stands for, as stored (without the code itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGrant {
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The person who approved.
    pub user: UserId,
    /// The redirect URI of the authorization request, if the request named it (then the
    /// token request must repeat it exactly).
    pub redirect_uri: Option<String>,
    /// The scopes granted.
    pub scopes: ScopeSet,
    /// The PKCE challenge, if the request had one.
    pub code_challenge: Option<CodeChallenge>,
    /// The OpenID Connect nonce, for the id_token.
    pub nonce: Option<String>,
    /// When the person authenticated (the id_token's `auth_time`).
    pub auth_time: Timestamp,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working (expired at and after this instant).
    pub expires_at: Timestamp,
    /// When it was redeemed, if it was.
    pub redeemed_at: Option<Timestamp>,
}

/// The parts of a token request (`grant_type=authorization_code`) a code is checked against.
#[derive(Clone, Copy, Debug)]
pub struct CodeRedemption<'a> {
    /// The authenticated client.
    pub client_id: &'a ClientId,
    /// `redirect_uri`, if sent.
    pub redirect_uri: Option<&'a str>,
    /// `code_verifier`, if sent.
    pub code_verifier: Option<&'a str>,
}

/// Why a code cannot be redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeRefusal {
    /// It was redeemed before: refuse, and revoke what it produced.
    Replayed,
    /// Any other reason: refuse, change nothing.
    Invalid(OAuthError),
}

impl CodeRefusal {
    /// The error to answer with (`invalid_grant` in every case).
    pub fn into_error(self) -> OAuthError {
        match self {
            CodeRefusal::Replayed => OAuthError::invalid_grant("the code was already used"),
            CodeRefusal::Invalid(e) => e,
        }
    }
}

impl CodeGrant {
    /// Checks a redemption at `now` (RFC 6749 section 4.1.3, RFC 7636 section 4.6, RFC 9700
    /// section 2.1.1): not redeemed before, issued to this client, not expired, the same
    /// redirect URI if the authorization request named one, and a verifier that matches the
    /// challenge, or no verifier if there was no challenge (a verifier without a challenge is a
    /// PKCE downgrade). Every refusal is `invalid_grant`, deliberately vague.
    pub fn check_redemption(
        &self,
        request: &CodeRedemption<'_>,
        now: Timestamp,
    ) -> Result<(), CodeRefusal> {
        let invalid = |why: &'static str| Err(CodeRefusal::Invalid(OAuthError::invalid_grant(why)));
        if self.redeemed_at.is_some() {
            return Err(CodeRefusal::Replayed);
        }
        if &self.client_id != request.client_id {
            return invalid("the code was issued to another client");
        }
        if now >= self.expires_at {
            return invalid("the code has expired");
        }
        match (&self.redirect_uri, request.redirect_uri) {
            (Some(expected), Some(given)) if expected == given => {}
            (Some(_), _) => {
                return invalid("redirect_uri does not match the authorization request")
            }
            (None, Some(_)) => {
                return invalid("redirect_uri was not part of the authorization request")
            }
            (None, None) => {}
        }
        match (&self.code_challenge, request.code_verifier) {
            (Some(challenge), Some(verifier)) if challenge.verify(verifier) => Ok(()),
            (Some(_), Some(_)) => invalid("code_verifier does not match the code_challenge"),
            (Some(_), None) => invalid("code_verifier is missing"),
            (None, Some(_)) => invalid("code_verifier sent for a code issued without PKCE"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn grant() -> CodeGrant {
        CodeGrant {
            client_id: "app".parse().expect("id"),
            user: UserId::from_uuid(Default::default()),
            redirect_uri: Some("https://app.test/cb".into()),
            scopes: ScopeSet::parse("sandboxes:read").expect("scopes"),
            code_challenge: Some(CodeChallenge::s256_of(VERIFIER)),
            nonce: None,
            auth_time: Timestamp::from_unix_ms(0),
            created_at: Timestamp::from_unix_ms(0),
            expires_at: Timestamp::from_unix_ms(60_000),
            redeemed_at: None,
        }
    }

    #[test]
    fn redemption_checks_every_binding() {
        let app: ClientId = "app".parse().expect("id");
        let other: ClientId = "other".parse().expect("id");
        let ok = CodeRedemption {
            client_id: &app,
            redirect_uri: Some("https://app.test/cb"),
            code_verifier: Some(VERIFIER),
        };
        let g = grant();
        let early = Timestamp::from_unix_ms(59_999);
        assert_eq!(g.check_redemption(&ok, early), Ok(()));
        let bad = [
            CodeRedemption {
                client_id: &other,
                ..ok
            },
            CodeRedemption {
                redirect_uri: Some("https://app.test/cb2"),
                ..ok
            },
            CodeRedemption {
                redirect_uri: None,
                ..ok
            },
            CodeRedemption {
                code_verifier: None,
                ..ok
            },
            CodeRedemption {
                code_verifier: Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX"),
                ..ok
            },
        ];
        for req in bad {
            match g.check_redemption(&req, early) {
                Err(CodeRefusal::Invalid(e)) => assert_eq!(e.code, ErrorCode::InvalidGrant),
                other => panic!("{req:?}: {other:?}"),
            }
        }
        assert!(matches!(
            g.check_redemption(&ok, Timestamp::from_unix_ms(60_000)),
            Err(CodeRefusal::Invalid(_))
        ));
        let used = CodeGrant {
            redeemed_at: Some(early),
            ..grant()
        };
        assert_eq!(
            used.check_redemption(&ok, early),
            Err(CodeRefusal::Replayed)
        );
        // No challenge: a verifier is a downgrade attempt.
        let plain = CodeGrant {
            code_challenge: None,
            redirect_uri: None,
            ..grant()
        };
        let no_pkce = CodeRedemption {
            redirect_uri: None,
            code_verifier: None,
            ..ok
        };
        assert_eq!(plain.check_redemption(&no_pkce, early), Ok(()));
        assert!(plain
            .check_redemption(
                &CodeRedemption {
                    code_verifier: Some(VERIFIER),
                    ..no_pkce
                },
                early
            )
            .is_err());
        assert!(plain.check_redemption(&ok, early).is_err());
    }
}
