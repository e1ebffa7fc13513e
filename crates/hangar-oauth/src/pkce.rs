//! Proof Key for Code Exchange (RFC 7636), `S256` only: `plain` is refused (RFC 9700 section
//! 2.1.1), as is a challenge without a method (whose default would be `plain`, RFC 7636
//! section 4.3).

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::OAuthError;

/// The transformation of a code challenge. Only `S256` exists here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeChallengeMethod {
    /// `BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 section 4.2).
    S256,
}

impl CodeChallengeMethod {
    /// `S256`.
    pub fn as_str(self) -> &'static str {
        "S256"
    }

    /// Parses `code_challenge_method`. Errors: `invalid_request` for `plain`, a missing
    /// method and anything else.
    pub fn parse(method: Option<&str>) -> Result<Self, OAuthError> {
        match method {
            Some("S256") => Ok(Self::S256),
            Some("plain") => Err(OAuthError::invalid_request(
                "code_challenge_method plain is not allowed; use S256",
            )),
            None => Err(OAuthError::invalid_request(
                "code_challenge_method is required and must be S256",
            )),
            Some(_) => Err(OAuthError::invalid_request(
                "unsupported code_challenge_method; use S256",
            )),
        }
    }
}

/// A code challenge as sent in the authorization request: 43 characters of URL-safe base64
/// without padding (the encoding of a SHA-256).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodeChallenge {
    challenge: String,
    method: CodeChallengeMethod,
}

impl CodeChallenge {
    /// Checks `code_challenge` and `code_challenge_method` (RFC 7636 section 4.3).
    /// Errors: `invalid_request`.
    pub fn new(challenge: &str, method: Option<&str>) -> Result<Self, OAuthError> {
        let method = CodeChallengeMethod::parse(method)?;
        let ok = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(OAuthError::invalid_request(
                "code_challenge must be the 43-character BASE64URL of a SHA-256",
            ));
        }
        Ok(Self {
            challenge: challenge.to_owned(),
            method,
        })
    }

    /// The challenge of `verifier` (what a client computes).
    pub fn s256_of(verifier: &str) -> Self {
        Self {
            challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes())),
            method: CodeChallengeMethod::S256,
        }
    }

    /// The challenge text.
    pub fn as_str(&self) -> &str {
        &self.challenge
    }

    /// The method.
    pub fn method(&self) -> CodeChallengeMethod {
        self.method
    }

    /// Whether `verifier` matches: 43 to 128 unreserved characters (RFC 7636 section 4.1)
    /// whose S256 transform equals the challenge, compared in constant time.
    pub fn verify(&self, verifier: &str) -> bool {
        if !is_valid_verifier(verifier) {
            return false;
        }
        let expected = Self::s256_of(verifier);
        expected
            .challenge
            .as_bytes()
            .ct_eq(self.challenge.as_bytes())
            .into()
    }
}

impl fmt::Debug for CodeChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CodeChallenge({:?}, {})",
            self.challenge,
            self.method.as_str()
        )
    }
}

/// `code-verifier = 43*128unreserved` (RFC 7636 section 4.1).
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge =
            CodeChallenge::new("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("S256"))
                .expect("challenge");
        assert!(challenge.verify(verifier));
        assert_eq!(CodeChallenge::s256_of(verifier), challenge);
        assert!(!challenge.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"));
        assert!(!challenge.verify("short"));
    }

    #[test]
    fn plain_and_missing_methods_are_refused() {
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(CodeChallenge::new(c, Some("plain")).is_err());
        assert!(CodeChallenge::new(c, None).is_err());
        assert!(CodeChallenge::new(c, Some("s256")).is_err());
        assert!(CodeChallenge::new("too-short", Some("S256")).is_err());
    }
}
