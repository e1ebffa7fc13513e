//! Data keys, wrapped data keys, the key-encryption seam, and the AES-256-GCM primitive both
//! layers of the envelope use.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::VaultError;

/// Length of every AES-256 key in this crate (data keys and key-encryption keys): 32 bytes.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce: 12 bytes (96 bits), drawn at random per encryption as
/// NIST SP 800-38D section 8.2.2 describes.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM authentication tag: 16 bytes (128 bits, the full tag).
pub const TAG_LEN: usize = 16;

/// A cryptographically secure random source: what `seal`, `wrap` and `rotate` take.
///
/// Blanket-implemented for every `RngCore + CryptoRng` (`rand::rngs::OsRng`, `ThreadRng`,
/// `StdRng`, and `&mut R` of those), so `&mut dyn SecureRng` works as a trait object where
/// `dyn RngCore + CryptoRng` cannot be written.
pub trait SecureRng: RngCore + CryptoRng {}

impl<T: RngCore + CryptoRng + ?Sized> SecureRng for T {}

/// A 256-bit AES-GCM data key (DEK): one per sealed record, never stored unwrapped.
///
/// Held in a heap box so moves copy only a pointer; zeroed on drop. `Debug` is redacted.
pub struct DataKey(Box<Zeroizing<[u8; KEY_LEN]>>);

impl DataKey {
    /// Draws a fresh key from `rng`.
    pub fn generate<R: SecureRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        rng.fill_bytes(&mut key[..]);
        DataKey(key)
    }

    /// Copies a key from `bytes` (for [`KeyEncryptionKeys`] implementations that unwrap
    /// elsewhere, such as a KMS). The caller should zero its own copy.
    ///
    /// # Errors
    /// [`VaultError::Malformed`] unless `bytes` is exactly [`KEY_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() != KEY_LEN {
            return Err(VaultError::malformed(format!(
                "a data key is {KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Box::new(Zeroizing::new([0u8; KEY_LEN]));
        key.copy_from_slice(bytes);
        Ok(DataKey(key))
    }

    /// The raw key bytes, for a [`KeyEncryptionKeys`] implementation to wrap. Never log them.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A data key encrypted under one key-encryption key version.
///
/// `bytes` is opaque to the vault. For [`KeyRing`](crate::KeyRing) it is
/// `nonce (12) ‖ AES-256-GCM ciphertext of the key (32) ‖ tag (16)` = 60 bytes; a KMS puts its
/// own ciphertext blob there.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key-encryption key version that wrapped it (1, 2, ...).
    pub kek_version: u32,
    /// The wrapped key, in the format of the [`KeyEncryptionKeys`] implementation.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_version", &self.kek_version)
            .field("len_bytes", &self.bytes.len())
            .finish()
    }
}

/// Versioned key-encryption keys (KEKs): the seam between the vault and where the KEKs live
/// (the local [`KeyRing`](crate::KeyRing), or an external KMS).
///
/// Implementations must never put key material in errors, logs or `Debug` output.
pub trait KeyEncryptionKeys: Send + Sync {
    /// The version new data keys are wrapped under. Versions start at 1.
    fn current_version(&self) -> u32;

    /// Wraps `dek` under the current version; `rng` supplies any nonce.
    ///
    /// # Errors
    /// [`VaultError::Kms`] from an external service; the local ring does not fail.
    fn wrap(&self, dek: &DataKey, rng: &mut dyn SecureRng) -> Result<WrappedKey, VaultError>;

    /// Unwraps a data key under the version `wrapped` names.
    ///
    /// # Errors
    /// [`VaultError::UnknownKeyVersion`] if that version is not held;
    /// [`VaultError::Decrypt`] if the wrapped bytes do not authenticate under it (tampered,
    /// truncated, or a different key with the same version number);
    /// [`VaultError::Kms`] from an external service.
    fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, VaultError>;
}

macro_rules! forward_kek {
    ($($ty:ty),*) => {$(
        impl<K: KeyEncryptionKeys + ?Sized> KeyEncryptionKeys for $ty {
            fn current_version(&self) -> u32 {
                (**self).current_version()
            }
            fn wrap(&self, dek: &DataKey, rng: &mut dyn SecureRng) -> Result<WrappedKey, VaultError> {
                (**self).wrap(dek, rng)
            }
            fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
                (**self).unwrap(wrapped)
            }
        }
    )*};
}

forward_kek!(&K, Box<K>, Arc<K>);

/// AES-256-GCM encryption of `plaintext` with a 16-byte tag appended: `ciphertext ‖ tag`.
///
/// The working buffer is zeroed if encryption fails half way.
pub(crate) fn gcm_encrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    // Capacity for the tag up front: the buffer never reallocates, so no stray plaintext copy.
    let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buffer.extend_from_slice(plaintext);
    cipher
        .encrypt_in_place(Nonce::from_slice(nonce), aad, &mut *buffer)
        .map_err(|_| VaultError::PlaintextTooLong {
            len_bytes: plaintext.len(),
        })?;
    Ok(std::mem::take(&mut *buffer))
}

/// AES-256-GCM decryption of `ciphertext ‖ tag`; `None` if the tag does not verify (or the
/// input is shorter than a tag). The plaintext comes back in a zeroing buffer.
pub(crate) fn gcm_decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if ciphertext_and_tag.len() < TAG_LEN {
        return None;
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let mut buffer = Zeroizing::new(ciphertext_and_tag.to_vec());
    cipher
        .decrypt_in_place(Nonce::from_slice(nonce), aad, &mut *buffer)
        .ok()?;
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn gcm_round_trip_and_tag_check() {
        let key = [7u8; KEY_LEN];
        let nonce = [9u8; NONCE_LEN];
        let sealed = gcm_encrypt(&key, &nonce, b"aad", b"hello").expect("encrypt");
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        let opened = gcm_decrypt(&key, &nonce, b"aad", &sealed).expect("decrypt");
        assert_eq!(&opened[..], b"hello");
        assert!(gcm_decrypt(&key, &nonce, b"aaD", &sealed).is_none());
        assert!(gcm_decrypt(&[8u8; KEY_LEN], &nonce, b"aad", &sealed).is_none());
        assert!(gcm_decrypt(&key, &nonce, b"aad", &sealed[..TAG_LEN - 1]).is_none());
    }

    #[test]
    fn data_key_is_random_and_redacted() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = DataKey::generate(&mut rng);
        let b = DataKey::generate(&mut rng);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(format!("{a:?}"), "DataKey(<redacted>)");
    }

    #[test]
    fn data_key_from_slice_checks_length() {
        assert!(DataKey::from_slice(&[1u8; KEY_LEN]).is_ok());
        let err = DataKey::from_slice(&[1u8; 31]).expect_err("short key");
        assert!(matches!(err, VaultError::Malformed { .. }));
    }
}
