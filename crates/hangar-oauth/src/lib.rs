//! hangar's OAuth 2.0 authorization server, as a domain: no I/O, no clock, no global RNG.
//!
//! Owns the rules of RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 8628 (device authorization),
//! RFC 9207 (`iss` in authorization responses), RFC 9700 (the security BCP) and the token
//! claims of OpenID Connect Core 1.0:
//!
//! - [`scope`]: hangar's scopes and [`ScopeSet`] (RFC 6749 section 3.3);
//! - [`client`]: registered clients and their secrets (hashed with Argon2id);
//! - [`authorize`]: validation of an authorization request (section 4.1.1) into a
//!   [`ValidatedAuthorization`], and the redirects that answer it (section 4.1.2);
//! - [`pkce`]: code challenges and verifiers (RFC 7636, `S256` only);
//! - [`code`]: authorization codes and the checks at their redemption (section 4.1.3);
//! - [`token`]: access and refresh tokens, their lifetimes and the rules of refresh (section 6);
//! - [`device`]: device codes, user codes and the polling state machine (RFC 8628);
//! - [`error`]: [`OAuthError`] with the RFC error codes and their HTTP statuses;
//! - [`oidc`]: id_token claims.
//!
//! Every secret (client secret, code, token, device code) is a prefixed random string drawn
//! from an RNG the caller passes ([`secret`]); only its SHA-256 ([`SecretHash`]) is stored,
//! except client secrets, which get a password hash. Secrets never appear in `Debug`.
//!
//! **Architecture Invariant:** no I/O, no clock (`now` is a parameter), no global RNG; no
//! storage: the store and the server apply what this crate decides.

#![warn(missing_docs)]

pub mod authorize;
pub mod client;
pub mod code;
pub mod device;
pub mod error;
pub mod oidc;
pub mod pkce;
pub mod scope;
pub mod secret;
pub mod token;

pub use authorize::{AuthorizationRequest, AuthorizeError, ValidatedAuthorization};
pub use client::{ClientId, ClientSecret, ClientType, GrantType, OAuthClient};
pub use error::{ErrorCode, OAuthError};
pub use pkce::{CodeChallenge, CodeChallengeMethod};
pub use scope::{Scope, ScopeSet};
pub use secret::{Secret, SecretHash};
