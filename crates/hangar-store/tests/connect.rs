//! Connect sessions, sealed credentials, and the one transaction that joins them, each test run
//! against SQLite and PostgreSQL (`name::sqlite`, `name::postgres`).

use hangar_core::connect::ALL_CONNECT_STATES;
use hangar_core::{
    ConnectFlow, ConnectPrompt, ConnectSession, ConnectSessionId, ConnectState, CredentialStatus,
    ProviderId, SandboxId, Timestamp, UserId,
};
use hangar_store::testing::TestDb;
use hangar_store::{
    ConnectChange, CredentialRecord, NewCredential, NewSeal, StatusCheck, Store, StoreError, User,
};
use uuid::Uuid;

use ConnectState::*;

const T0: i64 = 1_790_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_ms)
}

fn provider(name: &str) -> ProviderId {
    ProviderId::new(name).expect("provider id")
}

async fn make_user(store: &Store, name: &str) -> User {
    let user = User {
        id: UserId::from_uuid(Uuid::now_v7()),
        name: name.to_owned(),
        is_admin: false,
        created_at: at(0),
    };
    store.users().create(&user).await.expect("create user");
    user
}

fn new_session(owner: UserId, provider_name: &str, created: Timestamp) -> ConnectSession {
    ConnectSession::new(
        ConnectSessionId::from_uuid(Uuid::now_v7()),
        owner,
        provider(provider_name),
        ConnectFlow::Browser,
        created,
        ConnectSession::DEFAULT_SIGN_IN_TIMEOUT,
    )
}

/// A stored session of `owner` for `provider_name`, walked to `capturing` (ready to complete).
async fn capturing_session(store: &Store, owner: UserId, provider_name: &str) -> ConnectSession {
    let session = new_session(owner, provider_name, at(10));
    let repo = store.connect_sessions();
    repo.insert(&session).await.expect("insert session");
    for (from, to) in [(Starting, AwaitingUser), (AwaitingUser, Capturing)] {
        repo.transition(session.id, from, to, ConnectChange::default(), at(20))
            .await
            .expect("advance");
    }
    repo.get(session.id).await.expect("get").expect("exists")
}

/// Bytes that are not valid UTF-8 and include NUL, to prove the column is binary-exact.
fn sealed_bytes(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ tag)
        .chain([0x00, 0xff, 0xfe, 0x80, tag])
        .collect()
}

fn new_credential(owner: UserId, provider_name: &str, version: u64, tag: u8) -> NewCredential {
    NewCredential {
        owner,
        provider: provider(provider_name),
        record_version: version,
        sealed: sealed_bytes(tag, 300),
        kek_version: 1,
        access_token_expires_at: Some(at(3_600_000)),
    }
}

async fn stored_state(store: &Store, id: ConnectSessionId) -> ConnectState {
    store
        .connect_sessions()
        .get(id)
        .await
        .expect("get session")
        .expect("session exists")
        .state
}

// ---------------------------------------------------------------------------------------------

async fn sessions_round_trip_every_field(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let repo = store.connect_sessions();

    let prompts = [
        None,
        Some(ConnectPrompt::Viewer),
        Some(ConnectPrompt::AuthorizeUrl {
            url: "https://auth.example.test/oauth/authorize?client_id=x&state=\"q\"&ü=1".into(),
        }),
        Some(ConnectPrompt::VerificationUri {
            uri: "https://auth.example.test/device".into(),
            user_code: "ABCD-EFGH".into(),
        }),
    ];
    let flows = [
        ConnectFlow::Browser,
        ConnectFlow::PasteCode,
        ConnectFlow::DeviceCode,
        ConnectFlow::Token,
    ];
    for (i, (prompt, flow)) in prompts.into_iter().zip(flows).enumerate() {
        let i = i as i64;
        let state = ALL_CONNECT_STATES[i as usize * 2 % ALL_CONNECT_STATES.len()];
        let full = ConnectSession {
            id: ConnectSessionId::from_uuid(Uuid::now_v7()),
            owner: user.id,
            provider: provider("claude_code"),
            flow,
            state,
            browser_sandbox: (i % 2 == 0).then(|| SandboxId::from_uuid(Uuid::now_v7())),
            created_at: at(i),
            expires_at: at(i + 900_000),
            updated_at: at(i + 5),
            completed_at: (i % 2 == 1).then(|| at(i + 6)),
            failure: (i == 2).then(|| "login command exited 1 \"quoted\" ünïcode".to_owned()),
            prompt,
        };
        repo.insert(&full).await.expect("insert");
        assert_eq!(repo.get(full.id).await.expect("get"), Some(full.clone()));
    }

    // The constructor's minimal session.
    let minimal = new_session(user.id, "codex", at(100));
    repo.insert(&minimal).await.expect("insert minimal");
    assert_eq!(
        repo.get(minimal.id).await.expect("get"),
        Some(minimal.clone())
    );

    let err = repo.insert(&minimal).await.expect_err("duplicate id");
    assert!(
        matches!(
            err,
            StoreError::Duplicate {
                what: "connect session"
            }
        ),
        "{err:?}"
    );
    let orphan = new_session(UserId::from_uuid(Uuid::now_v7()), "codex", at(5));
    let err = repo.insert(&orphan).await.expect_err("no owner");
    assert!(
        matches!(err, StoreError::MissingReference { .. }),
        "{err:?}"
    );
    assert_eq!(
        repo.get(ConnectSessionId::from_uuid(Uuid::now_v7()))
            .await
            .expect("get"),
        None
    );
}

async fn sessions_are_walled_off_and_listed(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let mallory = make_user(&store, "mallory").await;
    let repo = store.connect_sessions();

    let old = new_session(alice.id, "codex", at(10));
    let mid = new_session(alice.id, "gemini_cli", at(20));
    let new = new_session(alice.id, "claude_code", at(30));
    let mallorys = new_session(mallory.id, "codex", at(25));
    for s in [&old, &mid, &new, &mallorys] {
        repo.insert(s).await.expect("insert");
    }

    assert_eq!(
        repo.get_owned(alice.id, old.id).await.expect("own"),
        Some(old.clone())
    );
    assert_eq!(
        repo.get_owned(mallory.id, old.id).await.expect("other"),
        None,
        "another user's session answers like a missing one"
    );
    assert_eq!(
        repo.get_owned(alice.id, ConnectSessionId::from_uuid(Uuid::now_v7()))
            .await
            .expect("missing"),
        None
    );

    let ids = |list: Vec<ConnectSession>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(repo.list_owned(alice.id).await.expect("list")),
        vec![new.id, mid.id, old.id],
        "newest first, only alice's"
    );
    assert_eq!(
        ids(repo.list_owned(mallory.id).await.expect("list")),
        vec![mallorys.id]
    );

    // list_open: every tenant's non-terminal sessions, soonest deadline first.
    repo.transition(old.id, Starting, Expired, ConnectChange::default(), at(40))
        .await
        .expect("expire");
    repo.transition(
        mid.id,
        Starting,
        AwaitingUser,
        ConnectChange::default(),
        at(40),
    )
    .await
    .expect("await");
    repo.transition(
        mid.id,
        AwaitingUser,
        Capturing,
        ConnectChange::default(),
        at(41),
    )
    .await
    .expect("capture");
    assert_eq!(
        ids(repo.list_open().await.expect("open")),
        vec![mid.id, mallorys.id, new.id]
    );
    // Every terminal state drops out of it; completed via the transaction.
    store
        .complete_connect(
            mid.id,
            Capturing,
            new_credential(alice.id, "gemini_cli", 1, 1),
            None,
            at(50),
        )
        .await
        .expect("complete");
    repo.transition(
        new.id,
        Starting,
        Failed,
        ConnectChange {
            failure: Some("browser sandbox did not boot".into()),
            ..ConnectChange::default()
        },
        at(51),
    )
    .await
    .expect("fail");
    repo.transition(
        mallorys.id,
        Starting,
        Cancelled,
        ConnectChange::default(),
        at(52),
    )
    .await
    .expect("cancel");
    assert!(repo.list_open().await.expect("open").is_empty());
    // Listing by owner still shows them all.
    let states: Vec<ConnectState> = repo
        .list_owned(alice.id)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, vec![Failed, Completed, Expired]);
}

async fn session_transitions_are_checked_compare_and_set(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let repo = store.connect_sessions();
    let session = new_session(user.id, "codex", at(10));
    repo.insert(&session).await.expect("insert");

    // Legal, with its extra fields, in one write.
    let sandbox = SandboxId::from_uuid(Uuid::now_v7());
    let awaiting = repo
        .transition(
            session.id,
            Starting,
            AwaitingUser,
            ConnectChange {
                browser_sandbox: Some(sandbox),
                prompt: Some(ConnectPrompt::Viewer),
                failure: None,
            },
            at(20),
        )
        .await
        .expect("starting -> awaiting_user");
    assert_eq!(awaiting.state, AwaitingUser);
    assert_eq!(awaiting.browser_sandbox, Some(sandbox));
    assert_eq!(awaiting.prompt, Some(ConnectPrompt::Viewer));
    assert_eq!(awaiting.updated_at, at(20));
    assert_eq!(awaiting.completed_at, None);
    assert_eq!(
        repo.get(session.id).await.expect("get"),
        Some(awaiting.clone())
    );

    // Illegal: refused before anything is read or written.
    let err = repo
        .transition(
            session.id,
            AwaitingUser,
            Starting,
            ConnectChange::default(),
            at(21),
        )
        .await
        .expect_err("awaiting_user -> starting");
    assert!(
        matches!(err, StoreError::InvalidConnectTransition(_)),
        "{err:?}"
    );
    let err = repo
        .transition(
            session.id,
            AwaitingUser,
            Completed,
            ConnectChange::default(),
            at(21),
        )
        .await
        .expect_err("awaiting_user -> completed skips capturing");
    assert!(
        matches!(err, StoreError::InvalidConnectTransition(_)),
        "{err:?}"
    );

    // Stale `from`: a conflict reporting what is really there, and nothing written.
    let err = repo
        .transition(
            session.id,
            Starting,
            Failed,
            ConnectChange::default(),
            at(22),
        )
        .await
        .expect_err("stale from");
    match err {
        StoreError::ConnectConflict {
            id,
            expected,
            actual,
        } => {
            assert_eq!(id, session.id);
            assert_eq!(expected, Starting);
            assert_eq!(actual, Some(AwaitingUser));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        repo.get(session.id).await.expect("get"),
        Some(awaiting.clone())
    );

    // Missing record.
    let err = repo
        .transition(
            ConnectSessionId::from_uuid(Uuid::now_v7()),
            Starting,
            Failed,
            ConnectChange::default(),
            at(23),
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // A later change replaces only what it names.
    let prompt = ConnectPrompt::VerificationUri {
        uri: "https://auth.example.test/device".into(),
        user_code: "WXYZ-1234".into(),
    };
    let capturing = repo
        .transition(
            session.id,
            AwaitingUser,
            Capturing,
            ConnectChange {
                prompt: Some(prompt.clone()),
                ..ConnectChange::default()
            },
            at(30),
        )
        .await
        .expect("capture");
    assert_eq!(capturing.browser_sandbox, Some(sandbox), "kept");
    assert_eq!(capturing.prompt, Some(prompt));
    let failed = repo
        .transition(
            session.id,
            Capturing,
            Failed,
            ConnectChange {
                failure: Some("credential files malformed".into()),
                ..ConnectChange::default()
            },
            at(40),
        )
        .await
        .expect("fail");
    assert_eq!(
        failed.failure.as_deref(),
        Some("credential files malformed")
    );
    assert_eq!(repo.get(session.id).await.expect("get"), Some(failed));
}

async fn concurrent_session_transitions_have_one_winner(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    for round in 0..5 {
        let session = new_session(user.id, "codex", at(round));
        store
            .connect_sessions()
            .insert(&session)
            .await
            .expect("insert");
        // The expiry sweeper and a failure report race for the same open session.
        let (repo_a, repo_b) = (store.connect_sessions(), store.connect_sessions());
        let (a, b) = tokio::join!(
            repo_a.transition(
                session.id,
                Starting,
                Expired,
                ConnectChange::default(),
                at(100),
            ),
            repo_b.transition(
                session.id,
                Starting,
                Failed,
                ConnectChange {
                    failure: Some("browser sandbox crashed".into()),
                    ..ConnectChange::default()
                },
                at(100),
            ),
        );
        let (winner, loser) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (a, b) => panic!("expected exactly one winner, got {a:?} and {b:?}"),
        };
        match loser {
            StoreError::ConnectConflict {
                expected, actual, ..
            } => {
                assert_eq!(expected, Starting);
                assert_eq!(actual, Some(winner.state));
            }
            other => panic!("loser should see a conflict, got {other:?}"),
        }
        let stored = store
            .connect_sessions()
            .get(session.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(stored, winner);
        assert_eq!(
            stored.failure.is_some(),
            stored.state == Failed,
            "the loser's fields were not applied"
        );
    }
}

async fn completed_is_final(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let session = capturing_session(&store, user.id, "codex").await;
    let (completed, _) = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 1, 7),
            None,
            at(30),
        )
        .await
        .expect("complete");
    assert_eq!(completed.state, Completed);
    assert_eq!(completed.completed_at, Some(at(30)));
    let repo = store.connect_sessions();

    // Whatever the browser sandbox does afterwards: every change out of completed is refused,
    // with the true `from`...
    for to in ALL_CONNECT_STATES {
        let err = repo
            .transition(
                session.id,
                Completed,
                to,
                ConnectChange {
                    failure: Some("browser sandbox exited 137".into()),
                    browser_sandbox: Some(SandboxId::from_uuid(Uuid::now_v7())),
                    prompt: Some(ConnectPrompt::Viewer),
                },
                at(40),
            )
            .await
            .expect_err("completed -> anything");
        assert!(
            matches!(err, StoreError::InvalidConnectTransition(_)),
            "completed -> {to}: {err:?}"
        );
    }
    // ... and with a stale one (the teardown path that still thinks it is capturing).
    for to in [Failed, Expired, Cancelled] {
        let err = repo
            .transition(session.id, Capturing, to, ConnectChange::default(), at(41))
            .await
            .expect_err("stale capturing -> terminal");
        assert!(
            matches!(
                err,
                StoreError::ConnectConflict {
                    actual: Some(Completed),
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Completing again (a retried upload) is refused too and writes no credential.
    let err = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 2, 8),
            Some(1),
            at(42),
        )
        .await
        .expect_err("complete twice");
    assert!(
        matches!(
            err,
            StoreError::ConnectConflict {
                actual: Some(Completed),
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .complete_connect(
            session.id,
            Completed,
            new_credential(user.id, "codex", 2, 8),
            Some(1),
            at(42),
        )
        .await
        .expect_err("completed -> completed");
    assert!(
        matches!(err, StoreError::InvalidConnectTransition(_)),
        "{err:?}"
    );
    assert_eq!(
        repo.get(session.id).await.expect("get"),
        Some(completed),
        "the completed row is untouched"
    );
    let cred = store
        .credentials()
        .get(user.id, &provider("codex"))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(cred.record_version, 1);
    assert_eq!(cred.sealed, sealed_bytes(7, 300));
}

async fn credentials_round_trip_bytes_exact(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let bob = make_user(&store, "bob").await;
    let creds = store.credentials();
    assert!(creds.list_all().await.expect("list").is_empty());

    let codex = capturing_session(&store, alice.id, "codex").await;
    let mut sealed = sealed_bytes(3, 70_000);
    sealed.extend_from_slice(b"\0\0\0");
    let new = NewCredential {
        owner: alice.id,
        provider: provider("codex"),
        record_version: 1,
        sealed: sealed.clone(),
        kek_version: u32::MAX,
        access_token_expires_at: None,
    };
    let (_, written) = store
        .complete_connect(codex.id, Capturing, new.clone(), None, at(30))
        .await
        .expect("complete");
    let expected = CredentialRecord {
        owner: alice.id,
        provider: provider("codex"),
        record_version: 1,
        sealed: sealed.clone(),
        kek_version: u32::MAX,
        connected_at: at(30),
        updated_at: at(30),
        access_token_expires_at: None,
        last_refresh_at: None,
        last_check: None,
    };
    assert_eq!(written, expected);
    assert_eq!(
        creds.get(alice.id, &provider("codex")).await.expect("get"),
        Some(expected.clone())
    );
    // Owner-scoped: bob has no codex credential, and alice none for another provider.
    assert_eq!(
        creds.get(bob.id, &provider("codex")).await.expect("get"),
        None
    );
    assert_eq!(
        creds
            .get(alice.id, &provider("gemini_cli"))
            .await
            .expect("get"),
        None
    );

    // Debug prints lengths, never the bytes.
    for text in [format!("{expected:?}"), format!("{new:?}")] {
        assert!(text.contains("sealed_len"), "{text}");
        assert!(
            !text.contains("[0, 31") && !text.contains("255, 254"),
            "{text}"
        );
        assert!(text.len() < 1_000, "{text}");
    }

    let gemini = capturing_session(&store, alice.id, "gemini_cli").await;
    store
        .complete_connect(
            gemini.id,
            Capturing,
            new_credential(alice.id, "gemini_cli", 1, 4),
            None,
            at(31),
        )
        .await
        .expect("complete gemini");
    let bobs = capturing_session(&store, bob.id, "codex").await;
    store
        .complete_connect(
            bobs.id,
            Capturing,
            new_credential(bob.id, "codex", 1, 5),
            None,
            at(32),
        )
        .await
        .expect("complete bob");

    let providers = |list: Vec<CredentialRecord>| {
        list.into_iter()
            .map(|c| (c.owner, c.provider.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        providers(creds.list_for_owner(alice.id).await.expect("list")),
        vec![(alice.id, "codex".into()), (alice.id, "gemini_cli".into())]
    );
    let mut all = vec![
        (alice.id, "codex".to_owned()),
        (alice.id, "gemini_cli".to_owned()),
        (bob.id, "codex".to_owned()),
    ];
    all.sort_by_key(|(owner, p)| (owner.to_string(), p.clone()));
    assert_eq!(providers(creds.list_all().await.expect("all")), all);

    // Survives a reconnect of the store, bytes exact.
    store.close().await;
    let again = db.store().await;
    assert_eq!(
        again
            .credentials()
            .get(alice.id, &provider("codex"))
            .await
            .expect("get")
            .map(|c| c.sealed),
        Some(sealed)
    );
}

async fn replace_sealed_is_compare_and_set(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let session = capturing_session(&store, user.id, "codex").await;
    store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 1, 1),
            None,
            at(30),
        )
        .await
        .expect("complete");
    let creds = store.credentials();
    let codex = provider("codex");

    // A refresh: reseal under version 2.
    let refreshed = creds
        .replace_sealed(
            user.id,
            &codex,
            1,
            NewSeal {
                sealed: sealed_bytes(2, 310),
                kek_version: 1,
                record_version: 2,
                access_token_expires_at: Some(at(7_200_000)),
                refreshed_at: Some(at(40)),
            },
            at(41),
        )
        .await
        .expect("reseal");
    assert_eq!(refreshed.record_version, 2);
    assert_eq!(refreshed.sealed, sealed_bytes(2, 310));
    assert_eq!(refreshed.access_token_expires_at, Some(at(7_200_000)));
    assert_eq!(refreshed.last_refresh_at, Some(at(40)));
    assert_eq!(refreshed.updated_at, at(41));
    assert_eq!(refreshed.connected_at, at(30), "kept");

    // A second refresher that read version 1 loses, and nothing changes.
    let err = creds
        .replace_sealed(
            user.id,
            &codex,
            1,
            NewSeal {
                sealed: sealed_bytes(9, 10),
                kek_version: 1,
                record_version: 2,
                access_token_expires_at: None,
                refreshed_at: Some(at(42)),
            },
            at(42),
        )
        .await
        .expect_err("stale version");
    match err {
        StoreError::CredentialConflict {
            provider,
            expected,
            actual,
        } => {
            assert_eq!(provider, codex);
            assert_eq!(expected, Some(1));
            assert_eq!(actual, Some(2));
        }
        other => panic!("expected a credential conflict, got {other:?}"),
    }
    assert_eq!(
        creds.get(user.id, &codex).await.expect("get"),
        Some(refreshed.clone())
    );

    // A rewrap keeps the record version (and the refresh time when none is given).
    let rewrapped = creds
        .replace_sealed(
            user.id,
            &codex,
            2,
            NewSeal {
                sealed: sealed_bytes(12, 310),
                kek_version: 2,
                record_version: 2,
                access_token_expires_at: refreshed.access_token_expires_at,
                refreshed_at: None,
            },
            at(50),
        )
        .await
        .expect("rewrap");
    assert_eq!(rewrapped.record_version, 2);
    assert_eq!(rewrapped.kek_version, 2);
    assert_eq!(rewrapped.last_refresh_at, Some(at(40)));
    assert_eq!(rewrapped.sealed, sealed_bytes(12, 310));

    // A version that neither keeps nor follows the expected one is refused up front.
    for bad in [0, 1, 4, u64::MAX] {
        let err = creds
            .replace_sealed(
                user.id,
                &codex,
                2,
                NewSeal {
                    sealed: vec![1],
                    kek_version: 2,
                    record_version: bad,
                    access_token_expires_at: None,
                    refreshed_at: None,
                },
                at(60),
            )
            .await
            .expect_err("bad version");
        assert!(
            matches!(err, StoreError::InvalidRecordVersion { .. }),
            "{bad}: {err:?}"
        );
    }
    // Versions beyond what the column holds are refused, not wrapped.
    let err = creds
        .replace_sealed(
            user.id,
            &codex,
            i64::MAX as u64,
            NewSeal {
                sealed: vec![1],
                kek_version: 2,
                record_version: i64::MAX as u64 + 1,
                access_token_expires_at: None,
                refreshed_at: None,
            },
            at(60),
        )
        .await
        .expect_err("too large");
    assert!(
        matches!(err, StoreError::InvalidRecordVersion { .. }),
        "{err:?}"
    );
    // Missing credential: a conflict that says there is none.
    let err = creds
        .replace_sealed(
            user.id,
            &provider("gemini_cli"),
            1,
            NewSeal {
                sealed: vec![1],
                kek_version: 1,
                record_version: 2,
                access_token_expires_at: None,
                refreshed_at: None,
            },
            at(60),
        )
        .await
        .expect_err("missing");
    assert!(
        matches!(err, StoreError::CredentialConflict { actual: None, .. }),
        "{err:?}"
    );
    assert_eq!(
        creds.get(user.id, &codex).await.expect("get"),
        Some(rewrapped)
    );

    // Concurrent refreshes from the same version: exactly one lands.
    let seal = |tag: u8| NewSeal {
        sealed: sealed_bytes(tag, 50),
        kek_version: 2,
        record_version: 3,
        access_token_expires_at: None,
        refreshed_at: Some(at(70)),
    };
    let (a, b) = tokio::join!(
        creds.replace_sealed(user.id, &codex, 2, seal(20), at(70)),
        creds.replace_sealed(user.id, &codex, 2, seal(21), at(70)),
    );
    let winner = match (a, b) {
        (Ok(w), Err(StoreError::CredentialConflict { .. }))
        | (Err(StoreError::CredentialConflict { .. }), Ok(w)) => w,
        (a, b) => panic!("expected exactly one winner, got {a:?} and {b:?}"),
    };
    assert_eq!(creds.get(user.id, &codex).await.expect("get"), Some(winner));
}

async fn delete_check_and_status(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let bob = make_user(&store, "bob").await;
    let creds = store.credentials();
    for (user, name) in [(&alice, "codex"), (&alice, "claude_code"), (&bob, "codex")] {
        let session = capturing_session(&store, user.id, name).await;
        store
            .complete_connect(
                session.id,
                Capturing,
                new_credential(user.id, name, 1, 1),
                None,
                at(30),
            )
            .await
            .expect("complete");
    }
    let codex = provider("codex");

    let check = StatusCheck {
        at: at(40),
        ok: true,
        output: "Logged in using ChatGPT".into(),
    };
    creds
        .record_check(alice.id, &codex, check.clone())
        .await
        .expect("check");
    let failing = StatusCheck {
        at: at(41),
        ok: false,
        output: String::new(),
    };
    creds
        .record_check(alice.id, &provider("claude_code"), failing.clone())
        .await
        .expect("check");
    let err = creds
        .record_check(alice.id, &provider("gemini_cli"), check.clone())
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let stored = creds
        .get(alice.id, &codex)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.last_check, Some(check));
    assert_eq!(stored.updated_at, at(30), "a check does not touch the seal");

    creds
        .replace_sealed(
            alice.id,
            &codex,
            1,
            NewSeal {
                sealed: vec![9; 40],
                kek_version: 1,
                record_version: 2,
                access_token_expires_at: Some(at(5_000)),
                refreshed_at: Some(at(45)),
            },
            at(45),
        )
        .await
        .expect("refresh");
    assert_eq!(
        creds.status(alice.id).await.expect("status"),
        vec![
            CredentialStatus {
                provider: provider("claude_code"),
                connected_since: at(30),
                last_check_at: Some(at(41)),
                last_check_output: Some(String::new()),
                last_check_ok: Some(false),
                access_token_expires_at: Some(at(3_600_000)),
                last_refresh_at: None,
            },
            CredentialStatus {
                provider: codex.clone(),
                connected_since: at(30),
                last_check_at: Some(at(40)),
                last_check_output: Some("Logged in using ChatGPT".into()),
                last_check_ok: Some(true),
                access_token_expires_at: Some(at(5_000)),
                last_refresh_at: Some(at(45)),
            },
        ]
    );
    assert_eq!(creds.status(bob.id).await.expect("status").len(), 1);

    // Delete: only the owner's row, once.
    assert!(creds.delete(alice.id, &codex).await.expect("delete"));
    assert!(!creds.delete(alice.id, &codex).await.expect("again"));
    assert_eq!(creds.get(alice.id, &codex).await.expect("get"), None);
    assert!(creds.get(bob.id, &codex).await.expect("get").is_some());
    assert_eq!(creds.status(alice.id).await.expect("status").len(), 1);

    // After a delete, a new connect inserts afresh.
    let session = capturing_session(&store, alice.id, "codex").await;
    let (_, fresh) = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(alice.id, "codex", 1, 3),
            None,
            at(60),
        )
        .await
        .expect("reconnect after delete");
    assert_eq!(fresh.connected_at, at(60));
    assert_eq!(fresh.last_check, None);
}

async fn complete_connect_writes_both(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let session = capturing_session(&store, user.id, "codex").await;
    let (completed, cred) = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 1, 1),
            None,
            at(30),
        )
        .await
        .expect("complete");
    assert_eq!(
        completed,
        ConnectSession {
            state: Completed,
            updated_at: at(30),
            completed_at: Some(at(30)),
            ..session.clone()
        }
    );
    assert_eq!(
        store.connect_sessions().get(session.id).await.expect("get"),
        Some(completed)
    );
    assert_eq!(
        store
            .credentials()
            .get(user.id, &provider("codex"))
            .await
            .expect("get"),
        Some(cred.clone())
    );
    assert_eq!(cred.record_version, 1);
    assert_eq!(cred.access_token_expires_at, Some(at(3_600_000)));

    // A reconnect replaces the credential (CAS on its version) in the same kind of transaction.
    store
        .credentials()
        .record_check(
            user.id,
            &provider("codex"),
            StatusCheck {
                at: at(35),
                ok: false,
                output: "token expired".into(),
            },
        )
        .await
        .expect("check");
    let again = capturing_session(&store, user.id, "codex").await;
    let (done, replaced) = store
        .complete_connect(
            again.id,
            Capturing,
            new_credential(user.id, "codex", 2, 2),
            Some(1),
            at(50),
        )
        .await
        .expect("reconnect");
    assert_eq!(done.state, Completed);
    assert_eq!(replaced.record_version, 2);
    assert_eq!(replaced.sealed, sealed_bytes(2, 300));
    assert_eq!(replaced.connected_at, at(50));
    assert_eq!(replaced.last_check, None, "the old check no longer applies");

    // Versions that do not follow are refused before anything is written.
    let third = capturing_session(&store, user.id, "codex").await;
    for (version, previous) in [(0, None), (2, Some(2)), (4, Some(2))] {
        let err = store
            .complete_connect(
                third.id,
                Capturing,
                new_credential(user.id, "codex", version, 3),
                previous,
                at(60),
            )
            .await
            .expect_err("bad version");
        assert!(
            matches!(err, StoreError::InvalidRecordVersion { .. }),
            "{version} after {previous:?}: {err:?}"
        );
    }
    // Only from capturing.
    let err = store
        .complete_connect(
            third.id,
            AwaitingUser,
            new_credential(user.id, "codex", 3, 3),
            Some(2),
            at(60),
        )
        .await
        .expect_err("from awaiting_user");
    assert!(
        matches!(err, StoreError::InvalidConnectTransition(_)),
        "{err:?}"
    );
    assert_eq!(stored_state(&store, third.id).await, Capturing);
}

async fn complete_connect_wrong_session_writes_nothing(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let mallory = make_user(&store, "mallory").await;
    let session = capturing_session(&store, alice.id, "codex").await;

    // Another user's session, another provider, or no session: not found, nothing stored.
    for (credential, id) in [
        (new_credential(mallory.id, "codex", 1, 1), session.id),
        (new_credential(alice.id, "gemini_cli", 1, 1), session.id),
        (
            new_credential(alice.id, "codex", 1, 1),
            ConnectSessionId::from_uuid(Uuid::now_v7()),
        ),
    ] {
        let err = store
            .complete_connect(id, Capturing, credential, None, at(30))
            .await
            .expect_err("wrong session");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }
    assert_eq!(stored_state(&store, session.id).await, Capturing);
    assert!(store
        .credentials()
        .list_all()
        .await
        .expect("list")
        .is_empty());
}

/// The rule, first half: a session that moved on (here: expired by the sweeper) cannot be
/// completed, and its credential is not stored either.
async fn complete_connect_on_a_moved_session_stores_no_credential(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let session = capturing_session(&store, user.id, "codex").await;
    store
        .connect_sessions()
        .transition(
            session.id,
            Capturing,
            Expired,
            ConnectChange::default(),
            at(25),
        )
        .await
        .expect("expire");

    let err = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 1, 1),
            None,
            at(30),
        )
        .await
        .expect_err("session expired");
    match err {
        StoreError::ConnectConflict {
            id,
            expected,
            actual,
        } => {
            assert_eq!(id, session.id);
            assert_eq!(expected, Capturing);
            assert_eq!(actual, Some(Expired));
        }
        other => panic!("expected a session conflict, got {other:?}"),
    }
    assert_eq!(
        store
            .credentials()
            .get(user.id, &provider("codex"))
            .await
            .expect("get"),
        None,
        "no credential without a completed session"
    );
    let stored = store
        .connect_sessions()
        .get(session.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.state, Expired);
    assert_eq!(stored.completed_at, None);

    // The same with an existing credential: it keeps its old version and bytes.
    let first = capturing_session(&store, user.id, "gemini_cli").await;
    let (_, old) = store
        .complete_connect(
            first.id,
            Capturing,
            new_credential(user.id, "gemini_cli", 1, 1),
            None,
            at(30),
        )
        .await
        .expect("first connect");
    let second = capturing_session(&store, user.id, "gemini_cli").await;
    store
        .connect_sessions()
        .transition(
            second.id,
            Capturing,
            Cancelled,
            ConnectChange::default(),
            at(35),
        )
        .await
        .expect("cancel");
    let err = store
        .complete_connect(
            second.id,
            Capturing,
            new_credential(user.id, "gemini_cli", 2, 2),
            Some(1),
            at(40),
        )
        .await
        .expect_err("session cancelled");
    assert!(
        matches!(
            err,
            StoreError::ConnectConflict {
                actual: Some(Cancelled),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store
            .credentials()
            .get(user.id, &provider("gemini_cli"))
            .await
            .expect("get"),
        Some(old)
    );
}

/// The rule, second half: when the credential cannot be stored (wrong expected version), the
/// session is not completed either — it is still in its old state, ready for a retry.
async fn complete_connect_with_a_stale_credential_leaves_the_session(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let first = capturing_session(&store, user.id, "codex").await;
    let (_, old) = store
        .complete_connect(
            first.id,
            Capturing,
            new_credential(user.id, "codex", 1, 1),
            None,
            at(30),
        )
        .await
        .expect("first connect");

    let session = capturing_session(&store, user.id, "codex").await;
    // Expecting "no credential yet" while one exists: the insert collides.
    let err = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 1, 2),
            None,
            at(40),
        )
        .await
        .expect_err("row exists");
    match err {
        StoreError::CredentialConflict {
            provider: p,
            expected,
            actual,
        } => {
            assert_eq!(p, provider("codex"));
            assert_eq!(expected, None);
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a credential conflict, got {other:?}"),
    }
    assert_eq!(
        store.connect_sessions().get(session.id).await.expect("get"),
        Some(session.clone()),
        "the session was not completed (the update of its row was rolled back)"
    );

    // Expecting a version that is not stored (a refresh moved it).
    store
        .credentials()
        .replace_sealed(
            user.id,
            &provider("codex"),
            1,
            NewSeal {
                sealed: sealed_bytes(5, 20),
                kek_version: 1,
                record_version: 2,
                access_token_expires_at: None,
                refreshed_at: Some(at(45)),
            },
            at(45),
        )
        .await
        .expect("refresh");
    let err = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 2, 3),
            Some(1),
            at(50),
        )
        .await
        .expect_err("stale version");
    assert!(
        matches!(
            err,
            StoreError::CredentialConflict {
                expected: Some(1),
                actual: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store.connect_sessions().get(session.id).await.expect("get"),
        Some(session.clone()),
        "still capturing, completed_at unset"
    );
    let stored = store
        .credentials()
        .get(user.id, &provider("codex"))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.record_version, 2);
    assert_eq!(stored.sealed, sealed_bytes(5, 20));
    assert_ne!(stored, old);

    // Expecting a credential that was deleted meanwhile.
    store
        .credentials()
        .delete(user.id, &provider("codex"))
        .await
        .expect("delete");
    let err = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 3, 3),
            Some(2),
            at(55),
        )
        .await
        .expect_err("vanished");
    assert!(
        matches!(err, StoreError::CredentialConflict { actual: None, .. }),
        "{err:?}"
    );
    assert_eq!(stored_state(&store, session.id).await, Capturing);

    // With the right expectation the retry succeeds: the session was left usable.
    let (done, cred) = store
        .complete_connect(
            session.id,
            Capturing,
            new_credential(user.id, "codex", 1, 4),
            None,
            at(60),
        )
        .await
        .expect("retry");
    assert_eq!(done.state, Completed);
    assert_eq!(cred.sealed, sealed_bytes(4, 300));
}

async fn concurrent_complete_connect_has_one_winner(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    for round in 0..5u8 {
        let name = ["codex", "claude_code", "gemini_cli", "aider", "goose"][round as usize];
        let session = capturing_session(&store, user.id, name).await;
        // The same credential upload handled twice at once (a retried request).
        let (a, b) = tokio::join!(
            store.complete_connect(
                session.id,
                Capturing,
                new_credential(user.id, name, 1, 10 + round),
                None,
                at(100),
            ),
            store.complete_connect(
                session.id,
                Capturing,
                new_credential(user.id, name, 1, 20 + round),
                None,
                at(101),
            ),
        );
        let ((session_won, cred_won), loser) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (a, b) => panic!("expected exactly one winner, got {a:?} and {b:?}"),
        };
        assert!(
            matches!(
                loser,
                StoreError::ConnectConflict {
                    actual: Some(Completed),
                    ..
                }
            ),
            "{loser:?}"
        );
        assert_eq!(
            store.connect_sessions().get(session.id).await.expect("get"),
            Some(session_won.clone())
        );
        assert_eq!(
            store
                .credentials()
                .get(user.id, &provider(name))
                .await
                .expect("get"),
            Some(cred_won.clone()),
            "the winner's bytes are stored"
        );
        assert_eq!(
            session_won.completed_at.map(|t| t.unix_ms() - T0),
            Some(if cred_won.sealed == sealed_bytes(10 + round, 300) {
                100
            } else {
                101
            }),
            "session and credential come from the same call"
        );
    }

    // Two sessions of the same user and provider racing to store the first credential: one
    // completes; the other stays capturing (its credential insert collided and was rolled
    // back with its session update).
    let s1 = capturing_session(&store, user.id, "opencode").await;
    let s2 = capturing_session(&store, user.id, "opencode").await;
    let (a, b) = tokio::join!(
        store.complete_connect(
            s1.id,
            Capturing,
            new_credential(user.id, "opencode", 1, 1),
            None,
            at(200),
        ),
        store.complete_connect(
            s2.id,
            Capturing,
            new_credential(user.id, "opencode", 1, 2),
            None,
            at(200),
        ),
    );
    let (winner_id, loser_id, winner_cred) = match (a, b) {
        (Ok((s, c)), Err(StoreError::CredentialConflict { .. })) => (s.id, s2.id, c),
        (Err(StoreError::CredentialConflict { .. }), Ok((s, c))) => (s.id, s1.id, c),
        (a, b) => panic!("expected one winner and a credential conflict, got {a:?} and {b:?}"),
    };
    assert_eq!(stored_state(&store, winner_id).await, Completed);
    assert_eq!(stored_state(&store, loser_id).await, Capturing);
    assert_eq!(
        store
            .credentials()
            .get(user.id, &provider("opencode"))
            .await
            .expect("get"),
        Some(winner_cred)
    );
}

async fn viewer_tokens_are_set_once_and_looked_up_by_hash(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let repo = store.connect_sessions();
    let session = new_session(alice.id, "codex", at(10));
    let other = new_session(alice.id, "codex", at(11));
    repo.insert(&session).await.expect("insert");
    repo.insert(&other).await.expect("insert");
    let hash = "a".repeat(64);
    repo.set_viewer_token_hash(session.id, &hash)
        .await
        .expect("set");
    assert!(matches!(
        repo.set_viewer_token_hash(session.id, &"b".repeat(64))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        repo.get_by_viewer_token(session.id, &hash)
            .await
            .expect("get"),
        Some(session.clone())
    );
    assert_eq!(
        repo.get_by_viewer_token(session.id, &"b".repeat(64))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        repo.get_by_viewer_token(other.id, &hash)
            .await
            .expect("get"),
        None,
        "bound to its session"
    );
}

hangar_store::test_both_backends!(
    viewer_tokens_are_set_once_and_looked_up_by_hash,
    sessions_round_trip_every_field,
    sessions_are_walled_off_and_listed,
    session_transitions_are_checked_compare_and_set,
    concurrent_session_transitions_have_one_winner,
    completed_is_final,
    credentials_round_trip_bytes_exact,
    replace_sealed_is_compare_and_set,
    delete_check_and_status,
    complete_connect_writes_both,
    complete_connect_wrong_session_writes_nothing,
    complete_connect_on_a_moved_session_stores_no_credential,
    complete_connect_with_a_stale_credential_leaves_the_session,
    concurrent_complete_connect_has_one_winner,
);
