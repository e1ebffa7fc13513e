-- hangar store, SQLite dialect. Keep in step with ../postgres/0005_oauth.sql.
-- The OAuth 2.0 authorization server (see src/oauth.rs for what each column holds).
-- Bearer secrets (codes, tokens, device codes) are kept only as SHA-256 hex; client secrets
-- as an Argon2id PHC string; signing keys sealed by the vault.

-- Personal access tokens may be limited to scopes: NULL means every scope.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;

CREATE TABLE oauth_clients (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    client_type    TEXT    NOT NULL CHECK (client_type IN ('confidential', 'public')),
    secret_hash    TEXT,
    redirect_uris  TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    grant_types    TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    CHECK ((client_type = 'confidential') = (secret_hash IS NOT NULL))
) STRICT;

CREATE TABLE oauth_grants (
    id          TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE UNIQUE INDEX oauth_grants_live ON oauth_grants (user_id, client_id) WHERE revoked_at IS NULL;

CREATE TABLE oauth_codes (
    code_hash       TEXT    NOT NULL PRIMARY KEY,
    grant_id        TEXT    NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    client_id       TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri    TEXT,
    scopes          TEXT    NOT NULL,
    code_challenge  TEXT,
    nonce           TEXT,
    auth_time       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    redeemed_at     INTEGER
) STRICT;

CREATE TABLE oauth_tokens (
    token_hash  TEXT    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    TEXT    NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    client_id   TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family      TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    auth_time   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    rotated_at  INTEGER,
    revoked_at  INTEGER
) STRICT;

CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_by_family ON oauth_tokens (family);

CREATE TABLE oauth_device_codes (
    device_code_hash  TEXT    NOT NULL PRIMARY KEY,
    user_code         TEXT    NOT NULL UNIQUE,
    client_id         TEXT    NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes            TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    user_id           TEXT    REFERENCES users (id) ON DELETE CASCADE,
    grant_id          TEXT    REFERENCES oauth_grants (id) ON DELETE CASCADE,
    auth_time         INTEGER,
    interval_s        INTEGER NOT NULL,
    last_polled_at    INTEGER,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    version           INTEGER NOT NULL
) STRICT;

CREATE TABLE oauth_signing_keys (
    kid          TEXT    NOT NULL PRIMARY KEY,
    alg          TEXT    NOT NULL,
    sealed       BLOB    NOT NULL,
    kek_version  INTEGER NOT NULL,
    public_jwk   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER
) STRICT;
