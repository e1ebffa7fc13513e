//! Errors of the connect service.

use hangar_core::{ConnectFlow, ConnectState};

/// What can go wrong with a connect operation.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No such session for this user (another user's session is also "not found").
    #[error("connect session not found")]
    NotFound,
    /// No provider by that name is configured.
    #[error("unknown provider {provider:?}")]
    UnknownProvider {
        /// The name asked for.
        provider: String,
    },
    /// The provider does not offer that flow (or hangar cannot run it yet).
    #[error("provider {provider} does not offer the {flow} flow")]
    UnsupportedFlow {
        /// The provider.
        provider: String,
        /// The flow asked for.
        flow: ConnectFlow,
    },
    /// The session is not in a state that allows this.
    #[error("connect session is {state}; cannot {action}")]
    WrongState {
        /// Its state.
        state: ConnectState,
        /// What was asked.
        action: &'static str,
    },
    /// No credential for that provider.
    #[error("no credential for {provider}")]
    NoCredential {
        /// The provider.
        provider: String,
    },
    /// A request field is malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("store")]
    Store(#[from] hangar_store::StoreError),
    /// The vault failed.
    #[error("vault")]
    Vault(#[from] crate::credentials::CredentialVaultError),
}
