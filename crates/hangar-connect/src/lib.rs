//! Providers as data, and what hangar may conclude from a provider's credential files.
//!
//! Owns:
//! - the provider schema ([`ProviderSpec`]): one TOML file per CLI (`providers/*.toml` in the
//!   repository) saying how its login runs per flow, which files it writes, how its status
//!   command answers and how its tokens are refreshed. Adding a provider is adding a file:
//!   nothing in Rust names `claude_code`, `codex` or `gemini_cli`;
//! - loading and validating those files ([`load_dir`] -> [`ProviderRegistry`]);
//! - [`credential`]: checking captured credential files against a spec and summarising them
//!   (expiry, refresh token present, account) without ever exposing a token.
//!
//! **Architecture Invariant:** no I/O except reading the provider files in [`load_dir`]; no
//! clock, no network, no processes. Running logins, capturing files, sealing them and
//! refreshing tokens happen in the edge crates, which use these specs as data. Token values
//! never appear in an error message or a `Debug` output of this crate.

pub mod credential;
pub mod refresh;
mod registry;
mod spec;

pub use registry::{builtin, load_dir, load_str, ProviderError, ProviderRegistry, BUILTIN};
pub use spec::{
    CredentialFileSpec, ExpiryFormat, ExpirySpec, ExtraFileSpec, FileFormat, FlowInput, FlowSpec,
    Flows, GrantFormat, IdTokenSpec, Pattern, ProviderSpec, RefreshSpec, StatusSpec,
};
