//! Provider credentials at rest: what is sealed (the provider's files), the vault that seals
//! them, and key rotation.
//!
//! The plaintext of one credential is a [`CredentialFiles`] document (JSON: the files the CLI
//! wrote, paths relative to the sandbox user's home, modes, bytes in base64). It is sealed by
//! `hangar-vault` with associated data (user id, provider, record version), so a ciphertext
//! moved to another row, user or version fails to open.
//!
//! The key ring comes from `HANGAR_VAULT_KEYS` (text, see `hangar_vault::KeyRing`) or the key
//! file `DATA/vault-keys` (created 0600 on first start). `hangar vault rotate` adds a key
//! version to the file and re-wraps every stored data key; a running control plane that meets
//! a record under a version it does not know re-reads the file once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use hangar_core::{ProviderId, UserId};
use hangar_store::{CredentialRecord, NewSeal, Store, StoreError};
use hangar_vault::{AssociatedData, KeyRing, SealedRecord, Vault, VaultError};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::clock::Clock;

/// Environment variable holding the key ring text (takes precedence over the key file).
pub const VAULT_KEYS_ENV: &str = "HANGAR_VAULT_KEYS";
/// The key file's name under the data directory.
pub const VAULT_KEY_FILE: &str = "vault-keys";

/// One file of a credential, as the CLI wrote it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialFile {
    /// Path relative to the sandbox user's home (`.codex/auth.json`).
    pub path: String,
    /// Unix mode (`0o600`).
    pub mode: u32,
    /// Contents, base64 in JSON.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("len", &self.data.len())
            .finish()
    }
}

/// The sealed plaintext of one credential: the provider's files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialFiles {
    /// The files, in the provider's order.
    pub files: Vec<CredentialFile>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Errors of the credential vault.
#[derive(Debug, thiserror::Error)]
pub enum CredentialVaultError {
    /// Sealing or opening failed (tampered, moved, unknown key version, bad key file).
    #[error("vault")]
    Vault(#[from] VaultError),
    /// The opened plaintext is not a credential document.
    #[error("sealed credential is not a valid document")]
    Corrupt,
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// Where the key ring came from.
#[derive(Debug, Clone)]
enum KeySource {
    File(PathBuf),
    Env,
}

/// The vault the control plane seals credentials with.
#[derive(Debug)]
pub struct CredentialVault {
    source: KeySource,
    vault: RwLock<Vault<KeyRing>>,
}

fn aad(owner: UserId, provider: &ProviderId, record_version: u64) -> AssociatedData {
    AssociatedData {
        user: owner.to_string(),
        provider: provider.as_str().to_owned(),
        record_version,
    }
}

impl CredentialVault {
    /// The key ring from `HANGAR_VAULT_KEYS`, else from `DATA/vault-keys` (created 0600).
    pub fn open(data_dir: &Path) -> Result<Self, CredentialVaultError> {
        if let Ok(text) = std::env::var(VAULT_KEYS_ENV) {
            let text = Zeroizing::new(text);
            return Ok(Self {
                source: KeySource::Env,
                vault: RwLock::new(Vault::new(KeyRing::from_env_value(&text)?)),
            });
        }
        let path = data_dir.join(VAULT_KEY_FILE);
        let ring = KeyRing::load_or_create(&path, &mut OsRng)?;
        Ok(Self {
            source: KeySource::File(path),
            vault: RwLock::new(Vault::new(ring)),
        })
    }

    /// Seals `files` for (`owner`, `provider`) at `record_version`.
    pub fn seal(
        &self,
        owner: UserId,
        provider: &ProviderId,
        record_version: u64,
        files: &CredentialFiles,
    ) -> Result<SealedRecord, CredentialVaultError> {
        let plaintext =
            Zeroizing::new(serde_json::to_vec(files).map_err(|_| CredentialVaultError::Corrupt)?);
        let vault = self.vault.read().unwrap_or_else(|p| p.into_inner());
        Ok(vault.seal(
            &plaintext,
            &aad(owner, provider, record_version),
            &mut OsRng,
        )?)
    }

    /// Opens a stored credential. A record under a key version this process does not know
    /// makes it re-read the key file once (after `hangar vault rotate`).
    pub fn open_record(
        &self,
        record: &CredentialRecord,
    ) -> Result<CredentialFiles, CredentialVaultError> {
        let sealed = SealedRecord::from_bytes(&record.sealed)?;
        let aad = aad(record.owner, &record.provider, record.record_version);
        let opened = {
            let vault = self.vault.read().unwrap_or_else(|p| p.into_inner());
            vault.open(&sealed, &aad)
        };
        let plaintext = match opened {
            Err(VaultError::UnknownKeyVersion { .. }) if self.reload()? => {
                let vault = self.vault.read().unwrap_or_else(|p| p.into_inner());
                vault.open(&sealed, &aad)?
            }
            other => other?,
        };
        serde_json::from_slice(&plaintext).map_err(|_| CredentialVaultError::Corrupt)
    }

    /// Seals arbitrary bytes (an OAuth signing key) for `aad`.
    pub fn seal_bytes(
        &self,
        plaintext: &[u8],
        aad: &AssociatedData,
    ) -> Result<SealedRecord, CredentialVaultError> {
        let vault = self.vault.read().unwrap_or_else(|p| p.into_inner());
        Ok(vault.seal(plaintext, aad, &mut OsRng)?)
    }

    /// Opens bytes sealed by [`CredentialVault::seal_bytes`] (re-reading the key file once
    /// for an unknown key version, as [`CredentialVault::open_record`]).
    pub fn open_bytes(
        &self,
        sealed: &[u8],
        aad: &AssociatedData,
    ) -> Result<Zeroizing<Vec<u8>>, CredentialVaultError> {
        let sealed = SealedRecord::from_bytes(sealed)?;
        let opened = {
            let vault = self.vault.read().unwrap_or_else(|p| p.into_inner());
            vault.open(&sealed, aad)
        };
        match opened {
            Err(VaultError::UnknownKeyVersion { .. }) if self.reload()? => {
                let vault = self.vault.read().unwrap_or_else(|p| p.into_inner());
                Ok(vault.open(&sealed, aad)?)
            }
            other => Ok(other?),
        }
    }

    /// Re-reads the key file; false when the ring came from the environment.
    pub fn reload(&self) -> Result<bool, CredentialVaultError> {
        let KeySource::File(path) = &self.source else {
            return Ok(false);
        };
        let ring = KeyRing::load(path)?;
        *self.vault.write().unwrap_or_else(|p| p.into_inner()) = Vault::new(ring);
        Ok(true)
    }
}

/// What `hangar vault rotate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RotateReport {
    /// The new current key version.
    pub new_version: u32,
    /// Credentials whose data key was re-wrapped under it.
    pub rewrapped: usize,
    /// OAuth signing keys whose data key was re-wrapped under it.
    pub signing_keys_rewrapped: usize,
}

/// Adds a key version to the key file at `key_file` and re-wraps every stored credential's
/// data key under it, without touching the ciphertexts. Old versions stay in the file.
pub async fn rotate(
    store: &Store,
    key_file: &Path,
    clock: &dyn Clock,
) -> Result<RotateReport, CredentialVaultError> {
    let mut ring = KeyRing::load(key_file)?;
    let new_version = ring.rotate(&mut OsRng);
    ring.save(key_file)?;
    let vault = Vault::new(ring);
    let mut rewrapped = 0;
    for record in store.credentials().list_all().await? {
        let sealed = SealedRecord::from_bytes(&record.sealed)?;
        if !vault.needs_rewrap(&sealed) {
            continue;
        }
        let new = vault.rewrap(&sealed, &mut OsRng)?;
        store
            .credentials()
            .replace_sealed(
                record.owner,
                &record.provider,
                record.record_version,
                NewSeal {
                    sealed: new.to_bytes(),
                    kek_version: new.kek_version,
                    record_version: record.record_version,
                    access_token_expires_at: record.access_token_expires_at,
                    refreshed_at: None,
                },
                clock.now(),
            )
            .await?;
        rewrapped += 1;
    }
    let signing_keys_rewrapped = crate::oauth::keys::rewrap_all(store, &vault)
        .await
        .map_err(|e| match e {
            crate::oauth::keys::KeyError::Store(e) => CredentialVaultError::Store(e),
            crate::oauth::keys::KeyError::Vault(e) => e,
            _ => CredentialVaultError::Corrupt,
        })?;
    Ok(RotateReport {
        new_version,
        rewrapped,
        signing_keys_rewrapped,
    })
}

/// Base64 (standard) of bytes, for tests and tools.
pub fn encode_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use hangar_store::{NewCredential, User};

    fn files() -> CredentialFiles {
        CredentialFiles {
            files: vec![CredentialFile {
                path: ".codex/auth.json".into(),
                mode: 0o600,
                data: br#"{"tokens":{"refresh_token":"r-secret"}}"#.to_vec(),
            }],
        }
    }

    #[test]
    fn sealed_files_open_only_in_their_own_row() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let vault = CredentialVault::open(dir.path())?;
        let owner = UserId::from_uuid(uuid::Uuid::now_v7());
        let provider = ProviderId::new("codex")?;
        let sealed = vault.seal(owner, &provider, 1, &files())?;
        let record = |owner, provider: &ProviderId, version| CredentialRecord {
            owner,
            provider: provider.clone(),
            record_version: version,
            sealed: sealed.to_bytes(),
            kek_version: sealed.kek_version,
            connected_at: hangar_core::Timestamp::from_unix_ms(0),
            updated_at: hangar_core::Timestamp::from_unix_ms(0),
            access_token_expires_at: None,
            last_refresh_at: None,
            last_check: None,
        };
        assert_eq!(vault.open_record(&record(owner, &provider, 1))?, files());
        let other = UserId::from_uuid(uuid::Uuid::now_v7());
        assert!(vault.open_record(&record(other, &provider, 1)).is_err());
        assert!(vault
            .open_record(&record(owner, &ProviderId::new("claude_code")?, 1))
            .is_err());
        assert!(vault.open_record(&record(owner, &provider, 2)).is_err());
        let debug = format!("{:?}", files());
        assert!(!debug.contains("r-secret"));
        // The key file is private.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(VAULT_KEY_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        Ok(())
    }

    #[tokio::test]
    async fn rotation_rewraps_and_a_running_vault_follows() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let store = Store::connect("sqlite::memory:").await?;
        let vault = CredentialVault::open(dir.path())?;
        let owner = UserId::from_uuid(uuid::Uuid::now_v7());
        store
            .users()
            .create(&User {
                id: owner,
                name: "u".into(),
                is_admin: false,
                created_at: SystemClock.now(),
            })
            .await?;
        let provider = ProviderId::new("codex")?;
        let sealed = vault.seal(owner, &provider, 1, &files())?;
        // Store it through a connect session, as the real flow does.
        let session = hangar_core::ConnectSession::new(
            hangar_core::ConnectSessionId::from_uuid(uuid::Uuid::now_v7()),
            owner,
            provider.clone(),
            hangar_core::ConnectFlow::Token,
            SystemClock.now(),
            std::time::Duration::from_secs(60),
        );
        store.connect_sessions().insert(&session).await?;
        for to in [
            hangar_core::ConnectState::AwaitingUser,
            hangar_core::ConnectState::Capturing,
        ] {
            let current = store
                .connect_sessions()
                .get(session.id)
                .await?
                .ok_or("session")?;
            store
                .connect_sessions()
                .transition(
                    session.id,
                    current.state,
                    to,
                    Default::default(),
                    SystemClock.now(),
                )
                .await?;
        }
        store
            .complete_connect(
                session.id,
                hangar_core::ConnectState::Capturing,
                NewCredential {
                    owner,
                    provider: provider.clone(),
                    record_version: 1,
                    sealed: sealed.to_bytes(),
                    kek_version: sealed.kek_version,
                    access_token_expires_at: None,
                },
                None,
                SystemClock.now(),
            )
            .await?;
        let key_file = dir.path().join(VAULT_KEY_FILE);
        let report = rotate(&store, &key_file, &SystemClock).await?;
        assert_eq!(
            report,
            RotateReport {
                new_version: 2,
                rewrapped: 1,
                signing_keys_rewrapped: 0,
            }
        );
        let record = store
            .credentials()
            .get(owner, &provider)
            .await?
            .ok_or("record")?;
        assert_eq!(record.kek_version, 2);
        // Same ciphertext, new wrapping; the running vault (still on v1) reloads and opens it.
        let after = SealedRecord::from_bytes(&record.sealed)?;
        assert_eq!(after.ciphertext, sealed.ciphertext);
        assert_eq!(vault.open_record(&record)?, files());
        let again = rotate(&store, &key_file, &SystemClock).await?;
        assert_eq!(again.new_version, 3);
        Ok(())
    }
}
