//! The authorization request (RFC 6749 section 4.1.1, RFC 7636 section 4.3) and its answers
//! (section 4.1.2, RFC 9207).
//!
//! [`validate`] splits failures the way RFC 6749 section 4.1.2.1 and RFC 9700 section 4.11
//! demand: a missing or unknown client, or a redirect URI that is missing (with several
//! registered), malformed or not registered exactly, is [`AuthorizeError::Page`]: shown on
//! hangar's own page, never redirected (no open redirect). Every other problem is
//! [`AuthorizeError::Redirect`]: sent back to the client's registered redirect URI with
//! `error`, `error_description`, `state` and `iss`.

use crate::client::{ClientId, ClientType, GrantType, OAuthClient};
use crate::error::{ErrorCode, OAuthError};
use crate::pkce::CodeChallenge;
use crate::scope::ScopeSet;

/// Longest `state` accepted, in bytes.
pub const MAX_STATE_LEN: usize = 1024;
/// Longest `nonce` accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 512;

/// The parameters of an authorization request as received (query or form), unchecked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// `response_type`.
    pub response_type: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `nonce` (OpenID Connect Core section 3.1.2.1).
    pub nonce: Option<String>,
    /// Names of parameters that appeared more than once (RFC 6749 section 3.1: "MUST NOT be
    /// included more than once").
    pub duplicated: Vec<String>,
}

impl AuthorizationRequest {
    /// Collects the known parameters from decoded `(name, value)` pairs, noting repeats.
    /// Unknown parameters are ignored (RFC 6749 section 3.1). Empty values count as absent.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut req = Self::default();
        for (name, value) in pairs {
            let slot = match name {
                "response_type" => &mut req.response_type,
                "client_id" => &mut req.client_id,
                "redirect_uri" => &mut req.redirect_uri,
                "scope" => &mut req.scope,
                "state" => &mut req.state,
                "code_challenge" => &mut req.code_challenge,
                "code_challenge_method" => &mut req.code_challenge_method,
                "nonce" => &mut req.nonce,
                _ => continue,
            };
            if slot.is_some() {
                if !req.duplicated.iter().any(|d| d == name) {
                    req.duplicated.push(name.to_owned());
                }
                continue;
            }
            if !value.is_empty() {
                *slot = Some(value.to_owned());
            }
        }
        req
    }
}

/// A checked authorization request, ready for the consent page and for `approve`/`deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedAuthorization {
    /// The client.
    pub client_id: ClientId,
    /// The client's display name (for the consent page).
    pub client_name: String,
    /// Where to send the answer: a registered redirect URI, exactly.
    pub redirect_uri: String,
    /// Whether the request named the redirect URI (then the token request must repeat it,
    /// RFC 6749 section 4.1.3).
    pub redirect_uri_given: bool,
    /// The scopes asked for (within the client's).
    pub scopes: ScopeSet,
    /// `state`, echoed in the answer.
    pub state: Option<String>,
    /// The PKCE challenge (always for public clients).
    pub code_challenge: Option<CodeChallenge>,
    /// The OpenID Connect nonce, put in the id_token.
    pub nonce: Option<String>,
}

/// Why an authorization request fails, and where the failure is shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// Shown on hangar's own page, never redirected: the client or the redirect URI cannot
    /// be trusted.
    #[error("{0}")]
    Page(OAuthError),
    /// Redirected to the client (RFC 6749 section 4.1.2.1).
    #[error("{error}")]
    Redirect {
        /// The registered redirect URI.
        redirect_uri: String,
        /// The error.
        error: OAuthError,
        /// The request's `state`, echoed.
        state: Option<String>,
    },
}

impl AuthorizeError {
    /// The error itself.
    pub fn error(&self) -> &OAuthError {
        match self {
            AuthorizeError::Page(e) => e,
            AuthorizeError::Redirect { error, .. } => error,
        }
    }

    /// For [`AuthorizeError::Redirect`]: the URL to send the browser to, with `error`,
    /// `error_description`, `state` and `iss` (RFC 9207) added to the redirect URI's query.
    pub fn redirect_url(&self, issuer: &str) -> Option<String> {
        match self {
            AuthorizeError::Page(_) => None,
            AuthorizeError::Redirect {
                redirect_uri,
                error,
                state,
            } => Some(error_redirect(
                redirect_uri,
                error,
                state.as_deref(),
                issuer,
            )),
        }
    }
}

/// Checks an authorization request against `client` (`None` when `client_id` names no
/// client). See the module documentation for which failures are redirected.
pub fn validate(
    request: &AuthorizationRequest,
    client: Option<&OAuthClient>,
) -> Result<ValidatedAuthorization, AuthorizeError> {
    let page = |why: &'static str| AuthorizeError::Page(OAuthError::invalid_request(why));
    if request.duplicated.iter().any(|d| d == "client_id") {
        return Err(page("client_id is repeated"));
    }
    let Some(client_id) = request.client_id.as_deref() else {
        return Err(page("client_id is missing"));
    };
    let client = match client {
        Some(c) if c.id.as_str() == client_id => c,
        _ => {
            return Err(AuthorizeError::Page(OAuthError::new(
                ErrorCode::InvalidClient,
                "unknown client",
            )))
        }
    };
    if request.duplicated.iter().any(|d| d == "redirect_uri") {
        return Err(page("redirect_uri is repeated"));
    }
    let redirect_uri = match request.redirect_uri.as_deref() {
        Some(uri) if client.has_redirect_uri(uri) => uri.to_owned(),
        Some(_) => {
            return Err(page(
                "redirect_uri does not match a registered redirect URI exactly",
            ))
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => return Err(page("redirect_uri is missing")),
        },
    };
    let state = request.state.clone();
    let redirect = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        state: state.clone(),
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        // Echoing an oversized state would only carry the attacker's payload back.
        return Err(AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error: OAuthError::invalid_request("state is too long"),
            state: None,
        });
    }
    if let Some(name) = request.duplicated.first() {
        return Err(redirect(OAuthError::invalid_request(format!(
            "{} is repeated",
            match name.as_str() {
                "response_type" => "response_type",
                "scope" => "scope",
                "state" => "state",
                "code_challenge" => "code_challenge",
                "code_challenge_method" => "code_challenge_method",
                _ => "a parameter",
            }
        ))));
    }
    match request.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(redirect(OAuthError::invalid_request(
                "response_type is missing",
            )))
        }
        Some(_) => {
            return Err(redirect(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )))
        }
    }
    client
        .check_grant_type(GrantType::AuthorizationCode)
        .map_err(redirect)?;
    let requested = request
        .scope
        .as_deref()
        .map(ScopeSet::parse)
        .transpose()
        .map_err(redirect)?;
    let scopes = client
        .allowed_scopes(requested.as_ref())
        .map_err(redirect)?;
    let code_challenge = match (
        request.code_challenge.as_deref(),
        request.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), method) => Some(CodeChallenge::new(challenge, method).map_err(redirect)?),
        (None, Some(_)) => {
            return Err(redirect(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            )))
        }
        (None, None) if client.client_type == ClientType::Public => {
            return Err(redirect(OAuthError::invalid_request(
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            )))
        }
        (None, None) => None,
    };
    if request
        .nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_LEN)
    {
        return Err(redirect(OAuthError::invalid_request("nonce is too long")));
    }
    Ok(ValidatedAuthorization {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri,
        redirect_uri_given: request.redirect_uri.is_some(),
        scopes,
        state,
        code_challenge,
        nonce: request.nonce.clone(),
    })
}

/// The success redirect (RFC 6749 section 4.1.2, RFC 9207): `code`, `state` (if the request
/// had one) and `iss`, added to the redirect URI's own query.
pub fn code_redirect(validated: &ValidatedAuthorization, code: &str, issuer: &str) -> String {
    let mut params = vec![("code", code)];
    if let Some(state) = validated.state.as_deref() {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    with_query(&validated.redirect_uri, &params)
}

/// An error redirect (RFC 6749 section 4.1.2.1, RFC 9207).
pub fn error_redirect(
    redirect_uri: &str,
    error: &OAuthError,
    state: Option<&str>,
    issuer: &str,
) -> String {
    let mut params = vec![
        ("error", error.code.as_str()),
        ("error_description", error.description.as_ref()),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    with_query(redirect_uri, &params)
}

/// `uri` with `params` appended to its query (form-encoded), keeping the query it has
/// (RFC 6749 section 3.1.2 says it MUST be retained).
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in params {
                    query.append_pair(k, v);
                }
            }
            url.to_string()
        }
        // Registered URIs always parse (checked at registration); fall back to plain text.
        Err(_) => {
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            let sep = if uri.contains('?') { '&' } else { '?' };
            format!("{uri}{sep}{encoded}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::NewClient;
    use hangar_core::Timestamp;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(client_type: ClientType, uris: &[&str]) -> OAuthClient {
        NewClient {
            name: "App".into(),
            client_type,
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            scopes: ScopeSet::parse("sandboxes:read openid").expect("scopes"),
            grant_types: vec![],
        }
        .register(Timestamp::from_unix_ms(0), &mut StdRng::seed_from_u64(7))
        .expect("client")
        .0
    }

    fn request(client: &OAuthClient, extra: &[(&str, &str)]) -> AuthorizationRequest {
        let id = client.id.to_string();
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", id.as_str()),
            ("redirect_uri", "https://app.test/cb"),
            ("scope", "sandboxes:read"),
            ("state", "xyz"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            if !v.is_empty() {
                pairs.push((k, v));
            }
        }
        AuthorizationRequest::from_pairs(pairs)
    }

    #[test]
    fn a_good_request_validates_and_redirects_with_code_state_and_iss() {
        let c = client(ClientType::Public, &["https://app.test/cb?tenant=1"]);
        let req = request(&c, &[("redirect_uri", "https://app.test/cb?tenant=1")]);
        let v = validate(&req, Some(&c)).expect("valid");
        assert_eq!(v.state.as_deref(), Some("xyz"));
        let url = code_redirect(&v, "hgr_ac_abc", "https://hangar.test");
        assert_eq!(
            url,
            "https://app.test/cb?tenant=1&code=hgr_ac_abc&state=xyz&iss=https%3A%2F%2Fhangar.test"
        );
    }

    #[test]
    fn client_and_redirect_problems_stay_on_our_page() {
        let c = client(
            ClientType::Public,
            &["https://app.test/cb", "https://app.test/b"],
        );
        let other = client(ClientType::Public, &["https://evil.test/cb"]);
        let cases = [
            request(&c, &[("client_id", "")]),
            request(&c, &[("redirect_uri", "https://evil.test/cb")]),
            request(&c, &[("redirect_uri", "https://app.test/cb/")]),
            request(&c, &[("redirect_uri", "")]),
        ];
        for req in &cases {
            let err = validate(req, Some(&c)).expect_err("page");
            assert!(matches!(err, AuthorizeError::Page(_)), "{req:?}: {err:?}");
            assert_eq!(err.redirect_url("https://hangar.test"), None);
        }
        assert!(matches!(
            validate(&request(&c, &[]), Some(&other)),
            Err(AuthorizeError::Page(_))
        ));
        assert!(matches!(
            validate(&request(&c, &[]), None),
            Err(AuthorizeError::Page(_))
        ));
        let mut dup = request(&c, &[]);
        dup.duplicated.push("redirect_uri".into());
        assert!(matches!(
            validate(&dup, Some(&c)),
            Err(AuthorizeError::Page(_))
        ));
    }

    #[test]
    fn other_problems_are_redirected_with_state_and_iss() {
        let c = client(ClientType::Public, &["https://app.test/cb"]);
        let cases: [(&[(&str, &str)], ErrorCode); 7] = [
            (
                &[("response_type", "token")],
                ErrorCode::UnsupportedResponseType,
            ),
            (&[("response_type", "")], ErrorCode::InvalidRequest),
            (&[("scope", "admin")], ErrorCode::InvalidScope),
            (&[("scope", "nonsense")], ErrorCode::InvalidScope),
            (
                &[("code_challenge_method", "plain")],
                ErrorCode::InvalidRequest,
            ),
            (&[("code_challenge", "")], ErrorCode::InvalidRequest),
            (&[("code_challenge_method", "")], ErrorCode::InvalidRequest),
        ];
        for (extra, code) in cases {
            let err = validate(&request(&c, extra), Some(&c)).expect_err("redirect");
            assert_eq!(err.error().code, code, "{extra:?}");
            let url = err.redirect_url("https://hangar.test").expect("redirected");
            assert!(url.starts_with("https://app.test/cb?error="), "{url}");
            assert!(
                url.contains("&state=xyz&iss=https%3A%2F%2Fhangar.test"),
                "{url}"
            );
        }
    }

    #[test]
    fn confidential_clients_may_skip_pkce_and_a_single_uri_may_be_omitted() {
        let c = client(ClientType::Confidential, &["https://app.test/cb"]);
        let req = request(
            &c,
            &[
                ("code_challenge", ""),
                ("code_challenge_method", ""),
                ("redirect_uri", ""),
            ],
        );
        let v = validate(&req, Some(&c)).expect("valid");
        assert_eq!(v.code_challenge, None);
        assert_eq!(v.redirect_uri, "https://app.test/cb");
        assert!(!v.redirect_uri_given);
    }

    #[test]
    fn repeated_parameters_are_noted() {
        let req = AuthorizationRequest::from_pairs([("state", "a"), ("state", "b"), ("x", "1")]);
        assert_eq!(req.state.as_deref(), Some("a"));
        assert_eq!(req.duplicated, vec!["state".to_owned()]);
    }
}
