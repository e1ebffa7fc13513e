//! What a sealed credential is bound to ([`AssociatedData`]) and what is stored
//! ([`SealedRecord`], with its byte format for one BLOB column).

use std::fmt;

use crate::key::{NONCE_LEN, TAG_LEN};
use crate::VaultError;

/// Domain-separation prefix of the payload's associated data, format version 1.
const AAD_DOMAIN: &[u8] = b"hangar-vault/record-aad/v1";

/// The row a credential belongs to, bound into the payload's AES-GCM tag as associated data.
///
/// Opening with any other value (another user, provider or record version) fails with
/// [`VaultError::Decrypt`]: this is what makes a ciphertext copied to another row useless
/// (DESIGN rule 6). None of it is secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssociatedData {
    /// The owning user's id, as text (hangar-core's `UserId` displayed).
    pub user: String,
    /// The provider name (`claude_code`, `codex`, `gemini_cli`, ...).
    pub provider: String,
    /// The credential row's version, incremented each time the credential is re-sealed with
    /// new content, so an older ciphertext cannot be replayed into a newer row.
    pub record_version: u64,
}

impl AssociatedData {
    /// Builds the associated data for one credential row.
    pub fn new(user: impl Into<String>, provider: impl Into<String>, record_version: u64) -> Self {
        AssociatedData {
            user: user.into(),
            provider: provider.into(),
            record_version,
        }
    }

    /// The canonical, unambiguous byte encoding fed to AES-GCM:
    ///
    /// ```text
    /// "hangar-vault/record-aad/v1"          26 bytes, domain separation
    /// len(user)      u64 big-endian         8 bytes
    /// user           UTF-8                  len(user) bytes
    /// len(provider)  u64 big-endian         8 bytes
    /// provider       UTF-8                  len(provider) bytes
    /// record_version u64 big-endian         8 bytes
    /// ```
    ///
    /// Length prefixes make it injective: `("ab", "c")` and `("a", "bc")` encode differently.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(AAD_DOMAIN.len() + 24 + self.user.len() + self.provider.len());
        out.extend_from_slice(AAD_DOMAIN);
        for field in [self.user.as_bytes(), self.provider.as_bytes()] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.record_version.to_be_bytes());
        out
    }
}

/// Magic at the start of [`SealedRecord::to_bytes`].
pub const RECORD_MAGIC: [u8; 4] = *b"HGVR";
/// The byte-format version [`SealedRecord::to_bytes`] writes and `from_bytes` accepts.
pub const RECORD_FORMAT_V1: u8 = 1;
/// Bytes before the wrapped key: magic (4), format (1), KEK version (4), wrapped length (4).
const HEADER_LEN: usize = 4 + 1 + 4 + 4;

/// One sealed credential: the payload under its own data key, and that data key wrapped by a
/// key-encryption key.
///
/// `Debug` shows the key version and lengths only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// The key-encryption key version that wrapped the data key.
    pub kek_version: u32,
    /// The wrapped data key, as the [`KeyEncryptionKeys`](crate::KeyEncryptionKeys)
    /// implementation made it (for [`KeyRing`](crate::KeyRing): `nonce ‖ ciphertext ‖ tag`,
    /// 60 bytes).
    pub wrapped_dek: Vec<u8>,
    /// The payload's random 96-bit AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The payload's AES-256-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl SealedRecord {
    /// Serializes the record for a single BLOB column. Format version 1, all integers
    /// big-endian:
    ///
    /// ```text
    /// offset  size   field
    /// 0       4      magic "HGVR"
    /// 4       1      format version = 1
    /// 5       4      kek_version (u32)
    /// 9       4      W = wrapped_dek length (u32), at least 1
    /// 13      W      wrapped_dek
    /// 13+W    12     nonce
    /// 25+W    rest   ciphertext ‖ tag (at least 16 bytes)
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN + self.wrapped_dek.len() + NONCE_LEN + self.ciphertext.len(),
        );
        out.extend_from_slice(&RECORD_MAGIC);
        out.push(RECORD_FORMAT_V1);
        out.extend_from_slice(&self.kek_version.to_be_bytes());
        // A wrapped key is tens to hundreds of bytes; u32 cannot overflow in practice, and
        // `from_bytes` would reject a record that lied.
        out.extend_from_slice(&(self.wrapped_dek.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.wrapped_dek);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the format [`to_bytes`](Self::to_bytes) writes.
    ///
    /// Only the framing is checked here; authenticity is checked by
    /// [`Vault::open`](crate::Vault::open).
    ///
    /// # Errors
    /// [`VaultError::Malformed`] for a short header, wrong magic, unknown format version, an
    /// empty or overlong wrapped key, or a ciphertext shorter than the 16-byte tag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() < HEADER_LEN {
            return Err(VaultError::malformed(
                "sealed record shorter than its header",
            ));
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        if header[0..4] != RECORD_MAGIC {
            return Err(VaultError::malformed("not a sealed record (bad magic)"));
        }
        if header[4] != RECORD_FORMAT_V1 {
            return Err(VaultError::malformed(format!(
                "unsupported sealed record format {}",
                header[4]
            )));
        }
        let kek_version = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let wrapped_len = u32::from_be_bytes([header[9], header[10], header[11], header[12]]);
        let wrapped_len = usize::try_from(wrapped_len)
            .map_err(|_| VaultError::malformed("wrapped key length does not fit"))?;
        if wrapped_len == 0 {
            return Err(VaultError::malformed("empty wrapped key"));
        }
        if rest.len() < wrapped_len.saturating_add(NONCE_LEN + TAG_LEN) {
            return Err(VaultError::malformed(
                "sealed record shorter than its wrapped key, nonce and tag",
            ));
        }
        let (wrapped_dek, rest) = rest.split_at(wrapped_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let mut nonce_array = [0u8; NONCE_LEN];
        nonce_array.copy_from_slice(nonce);
        Ok(SealedRecord {
            kek_version,
            wrapped_dek: wrapped_dek.to_vec(),
            nonce: nonce_array,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("kek_version", &self.kek_version)
            .field("wrapped_dek_len_bytes", &self.wrapped_dek.len())
            .field("ciphertext_len_bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SealedRecord {
        SealedRecord {
            kek_version: 7,
            wrapped_dek: vec![1; 60],
            nonce: [2; NONCE_LEN],
            ciphertext: vec![3; 40],
        }
    }

    #[test]
    fn aad_encoding_is_length_prefixed() {
        let a = AssociatedData::new("ab", "c", 1).to_bytes();
        let b = AssociatedData::new("a", "bc", 1).to_bytes();
        assert_ne!(a, b);
        let mut expected = AAD_DOMAIN.to_vec();
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(b"c");
        expected.extend_from_slice(&1u64.to_be_bytes());
        assert_eq!(a, expected);
        assert_ne!(a, AssociatedData::new("ab", "c", 2).to_bytes());
    }

    #[test]
    fn record_bytes_layout() {
        let r = sample();
        let bytes = r.to_bytes();
        assert_eq!(&bytes[0..4], b"HGVR");
        assert_eq!(bytes[4], 1);
        assert_eq!(&bytes[5..9], &7u32.to_be_bytes());
        assert_eq!(&bytes[9..13], &60u32.to_be_bytes());
        assert_eq!(bytes.len(), 13 + 60 + 12 + 40);
        assert_eq!(SealedRecord::from_bytes(&bytes).expect("parse"), r);
    }

    #[test]
    fn record_framing_errors_are_malformed() {
        let good = sample().to_bytes();
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            good[..HEADER_LEN - 1].to_vec(),
            [b"HGVX".as_slice(), &good[4..]].concat(),
            [&good[..4], &[2u8], &good[5..]].concat(),
            [&good[..9], &0u32.to_be_bytes(), &good[13..]].concat(),
            [&good[..9], &u32::MAX.to_be_bytes(), &good[13..]].concat(),
            good[..13 + 60 + 12 + 15].to_vec(),
        ];
        for case in cases {
            let err = SealedRecord::from_bytes(&case).expect_err("must not parse");
            assert!(matches!(err, VaultError::Malformed { .. }), "{err:?}");
        }
    }

    #[test]
    fn debug_shows_lengths_only() {
        let text = format!("{:?}", sample());
        assert!(text.contains("kek_version: 7"));
        assert!(!text.contains("[1,"), "{text}");
    }
}
