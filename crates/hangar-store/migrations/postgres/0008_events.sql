-- hangar store, PostgreSQL dialect. Keep in step with ../sqlite/0008_events.sql: same tables,
-- columns, constraints and indexes; only the type names differ (BIGINT where SQLite says INTEGER).
-- Operational events admins see (src/events.rs): sandbox failures with their boot stage,
-- reconciler actions, connect-session outcomes, node reachability. Bounded: pruned by count
-- and age. No foreign keys: an event outlives the records it names.
CREATE TABLE events (
    id                  TEXT    NOT NULL PRIMARY KEY,
    at                  BIGINT  NOT NULL,
    kind                TEXT    NOT NULL,
    severity            TEXT    NOT NULL,
    message             TEXT    NOT NULL,
    sandbox_id          TEXT,
    node_id             TEXT,
    user_id             TEXT,
    connect_session_id  TEXT,
    stage               TEXT
);

CREATE INDEX events_by_time ON events (at, id);
