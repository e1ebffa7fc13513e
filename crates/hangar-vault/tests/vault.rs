//! The vault's promises, end to end: round trips, tampering, truncation, moved ciphertexts,
//! wrong keys and versions, rotation across three versions, the key file, the byte format,
//! and redaction.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hangar_vault::{
    AssociatedData, DataKey, KeyEncryptionKeys, KeyRing, SealedRecord, Vault, VaultError, TAG_LEN,
};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn aad() -> AssociatedData {
    AssociatedData::new("0190f0c2-7a4e-7d51-9c1e-3b7f0a1d2e3f", "claude_code", 4)
}

/// A ring with one known key per version: version N's key is 32 bytes of N.
fn known_ring(versions: &[u32], current: u32) -> KeyRing {
    let mut text = format!("current:{current}\n");
    for v in versions {
        text.push_str(&format!("v{v}:{}\n", STANDARD.encode([*v as u8; 32])));
    }
    KeyRing::from_env_value(&text).expect("known ring")
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng(seed).fill_bytes(&mut bytes);
    bytes
}

fn sealed_4k() -> (Vault<KeyRing>, SealedRecord, Vec<u8>) {
    let mut r = rng(10);
    let vault = Vault::new(KeyRing::generate(&mut r));
    let plaintext = payload(4096, 11);
    let record = vault.seal(&plaintext, &aad(), &mut r).expect("seal");
    (vault, record, plaintext)
}

fn assert_decrypt(result: Result<zeroize::Zeroizing<Vec<u8>>, VaultError>, what: &str) {
    match result {
        Err(VaultError::Decrypt { .. }) => {}
        Err(other) => panic!("{what}: expected Decrypt, got {other:?}"),
        Ok(_) => panic!("{what}: opened"),
    }
}

#[test]
fn round_trip_sizes() {
    let mut r = rng(1);
    let vault = Vault::new(KeyRing::generate(&mut r));
    for len in [0usize, 1, 4096, 1 << 20] {
        let plaintext = payload(len, len as u64);
        let record = vault.seal(&plaintext, &aad(), &mut r).expect("seal");
        assert_eq!(record.ciphertext.len(), len + TAG_LEN);
        if len > 0 {
            assert_ne!(&record.ciphertext[..len], &plaintext[..], "not encrypted");
        }
        let opened = vault.open(&record, &aad()).expect("open");
        assert_eq!(&opened[..], &plaintext[..], "len {len}");
        // Through the BLOB format too.
        let parsed = SealedRecord::from_bytes(&record.to_bytes()).expect("parse");
        assert_eq!(
            &vault.open(&parsed, &aad()).expect("open")[..],
            &plaintext[..]
        );
    }
}

#[test]
fn same_plaintext_seals_differently() {
    let mut r = rng(2);
    let vault = Vault::new(KeyRing::generate(&mut r));
    let a = vault.seal(b"same", &aad(), &mut r).expect("seal");
    let b = vault.seal(b"same", &aad(), &mut r).expect("seal");
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
    assert_ne!(a.wrapped_dek, b.wrapped_dek);
}

#[test]
fn tamper_any_byte_of_ciphertext_and_tag() {
    let (vault, record, _) = sealed_4k();
    // Every byte: 4096 of ciphertext, then the 16 of the tag.
    for i in 0..record.ciphertext.len() {
        let mut bad = record.clone();
        bad.ciphertext[i] ^= 0x01;
        assert_decrypt(vault.open(&bad, &aad()), &format!("ciphertext byte {i}"));
    }
}

#[test]
fn tamper_any_byte_of_nonce() {
    let (vault, record, _) = sealed_4k();
    for i in 0..record.nonce.len() {
        let mut bad = record.clone();
        bad.nonce[i] ^= 0x80;
        assert_decrypt(vault.open(&bad, &aad()), &format!("nonce byte {i}"));
    }
}

#[test]
fn tamper_any_byte_of_wrapped_dek() {
    let (vault, record, _) = sealed_4k();
    assert_eq!(record.wrapped_dek.len(), 60, "nonce 12 + key 32 + tag 16");
    for i in 0..record.wrapped_dek.len() {
        let mut bad = record.clone();
        bad.wrapped_dek[i] ^= 0x01;
        assert_decrypt(vault.open(&bad, &aad()), &format!("wrapped key byte {i}"));
    }
}

#[test]
fn tamper_any_byte_of_the_blob() {
    let (vault, record, _) = sealed_4k();
    let blob = record.to_bytes();
    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x01;
        let result = SealedRecord::from_bytes(&bad).and_then(|r| vault.open(&r, &aad()));
        assert!(
            matches!(
                result,
                Err(VaultError::Decrypt { .. }
                    | VaultError::Malformed { .. }
                    | VaultError::UnknownKeyVersion { .. })
            ),
            "blob byte {i}: {result:?}"
        );
    }
}

#[test]
fn truncation_fails() {
    let (vault, record, _) = sealed_4k();
    // Truncated fields of the struct: opaque Decrypt.
    for cut in [0, 1, TAG_LEN - 1, TAG_LEN, record.ciphertext.len() - 1] {
        let mut bad = record.clone();
        bad.ciphertext.truncate(cut);
        assert_decrypt(
            vault.open(&bad, &aad()),
            &format!("ciphertext cut to {cut}"),
        );
    }
    for cut in [0, 11, 12, 59] {
        let mut bad = record.clone();
        bad.wrapped_dek.truncate(cut);
        assert_decrypt(
            vault.open(&bad, &aad()),
            &format!("wrapped key cut to {cut}"),
        );
    }
    // Every truncation of the BLOB: Malformed (framing) or Decrypt (tag).
    let blob = record.to_bytes();
    for cut in 0..blob.len() {
        let result = SealedRecord::from_bytes(&blob[..cut]).and_then(|r| vault.open(&r, &aad()));
        assert!(
            matches!(
                result,
                Err(VaultError::Decrypt { .. } | VaultError::Malformed { .. })
            ),
            "blob cut to {cut}: {result:?}"
        );
    }
}

#[test]
fn moved_to_another_row_fails() {
    let (vault, record, plaintext) = sealed_4k();
    let good = aad();
    assert_eq!(
        &vault.open(&record, &good).expect("own row")[..],
        &plaintext[..]
    );
    let rows = [
        AssociatedData {
            user: "0190f0c2-7a4e-7d51-9c1e-3b7f0a1d2e40".into(),
            ..good.clone()
        },
        AssociatedData {
            provider: "codex".into(),
            ..good.clone()
        },
        AssociatedData {
            record_version: good.record_version + 1,
            ..good.clone()
        },
        AssociatedData {
            record_version: good.record_version - 1,
            ..good.clone()
        },
        // Same bytes shifted between fields: length prefixes keep them apart.
        AssociatedData {
            user: format!("{}c", good.user),
            provider: "laude_code".into(),
            ..good.clone()
        },
    ];
    for other in &rows {
        assert_decrypt(vault.open(&record, other), &format!("{other:?}"));
    }
}

#[test]
fn unknown_key_version() {
    let mut r = rng(5);
    let vault = Vault::new(known_ring(&[1, 2], 2));
    let mut record = vault.seal(b"secret", &aad(), &mut r).expect("seal");
    record.kek_version = 3;
    match vault.open(&record, &aad()) {
        Err(VaultError::UnknownKeyVersion { version: 3 }) => {}
        other => panic!("expected UnknownKeyVersion 3, got {other:?}"),
    }
}

#[test]
fn same_version_different_key_fails() {
    let mut r = rng(6);
    let sealer = Vault::new(KeyRing::generate(&mut r));
    let record = sealer.seal(b"secret", &aad(), &mut r).expect("seal");
    let other = Vault::new(KeyRing::generate(&mut rng(7)));
    assert_eq!(other.keys().versions(), vec![1]);
    match other.open(&record, &aad()) {
        Err(VaultError::Decrypt { kek_version: 1 }) => {}
        other => panic!("expected Decrypt, got {other:?}"),
    }
}

#[test]
fn rotation_across_three_versions() {
    let mut r = rng(8);
    let mut vault = Vault::new(KeyRing::generate(&mut r));
    let rows: Vec<AssociatedData> = (0..3)
        .map(|i| AssociatedData::new(format!("user-{i}"), "gemini_cli", 1))
        .collect();
    let plaintexts: Vec<Vec<u8>> = (0..3).map(|i| payload(100 + i, i as u64)).collect();

    let mut records = vec![vault
        .seal(&plaintexts[0], &rows[0], &mut r)
        .expect("seal v1")];
    assert_eq!(vault.keys_mut().rotate(&mut r), 2);
    records.push(
        vault
            .seal(&plaintexts[1], &rows[1], &mut r)
            .expect("seal v2"),
    );
    assert_eq!(vault.keys_mut().rotate(&mut r), 3);
    records.push(
        vault
            .seal(&plaintexts[2], &rows[2], &mut r)
            .expect("seal v3"),
    );

    let versions: Vec<u32> = records.iter().map(|rec| rec.kek_version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    for ((rec, row), plain) in records.iter().zip(&rows).zip(&plaintexts) {
        assert_eq!(
            &vault.open(rec, row).expect("open before rewrap")[..],
            &plain[..]
        );
    }
    let needs: Vec<bool> = records.iter().map(|rec| vault.needs_rewrap(rec)).collect();
    assert_eq!(needs, vec![true, true, false]);

    let rewrapped: Vec<SealedRecord> = records
        .iter()
        .map(|rec| vault.rewrap(rec, &mut r).expect("rewrap"))
        .collect();
    for (old, new) in records.iter().zip(&rewrapped) {
        assert_eq!(new.kek_version, 3);
        assert_eq!(new.nonce, old.nonce, "payload nonce untouched");
        assert_eq!(
            new.ciphertext, old.ciphertext,
            "payload ciphertext untouched"
        );
        assert!(!vault.needs_rewrap(new));
    }
    assert_ne!(rewrapped[0].wrapped_dek, records[0].wrapped_dek);
    assert_eq!(rewrapped[2], records[2], "already current: unchanged");

    vault.keys_mut().retire(1).expect("retire v1");
    vault.keys_mut().retire(2).expect("retire v2");
    assert_eq!(vault.keys().versions(), vec![3]);
    for ((rec, row), plain) in rewrapped.iter().zip(&rows).zip(&plaintexts) {
        assert_eq!(
            &vault.open(rec, row).expect("open after retire")[..],
            &plain[..]
        );
    }
    // The un-rewrapped v1 record is now unreadable, by name.
    assert!(matches!(
        vault.open(&records[0], &rows[0]),
        Err(VaultError::UnknownKeyVersion { version: 1 })
    ));
}

#[test]
fn key_file_created_0600_and_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vault.keys");
    let created = KeyRing::load_or_create(&path, &mut rng(20)).expect("create");
    let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(names.len(), 1, "no temporary file left behind");

    // Same keys on reload: a record sealed by one opens with the other.
    let again = KeyRing::load_or_create(&path, &mut rng(21)).expect("reload");
    assert_eq!(*again.to_text(), *created.to_text());
    let sealer = Vault::new(created);
    let record = sealer.seal(b"cred", &aad(), &mut rng(22)).expect("seal");
    let opener = Vault::new(KeyRing::load(&path).expect("load"));
    assert_eq!(&opener.open(&record, &aad()).expect("open")[..], b"cred");

    // The file is the documented text format and matches from_env_value.
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains("current:1\n"));
    assert!(text
        .lines()
        .any(|l| l.starts_with("v1:") && l.len() == 3 + 44));
    let from_env = KeyRing::from_env_value(&text).expect("env form");
    assert_eq!(*from_env.to_text(), *opener.keys().to_text());
}

#[test]
fn key_file_accessible_to_group_or_others_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vault.keys");
    KeyRing::load_or_create(&path, &mut rng(30)).expect("create");
    for mode in [0o640, 0o604, 0o644, 0o620, 0o601] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        for result in [
            KeyRing::load(&path),
            KeyRing::load_or_create(&path, &mut rng(31)),
        ] {
            match result {
                Err(VaultError::KeyFilePermissions { mode: m, path: p }) => {
                    assert_eq!(m, mode);
                    assert_eq!(p, path);
                }
                other => panic!("mode {mode:o}: expected KeyFilePermissions, got {other:?}"),
            }
        }
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
    KeyRing::load(&path).expect("0400 is fine");
}

#[test]
fn malformed_key_file_is_refused_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vault.keys");
    fs::write(&path, "current:1\nv1:not-base64\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(matches!(
        KeyRing::load_or_create(&path, &mut rng(40)),
        Err(VaultError::Malformed { .. })
    ));
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "current:1\nv1:not-base64\n"
    );
}

#[test]
fn missing_directory_is_a_key_file_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent").join("vault.keys");
    assert!(matches!(
        KeyRing::load_or_create(&path, &mut rng(41)),
        Err(VaultError::KeyFile { .. })
    ));
}

#[test]
fn rotate_save_reload_keeps_all_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vault.keys");
    let mut r = rng(50);
    let vault = Vault::new(KeyRing::load_or_create(&path, &mut r).expect("create"));
    let old = vault.seal(b"under v1", &aad(), &mut r).expect("seal");
    let mut ring = vault.into_keys();
    assert_eq!(ring.rotate(&mut r), 2);
    ring.save(&path).expect("save");
    assert_eq!(
        fs::metadata(&path).expect("stat").permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);

    let reloaded = KeyRing::load(&path).expect("reload");
    assert_eq!(reloaded.versions(), vec![1, 2]);
    assert_eq!(reloaded.current_version(), 2);
    let vault = Vault::new(reloaded);
    assert_eq!(
        &vault.open(&old, &aad()).expect("v1 still opens")[..],
        b"under v1"
    );
    let new = vault.seal(b"under v2", &aad(), &mut r).expect("seal");
    assert_eq!(new.kek_version, 2);
}

#[test]
fn blob_round_trip_and_garbage() {
    let (_, record, _) = sealed_4k();
    assert_eq!(
        SealedRecord::from_bytes(&record.to_bytes()).expect("parse"),
        record
    );
    let mut r = rng(60);
    for len in [0usize, 1, 12, 13, 50, 100, 5000] {
        let garbage = payload(len, len as u64 + 1000);
        assert!(
            matches!(
                SealedRecord::from_bytes(&garbage),
                Err(VaultError::Malformed { .. })
            ),
            "garbage of {len} bytes"
        );
    }
    let mut noise = vec![0u8; 256];
    r.fill_bytes(&mut noise);
    noise[..5].copy_from_slice(b"HGVR\x01");
    assert!(SealedRecord::from_bytes(&noise).is_err());
}

fn assert_no_key_in(text: &str, key: &[u8]) {
    let b64 = STANDARD.encode(key);
    let hex_lower = hex::encode(key);
    let hex_upper = hex::encode_upper(key);
    for needle in [&b64, &hex_lower, &hex_upper] {
        assert!(!text.contains(needle.as_str()), "key leaked into {text}");
    }
    // Rust's default `{:?}` of a byte array.
    assert!(
        !text.contains(&format!("{key:?}")),
        "key bytes leaked into {text}"
    );
}

#[test]
fn debug_output_never_contains_keys() {
    let ring = known_ring(&[1, 2], 2);
    let ring_debug = format!("{ring:?} {ring:#?}");
    assert_no_key_in(&ring_debug, &[1u8; 32]);
    assert_no_key_in(&ring_debug, &[2u8; 32]);

    let dek = DataKey::generate(&mut rng(70));
    let dek_debug = format!("{dek:?} {dek:#?}");
    assert_no_key_in(&dek_debug, dek.expose_secret());

    let mut r = rng(71);
    let vault = Vault::new(ring);
    let record = vault
        .seal(b"plaintext-token-value", &aad(), &mut r)
        .expect("seal");
    let wrapped = hangar_vault::WrappedKey {
        kek_version: record.kek_version,
        bytes: record.wrapped_dek.clone(),
    };
    let record_debug = format!("{record:?} {record:#?} {vault:?} {wrapped:?}");
    let record_dek = vault.keys().unwrap(&wrapped).expect("unwrap");
    assert_no_key_in(&record_debug, record_dek.expose_secret());
    assert_no_key_in(&record_debug, &[2u8; 32]);
    assert!(!record_debug.contains("plaintext-token-value"));

    // Errors carry no key either.
    let mut bad = record.clone();
    bad.ciphertext[0] ^= 1;
    let err = vault.open(&bad, &aad()).expect_err("tampered");
    assert_no_key_in(&format!("{err:?} {err}"), record_dek.expose_secret());
}
