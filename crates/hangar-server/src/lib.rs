//! The control plane: the axum API, authentication, the sandbox service and the reconciler.
//!
//! Owns: HTTP routes and their OpenAPI document ([`api`]), the problem+json error mapping
//! ([`error`]), users and tokens ([`accounts`]), the sandbox lifecycle orchestration and the
//! reconciler ([`sandboxes`]), sign-in with GitHub / OpenID Connect and browser sessions
//! ([`signin`]), the OAuth authorization server ([`oauth`]), node health with the sample
//! history ([`metrics`]), the live bus behind the server-sent event stream ([`live`]), the
//! operational event log ([`events`]) and the Prometheus metrics ([`telemetry`]).
//!
//! **Architecture Invariant:** handlers never touch SQL, crypto or drivers: they call one
//! service operation. Every sandbox state change goes through the store's compare-and-set.
//! Secrets never reach a log line.

pub mod accounts;
pub mod api;
pub mod clock;
pub mod connect;
pub mod credentials;
pub mod error;
pub mod events;
pub mod live;
pub mod local;
pub mod metrics;
pub mod oauth;
pub mod sandboxes;
pub mod signin;
pub mod telemetry;
pub mod web;

pub use api::{router, AppState};
