//! Repository tests, each run against SQLite and PostgreSQL (`name::sqlite`, `name::postgres`).

use hangar_core::{
    BootEvent, BootStage, DriverKind, Failure, FailureKind, Limits, NetworkPolicy, NodeId,
    RetentionPolicy, Sandbox, SandboxId, SandboxState, Timestamp, TokenId, UserId,
};
use hangar_store::testing::{Backend, TestDb};
use hangar_store::{Dialect, NodeRecord, StateChange, Store, StoreError, TokenRecord, User};
use uuid::Uuid;

const T0: i64 = 1_790_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_ms)
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

async fn make_node(store: &Store, name: &str) -> NodeRecord {
    let node = NodeRecord {
        id: NodeId::from_uuid(Uuid::now_v7()),
        name: name.to_owned(),
        address: Some("10.0.0.7:7070".to_owned()),
        drivers: vec!["runc".to_owned(), "qemu".to_owned()],
        last_heartbeat_at: at(0),
        created_at: at(0),
    };
    store.nodes().upsert(&node).await.expect("upsert node")
}

fn new_sandbox(owner: UserId, node: NodeId, created: Timestamp) -> Sandbox {
    Sandbox {
        id: SandboxId::from_uuid(Uuid::now_v7()),
        owner,
        node,
        image: "default".to_owned(),
        image_digest: "sha256:0123".to_owned(),
        driver: DriverKind::Runc,
        limits: Limits::default(),
        network: NetworkPolicy::None,
        state: SandboxState::Creating,
        boot: vec![BootEvent {
            stage: BootStage::Created,
            at: created,
        }],
        failure: None,
        retention: RetentionPolicy::Delete,
        readiness_timeout_ms: 30_000,
        released_at: None,
        created_at: created,
        updated_at: created,
    }
}

/// A user, a node, and a `creating` sandbox of theirs.
async fn fixture(store: &Store) -> (User, NodeRecord, Sandbox) {
    let user = make_user(store, "alice").await;
    let node = make_node(store, "node-a").await;
    let sandbox = new_sandbox(user.id, node.id, at(10));
    store.sandboxes().insert(&sandbox).await.expect("insert");
    (user, node, sandbox)
}

fn token(user: UserId, secret_hash: u8, created: Timestamp) -> TokenRecord {
    TokenRecord {
        id: TokenId::from_uuid(Uuid::now_v7()),
        user,
        name: format!("token-{secret_hash}"),
        hash: [secret_hash; 32],
        created_at: created,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        scopes: None,
    }
}

// ---------------------------------------------------------------------------------------------

async fn migrations_are_idempotent(db: TestDb) {
    let first = db.store().await;
    let expected = match db.backend() {
        Backend::Sqlite => Dialect::Sqlite,
        Backend::Postgres => Dialect::Postgres,
    };
    assert_eq!(first.dialect(), expected);
    make_user(&first, "before").await;
    // A second store on the same database (while the first is open) finds nothing to do.
    let second = db.store().await;
    second.ping().await.expect("ping");
    assert_eq!(second.users().count().await.expect("count"), 1);
    first.close().await;
    second.close().await;
    let third = db.store().await;
    assert_eq!(third.users().count().await.expect("count"), 1);
}

async fn users_are_unique_by_name(db: TestDb) {
    let store = db.store().await;
    assert_eq!(store.users().count().await.expect("count"), 0);
    let alice = User {
        id: UserId::from_uuid(Uuid::now_v7()),
        name: "alice".into(),
        is_admin: true,
        created_at: at(5),
    };
    store.users().create(&alice).await.expect("create");
    assert_eq!(
        store.users().get(alice.id).await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(
        store.users().get_by_name("alice").await.expect("by name"),
        Some(alice.clone())
    );
    assert_eq!(
        store.users().get_by_name("bob").await.expect("by name"),
        None
    );
    let twin = User {
        id: UserId::from_uuid(Uuid::now_v7()),
        ..alice.clone()
    };
    let err = store
        .users()
        .create(&twin)
        .await
        .expect_err("duplicate name");
    assert!(
        matches!(err, StoreError::Duplicate { what: "user" }),
        "{err:?}"
    );
    let err = store
        .users()
        .create(&User {
            name: "alice2".into(),
            ..alice.clone()
        })
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");
    assert_eq!(store.users().count().await.expect("count"), 1);
    let bob = make_user(&store, "bob").await;
    let aaron = make_user(&store, "aaron").await;
    assert_eq!(
        store.users().list().await.expect("list"),
        vec![aaron, alice.clone(), bob],
        "by name"
    );
    assert_eq!(
        store
            .users()
            .get(UserId::from_uuid(Uuid::now_v7()))
            .await
            .expect("get"),
        None
    );
}

async fn tokens_are_found_by_hash_only_while_active(db: TestDb) {
    let store = db.store().await;
    let alice = make_user(&store, "alice").await;
    let bob = make_user(&store, "bob").await;
    let tokens = store.tokens();

    let plain = token(alice.id, 1, at(1));
    let expiring = TokenRecord {
        expires_at: Some(at(1_000)),
        ..token(alice.id, 2, at(2))
    };
    let revoked = token(alice.id, 3, at(3));
    let bobs = token(bob.id, 4, at(4));
    for t in [&plain, &expiring, &revoked, &bobs] {
        tokens.insert(t).await.expect("insert token");
    }
    let err = tokens
        .insert(&token(alice.id, 1, at(5)))
        .await
        .expect_err("same hash");
    assert!(
        matches!(err, StoreError::Duplicate { what: "token" }),
        "{err:?}"
    );
    let err = tokens
        .insert(&token(UserId::from_uuid(Uuid::now_v7()), 9, at(5)))
        .await
        .expect_err("unknown user");
    assert!(
        matches!(err, StoreError::MissingReference { .. }),
        "{err:?}"
    );

    let (found, user) = tokens
        .find_active_by_hash(&[1; 32], at(10))
        .await
        .expect("find")
        .expect("plain token is active");
    assert_eq!(found, plain);
    assert_eq!(user, alice);
    assert_eq!(
        tokens
            .find_active_by_hash(&[4; 32], at(10))
            .await
            .expect("find")
            .map(|(t, u)| (t.id, u.id)),
        Some((bobs.id, bob.id))
    );
    assert!(tokens
        .find_active_by_hash(&[7; 32], at(10))
        .await
        .expect("find")
        .is_none());

    // Expiry: usable before `expires_at`, not at or after it.
    assert!(tokens
        .find_active_by_hash(&[2; 32], at(999))
        .await
        .expect("find")
        .is_some());
    assert!(tokens
        .find_active_by_hash(&[2; 32], at(1_000))
        .await
        .expect("find")
        .is_none());

    // Revocation: only by its owner, once.
    assert!(!tokens
        .revoke(bob.id, revoked.id, at(20))
        .await
        .expect("revoke"));
    assert!(tokens
        .revoke(alice.id, revoked.id, at(20))
        .await
        .expect("revoke"));
    assert!(!tokens
        .revoke(alice.id, revoked.id, at(30))
        .await
        .expect("revoke"));
    assert!(tokens
        .find_active_by_hash(&[3; 32], at(21))
        .await
        .expect("find")
        .is_none());

    // touch never goes backwards.
    tokens.touch(plain.id, at(50)).await.expect("touch");
    tokens.touch(plain.id, at(40)).await.expect("touch");
    tokens
        .touch(TokenId::from_uuid(Uuid::now_v7()), at(40))
        .await
        .expect("touch missing");

    let listed = tokens.list_for_user(alice.id).await.expect("list");
    let ids: Vec<TokenId> = listed.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![revoked.id, expiring.id, plain.id], "newest first");
    assert_eq!(listed[0].revoked_at, Some(at(20)), "first revocation kept");
    assert_eq!(listed[2].last_used_at, Some(at(50)));
    assert_eq!(listed[1], expiring);
    assert!(
        !format!("{:?}", listed[0]).contains("[3, 3"),
        "hash redacted"
    );
    assert_eq!(tokens.list_for_user(bob.id).await.expect("list").len(), 1);
}

async fn nodes_upsert_keeps_created_at(db: TestDb) {
    let store = db.store().await;
    let node = make_node(&store, "node-b").await;
    let other = make_node(&store, "node-a").await;
    assert_eq!(
        store.nodes().get(node.id).await.expect("get"),
        Some(node.clone())
    );
    let heartbeat = NodeRecord {
        address: None,
        drivers: vec!["firecracker".into()],
        last_heartbeat_at: at(5_000),
        created_at: at(4_000),
        ..node.clone()
    };
    let stored = store.nodes().upsert(&heartbeat).await.expect("upsert");
    assert_eq!(
        stored,
        NodeRecord {
            created_at: node.created_at,
            ..heartbeat
        }
    );
    let names: Vec<String> = store
        .nodes()
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, vec![other.name, node.name]);
    assert_eq!(
        store
            .nodes()
            .get(NodeId::from_uuid(Uuid::now_v7()))
            .await
            .expect("get"),
        None
    );
}

async fn sandboxes_round_trip_every_field(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let node = make_node(&store, "node-a").await;
    let full = Sandbox {
        id: SandboxId::from_uuid(Uuid::now_v7()),
        owner: user.id,
        node: node.id,
        image: "browser".into(),
        image_digest: "sha256:feedface".into(),
        driver: DriverKind::Qemu,
        limits: Limits {
            cpu_millis: 1500,
            memory_mib: 4096,
            pids_max: u32::MAX,
        },
        network: NetworkPolicy::Egress,
        state: SandboxState::Failed,
        boot: vec![
            BootEvent {
                stage: BootStage::Created,
                at: at(1),
            },
            BootEvent {
                stage: BootStage::RootfsReady,
                at: at(2),
            },
            BootEvent {
                stage: BootStage::ProcessStarted,
                at: at(3),
            },
        ],
        failure: Some(Failure {
            kind: FailureKind::BootTimeout,
            stage_reached: Some(BootStage::ProcessStarted),
            message: "guest agent silent for 30 s \"quoted\" ünïcode".into(),
            console_tail: vec!["[    0.0] Linux".into(), String::new(), "panic!".into()],
        }),
        retention: RetentionPolicy::Keep { ttl_s: 3600 },
        readiness_timeout_ms: 45_000,
        released_at: Some(at(9)),
        created_at: at(0),
        updated_at: at(8),
    };
    store.sandboxes().insert(&full).await.expect("insert full");
    assert_eq!(
        store.sandboxes().get(full.id).await.expect("get"),
        Some(full.clone())
    );

    let mut minimal = new_sandbox(user.id, node.id, at(100));
    minimal.boot.clear();
    minimal.driver = DriverKind::Firecracker;
    store
        .sandboxes()
        .insert(&minimal)
        .await
        .expect("insert minimal");
    assert_eq!(
        store.sandboxes().get(minimal.id).await.expect("get"),
        Some(minimal.clone())
    );

    let err = store
        .sandboxes()
        .insert(&minimal)
        .await
        .expect_err("duplicate id");
    assert!(
        matches!(err, StoreError::Duplicate { what: "sandbox" }),
        "{err:?}"
    );
    let orphan = new_sandbox(UserId::from_uuid(Uuid::now_v7()), node.id, at(5));
    let err = store
        .sandboxes()
        .insert(&orphan)
        .await
        .expect_err("no owner");
    assert!(
        matches!(err, StoreError::MissingReference { .. }),
        "{err:?}"
    );
    let homeless = new_sandbox(user.id, NodeId::from_uuid(Uuid::now_v7()), at(5));
    let err = store
        .sandboxes()
        .insert(&homeless)
        .await
        .expect_err("no node");
    assert!(
        matches!(err, StoreError::MissingReference { .. }),
        "{err:?}"
    );
    let absurd = Sandbox {
        readiness_timeout_ms: u64::MAX,
        ..new_sandbox(user.id, node.id, at(5))
    };
    let err = store
        .sandboxes()
        .insert(&absurd)
        .await
        .expect_err("u64 max");
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err:?}");
}

/// Rows written before migration 0004 (no `network` column given) read as `none`, and the
/// column is never anything but a policy name.
async fn network_policy_defaults_to_none_for_old_rows(db: TestDb) {
    let store = db.store().await;
    let user = make_user(&store, "alice").await;
    let node = make_node(&store, "node-a").await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db.url()).await.expect("raw pool");
    let id = SandboxId::from_uuid(Uuid::now_v7());
    sqlx::query(
        "INSERT INTO sandboxes (id, owner_id, node_id, image, image_digest, driver, cpu_millis, \
         memory_mib, pids_max, state, boot, failure, retention, retention_ttl_s, \
         readiness_timeout_ms, released_at, created_at, updated_at, version) VALUES \
         ($1, $2, $3, 'default', 'sha256:00', 'runc', 1000, 512, 64, 'stopped', '[]', NULL, \
         'delete', NULL, 30000, NULL, 1, 1, 0)",
    )
    .bind(id.to_string())
    .bind(user.id.to_string())
    .bind(node.id.to_string())
    .execute(&pool)
    .await
    .expect("raw insert without network");
    let old = store.sandboxes().get(id).await.expect("get").expect("row");
    assert_eq!(old.network, NetworkPolicy::None);

    sqlx::query("UPDATE sandboxes SET network = 'open' WHERE id = $1")
        .bind(id.to_string())
        .execute(&pool)
        .await
        .expect("raw update");
    let err = store.sandboxes().get(id).await.expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    pool.close().await;
}

async fn tenants_are_walled_off(db: TestDb) {
    let store = db.store().await;
    let (alice, node, sandbox) = fixture(&store).await;
    let mallory = make_user(&store, "mallory").await;
    let repo = store.sandboxes();
    assert_eq!(
        repo.get_owned(alice.id, sandbox.id).await.expect("own"),
        Some(sandbox.clone())
    );
    assert_eq!(
        repo.get_owned(mallory.id, sandbox.id).await.expect("other"),
        None
    );
    assert!(repo
        .list_owned(mallory.id, true)
        .await
        .expect("list")
        .is_empty());

    // Listing: newest first, destroyed ones only on request.
    let newer = new_sandbox(alice.id, node.id, at(20));
    let newest = new_sandbox(alice.id, node.id, at(30));
    repo.insert(&newer).await.expect("insert");
    repo.insert(&newest).await.expect("insert");
    let mallorys = new_sandbox(mallory.id, node.id, at(25));
    repo.insert(&mallorys).await.expect("insert");
    for (from, to) in [
        (SandboxState::Creating, SandboxState::Destroying),
        (SandboxState::Destroying, SandboxState::Destroyed),
    ] {
        repo.transition(newer.id, from, to, StateChange::default(), at(40))
            .await
            .expect("destroy");
    }
    let ids = |list: Vec<Sandbox>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(repo.list_owned(alice.id, false).await.expect("list")),
        vec![newest.id, sandbox.id]
    );
    assert_eq!(
        ids(repo.list_owned(alice.id, true).await.expect("list")),
        vec![newest.id, newer.id, sandbox.id]
    );
    // The reconciler sees every tenant's sandboxes on its node, in all states, oldest first.
    assert_eq!(
        ids(repo.list_on_node(node.id).await.expect("on node")),
        vec![sandbox.id, newer.id, mallorys.id, newest.id]
    );
    assert!(repo
        .list_on_node(NodeId::from_uuid(Uuid::now_v7()))
        .await
        .expect("other node")
        .is_empty());
}

async fn transitions_are_checked_compare_and_set(db: TestDb) {
    let store = db.store().await;
    let (_, _, sandbox) = fixture(&store).await;
    let repo = store.sandboxes();

    // Legal: applies, with its extra fields, in one write.
    let agent_ready = BootEvent {
        stage: BootStage::AgentReady,
        at: at(50),
    };
    let running = repo
        .transition(
            sandbox.id,
            SandboxState::Creating,
            SandboxState::Running,
            StateChange {
                boot_event: Some(agent_ready),
                ..StateChange::default()
            },
            at(51),
        )
        .await
        .expect("creating -> running");
    assert_eq!(running.state, SandboxState::Running);
    assert_eq!(running.boot, vec![sandbox.boot[0], agent_ready]);
    assert_eq!(running.updated_at, at(51));
    assert_eq!(
        repo.get(sandbox.id).await.expect("get"),
        Some(running.clone())
    );

    // Illegal: refused by the lifecycle before anything is written.
    let err = repo
        .transition(
            sandbox.id,
            SandboxState::Running,
            SandboxState::Starting,
            StateChange::default(),
            at(52),
        )
        .await
        .expect_err("running -> starting");
    assert!(matches!(err, StoreError::InvalidTransition(_)), "{err:?}");

    // Stale `from`: a conflict that reports what is really there.
    let err = repo
        .transition(
            sandbox.id,
            SandboxState::Creating,
            SandboxState::Failed,
            StateChange::default(),
            at(53),
        )
        .await
        .expect_err("stale from");
    match err {
        StoreError::Conflict {
            id,
            expected,
            actual,
        } => {
            assert_eq!(id, sandbox.id);
            assert_eq!(expected, SandboxState::Creating);
            assert_eq!(actual, Some(SandboxState::Running));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        repo.get(sandbox.id).await.expect("get"),
        Some(running.clone())
    );

    // Missing record.
    let err = repo
        .transition(
            SandboxId::from_uuid(Uuid::now_v7()),
            SandboxState::Running,
            SandboxState::Stopping,
            StateChange::default(),
            at(54),
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Stop and start again: a new boot attempt resets the events.
    for (from, to) in [
        (SandboxState::Running, SandboxState::Stopping),
        (SandboxState::Stopping, SandboxState::Stopped),
    ] {
        repo.transition(sandbox.id, from, to, StateChange::default(), at(60))
            .await
            .expect("stop");
    }
    let restart = BootEvent {
        stage: BootStage::Created,
        at: at(70),
    };
    let starting = repo
        .transition(
            sandbox.id,
            SandboxState::Stopped,
            SandboxState::Starting,
            StateChange {
                reset_boot: true,
                boot_event: Some(restart),
                ..StateChange::default()
            },
            at(70),
        )
        .await
        .expect("start");
    assert_eq!(starting.boot, vec![restart]);

    // Failing records the failure and release time with the state.
    let failure = Failure {
        kind: FailureKind::BootError,
        stage_reached: Some(BootStage::Created),
        message: "runc create failed".into(),
        console_tail: vec!["no such file".into()],
    };
    let failed = repo
        .transition(
            sandbox.id,
            SandboxState::Starting,
            SandboxState::Failed,
            StateChange {
                failure: Some(failure.clone()),
                released_at: Some(at(81)),
                ..StateChange::default()
            },
            at(80),
        )
        .await
        .expect("fail");
    assert_eq!(failed.failure, Some(failure));
    assert_eq!(failed.released_at, Some(at(81)));
    assert_eq!(failed.updated_at, at(80));
    assert_eq!(
        repo.get(sandbox.id).await.expect("get"),
        Some(failed.clone())
    );
    // A failed sandbox is never resumed.
    let err = repo
        .transition(
            sandbox.id,
            SandboxState::Failed,
            SandboxState::Running,
            StateChange::default(),
            at(90),
        )
        .await
        .expect_err("failed -> running");
    assert!(matches!(err, StoreError::InvalidTransition(_)), "{err:?}");
}

async fn concurrent_transitions_have_one_winner(db: TestDb) {
    let store = db.store().await;
    let (_, _, sandbox) = fixture(&store).await;
    for round in 0..5 {
        let candidate = if round == 0 {
            sandbox.clone()
        } else {
            let fresh = new_sandbox(sandbox.owner, sandbox.node, at(round));
            store.sandboxes().insert(&fresh).await.expect("insert");
            fresh
        };
        // The boot deadline and the agent's readiness race for the same `creating` record.
        let repo_a = store.sandboxes();
        let repo_b = store.sandboxes();
        let (a, b) = tokio::join!(
            repo_a.transition(
                candidate.id,
                SandboxState::Creating,
                SandboxState::Running,
                StateChange::default(),
                at(100),
            ),
            repo_b.transition(
                candidate.id,
                SandboxState::Creating,
                SandboxState::Failed,
                StateChange {
                    failure: Some(Failure {
                        kind: FailureKind::BootTimeout,
                        stage_reached: None,
                        message: "deadline".into(),
                        console_tail: vec![],
                    }),
                    ..StateChange::default()
                },
                at(100),
            ),
        );
        let (winner, loser) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (a, b) => panic!("expected exactly one winner, got {a:?} and {b:?}"),
        };
        match loser {
            StoreError::Conflict {
                expected, actual, ..
            } => {
                assert_eq!(expected, SandboxState::Creating);
                assert_eq!(actual, Some(winner.state));
            }
            other => panic!("loser should see a conflict, got {other:?}"),
        }
        let stored = store
            .sandboxes()
            .get(candidate.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(stored, winner);
        assert_eq!(
            stored.failure.is_some(),
            stored.state == SandboxState::Failed,
            "the loser's fields were not applied"
        );
    }
}

async fn boot_events_append_in_order_until_state_moves(db: TestDb) {
    let store = db.store().await;
    let (_, _, sandbox) = fixture(&store).await;
    let repo = store.sandboxes();
    let mut expected = sandbox.boot.clone();
    for (i, stage) in [BootStage::RootfsReady, BootStage::ProcessStarted]
        .into_iter()
        .enumerate()
    {
        let event = BootEvent {
            stage,
            at: at(20 + i as i64),
        };
        expected.push(event);
        let updated = repo
            .record_boot_event(sandbox.id, SandboxState::Creating, event, at(30))
            .await
            .expect("record");
        assert_eq!(updated.boot, expected);
    }
    assert_eq!(
        repo.get(sandbox.id).await.expect("get").map(|s| s.boot),
        Some(expected.clone())
    );

    // Many writers appending at once all land (only the version moved under them).
    let many: Vec<BootEvent> = (0..8)
        .map(|i| BootEvent {
            stage: BootStage::ProcessStarted,
            at: at(100 + i),
        })
        .collect();
    let writes = many.iter().map(|event| {
        let repo = store.sandboxes();
        let event = *event;
        async move {
            repo.record_boot_event(sandbox.id, SandboxState::Creating, event, at(200))
                .await
        }
    });
    for result in futures_join_all(writes).await {
        result.expect("concurrent append");
    }
    let boot = repo
        .get(sandbox.id)
        .await
        .expect("get")
        .expect("exists")
        .boot;
    assert_eq!(boot.len(), expected.len() + many.len());
    assert_eq!(&boot[..expected.len()], &expected[..]);
    for event in &many {
        assert!(boot.contains(event), "{event:?} lost");
    }

    // Once the boot failed, late events are refused.
    repo.transition(
        sandbox.id,
        SandboxState::Creating,
        SandboxState::Failed,
        StateChange::default(),
        at(300),
    )
    .await
    .expect("fail");
    let err = repo
        .record_boot_event(
            sandbox.id,
            SandboxState::Creating,
            BootEvent {
                stage: BootStage::AgentReady,
                at: at(301),
            },
            at(301),
        )
        .await
        .expect_err("late event");
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: Some(SandboxState::Failed),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        repo.get(sandbox.id)
            .await
            .expect("get")
            .map(|s| s.boot.len()),
        Some(boot.len())
    );
    let err = repo
        .record_boot_event(
            SandboxId::from_uuid(Uuid::now_v7()),
            SandboxState::Creating,
            boot[0],
            at(302),
        )
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn released_at_is_set_once(db: TestDb) {
    let store = db.store().await;
    let (_, _, sandbox) = fixture(&store).await;
    let repo = store.sandboxes();
    assert!(repo
        .mark_released(sandbox.id, at(500))
        .await
        .expect("first"));
    assert!(!repo
        .mark_released(sandbox.id, at(600))
        .await
        .expect("second"));
    let stored = repo.get(sandbox.id).await.expect("get").expect("exists");
    assert_eq!(stored.released_at, Some(at(500)));
    assert_eq!(stored.updated_at, at(500));
    let err = repo
        .mark_released(SandboxId::from_uuid(Uuid::now_v7()), at(500))
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // The release does not disturb a later compare-and-set on the state.
    repo.transition(
        sandbox.id,
        SandboxState::Creating,
        SandboxState::Destroying,
        StateChange::default(),
        at(700),
    )
    .await
    .expect("destroy after release");
}

async fn records_survive_reconnect(db: TestDb) {
    let store = db.store().await;
    let (user, node, sandbox) = fixture(&store).await;
    let tok = token(user.id, 42, at(1));
    store.tokens().insert(&tok).await.expect("token");
    let running = store
        .sandboxes()
        .transition(
            sandbox.id,
            SandboxState::Creating,
            SandboxState::Running,
            StateChange::default(),
            at(60),
        )
        .await
        .expect("run");
    store.close().await;
    drop(store);

    let again = db.store().await;
    assert_eq!(
        again.users().get(user.id).await.expect("user"),
        Some(user.clone())
    );
    assert_eq!(again.nodes().get(node.id).await.expect("node"), Some(node));
    assert_eq!(
        again.sandboxes().get(sandbox.id).await.expect("sandbox"),
        Some(running)
    );
    let (found, owner) = again
        .tokens()
        .find_active_by_hash(&[42; 32], at(2))
        .await
        .expect("find")
        .expect("token survives");
    assert_eq!((found, owner), (tok, user));
    // The compare-and-set version survived too: the next change applies.
    again
        .sandboxes()
        .transition(
            sandbox.id,
            SandboxState::Running,
            SandboxState::Stopping,
            StateChange::default(),
            at(70),
        )
        .await
        .expect("stop after reconnect");
}

hangar_store::test_both_backends!(
    migrations_are_idempotent,
    users_are_unique_by_name,
    tokens_are_found_by_hash_only_while_active,
    nodes_upsert_keeps_created_at,
    sandboxes_round_trip_every_field,
    network_policy_defaults_to_none_for_old_rows,
    tenants_are_walled_off,
    transitions_are_checked_compare_and_set,
    concurrent_transitions_have_one_winner,
    boot_events_append_in_order_until_state_moves,
    released_at_is_set_once,
    records_survive_reconnect,
);

/// Runs futures concurrently on this task and collects their outputs in order (a tiny
/// `join_all`, to avoid a dependency on `futures`).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    join_vec(futures.map(Box::pin).collect()).await
}

async fn join_vec<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut done: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (fut, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match std::pin::Pin::new(fut).poll(cx) {
                    std::task::Poll::Ready(out) => *slot = Some(out),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[tokio::test]
async fn in_memory_sqlite_works_and_is_private() {
    let a = Store::connect("sqlite::memory:").await.expect("memory a");
    let b = Store::connect("sqlite::memory:").await.expect("memory b");
    assert_eq!(a.dialect(), Dialect::Sqlite);
    let (_, _, sandbox) = fixture(&a).await;
    a.ping().await.expect("ping");
    assert!(a.sandboxes().get(sandbox.id).await.expect("get").is_some());
    assert_eq!(
        b.users().count().await.expect("count"),
        0,
        "separate databases"
    );
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let err = Store::connect("mysql://root:hunter2@db/hangar")
        .await
        .expect_err("mysql");
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("odd name?#%.db");
    let store = Store::connect(&Store::sqlite_url(&path))
        .await
        .expect("connect creates the file");
    make_user(&store, "alice").await;
    assert!(path.is_file(), "database file created");
    let wal = dir.path().join("odd name?#%.db-wal");
    assert!(wal.is_file(), "write-ahead log in use");
    store.close().await;
    let again = Store::connect(&Store::sqlite_url(&path))
        .await
        .expect("reopen");
    assert_eq!(again.users().count().await.expect("count"), 1);
}

/// A commit reaches the database file itself soon after, without another write and without
/// the WAL filling up: the checkpointer copies it back beside the writer (`checkpoint.rs`).
/// The file is read with `immutable=1`, which ignores the WAL.
#[tokio::test]
async fn commits_reach_the_database_file_beside_the_writer() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hangar.db");
    let store = Store::connect(&Store::sqlite_url(&path))
        .await
        .expect("connect");
    make_user(&store, "alice").await;
    let file_only = format!("{}?mode=ro&immutable=1", Store::sqlite_url(&path));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let users_in_file = loop {
        let mut conn = sqlx::AnyConnection::connect(&file_only)
            .await
            .expect("open the file alone");
        // Before the first checkpoint even the tables are only in the WAL.
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        let _ = conn.close().await;
        if users == 1 || tokio::time::Instant::now() > deadline {
            break users;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        users_in_file, 1,
        "the commit was copied into the database file"
    );
    store.close().await;
}
