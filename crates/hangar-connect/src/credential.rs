//! What captured credential files say, checked against their provider's spec.
//!
//! The watcher in the browser sandbox hands over files as `path -> bytes` (paths relative to
//! the sandbox user's `HOME`). [`inspect`] refuses anything the CLI itself would refuse or that
//! would leave the person logged out (no refresh token, a blanked token, an id token that is
//! not a JWT with the claims the CLI requires, a file that is not JSON), and otherwise returns
//! a [`CredentialSummary`]: the access token's expiry, whether a refresh token is there, and
//! the account. Errors name the file and the JSON pointer, never a value.
//!
//! ## Why id tokens are decoded without checking their signature
//! The claims are read only to mirror the CLI's own structural check (Codex refuses an
//! `auth.json` whose `id_token` is not a three-part JWT carrying `email` and the
//! `https://api.openai.com/auth` claim, and does not verify the signature either) and to show
//! which account was connected. hangar grants nothing on the strength of these claims, the
//! file arrived over the session's own channel from a CLI that got it from the provider over
//! TLS, and verifying would need the provider's JWKS, i.e. the network, which this crate must
//! not use.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hangar_core::{ConnectFlow, Timestamp};
use serde_json::Value;

use crate::spec::{CredentialFileSpec, ExpiryFormat, FileFormat, ProviderSpec};

/// What hangar records about a captured credential (no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSummary {
    /// When the access token expires, if the files say.
    pub access_token_expires_at: Option<Timestamp>,
    /// A refresh token is present.
    pub has_refresh_token: bool,
    /// The account (an email address), if the files name it.
    pub account: Option<String>,
}

/// A refresh token read from a credential file. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// The token itself, for the request to the token endpoint only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// The captured files are not a usable login for the provider. Fields name files and JSON
/// pointers, never token values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A file the provider does not write was handed over.
    #[error("unexpected file {path}")]
    UnexpectedFile {
        /// The path given.
        path: String,
    },
    /// A required file is missing.
    #[error("missing credential file {path}")]
    MissingFile {
        /// The file.
        path: String,
    },
    /// A JSON file does not parse (position only: the content may be secret).
    #[error("{path} is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// The file.
        path: String,
        /// Line of the syntax error.
        line: usize,
        /// Column of the syntax error.
        column: usize,
    },
    /// A JSON file's top level is not an object.
    #[error("{path} is not a JSON object")]
    NotObject {
        /// The file.
        path: String,
    },
    /// A field the login needs is absent or null.
    #[error("{path} has no {pointer}")]
    MissingField {
        /// The file.
        path: String,
        /// The JSON pointer.
        pointer: String,
    },
    /// A field has the wrong JSON type.
    #[error("{path} {pointer} is not {expected}")]
    WrongType {
        /// The file.
        path: String,
        /// The JSON pointer.
        pointer: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A token field is an empty string: the CLI blanks its tokens when a refresh is refused,
    /// so the file is a logged-out one.
    #[error("{path} {pointer} is empty (logged out)")]
    EmptyField {
        /// The file.
        path: String,
        /// The JSON pointer.
        pointer: String,
    },
    /// An id token is not a decodable three-part JWT.
    #[error("{path} {pointer} is not a JWT: {problem}")]
    BadJwt {
        /// The file.
        path: String,
        /// The JSON pointer.
        pointer: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An id token lacks a claim the CLI requires.
    #[error("{path} {pointer} lacks the {claim} claim")]
    MissingClaim {
        /// The file.
        path: String,
        /// The JSON pointer.
        pointer: String,
        /// The claim.
        claim: String,
    },
    /// An expiry value is out of range or not in its declared format.
    #[error("{path} {pointer} is not a valid expiry")]
    BadExpiry {
        /// The file.
        path: String,
        /// The JSON pointer.
        pointer: String,
    },
}

/// Checks `files` (path relative to `HOME` -> bytes) against `spec` for a login made with
/// `flow`, and summarises them.
///
/// For every flow but [`ConnectFlow::Token`], the login must be an OAuth one: each declared
/// refresh token, access token, expiry and id token must be present and well formed. A token
/// flow (an API key written by the CLI) may lack them, but whatever is present must still be
/// well formed.
pub fn inspect(
    spec: &ProviderSpec,
    flow: ConnectFlow,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<CredentialSummary, CredentialError> {
    if let Some(path) = files
        .keys()
        .find(|p| !spec.files.iter().any(|f| &f.path == *p))
    {
        return Err(CredentialError::UnexpectedFile { path: path.clone() });
    }
    let strict = flow != ConnectFlow::Token;
    let mut summary = CredentialSummary {
        access_token_expires_at: None,
        has_refresh_token: false,
        account: None,
    };
    for file in &spec.files {
        let Some(bytes) = files.get(&file.path) else {
            if file.required {
                return Err(CredentialError::MissingFile {
                    path: file.path.clone(),
                });
            }
            continue;
        };
        if file.format != FileFormat::Json {
            continue;
        }
        let doc = parse_json(&file.path, bytes)?;
        let ctx = Ctx { file, doc: &doc };
        if let Some(p) = &file.refresh_token {
            if ctx.token(p, strict)?.is_some() {
                summary.has_refresh_token = true;
            }
        }
        if let Some(p) = &file.access_token {
            ctx.token(p, strict)?;
        }
        if let Some(expiry) = &file.expiry {
            if let Some(at) = ctx.expiry(&expiry.pointer, expiry.format, strict)? {
                summary.access_token_expires_at = Some(at);
            }
        }
        if let Some(id) = &file.id_token {
            if let Some(claims) = ctx.jwt_claims(&id.pointer, strict)? {
                for claim in &id.required_claims {
                    if claims.get(claim).is_none_or(Value::is_null) {
                        return Err(CredentialError::MissingClaim {
                            path: file.path.clone(),
                            pointer: id.pointer.clone(),
                            claim: claim.clone(),
                        });
                    }
                }
                if let Some(claim) = &id.account_claim {
                    if let Some(account) = claims.get(claim).and_then(Value::as_str) {
                        summary.account.get_or_insert_with(|| account.to_owned());
                    }
                }
            }
        }
        if let Some(p) = &file.account {
            if let Some(account) = ctx.string(p)?.filter(|s| !s.is_empty()) {
                summary.account.get_or_insert_with(|| account.to_owned());
            }
        }
    }
    Ok(summary)
}

/// The refresh token in `files`, if the provider declares one and it is there.
pub fn refresh_token(
    spec: &ProviderSpec,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<RefreshToken>, CredentialError> {
    let Some(file) = spec.refresh_token_file() else {
        return Ok(None);
    };
    let (Some(pointer), Some(bytes)) = (&file.refresh_token, files.get(&file.path)) else {
        return Ok(None);
    };
    let doc = parse_json(&file.path, bytes)?;
    let ctx = Ctx { file, doc: &doc };
    Ok(ctx
        .token(pointer, false)?
        .map(|t| RefreshToken(t.to_owned())))
}

pub(crate) fn parse_json(path: &str, bytes: &[u8]) -> Result<Value, CredentialError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| CredentialError::NotJson {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
    })?;
    if !doc.is_object() {
        return Err(CredentialError::NotObject {
            path: path.to_owned(),
        });
    }
    Ok(doc)
}

struct Ctx<'a> {
    file: &'a CredentialFileSpec,
    doc: &'a Value,
}

impl<'a> Ctx<'a> {
    fn missing(&self, pointer: &str) -> CredentialError {
        CredentialError::MissingField {
            path: self.file.path.clone(),
            pointer: pointer.to_owned(),
        }
    }

    fn wrong(&self, pointer: &str, expected: &'static str) -> CredentialError {
        CredentialError::WrongType {
            path: self.file.path.clone(),
            pointer: pointer.to_owned(),
            expected,
        }
    }

    /// The value at `pointer`, treating null as absent.
    fn value(&self, pointer: &str) -> Option<&'a Value> {
        self.doc.pointer(pointer).filter(|v| !v.is_null())
    }

    fn string(&self, pointer: &str) -> Result<Option<&'a str>, CredentialError> {
        match self.value(pointer) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(pointer, "a string")),
        }
    }

    /// A token: a non-empty string; required when `strict`.
    fn token(&self, pointer: &str, strict: bool) -> Result<Option<&'a str>, CredentialError> {
        match self.string(pointer)? {
            None if strict => Err(self.missing(pointer)),
            None => Ok(None),
            Some("") => Err(CredentialError::EmptyField {
                path: self.file.path.clone(),
                pointer: pointer.to_owned(),
            }),
            Some(s) => Ok(Some(s)),
        }
    }

    fn expiry(
        &self,
        pointer: &str,
        format: ExpiryFormat,
        strict: bool,
    ) -> Result<Option<Timestamp>, CredentialError> {
        let Some(value) = self.value(pointer) else {
            return if strict {
                Err(self.missing(pointer))
            } else {
                Ok(None)
            };
        };
        let bad = || CredentialError::BadExpiry {
            path: self.file.path.clone(),
            pointer: pointer.to_owned(),
        };
        let at = match format {
            ExpiryFormat::EpochMs => epoch(value, 1).ok_or_else(bad)?,
            ExpiryFormat::EpochS => epoch(value, 1000).ok_or_else(bad)?,
            ExpiryFormat::Rfc3339 => {
                let text = value
                    .as_str()
                    .ok_or_else(|| self.wrong(pointer, "a string"))?;
                Timestamp::parse_rfc3339(text).ok_or_else(bad)?
            }
            ExpiryFormat::JwtExp => {
                let text = value
                    .as_str()
                    .ok_or_else(|| self.wrong(pointer, "a string"))?;
                // An access token need not be a JWT; only a JWT with `exp` gives an expiry.
                match decode_jwt_payload(text)
                    .ok()
                    .and_then(|claims| claims.get("exp").cloned())
                {
                    Some(exp) => epoch(&exp, 1000).ok_or_else(bad)?,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(at))
    }

    fn jwt_claims(
        &self,
        pointer: &str,
        strict: bool,
    ) -> Result<Option<serde_json::Map<String, Value>>, CredentialError> {
        let Some(text) = self.token(pointer, strict)? else {
            return Ok(None);
        };
        decode_jwt_payload(text)
            .map(Some)
            .map_err(|problem| CredentialError::BadJwt {
                path: self.file.path.clone(),
                pointer: pointer.to_owned(),
                problem,
            })
    }
}

/// A JSON number of `unit` milliseconds (1 = ms, 1000 = s) since the epoch, within years
/// 1970..=9999.
fn epoch(value: &Value, unit_ms: i64) -> Option<Timestamp> {
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let n = if let Some(i) = value.as_i64() {
        i.checked_mul(unit_ms)?
    } else {
        let f = value.as_f64()? * unit_ms as f64;
        if !f.is_finite() || f.fract() != 0.0 || f.abs() > MAX_MS as f64 {
            return None;
        }
        f as i64
    };
    (0..=MAX_MS)
        .contains(&n)
        .then(|| Timestamp::from_unix_ms(n))
}

/// The payload of a compact JWS (RFC 7515 section 7.1): three base64url (no padding) parts,
/// the second a JSON object. The signature is NOT checked (see the module doc).
fn decode_jwt_payload(token: &str) -> Result<serde_json::Map<String, Value>, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three dot-separated parts");
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err("an empty part");
    }
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    engine
        .decode(header)
        .map_err(|_| "header is not base64url")?;
    let bytes = engine
        .decode(payload)
        .map_err(|_| "payload is not base64url")?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("payload is not a JSON object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn epochs_are_bounded() {
        assert_eq!(
            epoch(&json!(1_700_000_000_000_i64), 1),
            Some(Timestamp::from_unix_ms(1_700_000_000_000))
        );
        assert_eq!(
            epoch(&json!(1_700_000_000), 1000),
            Some(Timestamp::from_unix_ms(1_700_000_000_000))
        );
        assert_eq!(
            epoch(&json!(1.7e12), 1),
            Some(Timestamp::from_unix_ms(1_700_000_000_000))
        );
        assert_eq!(epoch(&json!(-1), 1), None);
        assert_eq!(epoch(&json!(i64::MAX), 1000), None);
        assert_eq!(epoch(&json!(1.5), 1), None);
        assert_eq!(epoch(&json!("1700000000000"), 1), None);
    }

    #[test]
    fn jwt_payloads_decode() {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let jwt = format!(
            "{}.{}.sig",
            b64(&json!({"alg":"RS256"})),
            b64(&json!({"email":"a@b.c"}))
        );
        assert_eq!(decode_jwt_payload(&jwt).expect("jwt")["email"], "a@b.c");
        assert!(decode_jwt_payload("a.b").is_err());
        assert!(decode_jwt_payload("a.b.c.d").is_err());
        assert!(decode_jwt_payload(&format!("{}.!!!.sig", b64(&json!({})))).is_err());
        let array = format!("{}.{}.sig", b64(&json!({})), b64(&json!([1])));
        assert_eq!(
            decode_jwt_payload(&array),
            Err("payload is not a JSON object")
        );
    }

    #[test]
    fn refresh_token_debug_is_redacted() {
        let t = RefreshToken("rt-secret".into());
        assert_eq!(format!("{t:?}"), "RefreshToken(<redacted>)");
        assert_eq!(t.expose(), "rt-secret");
    }
}
