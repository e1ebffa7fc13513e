//! OpenID Connect id_token claims (OpenID Connect Core 1.0 sections 2 and 5.1).

use serde::{Deserialize, Serialize};

/// The claims of an id_token hangar signs. Times are seconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// Issuer: hangar's issuer URL.
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Audience: the client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the person authenticated.
    pub auth_time: i64,
    /// The nonce of the authorization request, if it had one (section 3.1.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The person's name (scope `profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The person's login name (scope `profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The person's email (scope `email`, when hangar knows one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_leave_out_what_is_unknown() {
        let claims = IdTokenClaims {
            iss: "https://hangar.test".into(),
            sub: "u1".into(),
            aud: "app".into(),
            exp: 3600,
            iat: 0,
            auth_time: 0,
            nonce: Some("n".into()),
            name: None,
            preferred_username: None,
            email: None,
        };
        let json = serde_json::to_string(&claims).expect("json");
        assert_eq!(
            json,
            r#"{"iss":"https://hangar.test","sub":"u1","aud":"app","exp":3600,"iat":0,"auth_time":0,"nonce":"n"}"#
        );
    }
}
