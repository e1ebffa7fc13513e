//! The one error type of the store.

use hangar_core::{
    ConnectSessionId, ConnectState, InvalidConnectTransition, InvalidTransition, ProviderId,
    SandboxId, SandboxState,
};

/// Why a store operation failed.
///
/// Messages name the table or field involved, never a stored value that could be a secret
/// (token hashes, database URLs with passwords).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist (or, for owner-scoped reads, is not the caller's).
    #[error("record not found")]
    NotFound,

    /// A compare-and-set lost: the sandbox was no longer in `expected` when the write landed.
    #[error("sandbox {id} is no longer {expected}")]
    Conflict {
        /// The sandbox written.
        id: SandboxId,
        /// The state the caller expected it to be in.
        expected: SandboxState,
        /// The state found when the write was refused. Always filled today; `None` is kept
        /// for a record that could not be re-read.
        actual: Option<SandboxState>,
    },

    /// The lifecycle does not allow the asked-for change (checked before touching the database).
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),

    /// A compare-and-set on a connect session lost: it was no longer in `expected` when the
    /// write landed (e.g. the expiry sweeper moved it first). The connect-session twin of
    /// [`StoreError::Conflict`], kept apart so each carries its own typed id and states.
    #[error("connect session {id} is no longer {expected}")]
    ConnectConflict {
        /// The session written.
        id: ConnectSessionId,
        /// The state the caller expected it to be in.
        expected: ConnectState,
        /// The state found when the write was refused (`None` only if the record could not
        /// be re-read).
        actual: Option<ConnectState>,
    },

    /// The connect lifecycle does not allow the asked-for change (checked with
    /// [`ConnectState::transition`] before touching the database). Every change out of
    /// `completed` ends here: a completed session is final.
    #[error(transparent)]
    InvalidConnectTransition(#[from] InvalidConnectTransition),

    /// A compare-and-set on a credential's `record_version` lost: the stored record is not at
    /// the version the caller sealed against (`expected: None` means "no credential yet", and
    /// `actual: None` that there is none now).
    #[error("credential for {provider} is not at the expected record version")]
    CredentialConflict {
        /// The provider of the credential written (the owner is the caller's).
        provider: ProviderId,
        /// The record version the caller expected (`None`: no row).
        expected: Option<u64>,
        /// The record version found when the write was refused (`None`: no row).
        actual: Option<u64>,
    },

    /// A new credential record version does not follow the previous one as the operation
    /// requires (a fresh record starts at 1 or more; a reseal is previous + 1; a rewrap keeps
    /// it). Checked before touching the database.
    #[error("record version {given} cannot follow {previous:?}")]
    InvalidRecordVersion {
        /// The record version the write was compared against (`None`: no row).
        previous: Option<u64>,
        /// The record version given.
        given: u64,
    },

    /// A compare-and-set on an OAuth record lost: the code was redeemed, the refresh token
    /// rotated, the device code moved, or the grant revoked, by a concurrent call (or it
    /// expired). Nothing was written.
    #[error("{what} changed meanwhile")]
    Stale {
        /// What was written, e.g. `oauth code`.
        what: &'static str,
    },

    /// The device authorization lifecycle does not allow the asked-for change.
    #[error(transparent)]
    InvalidDeviceTransition(#[from] hangar_oauth::device::InvalidDeviceTransition),

    /// A unique constraint refused the write (a user name already taken, an id reused).
    #[error("{what} already exists")]
    Duplicate {
        /// What was duplicated, e.g. `user`.
        what: &'static str,
    },

    /// A foreign key refused the write: a referenced record (owner, node, user) does not exist.
    #[error("{what} refers to a record that does not exist")]
    MissingReference {
        /// What was being written, e.g. `sandbox`.
        what: &'static str,
    },

    /// A value does not fit the column that stores it (e.g. a `u64` above `i64::MAX`).
    #[error("{what} is out of range for the store")]
    OutOfRange {
        /// The field, e.g. `readiness_timeout_ms`.
        what: &'static str,
    },

    /// The database URL's scheme is not `sqlite:`, `postgres:` or `postgresql:`.
    #[error("unsupported database URL scheme {scheme:?} (expected sqlite: or postgres:)")]
    UnsupportedUrl {
        /// The scheme found (the part before the first `:`), never the rest of the URL.
        scheme: String,
    },

    /// A stored value does not parse (a row written by something else, or a downgrade).
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// The column, e.g. `sandboxes.state`.
        what: &'static str,
        /// Why it does not parse.
        reason: String,
    },

    /// A bounded wait ran out (connecting, migrating).
    #[error("timed out {what}")]
    Timeout {
        /// What was being waited for, e.g. `running migrations`.
        what: &'static str,
    },

    /// The database driver failed (connection, pool timeout, SQL error).
    #[error("database error")]
    Database(#[source] sqlx::Error),

    /// Applying the embedded migrations failed.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a driver error from a write of `what`: unique violations become
    /// [`StoreError::Duplicate`], foreign key violations [`StoreError::MissingReference`].
    pub(crate) fn from_write(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |err| match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate { what },
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::MissingReference { what }
            }
            _ => StoreError::Database(err),
        }
    }

    /// Runs `work` within `timeout`. Errors: [`StoreError::Timeout`] naming `what` if it
    /// takes longer (the work is dropped), or the work's own error.
    pub(crate) async fn within<T, E>(
        timeout: std::time::Duration,
        what: &'static str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError>
    where
        E: Into<StoreError>,
    {
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| StoreError::Timeout { what })?
            .map_err(Into::into)
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(err)
    }
}
