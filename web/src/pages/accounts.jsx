// Connected CLI accounts: provider, since when, the last status check; removing one; and the
// connect flow (start, then the remote browser through noVNC, the device code, or the
// paste-code / token form).

import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { when } from '../format.js';
import { useResource } from '../hooks.js';
import { Link, navigate } from '../router.js';
import { Loading, Problem } from '../ui.jsx';

const OPEN = ['starting', 'awaiting_user', 'capturing'];

function StartConnect() {
  const providers = useResource('/providers');
  const [provider, setProvider] = useState('');
  const [error, setError] = useState(null);
  const chosen = (providers.data || []).find((p) => p.id === provider) || (providers.data || [])[0];
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    setError(null);
    try {
      // The answer's viewer link (with its one-time token) is not needed here: the connect
      // page reads the session and its VNC stream with the session cookie.
      const s = await api('/connect', { method: 'POST', body: { provider: f.get('provider'), flow: f.get('flow') || undefined } });
      navigate(`/app/connect/${s.id}`);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="card" onSubmit={submit} data-form="connect">
      <h2>Connect an account</h2>
      <div class="row">
        <label>Provider
          <select name="provider" onChange={(e) => setProvider(e.currentTarget.value)}>
            {(providers.data || []).map((p) => <option value={p.id}>{p.display_name}</option>)}
          </select>
        </label>
        <label>Flow
          <select name="flow">
            {(chosen?.flows || []).map((f) => <option value={f}>{f.replace('_', ' ')}</option>)}
          </select>
        </label>
        <button type="submit" disabled={!chosen}>Connect</button>
      </div>
      <Problem error={providers.error} what="Connecting accounts" />
      <Problem error={error} />
    </form>
  );
}

export function AccountsPage() {
  const creds = useResource('/credentials');
  const sessions = useResource('/connect');
  const [error, setError] = useState(null);
  const remove = async (provider) => {
    if (!confirm(`Remove the ${provider} credential from hangar and your sandboxes?`)) return;
    try {
      await api(`/credentials/${provider}`, { method: 'DELETE' });
      creds.reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <main data-page="accounts">
      <h1>CLI accounts</h1>
      <Problem error={creds.error} what="Credentials" />
      <Problem error={error} />
      {creds.loading && <Loading />}
      {creds.data && creds.data.length === 0 && <p class="muted">No CLI account connected yet.</p>}
      {creds.data && creds.data.length > 0 && (
        <table class="list" data-list="credentials">
          <thead><tr><th>Provider</th><th>Connected</th><th>Last status check</th><th>Token expires</th><th /></tr></thead>
          <tbody>
            {creds.data.map((c) => (
              <tr data-provider={c.provider} class={c.last_check_ok === false ? 'unhealthy' : ''}>
                <td>{c.provider}</td>
                <td>{when(c.connected_since)}</td>
                <td>
                  {c.last_check_at
                    ? <>{c.last_check_ok ? 'logged in' : 'NOT logged in'} ({when(c.last_check_at)})</>
                    : 'not checked yet'}
                  {c.last_check_output && <div class="muted small">{c.last_check_output}</div>}
                </td>
                <td>{when(c.access_token_expires_at)}</td>
                <td><button class="danger" onClick={() => remove(c.provider)}>Remove</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <StartConnect />
      {sessions.data && sessions.data.length > 0 && (
        <section class="card">
          <h2>Recent connect sessions</h2>
          <ul class="plain">
            {sessions.data.slice(0, 10).map((s) => (
              <li><Link href={`/app/connect/${s.id}`}>{s.provider}</Link> · {s.flow} · {s.state} · {when(s.created_at)}</li>
            ))}
          </ul>
        </section>
      )}
    </main>
  );
}

function Viewer({ session }) {
  const el = useRef(null);
  const [state, setState] = useState('loading');
  useEffect(() => {
    if (!session.viewer_websocket) return undefined;
    let rfb = null;
    let closed = false;
    let cancelled = false;
    const onState = (state) => {
      closed = state === 'disconnected';
      setState(state);
    };
    import('../lazy/vnc.js').then(({ openVnc }) => {
      if (cancelled) return;
      rfb = openVnc(el.current, session.viewer_websocket, { onState });
    });
    return () => {
      cancelled = true;
      // noVNC complains when asked to disconnect twice (the server may have closed first).
      if (!closed) rfb?.disconnect();
    };
  }, [session.viewer_websocket]);
  return (
    <>
      <p>Sign in with the provider in the remote browser below <span class="muted">({state})</span>.</p>
      <div class="vnc" ref={el} data-vnc={state} />
    </>
  );
}

function CodeForm({ id, label }) {
  const [error, setError] = useState(null);
  const [sent, setSent] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const code = new FormData(e.currentTarget).get('code');
    try {
      await api(`/connect/${id}/code`, { method: 'POST', body: { code } });
      setSent(true);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form onSubmit={submit} class="row">
      <label>{label}<input name="code" type="password" autocomplete="off" required /></label>
      <button type="submit" disabled={sent}>{sent ? 'Sent' : 'Send'}</button>
      <Problem error={error} />
    </form>
  );
}

export function ConnectPage({ id }) {
  const s = useResource(`/connect/${id}`);
  const session = s.data;
  useEffect(() => {
    // Connect sessions are short and not on the live stream: refresh every 2 s while open.
    if (session && !OPEN.includes(session.state)) return undefined;
    const t = setTimeout(s.reload, 2000);
    return () => clearTimeout(t);
  }, [session]);
  const cancel = async () => {
    await api(`/connect/${id}`, { method: 'DELETE' }).catch(() => {});
    s.reload();
  };
  const prompt = session?.prompt;
  return (
    <main data-page="connect" data-state={session?.state}>
      <p><Link href="/app/accounts">← CLI accounts</Link></p>
      <h1>Connecting {session?.provider}</h1>
      <Problem error={s.error} />
      {s.loading && <Loading />}
      {session && (
        <section class="card">
          <p>State: <strong>{session.state}</strong> · flow {session.flow} · until {when(session.expires_at)}</p>
          {session.failure && <p class="error">{session.failure}</p>}
          {session.state === 'completed' && <p>Connected. Your sandboxes have the credential.</p>}
          {OPEN.includes(session.state) && (
            <>
              {prompt?.kind === 'viewer' && <Viewer session={session} />}
              {prompt?.kind === 'verification_uri' && (
                <p>Open <a href={prompt.uri} target="_blank" rel="noopener noreferrer">{prompt.uri}</a> and enter the code <code class="code">{prompt.user_code}</code>.</p>
              )}
              {prompt?.kind === 'authorize_url' && (
                <>
                  <p>Open <a href={prompt.url} target="_blank" rel="noopener noreferrer">the provider's sign-in page</a>, then paste the code it shows.</p>
                  <CodeForm id={id} label="Code" />
                </>
              )}
              {session.flow === 'token' && session.state === 'awaiting_user' && <CodeForm id={id} label="Token" />}
              {!prompt && session.flow !== 'token' && <p class="muted">Preparing...</p>}
              <button class="danger" onClick={cancel}>Cancel</button>
            </>
          )}
        </section>
      )}
    </main>
  );
}
