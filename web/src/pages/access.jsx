// Personal access tokens (list, create with scopes and expiry showing the secret once,
// revoke) and linked third-party apps (OAuth grants: list, revoke).

import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { when } from '../format.js';
import { useResource } from '../hooks.js';
import { Loading, Problem } from '../ui.jsx';

const SCOPES = ['sandboxes:read', 'sandboxes:write', 'credentials:read', 'credentials:write',
  'connect', 'admin', 'openid', 'profile', 'email', 'offline_access'];
const EXPIRY = [['', 'never'], [86400, '1 day'], [30 * 86400, '30 days'], [90 * 86400, '90 days'], [365 * 86400, '1 year']];

function NewToken({ onCreated }) {
  const [error, setError] = useState(null);
  const [secret, setSecret] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const scopes = f.getAll('scope');
    const body = {
      name: f.get('name'),
      expires_in_s: f.get('expires') ? Number(f.get('expires')) : undefined,
      scope: scopes.length ? scopes.join(' ') : undefined,
    };
    setError(null);
    try {
      const created = await api('/tokens', { method: 'POST', body });
      setSecret(created.token);
      e.currentTarget?.reset();
      onCreated();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="card" onSubmit={submit} data-form="create-token">
      <h2>New token</h2>
      <div class="row">
        <label>Name<input name="name" required maxLength={64} /></label>
        <label>Expires
          <select name="expires">{EXPIRY.map(([v, l]) => <option value={v}>{l}</option>)}</select>
        </label>
      </div>
      <fieldset class="scopes">
        <legend>Scopes (none ticked: every scope)</legend>
        {SCOPES.map((s) => <label class="check"><input type="checkbox" name="scope" value={s} /> {s}</label>)}
      </fieldset>
      <button type="submit">Create token</button>
      <Problem error={error} />
      {secret && (
        <div class="secret" data-secret>
          <p>Copy the token now: it is not shown again.</p>
          <code class="token">{secret}</code>
          <button type="button" onClick={() => navigator.clipboard?.writeText(secret)}>Copy</button>
          <button type="button" onClick={() => setSecret(null)}>Done</button>
        </div>
      )}
    </form>
  );
}

export function AccessPage() {
  const tokens = useResource('/tokens');
  const apps = useResource('/account/apps');
  const [error, setError] = useState(null);
  const revoke = async (path, what, reload) => {
    if (!confirm(`Revoke ${what}?`)) return;
    try {
      await api(path, { method: 'DELETE' });
      reload();
    } catch (e) {
      setError(e);
    }
  };
  const live = (tokens.data || []).filter((t) => !t.revoked_at);
  return (
    <main data-page="access">
      <h1>Personal access tokens</h1>
      <Problem error={tokens.error} />
      <Problem error={error} />
      {tokens.loading && <Loading />}
      {tokens.data && (
        <table class="list" data-list="tokens">
          <thead><tr><th>Name</th><th>Scopes</th><th>Created</th><th>Expires</th><th>Last used</th><th /></tr></thead>
          <tbody>
            {live.map((t) => (
              <tr data-token={t.name}>
                <td>{t.name}</td>
                <td>{t.scope || 'all'}</td>
                <td>{when(t.created_at)}</td>
                <td>{t.expires_at ? when(t.expires_at) : 'never'}</td>
                <td>{when(t.last_used_at)}</td>
                <td><button class="danger" data-action="revoke"
                  onClick={() => revoke(`/tokens/${t.id}`, `the token "${t.name}"`, tokens.reload)}>Revoke</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <NewToken onCreated={tokens.reload} />
      <h1>Linked apps</h1>
      <Problem error={apps.error} what="Linked apps" />
      {apps.data && apps.data.length === 0 && <p class="muted">No third-party app has access to your account.</p>}
      {apps.data && apps.data.length > 0 && (
        <table class="list" data-list="apps">
          <thead><tr><th>App</th><th>Scopes</th><th>Approved</th><th /></tr></thead>
          <tbody>
            {apps.data.map((a) => (
              <tr data-app={a.client_id}>
                <td>{a.client_name}</td>
                <td>{a.scope}</td>
                <td>{when(a.updated_at)}</td>
                <td><button class="danger" onClick={() => revoke(`/account/apps/${a.id}`, `${a.client_name}'s access`, apps.reload)}>Revoke</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
