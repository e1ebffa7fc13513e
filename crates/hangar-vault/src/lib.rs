//! The vault: envelope encryption of provider credentials at rest (DESIGN rule 6).
//!
//! Owns:
//! - sealing: a fresh random 256-bit data key per record encrypts the credential with
//!   AES-256-GCM under a random 96-bit nonce, with [`AssociatedData`] (user, provider, record
//!   version) bound into the tag, so a ciphertext moved to another row fails to open;
//! - wrapping: the data key is itself AES-256-GCM-encrypted by a versioned key-encryption key
//!   through the [`KeyEncryptionKeys`] trait (the seam for an external KMS);
//! - the local [`KeyRing`], its text format, its key file (created 0600, refused if group or
//!   others can access it, replaced atomically) and `HANGAR_VAULT_KEYS`;
//! - rotation: [`KeyRing::rotate`] adds a version, [`Vault::rewrap`] moves a record's data key
//!   to it without touching the payload ciphertext;
//! - the [`SealedRecord`] byte format for one BLOB column.
//!
//! Nonces follow NIST SP 800-38D: 96-bit random nonces (section 8.2.2), at most 2^32
//! random-nonce encryptions per key (section 8.3). A data key encrypts exactly one payload, so
//! the limit never binds there; it applies to each key-encryption key (one wrap per seal or
//! re-wrap), which is why the ring rotates.
//!
//! **Architecture Invariant:** no clock, no global RNG (callers pass a [`SecureRng`]), no
//! database, no logging; the only I/O is the key file. Key material lives in zeroing buffers
//! and never appears in `Debug`, `Display`, errors or panics. One opaque
//! [`VaultError::Decrypt`] covers every authentication failure.

#![warn(missing_docs)]

mod error;
mod key;
mod keyring;
mod record;
mod vault;

pub use error::VaultError;
pub use key::{DataKey, KeyEncryptionKeys, SecureRng, WrappedKey, KEY_LEN, NONCE_LEN, TAG_LEN};
pub use keyring::KeyRing;
pub use record::{AssociatedData, SealedRecord, RECORD_FORMAT_V1, RECORD_MAGIC};
pub use vault::Vault;
