//! id_token signing keys (ES256, RFC 7518 section 3.4): generated with `ring` on first start,
//! stored sealed by the vault (associated data: `oauth-signing-key`, the key id, version 1),
//! published as a JWK Set (RFC 7517) at `/oauth/jwks`.
//!
//! `hangar oauth keys rotate` adds a key that signs from then on; the keys it replaces stay in
//! the JWK Set for [`PUBLISH_RETIRED_FOR`] after they stop signing, so every id_token they
//! signed can still be checked until it expires.

use std::time::Duration;

use base64::Engine;
use hangar_core::Timestamp;
use hangar_store::{SigningKeyRecord, Store, StoreError};
use hangar_vault::AssociatedData;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::credentials::{CredentialVault, CredentialVaultError};

/// The JWS algorithm of every key.
pub const ALG: &str = "ES256";
/// How long a replaced key stays published: longer than any id_token it signed lives.
pub const PUBLISH_RETIRED_FOR: Duration = Duration::from_secs(2 * 3600);

/// Errors of the signing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// Sealing or opening a key failed.
    #[error("vault")]
    Vault(#[from] CredentialVaultError),
    /// Key generation or parsing failed.
    #[error("key material")]
    Crypto,
    /// There is no key to sign with (none generated yet).
    #[error("no signing key")]
    NoKey,
    /// Encoding the token failed.
    #[error("signing")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

fn aad(kid: &str) -> AssociatedData {
    AssociatedData::new("oauth-signing-key", kid, 1)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A public key as a JWK (RFC 7517 section 4, RFC 7518 section 6.2.1).
#[derive(Debug, Clone, Serialize)]
struct PublicJwk<'a> {
    kty: &'static str,
    crv: &'static str,
    x: &'a str,
    y: &'a str,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
    kid: &'a str,
}

/// Generates a P-256 key, seals it and adds it as the signing key (older keys retire now).
/// Returns its key id: the RFC 7638 thumbprint of its public JWK.
pub async fn add_key(
    store: &Store,
    vault: &CredentialVault,
    now: Timestamp,
) -> Result<String, KeyError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::Crypto)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| KeyError::Crypto)?;
    // Uncompressed point: 0x04 || x (32) || y (32).
    let point = pair.public_key().as_ref();
    if point.len() != 65 {
        return Err(KeyError::Crypto);
    }
    let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
    // RFC 7638 section 3.2: the required members, lexicographic order, no whitespace.
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64(&Sha256::digest(thumbprint_input.as_bytes()));
    let jwk = PublicJwk {
        kty: "EC",
        crv: "P-256",
        x: &x,
        y: &y,
        use_: "sig",
        alg: ALG,
        kid: &kid,
    };
    let public_jwk = serde_json::to_string(&jwk).map_err(|_| KeyError::Crypto)?;
    let sealed = vault.seal_bytes(pkcs8.as_ref(), &aad(&kid))?;
    store
        .oauth()
        .add_signing_key(
            &SigningKeyRecord {
                kid: kid.clone(),
                alg: ALG.to_owned(),
                sealed: sealed.to_bytes(),
                kek_version: sealed.kek_version,
                public_jwk,
                created_at: now,
                retired_at: None,
            },
            now,
        )
        .await?;
    Ok(kid)
}

/// Makes a signing key if there is none that signs (first start).
pub async fn ensure_key(
    store: &Store,
    vault: &CredentialVault,
    now: Timestamp,
) -> Result<(), KeyError> {
    let keys = store.oauth().list_signing_keys().await?;
    if !keys.iter().any(|k| k.retired_at.is_none()) {
        add_key(store, vault, now).await?;
    }
    Ok(())
}

/// Signs `claims` with the current key (ES256, header `kid`).
pub async fn sign<T: Serialize>(
    store: &Store,
    vault: &CredentialVault,
    claims: &T,
) -> Result<String, KeyError> {
    let keys = store.oauth().list_signing_keys().await?;
    let key = keys
        .iter()
        .find(|k| k.retired_at.is_none())
        .ok_or(KeyError::NoKey)?;
    let pkcs8 = vault.open_bytes(&key.sealed, &aad(&key.kid))?;
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &encoding).map_err(KeyError::Sign)
}

/// The JWK Set: every key that signs, and every key that stopped signing less than
/// [`PUBLISH_RETIRED_FOR`] ago.
pub async fn jwks(store: &Store, now: Timestamp) -> Result<serde_json::Value, KeyError> {
    let keep_ms = i64::try_from(PUBLISH_RETIRED_FOR.as_millis()).unwrap_or(i64::MAX);
    let keys: Vec<serde_json::Value> = store
        .oauth()
        .list_signing_keys()
        .await?
        .into_iter()
        .filter(|k| k.retired_at.is_none_or(|r| r.plus_ms(keep_ms) > now))
        .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
        .collect();
    Ok(serde_json::json!({ "keys": keys }))
}

/// Re-wraps every signing key's data key under the vault's current key version (after
/// `hangar vault rotate`). Returns how many were re-wrapped.
pub async fn rewrap_all(
    store: &Store,
    vault: &hangar_vault::Vault<hangar_vault::KeyRing>,
) -> Result<usize, KeyError> {
    let mut done = 0;
    for key in store.oauth().list_signing_keys().await? {
        let sealed = hangar_vault::SealedRecord::from_bytes(&key.sealed)
            .map_err(CredentialVaultError::from)?;
        if !vault.needs_rewrap(&sealed) {
            continue;
        }
        let new = vault
            .rewrap(&sealed, &mut rand::rngs::OsRng)
            .map_err(CredentialVaultError::from)?;
        if store
            .oauth()
            .replace_sealed_key(&key.kid, &key.sealed, &new.to_bytes(), new.kek_version)
            .await?
        {
            done += 1;
        }
    }
    Ok(done)
}
