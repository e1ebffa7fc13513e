//! Sealing, opening and re-wrapping credentials.

use std::fmt;

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::key::{gcm_decrypt, gcm_encrypt, NONCE_LEN};
use crate::{AssociatedData, DataKey, KeyEncryptionKeys, SealedRecord, VaultError, WrappedKey};

/// Envelope encryption over a set of key-encryption keys `K` (a [`KeyRing`](crate::KeyRing),
/// an `Arc` of one, or a KMS client).
///
/// `Debug` shows the current key version only.
pub struct Vault<K: KeyEncryptionKeys> {
    keys: K,
}

impl<K: KeyEncryptionKeys> Vault<K> {
    /// A vault over `keys`.
    pub fn new(keys: K) -> Self {
        Vault { keys }
    }

    /// The key-encryption keys.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// The key-encryption keys, mutably (to [`rotate`](crate::KeyRing::rotate) or
    /// [`retire`](crate::KeyRing::retire) a ring the vault owns).
    pub fn keys_mut(&mut self) -> &mut K {
        &mut self.keys
    }

    /// Gives the key-encryption keys back.
    pub fn into_keys(self) -> K {
        self.keys
    }

    /// Seals `plaintext` (a credential file's bytes, any length from 0 to 2^36 - 32) for the
    /// row `aad` names.
    ///
    /// Draws a fresh 256-bit data key and a random 96-bit nonce from `rng`, encrypts with
    /// AES-256-GCM over `aad.to_bytes()`, and wraps the data key under the current
    /// key-encryption key. Two seals of the same input never share a key or nonce. The result
    /// is `plaintext.len() + 16` bytes of ciphertext plus the wrapped key.
    ///
    /// # Errors
    /// What [`KeyEncryptionKeys::wrap`] returns; [`VaultError::PlaintextTooLong`].
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        plaintext: &[u8],
        aad: &AssociatedData,
        rng: &mut R,
    ) -> Result<SealedRecord, VaultError> {
        let dek = DataKey::generate(rng);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ciphertext = gcm_encrypt(dek.expose_secret(), &nonce, &aad.to_bytes(), plaintext)?;
        let wrapped = self.keys.wrap(&dek, rng)?;
        Ok(SealedRecord {
            kek_version: wrapped.kek_version,
            wrapped_dek: wrapped.bytes,
            nonce,
            ciphertext,
        })
    }

    /// Opens `record`, which must have been sealed for exactly `aad`. The plaintext comes back
    /// in a buffer that is zeroed on drop.
    ///
    /// # Errors
    /// [`VaultError::UnknownKeyVersion`] if the ring lacks the record's key version;
    /// [`VaultError::Decrypt`] if the wrapped key or the payload does not authenticate
    /// (tampered, truncated, other `aad`, or a different key under the same version);
    /// [`VaultError::Kms`] from an external service.
    pub fn open(
        &self,
        record: &SealedRecord,
        aad: &AssociatedData,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let dek = self.unwrap_dek(record)?;
        gcm_decrypt(
            dek.expose_secret(),
            &record.nonce,
            &aad.to_bytes(),
            &record.ciphertext,
        )
        .ok_or(VaultError::Decrypt {
            kek_version: record.kek_version,
        })
    }

    /// Re-wraps the record's data key under the current key-encryption key. The nonce and
    /// ciphertext are copied unchanged; a record already under the current version comes back
    /// as an equal clone. Run it over every record after [`KeyRing::rotate`](crate::KeyRing::rotate),
    /// then old versions can be retired.
    ///
    /// Only the wrapped key is authenticated here (the payload's associated data is not needed
    /// and not checked).
    ///
    /// # Errors
    /// As [`open`](Self::open) for the unwrap, and [`KeyEncryptionKeys::wrap`]'s errors.
    pub fn rewrap<R: RngCore + CryptoRng>(
        &self,
        record: &SealedRecord,
        rng: &mut R,
    ) -> Result<SealedRecord, VaultError> {
        if !self.needs_rewrap(record) {
            return Ok(record.clone());
        }
        let dek = self.unwrap_dek(record)?;
        let wrapped = self.keys.wrap(&dek, rng)?;
        Ok(SealedRecord {
            kek_version: wrapped.kek_version,
            wrapped_dek: wrapped.bytes,
            nonce: record.nonce,
            ciphertext: record.ciphertext.clone(),
        })
    }

    /// Whether `record` is wrapped under a version other than the current one.
    pub fn needs_rewrap(&self, record: &SealedRecord) -> bool {
        record.kek_version != self.keys.current_version()
    }

    fn unwrap_dek(&self, record: &SealedRecord) -> Result<DataKey, VaultError> {
        self.keys.unwrap(&WrappedKey {
            kek_version: record.kek_version,
            bytes: record.wrapped_dek.clone(),
        })
    }
}

impl<K: KeyEncryptionKeys> fmt::Debug for Vault<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("current_version", &self.keys.current_version())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::KeyRing;

    #[test]
    fn seal_open_round_trip() {
        let mut rng = StdRng::seed_from_u64(3);
        let vault = Vault::new(KeyRing::generate(&mut rng));
        let aad = AssociatedData::new("u1", "codex", 1);
        let record = vault.seal(b"token", &aad, &mut rng).expect("seal");
        assert_eq!(record.kek_version, 1);
        assert_eq!(record.ciphertext.len(), 5 + 16);
        assert_eq!(&vault.open(&record, &aad).expect("open")[..], b"token");
        assert!(!vault.needs_rewrap(&record));
        assert_eq!(vault.rewrap(&record, &mut rng).expect("rewrap"), record);
    }

    #[test]
    fn debug_shows_version_only() {
        let mut rng = StdRng::seed_from_u64(3);
        let vault = Vault::new(KeyRing::generate(&mut rng));
        assert_eq!(format!("{vault:?}"), "Vault { current_version: 1, .. }");
    }
}
