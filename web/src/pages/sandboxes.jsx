// Sandboxes: the list (state, image, driver, limits, age), create, stop, start, destroy.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { age, limits } from '../format.js';
import { useResource, useTick } from '../hooks.js';
import { useLive } from '../live.js';
import { Link, navigate } from '../router.js';
import { Loading, Problem, State } from '../ui.jsx';

/** Applies a live `sandbox` event to a list: replace by id, or add at the front. */
export function upsert(list, sandbox) {
  if (!list) return list;
  const i = list.findIndex((s) => s.id === sandbox.id);
  if (sandbox.state === 'destroyed') return i < 0 ? list : list.filter((s) => s.id !== sandbox.id);
  if (i < 0) return [sandbox, ...list];
  const next = list.slice();
  next[i] = sandbox;
  return next;
}

export function SandboxActions({ sandbox, onDone }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const act = async (method, suffix, confirmText) => {
    if (confirmText && !confirm(confirmText)) return;
    setBusy(true);
    setError(null);
    try {
      const result = await api(`/sandboxes/${sandbox.id}${suffix}`, { method });
      onDone?.(result);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const s = sandbox.state;
  return (
    <span class="actions">
      {s === 'running' && <button disabled={busy} data-action="stop" onClick={() => act('POST', '/stop')}>Stop</button>}
      {s === 'stopped' && <button disabled={busy} data-action="start" onClick={() => act('POST', '/start')}>Start</button>}
      {s !== 'destroyed' && s !== 'destroying' && (
        <button disabled={busy} class="danger" data-action="destroy"
          onClick={() => act('DELETE', '', `Destroy sandbox ${sandbox.id}? Its files are removed.`)}>
          Destroy
        </button>
      )}
      <Problem error={error} />
    </span>
  );
}

function CreateForm({ onCreated }) {
  const images = useResource('/images');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const num = (k) => (f.get(k) ? Number(f.get(k)) : undefined);
    const body = {
      image: f.get('image') || undefined,
      network: f.get('network') || undefined,
      limits: { cpu_millis: num('cpu_millis'), memory_mib: num('memory_mib'), pids_max: num('pids_max') },
    };
    setBusy(true);
    setError(null);
    try {
      const created = await api('/sandboxes', { method: 'POST', body });
      onCreated(created);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card create" onSubmit={submit} data-form="create-sandbox">
      <h2>New sandbox</h2>
      <div class="row">
        <label>Image
          <select name="image" required>
            {(images.data || []).map((i) => (
              <option value={i.name}>{i.name} ({i.digest.slice(7, 19)})</option>
            ))}
          </select>
        </label>
        <label>Network
          <select name="network">
            <option value="">server default</option>
            <option value="egress">egress</option>
            <option value="none">none</option>
          </select>
        </label>
        <label>CPU (millicores)<input name="cpu_millis" type="number" min="1" placeholder="default" /></label>
        <label>Memory (MiB)<input name="memory_mib" type="number" min="1" placeholder="default" /></label>
        <label>PIDs<input name="pids_max" type="number" min="1" placeholder="default" /></label>
        <button type="submit" disabled={busy || !images.data}>Create</button>
      </div>
      <Problem error={images.error} what="The image list" />
      <Problem error={error} />
    </form>
  );
}

export function SandboxList() {
  const list = useResource('/sandboxes');
  const loaded = list.data !== null;
  useEffect(() => {
    // For the bench (web/tests/bench.mjs): the first time the page shows its data.
    if (loaded && performance.getEntriesByName('hangar:rendered').length === 0) performance.mark('hangar:rendered');
  }, [loaded]);
  useTick(10000);
  useLive(['sandbox', 'resync'], (kind, data) => {
    if (kind === 'sandbox') list.set((l) => upsert(l, data));
    else list.reload();
  });
  return (
    <main data-page="sandboxes">
      <h1>Sandboxes</h1>
      <CreateForm onCreated={(s) => {
        list.set((l) => upsert(l, s));
        navigate(`/app/sandboxes/${s.id}`);
      }} />
      <Problem error={list.error} />
      {list.loading && <Loading />}
      {list.data && list.data.length === 0 && <p class="muted">No sandboxes yet.</p>}
      {list.data && list.data.length > 0 && (
        <table class="list" data-list="sandboxes">
          <thead>
            <tr><th>Id</th><th>State</th><th>Image</th><th>Driver</th><th>Limits</th><th>Age</th><th /></tr>
          </thead>
          <tbody>
            {list.data.map((s) => (
              <tr key={s.id} data-sandbox={s.id} class={s.state === 'failed' ? 'unhealthy' : ''}>
                <td><Link href={`/app/sandboxes/${s.id}`}>{s.id.slice(0, 8)}</Link></td>
                <td><State state={s.state} /></td>
                <td>{s.image}</td>
                <td>{s.driver}</td>
                <td>{limits(s.limits)}</td>
                <td title={s.created_at}>{age(s.created_at)}</td>
                <td><SandboxActions sandbox={s} onDone={(r) => (r ? list.set((l) => upsert(l, r)) : list.reload())} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
