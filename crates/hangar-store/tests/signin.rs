//! Sign-in: browser sessions, external identities and single-use sign-in states, each test run
//! against SQLite and PostgreSQL (`name::sqlite`, `name::postgres`).

use hangar_core::{BrowserSessionId, Timestamp, UserId};
use hangar_store::testing::TestDb;
use hangar_store::{
    BrowserSessionRecord, ExternalSignIn, SigninState, SigninStateRefusal, Store, StoreError, User,
};
use uuid::Uuid;

const T0: i64 = 1_790_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_ms)
}

fn new_user_id() -> UserId {
    UserId::from_uuid(Uuid::now_v7())
}

async fn make_user(store: &Store, name: &str) -> User {
    let user = User {
        id: new_user_id(),
        name: name.to_owned(),
        is_admin: false,
        created_at: at(0),
    };
    store.users().create(&user).await.expect("create user");
    user
}

fn hash(tag: u8) -> [u8; 32] {
    [tag; 32]
}

fn sign_in(provider: &str, subject: &str, name: &str) -> ExternalSignIn {
    ExternalSignIn {
        provider: provider.to_owned(),
        subject: subject.to_owned(),
        email: Some(format!("{subject}@example.test")),
        wanted_name: name.to_owned(),
    }
}

async fn sessions_are_found_while_active_and_revoked_once(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let repo = store.browser_sessions();
    let session = BrowserSessionRecord {
        id: BrowserSessionId::from_uuid(Uuid::now_v7()),
        user: alice.id,
        hash: hash(1),
        created_at: at(0),
        expires_at: at(1_000),
        last_seen_at: at(0),
        revoked_at: None,
    };
    repo.insert(&session).await.expect("insert");
    let err = repo.insert(&session).await.expect_err("duplicate");
    assert!(
        matches!(
            err,
            StoreError::Duplicate {
                what: "browser session"
            }
        ),
        "{err:?}"
    );
    let orphan = BrowserSessionRecord {
        id: BrowserSessionId::from_uuid(Uuid::now_v7()),
        user: new_user_id(),
        hash: hash(2),
        ..session.clone()
    };
    let err = repo.insert(&orphan).await.expect_err("no user");
    assert!(
        matches!(err, StoreError::MissingReference { .. }),
        "{err:?}"
    );

    let (found, user) = repo
        .find_active_by_hash(&hash(1), at(999))
        .await
        .expect("find")
        .expect("active");
    assert_eq!((found, user), (session.clone(), alice.clone()));
    assert_eq!(
        repo.find_active_by_hash(&hash(1), at(1_000))
            .await
            .expect("find"),
        None,
        "expired at its expiry instant"
    );
    assert_eq!(
        repo.find_active_by_hash(&hash(9), at(1))
            .await
            .expect("find"),
        None
    );

    repo.touch(session.id, at(500)).await.expect("touch");
    repo.touch(session.id, at(400)).await.expect("touch back");
    let stored = repo
        .get_by_hash(&hash(1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        stored.last_seen_at,
        at(500),
        "last_seen never moves backwards"
    );

    assert!(repo
        .revoke_by_hash(&hash(1), at(600))
        .await
        .expect("revoke"));
    assert!(!repo.revoke_by_hash(&hash(1), at(700)).await.expect("again"));
    assert!(!repo
        .revoke_by_hash(&hash(9), at(700))
        .await
        .expect("unknown"));
    assert_eq!(
        repo.find_active_by_hash(&hash(1), at(601))
            .await
            .expect("find"),
        None
    );
    let stored = repo
        .get_by_hash(&hash(1))
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        stored.revoked_at,
        Some(at(600)),
        "the first revocation is kept"
    );
    assert_eq!(
        repo.list_for_user(alice.id).await.expect("list"),
        vec![stored.clone()]
    );
    assert!(
        !format!("{stored:?}").contains(&hex_of(1)),
        "Debug leaves the hash out"
    );
}

fn hex_of(tag: u8) -> String {
    hash(tag).iter().map(|b| format!("{b:02x}")).collect()
}

async fn first_sign_in_creates_user_and_identity_later_ones_find_it(db: TestDb) {
    let store = db.store().await;
    make_user(&store, "admin").await;
    let first = store
        .sign_in_external(
            &sign_in("github", "583231", "octocat"),
            new_user_id(),
            at(10),
        )
        .await
        .expect("first");
    assert!(first.created);
    assert_eq!(first.user.name, "octocat");
    assert!(!first.user.is_admin);
    assert_eq!(first.identity.user, first.user.id);
    assert_eq!(first.identity.email.as_deref(), Some("583231@example.test"));

    let again = store
        .sign_in_external(
            &sign_in("github", "583231", "renamed"),
            new_user_id(),
            at(20),
        )
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.user, first.user);
    assert_eq!(again.identity, first.identity);

    // The same subject at another provider is another person; a taken name gets a suffix.
    let other = store
        .sign_in_external(&sign_in("corp", "583231", "octocat"), new_user_id(), at(30))
        .await
        .expect("other provider");
    assert!(other.created);
    assert_eq!(other.user.name, "octocat-2");
    let third = store
        .sign_in_external(&sign_in("corp", "x", "octocat"), new_user_id(), at(40))
        .await
        .expect("third");
    assert_eq!(third.user.name, "octocat-3");
    let admin = store
        .sign_in_external(&sign_in("corp", "y", "admin"), new_user_id(), at(50))
        .await
        .expect("admin name");
    assert_eq!(admin.user.name, "admin-2");
    assert!(!admin.user.is_admin, "a name never carries rights");

    let (identity, user) = store
        .external_identities()
        .find("github", "583231")
        .await
        .expect("find")
        .expect("linked");
    assert_eq!(
        (identity, user),
        (first.identity.clone(), first.user.clone())
    );
    assert_eq!(
        store
            .external_identities()
            .find("github", "nope")
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .external_identities()
            .list_for_user(first.user.id)
            .await
            .expect("list"),
        vec![first.identity]
    );
    assert_eq!(store.external_identities().count().await.expect("count"), 4);
    assert_eq!(store.users().count().await.expect("users"), 5);
}

async fn concurrent_first_sign_ins_make_one_user(db: TestDb) {
    let store = db.store().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .sign_in_external(
                    &sign_in("corp", "same-subject", "sam"),
                    new_user_id(),
                    at(1),
                )
                .await
        }));
    }
    let mut users = Vec::new();
    for task in tasks {
        users.push(task.await.expect("join").expect("sign in").user);
    }
    assert!(users.iter().all(|u| *u == users[0]), "{users:?}");
    assert_eq!(store.users().count().await.expect("count"), 1);
    assert_eq!(store.external_identities().count().await.expect("count"), 1);
}

fn state(tag: u8, expires: Timestamp) -> SigninState {
    SigninState {
        state_hash: hash(tag),
        provider: "corp".into(),
        pkce_verifier: "verifier-secret".into(),
        nonce: Some("nonce-secret".into()),
        return_to: "/api/v1/account?x=1".into(),
        created_at: at(0),
        expires_at: expires,
        used_at: None,
    }
}

async fn signin_states_are_single_use(db: TestDb) {
    let store = db.store().await;
    let repo = store.signin_states();
    let s = state(1, at(600_000));
    repo.insert(&s).await.expect("insert");
    let err = repo.insert(&s).await.expect_err("duplicate");
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");
    let mut github = state(2, at(600_000));
    github.nonce = None;
    repo.insert(&github).await.expect("insert github");
    repo.insert(&state(3, at(100))).await.expect("insert short");

    let taken = repo
        .take(&hash(1), at(50))
        .await
        .expect("take")
        .expect("usable");
    assert_eq!(
        taken,
        SigninState {
            used_at: Some(at(50)),
            ..s.clone()
        }
    );
    assert_eq!(
        repo.take(&hash(1), at(60)).await.expect("take"),
        Err(SigninStateRefusal::Used),
        "a replayed callback is refused"
    );
    assert_eq!(
        repo.take(&hash(9), at(60)).await.expect("take"),
        Err(SigninStateRefusal::Unknown)
    );
    assert_eq!(
        repo.take(&hash(3), at(100)).await.expect("take"),
        Err(SigninStateRefusal::Expired)
    );
    let taken = repo
        .take(&hash(2), at(70))
        .await
        .expect("take")
        .expect("usable");
    assert_eq!(taken.nonce, None);
    let text = format!("{taken:?}");
    assert!(
        !text.contains("verifier-secret") && !text.contains(&hex_of(2)),
        "{text}"
    );

    assert_eq!(repo.purge_expired(at(101)).await.expect("purge"), 1);
    assert_eq!(repo.get(&hash(3)).await.expect("get"), None);
    assert!(repo.get(&hash(1)).await.expect("get").is_some());
}

async fn concurrent_callbacks_have_one_winner(db: TestDb) {
    let store = db.store().await;
    store
        .signin_states()
        .insert(&state(7, at(600_000)))
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.signin_states().take(&hash(7), at(10 + i)).await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("join").expect("take") {
            Ok(_) => winners += 1,
            Err(refusal) => assert_eq!(refusal, SigninStateRefusal::Used),
        }
    }
    assert_eq!(winners, 1);
}

hangar_store::test_both_backends!(
    sessions_are_found_while_active_and_revoked_once,
    first_sign_in_creates_user_and_identity_later_ones_find_it,
    concurrent_first_sign_ins_make_one_user,
    signin_states_are_single_use,
    concurrent_callbacks_have_one_winner,
);
