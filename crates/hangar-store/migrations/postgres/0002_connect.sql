-- hangar store, PostgreSQL dialect. Keep in step with ../sqlite/0002_connect.sql: same tables,
-- columns, constraints and indexes; only the type names differ (BIGINT where SQLite says INTEGER,
-- BYTEA where SQLite says BLOB).
-- Connect sessions and the sealed credentials they produce (see src/connect.rs and
-- src/credentials.rs for what each column holds).

CREATE TABLE connect_sessions (
    id                  TEXT    NOT NULL PRIMARY KEY,
    owner_id            TEXT    NOT NULL REFERENCES users (id),
    provider            TEXT    NOT NULL,
    flow                TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    browser_sandbox_id  TEXT,
    prompt              TEXT,
    failure             TEXT,
    created_at          BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    completed_at        BIGINT,
    version             BIGINT  NOT NULL
);

CREATE INDEX connect_sessions_by_owner ON connect_sessions (owner_id, created_at);
CREATE INDEX connect_sessions_by_state ON connect_sessions (state, expires_at);

CREATE TABLE credentials (
    owner_id                 TEXT    NOT NULL REFERENCES users (id),
    provider                 TEXT    NOT NULL,
    record_version           BIGINT  NOT NULL CHECK (record_version >= 1),
    sealed                   BYTEA   NOT NULL,
    kek_version              BIGINT  NOT NULL,
    connected_at             BIGINT  NOT NULL,
    updated_at               BIGINT  NOT NULL,
    access_token_expires_at  BIGINT,
    last_refresh_at          BIGINT,
    last_check_at            BIGINT,
    last_check_ok            BIGINT  CHECK (last_check_ok IN (0, 1)),
    last_check_output        TEXT,
    PRIMARY KEY (owner_id, provider),
    CHECK ((last_check_at IS NULL) = (last_check_ok IS NULL)),
    CHECK ((last_check_at IS NULL) = (last_check_output IS NULL))
);
