// oidc-provider (npm) set up like hangar's authorization server, for hangar's OAuth benchmark
// (`cargo xtask bench-oauth`, crates/hangar/benches/oauth.rs). Not used by the tests.
//
// Configured alike: one confidential client (client_secret_basic) with the authorization_code
// and refresh_token grants, PKCE S256 required, refresh tokens rotated on every use (reuse
// revokes the grant), opaque access tokens (1 h), introspection and revocation on, no
// id_token (no `openid` scope), no rate limits, and the same database as hangar: storage is
// oidc-provider's published adapter contract
// (https://github.com/panva/node-oidc-provider/blob/main/example/my_adapter.js) over one
// table, as its example SQL adapter does, on
//   - SQLite (better-sqlite3, WAL, synchronous FULL: what hangar's store uses), or
//   - PostgreSQL (pg, a pool of 8 connections: hangar's default pool size), or
//   - memory (a Map; no database at all).
//
// Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CODE_CHALLENGE (S256 of the bench's
// verifier), CODE_TTL (seconds), STORAGE (`sqlite:/path/file.db`, `postgres:<libpq URL>` or
// `memory`).
//
// Prints {"issuer": "http://127.0.0.1:PORT"} on stdout when it listens. Then reads commands
// on stdin, one per line, and answers each with one line `ok` once done:
//   codes N FILE     N authorization codes (scope `sandboxes:read offline_access`)
//   refresh N FILE   N refresh tokens, one grant each
//   access N FILE    N access tokens
// Exits when stdin closes.
import http from 'node:http';
import fs from 'node:fs';
import readline from 'node:readline';
import Provider from 'oidc-provider';
import Database from 'better-sqlite3';
import pg from 'pg';

console.log = console.error;
console.info = console.error;
console.warn = console.error;

const { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CODE_CHALLENGE } = process.env;
const CODE_TTL = Number(process.env.CODE_TTL || 60);
if (!CLIENT_ID || !CLIENT_SECRET || !REDIRECT_URI || !CODE_CHALLENGE) {
  console.error('CLIENT_ID, CLIENT_SECRET, REDIRECT_URI and CODE_CHALLENGE are required');
  process.exit(2);
}
const SCOPE = 'sandboxes:read offline_access';
const ACCOUNT = 'bench-account';

const now = () => Math.floor(Date.now() / 1000);

// The adapter contract over Maps: entries by model and id, and each grant's members so that
// revokeByGrantId works (refresh-token reuse revokes the grant).
function memoryAdapter() {
  const entries = new Map();
  const grants = new Map();
  return class MapAdapter {
    constructor(model) { this.model = model; }
    key(id) { return `${this.model}:${id}`; }
    async upsert(id, payload) {
      const key = this.key(id);
      entries.set(key, payload);
      if (payload.grantId) {
        let members = grants.get(payload.grantId);
        if (!members) { members = new Set(); grants.set(payload.grantId, members); }
        members.add(key);
      }
    }
    async find(id) { return entries.get(this.key(id)); }
    async findByUserCode() { return undefined; }
    async findByUid() { return undefined; }
    async consume(id) {
      const entry = entries.get(this.key(id));
      if (entry) entry.consumed = now();
    }
    async destroy(id) { entries.delete(this.key(id)); }
    async revokeByGrantId(grantId) {
      for (const key of grants.get(grantId) ?? []) entries.delete(key);
      grants.delete(grantId);
    }
  };
}

// One table for every model, as oidc-provider's example SQL adapter has it.
const TABLE = `CREATE TABLE IF NOT EXISTS oidc_payloads (
  id TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL, grant_id TEXT,
  user_code TEXT, uid TEXT, expires_at BIGINT, consumed_at BIGINT, PRIMARY KEY (id, type))`;
const INDEXES = [
  'CREATE INDEX IF NOT EXISTS oidc_payloads_grant ON oidc_payloads (grant_id)',
  'CREATE INDEX IF NOT EXISTS oidc_payloads_uid ON oidc_payloads (uid)',
  'CREATE INDEX IF NOT EXISTS oidc_payloads_user_code ON oidc_payloads (user_code)',
];

function fromRow(row) {
  if (!row) return undefined;
  if (row.expires_at !== null && Number(row.expires_at) < now()) return undefined;
  const payload = JSON.parse(row.payload);
  if (row.consumed_at !== null) payload.consumed = Number(row.consumed_at);
  return payload;
}

function sqliteAdapter(file) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${process.env.SQLITE_SYNCHRONOUS || 'FULL'}`);
  db.pragma('busy_timeout = 5000');
  db.exec(TABLE);
  for (const index of INDEXES) db.exec(index);
  const q = {
    upsert: db.prepare(`INSERT INTO oidc_payloads (id, type, payload, grant_id, user_code, uid, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, type) DO UPDATE SET payload = excluded.payload,
      grant_id = excluded.grant_id, user_code = excluded.user_code, uid = excluded.uid,
      expires_at = excluded.expires_at`),
    find: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE id = ? AND type = ?'),
    byUid: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE uid = ? AND type = ?'),
    byUserCode: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE user_code = ? AND type = ?'),
    consume: db.prepare('UPDATE oidc_payloads SET consumed_at = ? WHERE id = ? AND type = ?'),
    destroy: db.prepare('DELETE FROM oidc_payloads WHERE id = ? AND type = ?'),
    revoke: db.prepare('DELETE FROM oidc_payloads WHERE grant_id = ?'),
  };
  return class SqliteAdapter {
    constructor(model) { this.model = model; }
    async upsert(id, payload, expiresIn) {
      q.upsert.run(id, this.model, JSON.stringify(payload), payload.grantId ?? null,
        payload.userCode ?? null, payload.uid ?? null, expiresIn ? now() + expiresIn : null);
    }
    async find(id) { return fromRow(q.find.get(id, this.model)); }
    async findByUid(uid) { return fromRow(q.byUid.get(uid, this.model)); }
    async findByUserCode(code) { return fromRow(q.byUserCode.get(code, this.model)); }
    async consume(id) { q.consume.run(now(), id, this.model); }
    async destroy(id) { q.destroy.run(id, this.model); }
    async revokeByGrantId(grantId) { q.revoke.run(grantId); }
  };
}

async function postgresAdapter(url) {
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  await pool.query(TABLE);
  for (const index of INDEXES) await pool.query(index);
  const one = async (sql, args) => fromRow((await pool.query(sql, args)).rows[0]);
  return class PostgresAdapter {
    constructor(model) { this.model = model; }
    async upsert(id, payload, expiresIn) {
      await pool.query(`INSERT INTO oidc_payloads (id, type, payload, grant_id, user_code, uid, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id, type) DO UPDATE SET payload = excluded.payload,
        grant_id = excluded.grant_id, user_code = excluded.user_code, uid = excluded.uid,
        expires_at = excluded.expires_at`, [id, this.model, JSON.stringify(payload),
        payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null,
        expiresIn ? now() + expiresIn : null]);
    }
    async find(id) {
      return one('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE id = $1 AND type = $2', [id, this.model]);
    }
    async findByUid(uid) {
      return one('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE uid = $1 AND type = $2', [uid, this.model]);
    }
    async findByUserCode(code) {
      return one('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE user_code = $1 AND type = $2', [code, this.model]);
    }
    async consume(id) {
      await pool.query('UPDATE oidc_payloads SET consumed_at = $1 WHERE id = $2 AND type = $3', [now(), id, this.model]);
    }
    async destroy(id) {
      await pool.query('DELETE FROM oidc_payloads WHERE id = $1 AND type = $2', [id, this.model]);
    }
    async revokeByGrantId(grantId) {
      await pool.query('DELETE FROM oidc_payloads WHERE grant_id = $1', [grantId]);
    }
  };
}

async function adapterFor(storage) {
  if (storage.startsWith('sqlite:')) return sqliteAdapter(storage.slice('sqlite:'.length));
  if (storage.startsWith('postgres:')) return postgresAdapter(storage.slice('postgres:'.length));
  if (storage === 'memory') return memoryAdapter();
  throw new Error(`STORAGE must be sqlite:FILE, postgres:URL or memory, not ${storage}`);
}
const adapter = await adapterFor(process.env.STORAGE || 'memory');

const server = http.createServer();
server.keepAliveTimeout = 120_000;
server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    adapter,
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    scopes: ['sandboxes:read', 'offline_access'],
    pkce: { required: () => true },
    rotateRefreshToken: true,
    issueRefreshToken: async () => true,
    ttl: {
      AuthorizationCode: CODE_TTL,
      AccessToken: 3600,
      RefreshToken: 30 * 24 * 3600,
      Grant: 30 * 24 * 3600,
    },
    features: {
      introspection: { enabled: true },
      revocation: { enabled: true },
      devInteractions: { enabled: false },
    },
    cookies: { keys: ['hangar-bench-only-cookie-key'] },
    async findAccount(ctx, id) {
      return { accountId: id, async claims() { return { sub: id }; } };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  const client = await provider.Client.find(CLIENT_ID);

  async function newGrant() {
    const grant = new provider.Grant({ accountId: ACCOUNT, clientId: CLIENT_ID });
    grant.addOIDCScope(SCOPE);
    return grant.save();
  }

  async function issue(kind, grantId) {
    const common = {
      accountId: ACCOUNT, client, grantId, scope: SCOPE, expiresWithSession: false,
    };
    switch (kind) {
      case 'codes':
        return new provider.AuthorizationCode({
          ...common, redirectUri: REDIRECT_URI, codeChallenge: CODE_CHALLENGE,
          codeChallengeMethod: 'S256',
        }).save();
      case 'refresh':
        return new provider.RefreshToken({ ...common, gty: 'authorization_code', rotations: 0 }).save();
      case 'access':
        return new provider.AccessToken({ ...common, gty: 'authorization_code' }).save();
      default:
        throw new Error(`unknown kind ${kind}`);
    }
  }

  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', async (line) => {
    const [kind, n, file] = line.trim().split(/\s+/);
    try {
      const out = [];
      for (let i = 0; i < Number(n); i += 1) {
        out.push(await issue(kind, await newGrant()));
      }
      fs.writeFileSync(file, `${out.join('\n')}\n`);
      process.stdout.write('ok\n');
    } catch (err) {
      process.stdout.write(`error ${String(err).replace(/\n/g, ' ')}\n`);
    }
  });
  lines.on('close', () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
