-- hangar store, SQLite dialect. Keep in step with ../postgres/0001_initial.sql: same tables,
-- columns, constraints and indexes; only the type names differ (SQLite STRICT tables).
-- Ids: hyphenated UUID text. Times: unix milliseconds. Booleans: 0/1. JSON: text.

CREATE TABLE users (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    is_admin    INTEGER NOT NULL CHECK (is_admin IN (0, 1)),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    last_used_at  INTEGER
) STRICT;

CREATE INDEX api_tokens_by_user ON api_tokens (user_id, created_at);

CREATE TABLE nodes (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL,
    address            TEXT,
    drivers            TEXT    NOT NULL,
    last_heartbeat_at  INTEGER NOT NULL,
    created_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE sandboxes (
    id                    TEXT    NOT NULL PRIMARY KEY,
    owner_id              TEXT    NOT NULL REFERENCES users (id),
    node_id               TEXT    NOT NULL REFERENCES nodes (id),
    image                 TEXT    NOT NULL,
    image_digest          TEXT    NOT NULL,
    driver                TEXT    NOT NULL,
    cpu_millis            INTEGER NOT NULL,
    memory_mib            INTEGER NOT NULL,
    pids_max              INTEGER NOT NULL,
    state                 TEXT    NOT NULL,
    boot                  TEXT    NOT NULL,
    failure               TEXT,
    retention             TEXT    NOT NULL,
    retention_ttl_s       INTEGER,
    readiness_timeout_ms  INTEGER NOT NULL,
    released_at           INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    version               INTEGER NOT NULL
) STRICT;

CREATE INDEX sandboxes_by_owner ON sandboxes (owner_id, created_at);
CREATE INDEX sandboxes_by_node ON sandboxes (node_id);
