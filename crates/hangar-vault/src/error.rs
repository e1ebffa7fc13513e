//! The vault's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the vault.
///
/// Context lives in fields (versions, paths, lengths, fixed reasons). No variant ever carries
/// key material, plaintext or text read from a key file, so an error can be logged as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The record names a key-encryption key version this key ring does not hold (never had it,
    /// or it was retired before the record was re-wrapped).
    #[error("key-encryption key version {version} is not in the key ring")]
    UnknownKeyVersion {
        /// The version the record or request named.
        version: u32,
    },

    /// AES-GCM authentication failed while unwrapping the data key or opening the payload.
    ///
    /// Deliberately one opaque variant: the tag check cannot tell a tampered, truncated or
    /// moved ciphertext (other [`AssociatedData`](crate::AssociatedData)) from a wrong key,
    /// and it must not try to.
    #[error("decryption failed for a record wrapped under key version {kek_version}")]
    Decrypt {
        /// The key-encryption key version the record claimed.
        kek_version: u32,
    },

    /// Input that does not follow the documented format: a sealed record's bytes, a key ring's
    /// text, a data key of the wrong length. The reason is a fixed description (with line
    /// numbers or lengths at most), never an echo of the input.
    #[error("malformed input: {reason}")]
    Malformed {
        /// What was wrong, without quoting the input.
        reason: String,
    },

    /// The plaintext is longer than AES-GCM allows under one key (2^36 - 32 bytes,
    /// NIST SP 800-38D section 5.2.1.1).
    #[error("plaintext of {len_bytes} bytes is too long for AES-GCM")]
    PlaintextTooLong {
        /// Length of the rejected plaintext in bytes.
        len_bytes: usize,
    },

    /// The current key-encryption key version cannot be retired: new records are wrapped
    /// under it.
    #[error("key version {version} is current and cannot be retired")]
    RetireCurrent {
        /// The current version.
        version: u32,
    },

    /// Reading, creating or replacing the key file failed.
    #[error("key file I/O failed: {path}")]
    KeyFile {
        /// The key file (or its temporary sibling) being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The key file is accessible to group or others; it must be mode 0600 (or stricter).
    #[error("key file {path} has mode {mode:o}; it must not be accessible by group or others (chmod 600)")]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },

    /// An external key management service failed to wrap or unwrap a data key. Implementations
    /// of [`KeyEncryptionKeys`](crate::KeyEncryptionKeys) must not put key material in the
    /// source error.
    #[error("key management service failed")]
    Kms(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl VaultError {
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        VaultError::Malformed {
            reason: reason.into(),
        }
    }
}
