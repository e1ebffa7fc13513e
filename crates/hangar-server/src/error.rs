//! `ApiError`: every API failure as an RFC 9457 `application/problem+json` body.
//!
//! 4xx responses show their message; 5xx responses show a generic detail while the cause is
//! logged (never a secret). The `type` URI names the problem (`urn:hangar:problem:<code>`),
//! and `code` repeats it for scripts.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::connect::ConnectError;
use crate::sandboxes::SandboxError;

/// The problem document (RFC 9457 section 3).
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the problem type: `urn:hangar:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The machine-readable problem code (`not_found`, `conflict`, `invalid_request`, ...).
    pub code: String,
}

/// An API error: status, code and a detail safe to show.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl ApiError {
    /// A 4xx or 5xx error with a code and a detail safe to show.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 500 with a generic detail; `cause` is logged, not shown.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %chain(cause), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: format!("urn:hangar:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
        }
    }
}

/// An error and its sources, joined with `: ` (for logs; never shown to callers).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if self.code == "insufficient_scope" {
            // RFC 6750 section 3.1.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(
                    "Bearer realm=\"hangar\", error=\"insufficient_scope\"",
                ),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"hangar\""),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, "invalid_request", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        // A malformed id cannot name any sandbox: answer as for an unknown one.
        Self::not_found(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        use SandboxError::*;
        match &e {
            NotFound => Self::not_found("sandbox not found"),
            UnknownImage { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_image",
                e.to_string(),
            ),
            Limits(_) | Invalid { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
            WrongState { .. } => Self::new(StatusCode::CONFLICT, "wrong_state", e.to_string()),
            PortClosed { .. } => Self::new(StatusCode::BAD_GATEWAY, "port_closed", e.to_string()),
            CommandNotFound { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "command_not_found",
                e.to_string(),
            ),
            Unreachable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unreachable",
                e.to_string(),
            ),
            Guest(g) => match g {
                hangar_guest::GuestError::Remote { .. } => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "guest_refused",
                    g.to_string(),
                ),
                _ => Self::internal(&e),
            },
            Store(hangar_store::StoreError::Conflict { .. }) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the sandbox changed meanwhile; read it again",
            ),
            Store(_) | Node(_) => Self::internal(&e),
        }
    }
}

impl From<hangar_identity::InsufficientScope> for ApiError {
    fn from(e: hangar_identity::InsufficientScope) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", e.to_string())
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match &e {
            AccountError::InsufficientScope(s) => (*s).into(),
            AccountError::Unauthenticated(_) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            AccountError::Forbidden => Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            AccountError::NotFound => Self::not_found(e.to_string()),
            AccountError::Duplicate { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            AccountError::Invalid { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
            AccountError::Store(_) => Self::internal(&e),
        }
    }
}

impl From<crate::signin::SigninError> for ApiError {
    fn from(e: crate::signin::SigninError) -> Self {
        use crate::signin::SigninError::*;
        match e {
            Accounts(a) => a.into(),
            InvalidToken => Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()),
            UnknownProvider { .. } => Self::not_found(e.to_string()),
            Upstream(_) => Self::new(StatusCode::BAD_GATEWAY, "upstream", e.to_string()),
            Store(_) => Self::internal(&e),
            _ => Self::bad_request(e.to_string()),
        }
    }
}

impl From<crate::oauth::OAuthManageError> for ApiError {
    fn from(e: crate::oauth::OAuthManageError) -> Self {
        use crate::oauth::OAuthManageError::*;
        match e {
            Account(a) => a.into(),
            NotFound => Self::not_found("not found"),
            Invalid(err) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                err.description.into_owned(),
            ),
            Store(s) => Self::internal(&s),
        }
    }
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        use ConnectError::*;
        match &e {
            NotFound => Self::not_found(e.to_string()),
            NoCredential { .. } => Self::not_found(e.to_string()),
            UnknownProvider { .. } | UnsupportedFlow { .. } | Invalid { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.to_string(),
            ),
            WrongState { .. } => Self::new(StatusCode::CONFLICT, "wrong_state", e.to_string()),
            Store(_) | Vault(_) => Self::internal(&e),
        }
    }
}

impl From<crate::metrics::MetricsError> for ApiError {
    fn from(e: crate::metrics::MetricsError) -> Self {
        use crate::metrics::MetricsError::*;
        match e {
            NotFound => Self::not_found("not found"),
            Account(a) => a.into(),
            Invalid { .. } => Self::bad_request(e.to_string()),
            Collect(_) | Store(_) => Self::internal(&e),
        }
    }
}
