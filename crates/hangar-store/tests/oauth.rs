//! OAuth repository tests, each run against SQLite and PostgreSQL.

use hangar_core::{GrantId, Timestamp, UserId};
use hangar_oauth::client::{ClientType, GrantType, OAuthClient};
use hangar_oauth::code::CodeGrant;
use hangar_oauth::device::DeviceState;
use hangar_oauth::pkce::CodeChallenge;
use hangar_oauth::token::TokenKind;
use hangar_oauth::{ScopeSet, SecretHash};
use hangar_store::testing::TestDb;
use hangar_store::{
    DeviceRecord, NewOAuthToken, RefreshedTokens, RotatedRefresh, SigningKeyRecord, Store,
    StoreError, TokenRecord, User,
};
use uuid::Uuid;

const T0: i64 = 1_790_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_ms)
}

fn scopes(text: &str) -> ScopeSet {
    ScopeSet::parse(text).expect("scopes")
}

fn hash(n: u8) -> SecretHash {
    SecretHash([n; 32])
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

fn client(id: &str, client_type: ClientType) -> OAuthClient {
    OAuthClient {
        id: id.parse().expect("client id"),
        name: format!("App {id}"),
        client_type,
        secret_hash: (client_type == ClientType::Confidential)
            .then(|| "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        redirect_uris: vec!["https://app.test/cb".into(), "http://127.0.0.1/cb".into()],
        scopes: scopes("sandboxes:read sandboxes:write openid"),
        grant_types: GrantType::ALL.to_vec(),
        created_at: at(0),
    }
}

fn code(client: &OAuthClient, user: UserId) -> CodeGrant {
    CodeGrant {
        client_id: client.id.clone(),
        user,
        redirect_uri: Some("https://app.test/cb".into()),
        scopes: scopes("sandboxes:read openid"),
        code_challenge: Some(CodeChallenge::s256_of(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        )),
        nonce: Some("n-0S6_WzA2Mj".into()),
        auth_time: at(0),
        created_at: at(0),
        expires_at: at(60_000),
        redeemed_at: None,
    }
}

fn token(
    n: u8,
    kind: TokenKind,
    grant: GrantId,
    client: &OAuthClient,
    user: UserId,
    family: SecretHash,
) -> NewOAuthToken {
    NewOAuthToken {
        hash: hash(n),
        kind,
        grant_id: grant,
        client_id: client.id.clone(),
        user,
        family,
        scopes: scopes("sandboxes:read"),
        auth_time: at(0),
        created_at: at(1),
        expires_at: Some(at(3_600_000)),
    }
}

/// The new access (`access`) and refresh (`refresh`) tokens of a refresh by `client`, with
/// the old token's scope, expiring an hour after the epoch of the tests.
fn refreshed(access: u8, refresh: u8, client: &OAuthClient) -> RefreshedTokens {
    RefreshedTokens {
        client_id: client.id.clone(),
        access: hash(access),
        access_scopes: None,
        access_expires_at: at(3_600_000),
        refresh: hash(refresh),
        refresh_expires_at: at(7_200_000),
    }
}

/// A user, a client, a live grant, and a code for it (hash 1).
async fn fixture(store: &Store) -> (User, OAuthClient, GrantId) {
    let user = make_user(store, "alice").await;
    let app = client("app", ClientType::Public);
    store.oauth().insert_client(&app).await.expect("client");
    let grant = store
        .oauth()
        .upsert_grant(
            user.id,
            &app.id,
            &scopes("sandboxes:read openid"),
            GrantId::from_uuid(Uuid::now_v7()),
            at(0),
        )
        .await
        .expect("grant");
    store
        .oauth()
        .insert_code(&hash(1), grant.id, &code(&app, user.id))
        .await
        .expect("code");
    (user, app, grant.id)
}

async fn clients_round_trip_and_cascade(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let secret = client("conf", ClientType::Confidential);
    store.oauth().insert_client(&secret).await.expect("insert");
    assert_eq!(
        store.oauth().get_client(&secret.id).await.expect("get"),
        Some(secret.clone())
    );
    assert!(matches!(
        store.oauth().insert_client(&secret).await,
        Err(StoreError::Duplicate { .. })
    ));
    let all = store.oauth().list_clients().await.expect("list");
    assert_eq!(all, vec![app.clone(), secret]);
    // Public clients carry no secret hash; the schema refuses a mix.
    let mut odd = client("odd", ClientType::Public);
    odd.secret_hash = Some("x".into());
    assert!(store.oauth().insert_client(&odd).await.is_err());

    store
        .oauth()
        .insert_tokens(&[token(9, TokenKind::Access, grant, &app, user.id, hash(1))])
        .await
        .expect("token");
    assert!(store.oauth().delete_client(&app.id).await.expect("delete"));
    assert!(!store.oauth().delete_client(&app.id).await.expect("again"));
    assert_eq!(store.oauth().get_grant(grant).await.expect("grant"), None);
    assert_eq!(store.oauth().find_code(&hash(1)).await.expect("code"), None);
    assert_eq!(
        store.oauth().find_token(&hash(9)).await.expect("token"),
        None
    );
}

async fn grants_merge_scopes_and_revoke_their_tokens(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let other = make_user(&store, "bob").await;
    let again = store
        .oauth()
        .upsert_grant(
            user.id,
            &app.id,
            &scopes("sandboxes:write"),
            GrantId::from_uuid(Uuid::now_v7()),
            at(5),
        )
        .await
        .expect("upsert");
    assert_eq!(again.id, grant, "one live grant per user and client");
    assert_eq!(
        again.scopes,
        scopes("sandboxes:read sandboxes:write openid")
    );
    assert_eq!(again.client_name, "App app");
    store
        .oauth()
        .insert_tokens(&[
            token(2, TokenKind::Access, grant, &app, user.id, hash(1)),
            token(3, TokenKind::Refresh, grant, &app, user.id, hash(1)),
        ])
        .await
        .expect("tokens");
    // Another user cannot revoke it; the owner can, once.
    assert!(!store
        .oauth()
        .revoke_grant(Some(other.id), grant, at(6))
        .await
        .expect("other"));
    assert!(store
        .oauth()
        .find_token(&hash(2))
        .await
        .expect("find")
        .expect("token")
        .is_active(at(7)));
    assert!(store
        .oauth()
        .revoke_grant(Some(user.id), grant, at(7))
        .await
        .expect("revoke"));
    assert!(!store
        .oauth()
        .revoke_grant(Some(user.id), grant, at(8))
        .await
        .expect("twice"));
    for n in [2, 3] {
        let t = store
            .oauth()
            .find_token(&hash(n))
            .await
            .expect("find")
            .expect("token");
        assert_eq!(t.revoked_at, Some(at(7)));
        assert!(!t.is_active(at(8)));
    }
    assert!(store
        .oauth()
        .list_grants(user.id)
        .await
        .expect("list")
        .is_empty());
    // A new approval after revocation makes a new grant.
    let fresh = store
        .oauth()
        .upsert_grant(
            user.id,
            &app.id,
            &scopes("openid"),
            GrantId::from_uuid(Uuid::now_v7()),
            at(9),
        )
        .await
        .expect("new grant");
    assert_ne!(fresh.id, grant);
    assert_eq!(
        store.oauth().list_grants(user.id).await.expect("list"),
        vec![fresh]
    );
}

async fn code_redemption_is_one_transaction_with_one_winner(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let (_, stored) = store
        .oauth()
        .find_code(&hash(1))
        .await
        .expect("find")
        .expect("code");
    assert_eq!(stored, code(&app, user.id));

    // Eight concurrent redemptions, each with its own tokens: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = store.clone();
        let tokens = vec![
            token(10 + 2 * i, TokenKind::Access, grant, &app, user.id, hash(1)),
            token(
                11 + 2 * i,
                TokenKind::Refresh,
                grant,
                &app,
                user.id,
                hash(1),
            ),
        ];
        tasks.push(tokio::spawn(async move {
            store.oauth().redeem_code(&hash(1), at(10), &tokens).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(()) => wins += 1,
            Err(StoreError::Stale { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let tokens = store
        .oauth()
        .list_tokens_of_grant(grant)
        .await
        .expect("tokens");
    assert_eq!(tokens.len(), 2, "only the winner's tokens exist");
    let (_, redeemed) = store
        .oauth()
        .find_code(&hash(1))
        .await
        .expect("find")
        .expect("code");
    assert_eq!(redeemed.redeemed_at, Some(at(10)));

    // Replay: the family is revoked.
    assert_eq!(
        store
            .oauth()
            .revoke_family(grant, &hash(1), at(20))
            .await
            .expect("family"),
        2
    );
    for t in store
        .oauth()
        .list_tokens_of_grant(grant)
        .await
        .expect("tokens")
    {
        assert_eq!(t.revoked_at, Some(at(20)));
    }

    // An expired code, or one whose grant was revoked, cannot be redeemed; nothing is written.
    store
        .oauth()
        .insert_code(&hash(2), grant, &code(&app, user.id))
        .await
        .expect("code 2");
    let late = [token(50, TokenKind::Access, grant, &app, user.id, hash(2))];
    assert!(matches!(
        store.oauth().redeem_code(&hash(2), at(60_000), &late).await,
        Err(StoreError::Stale { .. })
    ));
    store
        .oauth()
        .revoke_grant(None, grant, at(30))
        .await
        .expect("revoke");
    assert!(matches!(
        store.oauth().redeem_code(&hash(2), at(40), &late).await,
        Err(StoreError::Stale { .. })
    ));
    assert_eq!(
        store.oauth().find_token(&hash(50)).await.expect("find"),
        None
    );
}

async fn refresh_rotation_has_one_winner(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let mut old = token(2, TokenKind::Refresh, grant, &app, user.id, hash(1));
    old.scopes = scopes("sandboxes:read openid");
    old.auth_time = at(-5);
    store
        .oauth()
        .insert_tokens(std::slice::from_ref(&old))
        .await
        .expect("refresh");
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = store.clone();
        let tokens = refreshed(20 + 2 * i, 21 + 2 * i, &app);
        tasks.push(tokio::spawn(async move {
            let rotated = store
                .oauth()
                .rotate_refresh(&hash(2), at(10), &tokens)
                .await;
            (tokens, rotated)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            (tokens, Ok(rotated)) => winners.push((tokens, rotated)),
            (_, Err(StoreError::Stale { .. })) => {}
            (_, Err(other)) => panic!("unexpected {other:?}"),
        }
    }
    let [(won, rotated)] = winners.as_slice() else {
        panic!("{} winners", winners.len());
    };
    // The winner read the old token, and its new tokens copy the old token's grant.
    assert_eq!(
        *rotated,
        RotatedRefresh {
            grant_id: grant,
            user: user.id,
            scopes: old.scopes.clone(),
        }
    );
    let tokens = store
        .oauth()
        .list_tokens_of_grant(grant)
        .await
        .expect("tokens");
    assert_eq!(tokens.len(), 3);
    for (new, kind, expires_at) in [
        (won.access, TokenKind::Access, won.access_expires_at),
        (won.refresh, TokenKind::Refresh, won.refresh_expires_at),
    ] {
        let new = tokens.iter().find(|t| t.hash == new).expect("new token");
        assert_eq!(new.kind, kind);
        assert_eq!(new.client_id, app.id);
        assert_eq!(new.user.id, user.id);
        assert_eq!(new.family, hash(1));
        assert_eq!(new.scopes, old.scopes);
        assert_eq!(new.auth_time, at(-5));
        assert_eq!(new.created_at, at(10));
        assert_eq!(new.expires_at, Some(expires_at));
        assert_eq!((new.rotated_at, new.revoked_at), (None, None));
    }
    let old = store
        .oauth()
        .find_token(&hash(2))
        .await
        .expect("find")
        .expect("old");
    assert_eq!(old.rotated_at, Some(at(10)));
    assert!(!old.is_active(at(11)));
    // An access token cannot be "rotated".
    let access = tokens
        .iter()
        .find(|t| t.kind == TokenKind::Access)
        .expect("access");
    assert!(matches!(
        store
            .oauth()
            .rotate_refresh(&access.hash, at(12), &refreshed(40, 41, &app))
            .await,
        Err(StoreError::Stale { .. })
    ));
    // Revoking one token leaves the others.
    assert!(store
        .oauth()
        .revoke_token(&access.hash, at(13))
        .await
        .expect("revoke"));
    assert!(!store
        .oauth()
        .revoke_token(&access.hash, at(14))
        .await
        .expect("again"));
    let live = store
        .oauth()
        .list_tokens_of_grant(grant)
        .await
        .expect("tokens")
        .into_iter()
        .filter(|t| t.is_active(at(15)))
        .count();
    assert_eq!(live, 1);
}

/// A rotation writes all or nothing: an insert that fails leaves the old refresh token
/// usable, and an expired token, another client's token or a revoked grant rotates nothing.
/// A narrowed scope goes to the new access token only.
async fn refresh_rotation_is_all_or_nothing(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let other = client("other", ClientType::Public);
    store.oauth().insert_client(&other).await.expect("other");
    let mut short = token(2, TokenKind::Refresh, grant, &app, user.id, hash(1));
    short.expires_at = Some(at(100));
    let mut wide = token(3, TokenKind::Refresh, grant, &app, user.id, hash(1));
    wide.scopes = scopes("sandboxes:read openid");
    store
        .oauth()
        .insert_tokens(&[
            short,
            wide,
            token(4, TokenKind::Access, grant, &app, user.id, hash(1)),
        ])
        .await
        .expect("tokens");
    let pair = |access, refresh| refreshed(access, refresh, &app);
    // The new refresh token's hash is taken: the insert fails, so the rotation is undone.
    let failed = store
        .oauth()
        .rotate_refresh(&hash(3), at(10), &pair(20, 4))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        !matches!(failed, Err(StoreError::Stale { .. })),
        "{failed:?}"
    );
    let old = store.oauth().find_token(&hash(3)).await.expect("find");
    assert_eq!(old.map(|t| t.rotated_at), Some(None), "still unrotated");
    assert_eq!(
        store.oauth().find_token(&hash(20)).await.expect("find"),
        None
    );
    // Expired at `now`: nothing written.
    assert!(matches!(
        store
            .oauth()
            .rotate_refresh(&hash(2), at(100), &pair(21, 22))
            .await,
        Err(StoreError::Stale { .. })
    ));
    assert_eq!(
        store.oauth().find_token(&hash(21)).await.expect("find"),
        None
    );
    // Presented by another client: nothing written.
    assert!(matches!(
        store
            .oauth()
            .rotate_refresh(&hash(3), at(10), &refreshed(27, 28, &other))
            .await,
        Err(StoreError::Stale { .. })
    ));
    assert_eq!(
        store.oauth().find_token(&hash(27)).await.expect("find"),
        None
    );
    // The same token rotates once it is retried with fresh hashes, here with a narrower
    // scope for the access token...
    let mut narrow = pair(23, 24);
    narrow.access_scopes = Some(scopes("sandboxes:read"));
    let rotated = store
        .oauth()
        .rotate_refresh(&hash(3), at(11), &narrow)
        .await
        .expect("rotate");
    assert_eq!(rotated.scopes, scopes("sandboxes:read openid"));
    let scope_of = |n| {
        let store = store.clone();
        async move {
            store
                .oauth()
                .find_token(&hash(n))
                .await
                .expect("find")
                .map(|t| t.scopes)
        }
    };
    assert_eq!(scope_of(23).await, Some(scopes("sandboxes:read")));
    assert_eq!(scope_of(24).await, Some(scopes("sandboxes:read openid")));
    // ...and a token of a revoked grant never does.
    store
        .oauth()
        .revoke_grant(None, grant, at(12))
        .await
        .expect("revoke");
    assert!(matches!(
        store
            .oauth()
            .rotate_refresh(&hash(24), at(13), &pair(25, 26))
            .await,
        Err(StoreError::Stale { .. })
    ));
    assert_eq!(
        store.oauth().find_token(&hash(25)).await.expect("find"),
        None
    );
}

/// Many rotations at once (on SQLite they share group commits): every token is rotated by
/// exactly one of the two racing to rotate it, and a rotation whose insert fails fails alone.
async fn concurrent_rotations_each_win_once_and_fail_alone(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let olds: Vec<NewOAuthToken> = (100..120u8)
        .map(|n| token(n, TokenKind::Refresh, grant, &app, user.id, hash(1)))
        .collect();
    store.oauth().insert_tokens(&olds).await.expect("tokens");
    let mut tasks = Vec::new();
    for (i, old) in (0u8..).zip(&olds) {
        for attempt in 0..2u8 {
            let store = store.clone();
            let old = old.hash;
            // Token 100's first rotation reuses token 101's hash: its insert must fail.
            let access = if i == 0 && attempt == 0 {
                101
            } else {
                120 + 2 * i + attempt * 40
            };
            let tokens = refreshed(access, 121 + 2 * i + attempt * 40, &app);
            tasks.push(tokio::spawn(async move {
                (
                    i,
                    attempt,
                    store.oauth().rotate_refresh(&old, at(10), &tokens).await,
                )
            }));
        }
    }
    let mut wins = vec![0; olds.len()];
    for task in tasks {
        let (i, attempt, result) = task.await.expect("join");
        match result {
            Ok(rotated) => {
                assert_eq!(rotated.grant_id, grant);
                wins[usize::from(i)] += 1;
            }
            Err(StoreError::Stale { .. }) => {}
            Err(_) if i == 0 && attempt == 0 => {}
            Err(other) => panic!("rotation {i}/{attempt}: unexpected {other:?}"),
        }
    }
    assert!(wins.iter().all(|&w| w == 1), "{wins:?}");
    let tokens = store
        .oauth()
        .list_tokens_of_grant(grant)
        .await
        .expect("tokens");
    assert_eq!(
        tokens.len(),
        olds.len() * 3,
        "each old token and one new pair"
    );
    assert!(tokens
        .iter()
        .filter(|t| olds.iter().any(|o| o.hash == t.hash))
        .all(|t| t.rotated_at == Some(at(10))));
}

/// In memory the one connection is the database: a rotation that fails part way is rolled
/// back on it, not closed with it.
#[tokio::test]
async fn a_failed_rotation_keeps_an_in_memory_store() {
    let store = Store::connect("sqlite::memory:").await.expect("memory");
    let (user, app, grant) = fixture(&store).await;
    store
        .oauth()
        .insert_tokens(&[
            token(3, TokenKind::Refresh, grant, &app, user.id, hash(1)),
            token(4, TokenKind::Access, grant, &app, user.id, hash(1)),
        ])
        .await
        .expect("tokens");
    let pair = |access, refresh| refreshed(access, refresh, &app);
    let failed = store
        .oauth()
        .rotate_refresh(&hash(3), at(10), &pair(20, 4))
        .await;
    assert!(failed.is_err(), "{failed:?}");
    store
        .oauth()
        .rotate_refresh(&hash(3), at(11), &pair(21, 22))
        .await
        .expect("the retry rotates");
    let tokens = store
        .oauth()
        .list_tokens_of_grant(grant)
        .await
        .expect("tokens");
    assert_eq!(tokens.len(), 4, "{tokens:?}");
}

async fn device_codes_move_by_compare_and_set(db: TestDb) {
    let store = db.store().await;
    let (user, app, grant) = fixture(&store).await;
    let device = DeviceRecord {
        hash: hash(7),
        user_code: "BCDFGHJK".into(),
        client_id: app.id.clone(),
        scopes: scopes("sandboxes:read"),
        state: DeviceState::Pending,
        user: None,
        grant_id: None,
        auth_time: None,
        interval_s: 5,
        last_polled_at: None,
        created_at: at(0),
        expires_at: at(600_000),
        version: 0,
    };
    store.oauth().insert_device(&device).await.expect("insert");
    let dup = DeviceRecord {
        hash: hash(8),
        ..device.clone()
    };
    assert!(matches!(
        store.oauth().insert_device(&dup).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert_eq!(
        store
            .oauth()
            .find_device_by_user_code("BCDFGHJK")
            .await
            .expect("find"),
        Some(device.clone())
    );
    store
        .oauth()
        .record_poll(&hash(7), 0, 10, at(1))
        .await
        .expect("poll");
    assert!(matches!(
        store.oauth().record_poll(&hash(7), 0, 10, at(2)).await,
        Err(StoreError::Stale { .. })
    ));
    // Illegal transitions are refused before the database; stale versions by it.
    assert!(matches!(
        store
            .oauth()
            .transition_device(
                &hash(7),
                DeviceState::Pending,
                DeviceState::Redeemed,
                1,
                None
            )
            .await,
        Err(StoreError::InvalidDeviceTransition(_))
    ));
    assert!(matches!(
        store
            .oauth()
            .transition_device(
                &hash(7),
                DeviceState::Pending,
                DeviceState::Approved,
                0,
                None
            )
            .await,
        Err(StoreError::Stale { .. })
    ));
    store
        .oauth()
        .transition_device(
            &hash(7),
            DeviceState::Pending,
            DeviceState::Approved,
            1,
            Some((user.id, grant, at(3))),
        )
        .await
        .expect("approve");
    let approved = store
        .oauth()
        .find_device(&hash(7))
        .await
        .expect("find")
        .expect("device");
    assert_eq!(
        (
            approved.state,
            approved.user,
            approved.grant_id,
            approved.version,
            approved.interval_s
        ),
        (DeviceState::Approved, Some(user.id), Some(grant), 2, 10)
    );
    // Concurrent redemptions: one winner, only its tokens.
    let mut tasks = Vec::new();
    for i in 0..4u8 {
        let store = store.clone();
        let tokens = vec![token(
            30 + i,
            TokenKind::Access,
            grant,
            &app,
            user.id,
            hash(7),
        )];
        tasks.push(tokio::spawn(async move {
            store
                .oauth()
                .redeem_device(&hash(7), 2, at(4), &tokens)
                .await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        if task.await.expect("join").is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    let done = store
        .oauth()
        .find_device(&hash(7))
        .await
        .expect("find")
        .expect("device");
    assert_eq!(done.state, DeviceState::Redeemed);
    assert_eq!(
        store
            .oauth()
            .list_tokens_of_grant(grant)
            .await
            .expect("tokens")
            .len(),
        1
    );
}

async fn signing_keys_rotate_and_pat_scopes_persist(db: TestDb) {
    let store = db.store().await;
    let key = |kid: &str, created| SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        sealed: vec![1, 2, 3],
        kek_version: 1,
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        created_at: created,
        retired_at: None,
    };
    store
        .oauth()
        .add_signing_key(&key("k1", at(0)), at(0))
        .await
        .expect("k1");
    store
        .oauth()
        .add_signing_key(&key("k2", at(5)), at(5))
        .await
        .expect("k2");
    let keys = store.oauth().list_signing_keys().await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].kid.as_str(), keys[0].retired_at), ("k2", None));
    assert_eq!(
        (keys[1].kid.as_str(), keys[1].retired_at),
        ("k1", Some(at(5)))
    );
    assert!(!format!("{:?}", keys[0]).contains("[1, 2, 3]"));
    assert!(store
        .oauth()
        .replace_sealed_key("k1", &[1, 2, 3], &[4, 5], 2)
        .await
        .expect("rewrap"));
    assert!(!store
        .oauth()
        .replace_sealed_key("k1", &[1, 2, 3], &[6], 3)
        .await
        .expect("stale"));

    let user = make_user(&store, "carol").await;
    let limited = TokenRecord {
        id: hangar_core::TokenId::from_uuid(Uuid::now_v7()),
        user: user.id,
        name: "ci".into(),
        hash: [42; 32],
        created_at: at(0),
        expires_at: Some(at(1000)),
        revoked_at: None,
        last_used_at: None,
        scopes: Some(scopes("sandboxes:read")),
    };
    store.tokens().insert(&limited).await.expect("pat");
    let (found, _) = store
        .tokens()
        .find_active_by_hash(&[42; 32], at(1))
        .await
        .expect("find")
        .expect("active");
    assert_eq!(found, limited);
}

hangar_store::test_both_backends!(
    clients_round_trip_and_cascade,
    grants_merge_scopes_and_revoke_their_tokens,
    code_redemption_is_one_transaction_with_one_winner,
    refresh_rotation_has_one_winner,
    refresh_rotation_is_all_or_nothing,
    concurrent_rotations_each_win_once_and_fail_alone,
    device_codes_move_by_compare_and_set,
    signing_keys_rotate_and_pat_scopes_persist,
);

/// Migration 0009 rebuilds `oauth_tokens` on SQLite (to drop two foreign keys): the tokens of
/// a database made before it come through, usable, and a client's deletion still reaches
/// them through the grant.
#[tokio::test]
async fn tokens_made_before_the_rebuild_survive_it() {
    use sqlx::Executor as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = Store::sqlite_url(&dir.path().join("old.db"));
    sqlx::any::install_default_drivers();
    let mut before = sqlx::migrate::Migrator::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
    )
    .await
    .expect("migrations");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 9)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("open");
    before.run(&pool).await.expect("migrations up to 0008");
    let (user, grant) = (Uuid::now_v7(), Uuid::now_v7());
    let token_hash = hash(7);
    pool.execute(
        format!(
            "INSERT INTO users VALUES ('{user}', 'alice', 0, 1); \
             INSERT INTO oauth_clients VALUES ('app', 'App', 'public', NULL, \
               '[\"https://app.test/cb\"]', 'sandboxes:read', 'refresh_token', 1); \
             INSERT INTO oauth_grants VALUES ('{grant}', '{user}', 'app', 'sandboxes:read', \
               1, 1, NULL); \
             INSERT INTO oauth_tokens VALUES ('{}', 'refresh', '{grant}', 'app', '{user}', \
               '{}', 'sandboxes:read', 1, 2, NULL, NULL, NULL)",
            token_hash.to_hex(),
            hash(8).to_hex()
        )
        .as_str(),
    )
    .await
    .expect("rows of the old schema");
    pool.close().await;

    let store = Store::connect(&url)
        .await
        .expect("migrates to the current schema");
    let found = store
        .oauth()
        .find_token(&token_hash)
        .await
        .expect("find")
        .expect("the token came through");
    assert_eq!(found.kind, TokenKind::Refresh);
    assert_eq!(found.grant_id, GrantId::from_uuid(grant));
    assert_eq!(found.user.id, UserId::from_uuid(user));
    assert_eq!(found.scopes, scopes("sandboxes:read"));
    assert_eq!(found.family, hash(8));
    assert!(store
        .oauth()
        .delete_client(&"app".parse().expect("client id"))
        .await
        .expect("delete"));
    assert_eq!(
        store.oauth().find_token(&token_hash).await.expect("find"),
        None,
        "gone with its grant"
    );
    store.close().await;
}
