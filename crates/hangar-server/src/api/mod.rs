//! The HTTP API: `/api/v1/...` JSON routes, their OpenAPI document (generated from the
//! handlers with utoipa, served at `/api/v1/openapi.json`), `/healthz`, `/readyz`, the live
//! stream (`/api/v1/stream`, server-sent events) and `/metrics` (Prometheus).
//!
//! Handlers extract, call one service operation, and map errors with `?` into
//! [`crate::error::ApiError`] (problem+json). Only this module knows the wire format: domain
//! types are converted to DTOs in [`dto`].

pub mod accounts;
pub mod auth;
pub mod connect;
pub mod dto;
pub mod events;
pub mod health;
pub mod json;
pub mod live;
pub mod metrics;
pub mod nodes;
pub mod oauth;
pub mod oauth_clients;
pub mod oauth_pages;
pub mod ports;
pub mod pty;
pub mod sandboxes;

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::Accounts;
use crate::sandboxes::SandboxService;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Sandboxes.
    pub sandboxes: Arc<SandboxService>,
    /// Users, tokens, authentication.
    pub accounts: Arc<Accounts>,
    /// Connect sessions and credentials.
    pub connect: Arc<crate::connect::ConnectService>,
    /// Sign-in with GitHub / OpenID Connect and browser sessions.
    pub signin: Arc<crate::signin::SigninService>,
    /// The OAuth authorization server.
    pub oauth: Arc<crate::oauth::OAuthService>,
    /// Node health, heartbeats and sample history.
    pub metrics: Arc<crate::metrics::MetricsService>,
    /// The store, for readiness checks.
    pub store: hangar_store::Store,
    /// The live bus behind `/api/v1/stream` (node heartbeats publish samples here).
    pub live: crate::live::LiveBus,
    /// The event log behind `/api/v1/events`.
    pub events: Arc<crate::events::EventService>,
    /// The Prometheus metrics behind `/metrics`.
    pub telemetry: Arc<crate::telemetry::Metrics>,
    /// Who may read `/metrics`.
    pub telemetry_config: crate::telemetry::MetricsConfig,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hangar",
        description = "Sandboxes for AI coding CLIs. Errors are RFC 9457 problem+json.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal access token (hgr_pat_...) or an OAuth access token \
                         (hgr_at_...) issued by hangar's authorization server. Browsers may \
                         instead send the hangar_session cookie made by signing in at /login; \
                         unsafe methods then need a same-origin Origin header.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The routes and the OpenAPI document describing exactly those routes.
pub fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sandboxes::list, sandboxes::create))
        .routes(routes!(sandboxes::get, sandboxes::destroy))
        .routes(routes!(sandboxes::exec))
        .routes(routes!(sandboxes::stop))
        .routes(routes!(sandboxes::start))
        .routes(routes!(pty::pty))
        .routes(routes!(ports::port_ws))
        .routes(routes!(sandboxes::list_images))
        .routes(routes!(connect::list, connect::start))
        .routes(routes!(connect::get, connect::cancel))
        .routes(routes!(connect::submit_code))
        .routes(routes!(connect::vnc))
        .routes(routes!(connect::credentials))
        .routes(routes!(connect::remove_credential))
        .routes(routes!(connect::providers))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::signin_providers))
        .routes(routes!(accounts::account))
        .routes(routes!(accounts::list_users, accounts::create_user))
        .routes(routes!(accounts::list_tokens, accounts::create_token))
        .routes(routes!(accounts::revoke_token))
        .routes(routes!(
            oauth_clients::list_clients,
            oauth_clients::create_client
        ))
        .routes(routes!(oauth_clients::delete_client))
        .routes(routes!(oauth_clients::list_apps))
        .routes(routes!(oauth_clients::revoke_app))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::sandboxes))
        .routes(routes!(nodes::node_metrics))
        .routes(routes!(nodes::heartbeat))
        .routes(routes!(nodes::sandbox_metrics))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(events::list))
        .routes(routes!(live::stream))
        .split_for_parts()
}

/// The OpenAPI document (also served at `/api/v1/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_parts().1
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_parts();
    let doc = Arc::new(doc);
    let signin = crate::signin::routes::routes(state.signin.config().rate_limit);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = Arc::clone(&doc);
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .merge(crate::web::routes())
    .merge(signin)
    .merge(oauth::routes())
    .merge(oauth_pages::routes())
    .fallback(|| async { crate::error::ApiError::not_found("no such route") })
    .method_not_allowed_fallback(|| async {
        crate::error::ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    })
    .layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state.telemetry),
        crate::telemetry::track_http,
    ))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .with_state(state)
}
