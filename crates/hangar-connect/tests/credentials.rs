//! Captured credential files, shaped exactly as the real CLIs write them, checked against the
//! shipped provider specs.
//!
//! Where the shapes come from (the pinned versions in the default image; see the comments in
//! `providers/*.toml` for the greps):
//! - Claude Code 2.1.330 `~/.claude/.credentials.json`: `{"claudeAiOauth": {accessToken,
//!   refreshToken, expiresAt (epoch ms), refreshTokenExpiresAt, scopes, subscriptionType,
//!   rateLimitTier, clientId, ...}}` (the `GC()` merge in the native binary); account details
//!   in `~/.claude.json` `oauthAccount.{accountUuid, emailAddress, organizationUuid}`. On a dead
//!   refresh token the CLI writes `refreshToken: "", accessToken: "", expiresAt: 0`.
//! - Codex 0.169.0 `~/.codex/auth.json`: `{auth_mode, OPENAI_API_KEY, tokens: {id_token,
//!   access_token, refresh_token, account_id}, last_refresh (RFC 3339)}`; id_token a JWT with
//!   `email` and the `https://api.openai.com/auth` claim (`chatgpt_account_id`,
//!   `chatgpt_plan_type`, `chatgpt_user_id`: strings in the binary).
//! - Gemini CLI 0.61.0 `~/.gemini/oauth_creds.json`: google-auth-library `Credentials`
//!   (`access_token, refresh_token, scope, token_type, id_token, expiry_date` epoch ms) as
//!   `JSON.stringify(credentials, null, 2)`; `~/.gemini/google_accounts.json`
//!   `{"active": EMAIL, "old": []}`.
//!
//! All token values here are fakes made up for the test.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use hangar_connect::credential::{self, CredentialError, CredentialSummary};
use hangar_connect::{load_dir, ProviderRegistry, ProviderSpec};
use hangar_core::{ConnectFlow, ProviderId, Timestamp};
use serde_json::{json, Value};

const SECRETS: [&str; 6] = [
    "sk-ant-oat01-FAKEACCESS",
    "sk-ant-ort01-FAKEREFRESH",
    "rt_FAKE_CODEX_REFRESH",
    "ya29.FAKE_GOOGLE_ACCESS",
    "1//0gFAKE_GOOGLE_REFRESH",
    "FAKESIGNATURE",
];

fn registry() -> ProviderRegistry {
    load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../providers")).expect("providers")
}

fn spec<'r>(reg: &'r ProviderRegistry, id: &str) -> &'r ProviderSpec {
    reg.get(&ProviderId::new(id).expect("id"))
        .expect("provider")
}

fn files(entries: &[(&str, Value)]) -> BTreeMap<String, Vec<u8>> {
    entries
        .iter()
        .map(|(p, v)| ((*p).to_owned(), serde_json::to_vec_pretty(v).expect("json")))
        .collect()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
}

fn jwt(payload: &Value) -> String {
    format!(
        "{}.{}.FAKESIGNATURE",
        b64(&json!({"alg": "RS256", "typ": "JWT"})),
        b64(payload)
    )
}

/// Asserts that neither the message nor the Debug output of `err` shows a token.
fn assert_no_secret(err: &CredentialError) {
    let text = format!("{err} {err:?}");
    for s in SECRETS {
        assert!(!text.contains(s), "{text} leaks {s}");
    }
}

fn refused(
    spec: &ProviderSpec,
    flow: ConnectFlow,
    f: &BTreeMap<String, Vec<u8>>,
) -> CredentialError {
    let err = credential::inspect(spec, flow, f).expect_err("must be refused");
    assert_no_secret(&err);
    err
}

// ---------- Claude Code ----------

fn claude_credentials() -> Value {
    json!({
        "claudeAiOauth": {
            "accessToken": "sk-ant-oat01-FAKEACCESS",
            "refreshToken": "sk-ant-ort01-FAKEREFRESH",
            "expiresAt": 1_795_000_000_123_i64,
            "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x"
        }
    })
}

fn claude_config() -> Value {
    json!({
        "hasCompletedOnboarding": true,
        "oauthAccount": {
            "accountUuid": "00000000-0000-4000-8000-000000000001",
            "emailAddress": "ada@example.com",
            "organizationUuid": "00000000-0000-4000-8000-000000000002"
        }
    })
}

#[test]
fn claude_valid_files_are_accepted() {
    let reg = registry();
    let claude = spec(&reg, "claude_code");
    let f = files(&[
        (".claude/.credentials.json", claude_credentials()),
        (".claude.json", claude_config()),
    ]);
    let summary = credential::inspect(claude, ConnectFlow::Browser, &f).expect("valid");
    assert_eq!(
        summary,
        CredentialSummary {
            access_token_expires_at: Some(Timestamp::from_unix_ms(1_795_000_000_123)),
            has_refresh_token: true,
            account: Some("ada@example.com".into()),
        }
    );
    // The global config is optional.
    let only = files(&[(".claude/.credentials.json", claude_credentials())]);
    let summary = credential::inspect(claude, ConnectFlow::PasteCode, &only).expect("valid");
    assert_eq!(summary.account, None);
    let rt = credential::refresh_token(claude, &only)
        .expect("read")
        .expect("present");
    assert_eq!(rt.expose(), "sk-ant-ort01-FAKEREFRESH");
    assert!(!format!("{rt:?}").contains("FAKEREFRESH"));
}

#[test]
fn claude_malformed_files_are_refused() {
    let reg = registry();
    let claude = spec(&reg, "claude_code");
    let flow = ConnectFlow::Browser;

    let mut no_refresh = claude_credentials();
    no_refresh["claudeAiOauth"]
        .as_object_mut()
        .expect("obj")
        .remove("refreshToken");
    let err = refused(
        claude,
        flow,
        &files(&[(".claude/.credentials.json", no_refresh)]),
    );
    assert_eq!(
        err,
        CredentialError::MissingField {
            path: ".claude/.credentials.json".into(),
            pointer: "/claudeAiOauth/refreshToken".into()
        }
    );

    // What the CLI leaves after a refused refresh: a logged-out file.
    let mut blanked = claude_credentials();
    blanked["claudeAiOauth"]["refreshToken"] = json!("");
    blanked["claudeAiOauth"]["accessToken"] = json!("");
    blanked["claudeAiOauth"]["expiresAt"] = json!(0);
    let err = refused(
        claude,
        flow,
        &files(&[(".claude/.credentials.json", blanked)]),
    );
    assert!(matches!(err, CredentialError::EmptyField { .. }), "{err:?}");

    let mut text_expiry = claude_credentials();
    text_expiry["claudeAiOauth"]["expiresAt"] = json!("tomorrow");
    let err = refused(
        claude,
        flow,
        &files(&[(".claude/.credentials.json", text_expiry)]),
    );
    assert!(matches!(err, CredentialError::BadExpiry { .. }), "{err:?}");

    let mut numeric_token = claude_credentials();
    numeric_token["claudeAiOauth"]["accessToken"] = json!(42);
    let err = refused(
        claude,
        flow,
        &files(&[(".claude/.credentials.json", numeric_token)]),
    );
    assert!(
        matches!(
            err,
            CredentialError::WrongType {
                expected: "a string",
                ..
            }
        ),
        "{err:?}"
    );

    // Not JSON: the error gives a position, never the bytes.
    let mut broken = BTreeMap::new();
    broken.insert(
        ".claude/.credentials.json".to_owned(),
        b"{\"claudeAiOauth\": {\"refreshToken\": \"sk-ant-ort01-FAKEREFRESH\"".to_vec(),
    );
    let err = refused(claude, flow, &broken);
    assert!(
        matches!(err, CredentialError::NotJson { line: 1, .. }),
        "{err:?}"
    );

    let err = refused(
        claude,
        flow,
        &files(&[(".claude/.credentials.json", json!([1, 2]))]),
    );
    assert!(matches!(err, CredentialError::NotObject { .. }), "{err:?}");

    let err = refused(claude, flow, &files(&[(".claude.json", claude_config())]));
    assert_eq!(
        err,
        CredentialError::MissingFile {
            path: ".claude/.credentials.json".into()
        }
    );

    let err = refused(
        claude,
        flow,
        &files(&[
            (".claude/.credentials.json", claude_credentials()),
            (".ssh/id_ed25519", json!({})),
        ]),
    );
    assert_eq!(
        err,
        CredentialError::UnexpectedFile {
            path: ".ssh/id_ed25519".into()
        }
    );
}

// ---------- Codex ----------

fn codex_id_token() -> String {
    jwt(&json!({
        "iss": "https://auth.openai.com",
        "aud": ["app_EMoamEEZ73f0CkXaXp7hrann"],
        "email": "ada@example.com",
        "email_verified": true,
        "exp": 1_795_003_600,
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "acc-1",
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-1"
        }
    }))
}

fn codex_auth(id_token: &str) -> Value {
    json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token,
            "access_token": jwt(&json!({"exp": 1_795_864_000, "scp": ["openid"]})),
            "refresh_token": "rt_FAKE_CODEX_REFRESH",
            "account_id": "acc-1"
        },
        "last_refresh": "2026-11-18T11:06:40.123Z"
    })
}

#[test]
fn codex_valid_files_are_accepted() {
    let reg = registry();
    let codex = spec(&reg, "codex");
    let f = files(&[(".codex/auth.json", codex_auth(&codex_id_token()))]);
    let summary = credential::inspect(codex, ConnectFlow::DeviceCode, &f).expect("valid");
    assert_eq!(
        summary,
        CredentialSummary {
            access_token_expires_at: Some(Timestamp::from_unix_ms(1_795_864_000_000)),
            has_refresh_token: true,
            account: Some("ada@example.com".into()),
        }
    );

    // An opaque (non-JWT) access token is accepted; its expiry is just unknown.
    let mut opaque = codex_auth(&codex_id_token());
    opaque["tokens"]["access_token"] = json!("opaque-access");
    let summary = credential::inspect(
        codex,
        ConnectFlow::Browser,
        &files(&[(".codex/auth.json", opaque)]),
    )
    .expect("valid");
    assert_eq!(summary.access_token_expires_at, None);

    // `codex login --with-api-key` writes an API-key file without tokens: fine for the token
    // flow only.
    let api_key = json!({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-proj-FAKE", "tokens": null, "last_refresh": null});
    let f = files(&[(".codex/auth.json", api_key)]);
    let summary = credential::inspect(codex, ConnectFlow::Token, &f).expect("api key");
    assert!(!summary.has_refresh_token);
    assert!(credential::refresh_token(codex, &f)
        .expect("read")
        .is_none());
    let err = refused(codex, ConnectFlow::Browser, &f);
    assert!(
        matches!(err, CredentialError::MissingField { .. }),
        "{err:?}"
    );
}

#[test]
fn codex_bad_id_tokens_are_refused() {
    let reg = registry();
    let codex = spec(&reg, "codex");
    let flow = ConnectFlow::Browser;
    let two_parts = format!(
        "{}.{}",
        b64(&json!({"alg": "RS256"})),
        b64(&json!({"email": "a@b.c"}))
    );
    let not_json = format!("{}.{}.FAKESIGNATURE", b64(&json!({})), b64(&json!("text")));
    let bad_b64 = format!("{}.%%%.FAKESIGNATURE", b64(&json!({})));
    for token in [
        two_parts,
        not_json,
        bad_b64,
        "rt_FAKE_CODEX_REFRESH".to_owned(),
    ] {
        let err = refused(
            codex,
            flow,
            &files(&[(".codex/auth.json", codex_auth(&token))]),
        );
        assert!(matches!(err, CredentialError::BadJwt { .. }), "{err:?}");
    }
    let no_auth_claim = jwt(&json!({"email": "ada@example.com"}));
    let err = refused(
        codex,
        flow,
        &files(&[(".codex/auth.json", codex_auth(&no_auth_claim))]),
    );
    assert_eq!(
        err,
        CredentialError::MissingClaim {
            path: ".codex/auth.json".into(),
            pointer: "/tokens/id_token".into(),
            claim: "https://api.openai.com/auth".into()
        }
    );
    let no_email = jwt(&json!({"https://api.openai.com/auth": {"chatgpt_account_id": "acc-1"}}));
    let err = refused(
        codex,
        flow,
        &files(&[(".codex/auth.json", codex_auth(&no_email))]),
    );
    assert!(matches!(&err, CredentialError::MissingClaim { claim, .. } if claim == "email"));

    let mut no_refresh = codex_auth(&codex_id_token());
    no_refresh["tokens"]
        .as_object_mut()
        .expect("obj")
        .remove("refresh_token");
    let err = refused(codex, flow, &files(&[(".codex/auth.json", no_refresh)]));
    assert!(
        matches!(err, CredentialError::MissingField { .. }),
        "{err:?}"
    );
}

// ---------- Gemini CLI ----------

fn gemini_creds() -> Value {
    json!({
        "access_token": "ya29.FAKE_GOOGLE_ACCESS",
        "refresh_token": "1//0gFAKE_GOOGLE_REFRESH",
        "scope": "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile openid",
        "token_type": "Bearer",
        "id_token": jwt(&json!({"email": "ada@example.com"})),
        "expiry_date": 1_795_000_000_123_i64
    })
}

#[test]
fn gemini_valid_files_are_accepted() {
    let reg = registry();
    let gemini = spec(&reg, "gemini_cli");
    let f = files(&[
        (".gemini/oauth_creds.json", gemini_creds()),
        (
            ".gemini/google_accounts.json",
            json!({"active": "ada@example.com", "old": []}),
        ),
    ]);
    let summary = credential::inspect(gemini, ConnectFlow::Browser, &f).expect("valid");
    assert_eq!(
        summary,
        CredentialSummary {
            access_token_expires_at: Some(Timestamp::from_unix_ms(1_795_000_000_123)),
            has_refresh_token: true,
            account: Some("ada@example.com".into()),
        }
    );
    // A fresh install's accounts file says nobody is active yet.
    let f = files(&[
        (".gemini/oauth_creds.json", gemini_creds()),
        (
            ".gemini/google_accounts.json",
            json!({"active": null, "old": []}),
        ),
    ]);
    assert_eq!(
        credential::inspect(gemini, ConnectFlow::PasteCode, &f)
            .expect("valid")
            .account,
        None
    );
}

#[test]
fn gemini_malformed_files_are_refused() {
    let reg = registry();
    let gemini = spec(&reg, "gemini_cli");
    let flow = ConnectFlow::PasteCode;
    let mut no_refresh = gemini_creds();
    no_refresh
        .as_object_mut()
        .expect("obj")
        .remove("refresh_token");
    let err = refused(
        gemini,
        flow,
        &files(&[(".gemini/oauth_creds.json", no_refresh)]),
    );
    assert!(
        matches!(err, CredentialError::MissingField { .. }),
        "{err:?}"
    );

    let mut seconds = gemini_creds();
    seconds["expiry_date"] = json!(-5);
    let err = refused(
        gemini,
        flow,
        &files(&[(".gemini/oauth_creds.json", seconds)]),
    );
    assert!(matches!(err, CredentialError::BadExpiry { .. }), "{err:?}");

    let err = refused(gemini, flow, &BTreeMap::new());
    assert!(
        matches!(err, CredentialError::MissingFile { .. }),
        "{err:?}"
    );
}
