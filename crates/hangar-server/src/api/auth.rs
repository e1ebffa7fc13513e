//! The `Caller` extractor: authenticates the request's bearer token.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hangar_identity::Principal;

use super::AppState;
use crate::error::ApiError;

/// The authenticated caller. Rejects with 401 problem+json.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(Caller(state.accounts.authenticate(header).await?))
    }
}
