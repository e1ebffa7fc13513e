//! The one error type of the store.

use hangar_core::{InvalidTransition, SandboxId, SandboxState};

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
