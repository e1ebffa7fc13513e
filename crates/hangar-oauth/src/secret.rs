//! Bearer secrets: a prefix naming the kind (so leaked secrets are easy to scan for) and 256
//! random bits in URL-safe base64, drawn from the RNG the caller passes. Only the SHA-256
//! ([`SecretHash`]) is stored: a plain hash is right for a 256-bit random secret.

use std::fmt;

use base64::Engine;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Authorization codes (RFC 6749 section 4.1.2).
pub const CODE_PREFIX: &str = "hgr_ac_";
/// Access tokens (RFC 6749 section 1.4), opaque.
pub const ACCESS_TOKEN_PREFIX: &str = "hgr_at_";
/// Refresh tokens (RFC 6749 section 1.5).
pub const REFRESH_TOKEN_PREFIX: &str = "hgr_rt_";
/// Device codes (RFC 8628 section 3.2).
pub const DEVICE_CODE_PREFIX: &str = "hgr_dc_";
/// Client secrets (RFC 6749 section 2.3.1).
pub const CLIENT_SECRET_PREFIX: &str = "hgr_cs_";

/// Random bytes in a secret (256 bits).
pub const SECRET_RANDOM_BYTES: usize = 32;

/// A prefixed random secret, shown once. `Debug` is redacted; the buffer is zeroed on drop.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// `prefix` followed by 256 bits from `rng` (a cryptographically secure RNG).
    pub fn generate(prefix: &str, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_RANDOM_BYTES]);
        rng.fill_bytes(bytes.as_mut());
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref());
        Self(Zeroizing::new(format!("{prefix}{body}")))
    }

    /// The secret text, to hand over exactly once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Whether `text` has the shape of a secret with `prefix`: the prefix, then 1 to 128
/// characters of URL-safe base64. Checked before any lookup.
pub fn has_shape(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|body| {
        !body.is_empty()
            && body.len() <= 128
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// SHA-256 of a presented secret: what the store keeps and looks up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Hashes a presented secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lower-case hex (64 characters), the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}..)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn secrets_have_their_prefix_shape_and_hide_in_debug() {
        let secret = Secret::generate(CODE_PREFIX, &mut StdRng::seed_from_u64(9));
        let text = secret.expose_secret().to_owned();
        assert!(has_shape(&text, CODE_PREFIX));
        assert!(!has_shape(&text, ACCESS_TOKEN_PREFIX));
        assert_eq!(text.len(), CODE_PREFIX.len() + 43);
        assert!(!format!("{secret:?}").contains(&text[CODE_PREFIX.len()..]));
        assert!(secret.hash().ct_eq(&SecretHash::of(&text)));
        assert!(!secret.hash().ct_eq(&SecretHash::of("other")));
        assert!(!has_shape("hgr_ac_", CODE_PREFIX));
        assert!(!has_shape("hgr_ac_a b", CODE_PREFIX));
    }
}
