//! Refreshing a provider's tokens on hangar's side (hangar is the single owner of the refresh
//! token; see ARCHITECTURE.md). Pure: builds the RFC 6749 section 6 refresh request from the
//! provider's data and applies the section 5.1 token response to the credential files. The
//! HTTP call is the caller's.
//!
//! Sandboxes never receive the real refresh token: [`with_placeholder_refresh_token`] puts
//! [`PLACEHOLDER_REFRESH_TOKEN`] in the copies delivered to them, so a CLI that tried to
//! refresh on its own could not rotate (and so invalidate) the one hangar holds. hangar
//! refreshes well before the CLIs' own refresh windows open.

use std::collections::BTreeMap;
use std::fmt;

use hangar_core::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::credential::{parse_json, CredentialError};
use crate::spec::{ExpiryFormat, GrantFormat, ProviderSpec};

/// What delivered copies carry instead of the refresh token.
pub const PLACEHOLDER_REFRESH_TOKEN: &str = "hangar-managed-refresh-token";

/// The body of a refresh request.
#[derive(Clone, PartialEq, Eq)]
pub enum RefreshBody {
    /// `application/x-www-form-urlencoded` pairs.
    Form(Vec<(String, String)>),
    /// `application/json`.
    Json(Value),
}

impl fmt::Debug for RefreshBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Form(_) => "RefreshBody::Form(<redacted>)",
            Self::Json(_) => "RefreshBody::Json(<redacted>)",
        })
    }
}

/// A refresh request: POST `body` to `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRequest {
    /// The token endpoint.
    pub url: String,
    /// The body.
    pub body: RefreshBody,
}

/// The `refresh_token` grant (RFC 6749 section 6) for the provider, or `None` if it declares
/// no refresh. `token_url` replaces the provider's endpoint (its `endpoint_override_env`).
pub fn request(
    spec: &ProviderSpec,
    refresh_token: &str,
    token_url: Option<&str>,
) -> Option<RefreshRequest> {
    let refresh = spec.refresh.as_ref()?;
    let mut pairs = vec![
        ("grant_type".to_owned(), "refresh_token".to_owned()),
        ("refresh_token".to_owned(), refresh_token.to_owned()),
        ("client_id".to_owned(), refresh.client_id.clone()),
    ];
    if let Some(secret) = &refresh.client_secret {
        pairs.push(("client_secret".to_owned(), secret.clone()));
    }
    if let Some(scope) = &refresh.scope {
        pairs.push(("scope".to_owned(), scope.clone()));
    }
    let body = match refresh.grant_format {
        GrantFormat::Form => RefreshBody::Form(pairs),
        GrantFormat::Json => RefreshBody::Json(Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )),
    };
    Some(RefreshRequest {
        url: token_url.unwrap_or(&refresh.token_url).to_owned(),
        body,
    })
}

/// A successful token response (RFC 6749 section 5.1; `id_token` from OpenID Connect).
/// `Debug` shows which fields are present, never their values.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The new access token.
    pub access_token: String,
    /// A new refresh token, when the server rotates them.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// A new id token.
    #[serde(default)]
    pub id_token: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_in", &self.expires_in)
            .field("id_token", &self.id_token.is_some())
            .finish()
    }
}

fn set(doc: &mut Value, path: &str, pointer: &str, value: Value) -> Result<(), CredentialError> {
    let slot = doc
        .pointer_mut(pointer)
        .ok_or_else(|| CredentialError::MissingField {
            path: path.to_owned(),
            pointer: pointer.to_owned(),
        })?;
    *slot = value;
    Ok(())
}

fn rewrite(
    files: &BTreeMap<String, Vec<u8>>,
    path: &str,
    edit: impl FnOnce(&mut Value) -> Result<(), CredentialError>,
) -> Result<Vec<u8>, CredentialError> {
    let bytes = files
        .get(path)
        .ok_or_else(|| CredentialError::MissingFile {
            path: path.to_owned(),
        })?;
    let mut doc = parse_json(path, bytes)?;
    edit(&mut doc)?;
    serde_json::to_vec(&doc).map_err(|_| CredentialError::NotObject {
        path: path.to_owned(),
    })
}

/// The credential files after a refresh: the new access token (and refresh token, id token
/// and expiry, where the response has them and the provider's files hold them) written at the
/// provider's JSON pointers. Other fields are kept as they were.
pub fn apply(
    spec: &ProviderSpec,
    files: &BTreeMap<String, Vec<u8>>,
    response: &TokenResponse,
    now: Timestamp,
) -> Result<BTreeMap<String, Vec<u8>>, CredentialError> {
    let mut out = files.clone();
    for file in &spec.files {
        if !files.contains_key(&file.path) {
            continue;
        }
        let touches = file.access_token.is_some()
            || (file.refresh_token.is_some() && response.refresh_token.is_some())
            || (file.id_token.is_some() && response.id_token.is_some());
        if !touches {
            continue;
        }
        let bytes = rewrite(files, &file.path, |doc| {
            if let Some(p) = &file.access_token {
                set(
                    doc,
                    &file.path,
                    p,
                    Value::String(response.access_token.clone()),
                )?;
            }
            if let (Some(p), Some(rt)) = (&file.refresh_token, &response.refresh_token) {
                set(doc, &file.path, p, Value::String(rt.clone()))?;
            }
            if let (Some(spec), Some(it)) = (&file.id_token, &response.id_token) {
                set(doc, &file.path, &spec.pointer, Value::String(it.clone()))?;
            }
            if let (Some(expiry), Some(secs)) = (&file.expiry, response.expires_in) {
                let at = now.plus_ms(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
                let value = match expiry.format {
                    ExpiryFormat::EpochMs => Some(Value::from(at.unix_ms())),
                    ExpiryFormat::EpochS => Some(Value::from(at.unix_ms() / 1000)),
                    ExpiryFormat::Rfc3339 => Some(Value::String(at.to_rfc3339())),
                    // The expiry lives inside the access token itself.
                    ExpiryFormat::JwtExp => None,
                };
                if let Some(value) = value {
                    set(doc, &file.path, &expiry.pointer, value)?;
                }
            }
            Ok(())
        })?;
        out.insert(file.path.clone(), bytes);
    }
    Ok(out)
}

/// The files with [`PLACEHOLDER_REFRESH_TOKEN`] in place of the refresh token: what
/// sandboxes receive. Files of a provider without refresh are returned unchanged.
pub fn with_placeholder_refresh_token(
    spec: &ProviderSpec,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, CredentialError> {
    let mut out = files.clone();
    if spec.refresh.is_none() {
        return Ok(out);
    }
    for file in &spec.files {
        let (Some(pointer), true) = (&file.refresh_token, files.contains_key(&file.path)) else {
            continue;
        };
        let bytes = rewrite(files, &file.path, |doc| {
            // A login without a refresh token (an API key) has nothing to hide.
            match doc.pointer_mut(pointer) {
                Some(slot) if slot.is_string() => {
                    *slot = Value::String(PLACEHOLDER_REFRESH_TOKEN.to_owned());
                }
                _ => {}
            }
            Ok(())
        })?;
        out.insert(file.path.clone(), bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangar_core::ProviderId;

    fn shipped(id: &str) -> ProviderSpec {
        let registry = crate::builtin().expect("shipped providers load");
        registry
            .get(&ProviderId::new(id).expect("id"))
            .expect("provider")
            .clone()
    }

    fn claude_files() -> BTreeMap<String, Vec<u8>> {
        let doc = serde_json::json!({"claudeAiOauth": {
            "accessToken": "at-old", "refreshToken": "rt-old", "expiresAt": 1000,
            "scopes": ["user:inference"], "subscriptionType": "pro"}});
        BTreeMap::from([(
            ".claude/.credentials.json".to_owned(),
            doc.to_string().into_bytes(),
        )])
    }

    #[test]
    fn claude_refresh_is_json_with_its_client_and_scope() {
        let req = request(&shipped("claude_code"), "rt-old", None).expect("refresh");
        assert_eq!(req.url, "https://platform.claude.com/v1/oauth/token");
        let RefreshBody::Json(body) = req.body else {
            panic!("json body")
        };
        assert_eq!(body["grant_type"], "refresh_token");
        assert_eq!(body["refresh_token"], "rt-old");
        assert_eq!(body["client_id"], "9d1c250a-e61b-44d9-88ed-5944d1962f5e");
        assert!(body["scope"]
            .as_str()
            .is_some_and(|s| s.contains("user:inference")));
        let over = request(&shipped("claude_code"), "x", Some("http://127.0.0.1:9/t")).expect("r");
        assert_eq!(over.url, "http://127.0.0.1:9/t");
    }

    #[test]
    fn gemini_refresh_is_a_form_with_the_installed_app_secret() {
        let req = request(&shipped("gemini_cli"), "rt", None).expect("refresh");
        let RefreshBody::Form(pairs) = req.body else {
            panic!("form body")
        };
        assert!(pairs.iter().any(|(k, _)| k == "client_secret"));
        assert!(!format!("{:?}", RefreshBody::Form(pairs)).contains("rt"));
    }

    #[test]
    fn a_rotating_response_rewrites_tokens_and_expiry() {
        let spec = shipped("claude_code");
        let response = TokenResponse {
            access_token: "at-new".into(),
            refresh_token: Some("rt-new".into()),
            expires_in: Some(3600),
            id_token: None,
        };
        let now = Timestamp::from_unix_ms(1_000_000);
        let out = apply(&spec, &claude_files(), &response, now).expect("apply");
        let doc: Value = serde_json::from_slice(&out[".claude/.credentials.json"]).expect("json");
        assert_eq!(doc["claudeAiOauth"]["accessToken"], "at-new");
        assert_eq!(doc["claudeAiOauth"]["refreshToken"], "rt-new");
        assert_eq!(doc["claudeAiOauth"]["expiresAt"], 1_000_000 + 3_600_000);
        assert_eq!(
            doc["claudeAiOauth"]["subscriptionType"], "pro",
            "other fields kept"
        );
        // A response without a new refresh token keeps the old one.
        let keep = TokenResponse {
            refresh_token: None,
            ..response
        };
        let out = apply(&spec, &claude_files(), &keep, now).expect("apply");
        let doc: Value = serde_json::from_slice(&out[".claude/.credentials.json"]).expect("json");
        assert_eq!(doc["claudeAiOauth"]["refreshToken"], "rt-old");
    }

    #[test]
    fn files_without_a_refresh_token_are_delivered_as_they_are() {
        let spec = shipped("codex");
        let doc = serde_json::json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-x"});
        let files = BTreeMap::from([(".codex/auth.json".to_owned(), doc.to_string().into_bytes())]);
        let out = with_placeholder_refresh_token(&spec, &files).expect("placeholder");
        let back: Value = serde_json::from_slice(&out[".codex/auth.json"]).expect("json");
        assert_eq!(back, doc);
    }

    #[test]
    fn delivered_copies_carry_a_placeholder() {
        let spec = shipped("claude_code");
        let out = with_placeholder_refresh_token(&spec, &claude_files()).expect("placeholder");
        let text = String::from_utf8_lossy(&out[".claude/.credentials.json"]).into_owned();
        assert!(!text.contains("rt-old"));
        assert!(text.contains(PLACEHOLDER_REFRESH_TOKEN));
        assert!(text.contains("at-old"), "the access token is delivered");
    }
}
