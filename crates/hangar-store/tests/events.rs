//! Events, sandbox counts by state and pool figures, each test run against SQLite and
//! PostgreSQL (`name::sqlite`, `name::postgres`).

use hangar_core::{
    BootEvent, BootStage, ConnectSessionId, DriverKind, Event, EventId, EventKind, Limits,
    NetworkPolicy, NodeId, RetentionPolicy, Sandbox, SandboxId, SandboxState, Severity, Timestamp,
    UserId,
};
use hangar_store::testing::TestDb;
use hangar_store::{EventCursor, NodeRecord, StateChange, Store, StoreError, User};
use uuid::Uuid;

const T0: i64 = 1_790_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + offset_ms)
}

/// An event at `offset_ms` with an id whose order is `seq` (so ties in time have a known order).
fn event(offset_ms: i64, seq: u128, kind: EventKind) -> Event {
    Event {
        id: EventId::from_uuid(Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + seq,
        )),
        at: at(offset_ms),
        kind,
        severity: Severity::Warning,
        message: format!("event {seq}"),
        sandbox_id: None,
        node_id: None,
        user_id: None,
        connect_session_id: None,
        stage: None,
    }
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.message.clone()).collect()
}

async fn events_round_trip_every_field(db: TestDb) {
    let store = db.store().await;
    let full = Event {
        id: EventId::from_uuid(Uuid::now_v7()),
        at: at(5),
        kind: EventKind::SandboxFailed,
        severity: Severity::Error,
        message: "sandbox failed at process_started: guest agent not ready within 1500 ms"
            .to_owned(),
        sandbox_id: Some(SandboxId::from_uuid(Uuid::now_v7())),
        node_id: Some(NodeId::from_uuid(Uuid::now_v7())),
        user_id: Some(UserId::from_uuid(Uuid::now_v7())),
        connect_session_id: Some(ConnectSessionId::from_uuid(Uuid::now_v7())),
        stage: Some(BootStage::ProcessStarted),
    };
    store.events().insert(&full).await.expect("insert");
    let bare = event(6, 1, EventKind::NodeRecovered);
    store.events().insert(&bare).await.expect("insert bare");
    let err = store.events().insert(&bare).await.expect_err("same id");
    assert!(
        matches!(err, StoreError::Duplicate { what: "event" }),
        "{err:?}"
    );
    let listed = store.events().list(10, None).await.expect("list");
    assert_eq!(listed, vec![bare, full]);
    assert_eq!(store.events().count().await.expect("count"), 2);
}

async fn events_page_newest_first(db: TestDb) {
    let store = db.store().await;
    // Two events share a time: the larger id is the newer.
    for (offset, seq) in [(10, 1), (20, 2), (20, 3), (30, 4), (40, 5)] {
        store
            .events()
            .insert(&event(offset, seq, EventKind::ReconcilerAction))
            .await
            .expect("insert");
    }
    let repo = store.events();
    let first = repo.list(2, None).await.expect("page 1");
    assert_eq!(ids(&first), ["event 5", "event 4"]);
    let second = repo
        .list(2, Some(EventCursor::After(first[1].id)))
        .await
        .expect("page 2");
    assert_eq!(ids(&second), ["event 3", "event 2"]);
    let third = repo
        .list(2, Some(EventCursor::After(second[1].id)))
        .await
        .expect("page 3");
    assert_eq!(ids(&third), ["event 1"]);
    let by_time = repo
        .list(10, Some(EventCursor::Before(at(30))))
        .await
        .expect("before a time");
    assert_eq!(ids(&by_time), ["event 3", "event 2", "event 1"]);
    let err = repo
        .list(
            2,
            Some(EventCursor::After(EventId::from_uuid(Uuid::now_v7()))),
        )
        .await
        .expect_err("unknown cursor");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn pruning_bounds_events_by_age_and_count(db: TestDb) {
    let store = db.store().await;
    for seq in 0..10u128 {
        let offset = i64::try_from(seq).expect("small") * 100;
        store
            .events()
            .insert(&event(offset, seq, EventKind::ConnectSession))
            .await
            .expect("insert");
    }
    let repo = store.events();
    // By age: the events before t=200 go (0 and 1).
    assert_eq!(repo.prune(at(200), 1000).await.expect("prune age"), 2);
    assert_eq!(repo.count().await.expect("count"), 8);
    // By count: the 3 newest stay.
    assert_eq!(repo.prune(at(0), 3).await.expect("prune count"), 5);
    assert_eq!(
        ids(&repo.list(10, None).await.expect("list")),
        ["event 9", "event 8", "event 7"]
    );
    // Nothing more to do.
    assert_eq!(repo.prune(at(0), 3).await.expect("prune again"), 0);
    assert_eq!(repo.prune(at(0), 0).await.expect("prune all"), 3);
    assert_eq!(repo.count().await.expect("count"), 0);
}

async fn sandboxes_are_counted_by_state(db: TestDb) {
    let store = db.store().await;
    assert!(store
        .sandboxes()
        .count_by_state()
        .await
        .expect("empty")
        .is_empty());
    let user = User {
        id: UserId::from_uuid(Uuid::now_v7()),
        name: "alice".to_owned(),
        is_admin: false,
        created_at: at(0),
    };
    store.users().create(&user).await.expect("user");
    let node = NodeRecord {
        id: NodeId::from_uuid(Uuid::now_v7()),
        name: "node".to_owned(),
        address: None,
        drivers: vec!["runc".to_owned()],
        last_heartbeat_at: at(0),
        created_at: at(0),
    };
    store.nodes().upsert(&node).await.expect("node");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let sandbox = Sandbox {
            id: SandboxId::from_uuid(Uuid::now_v7()),
            owner: user.id,
            node: node.id,
            image: "default".to_owned(),
            image_digest: "sha256:0123".to_owned(),
            driver: DriverKind::Runc,
            limits: Limits::default(),
            network: NetworkPolicy::None,
            state: SandboxState::Creating,
            boot: vec![BootEvent {
                stage: BootStage::Created,
                at: at(1),
            }],
            failure: None,
            retention: RetentionPolicy::Delete,
            readiness_timeout_ms: 30_000,
            released_at: None,
            created_at: at(1),
            updated_at: at(1),
        };
        store.sandboxes().insert(&sandbox).await.expect("insert");
        ids.push(sandbox.id);
    }
    store
        .sandboxes()
        .transition(
            ids[0],
            SandboxState::Creating,
            SandboxState::Running,
            StateChange::default(),
            at(2),
        )
        .await
        .expect("running");
    let counts = store.sandboxes().count_by_state().await.expect("counts");
    let mut counts = counts;
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        counts,
        vec![(SandboxState::Creating, 2), (SandboxState::Running, 1)]
    );
}

async fn pool_figures_are_consistent(db: TestDb) {
    let store: Store = db.store().await;
    store.ping().await.expect("ping");
    let stats = store.pool_stats();
    assert!(stats.open >= 1, "{stats:?}");
    assert!(stats.idle <= stats.open, "{stats:?}");
    assert!(stats.open <= stats.max, "{stats:?}");
    assert_eq!(stats.max, 8);
}

hangar_store::test_both_backends!(
    events_round_trip_every_field,
    events_page_newest_first,
    pruning_bounds_events_by_age_and_count,
    sandboxes_are_counted_by_state,
    pool_figures_are_consistent,
);
