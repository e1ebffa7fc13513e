-- hangar store, PostgreSQL dialect. Keep in step with ../sqlite/0006_signin.sql: same tables,
-- columns, constraints and indexes; only the type names differ (BIGINT where SQLite says INTEGER).
-- Sign-in with GitHub or OpenID Connect, and browser sessions (see src/signin.rs).

-- A browser session: the `hangar_session` cookie's SHA-256 (64 lowercase hex), never the secret.
CREATE TABLE browser_sessions (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_hash  TEXT    NOT NULL UNIQUE,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    revoked_at    BIGINT
);

CREATE INDEX browser_sessions_by_user ON browser_sessions (user_id, created_at);

-- Who a user is at an upstream provider: the configured provider name and its subject (OpenID
-- Connect `sub`, GitHub's numeric user id). One hangar user per (provider, subject).
CREATE TABLE external_identities (
    provider    TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (provider, subject)
);

CREATE INDEX external_identities_by_user ON external_identities (user_id);

-- A sign-in in progress, keyed by the SHA-256 of its `state` parameter. Used once: `used_at`
-- is set by a compare-and-set when the callback arrives.
CREATE TABLE signin_states (
    state_hash     TEXT    NOT NULL PRIMARY KEY,
    provider       TEXT    NOT NULL,
    pkce_verifier  TEXT    NOT NULL,
    nonce          TEXT,
    return_to      TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT
);

CREATE INDEX signin_states_by_expiry ON signin_states (expires_at);
