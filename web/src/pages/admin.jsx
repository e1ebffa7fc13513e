// Admin: every node with host CPU, memory, disk and network (live numbers and charts over
// 1 h / 1 d / 1 w), each node's sandboxes with their own figures, unhealthy ones marked, and
// the recent events. Non-admins see a refusal (the API answers them 403 too).

import { MetricsCharts } from '../charts.jsx';
import { age, bytes, percent, rate, when } from '../format.js';
import { useResource, useTick } from '../hooks.js';
import { useLive } from '../live.js';
import { Link } from '../router.js';
import { Loading, Problem, State } from '../ui.jsx';

const NODE_CHARTS = [
  { name: 'cpu', title: 'Host CPU (%)', series: [{ field: 'cpu_percent', label: 'CPU' }], format: percent },
  {
    name: 'memory', title: 'Host memory',
    series: [{ field: 'memory_used_bytes', label: 'used' }, { field: 'memory_total_bytes', label: 'total' }],
    format: bytes,
  },
  {
    name: 'disk', title: 'Data disk',
    series: [{ field: 'disk_used_bytes', label: 'used' }, { field: 'disk_total_bytes', label: 'total' }],
    format: bytes,
  },
  {
    name: 'network', title: 'Host network',
    series: [{ field: 'net_rx_bytes_per_second', label: 'rx' }, { field: 'net_tx_bytes_per_second', label: 'tx' }],
    format: rate,
  },
];

function Refused() {
  return (
    <main data-page="admin" data-refused>
      <h1>Admin</h1>
      <p class="refused">Only admins can see this page.</p>
    </main>
  );
}

const of = (used, total) => (used === null || used === undefined ? '–' : `${bytes(used)} / ${bytes(total)}`);

function Nodes() {
  const nodes = useResource('/nodes');
  useTick(10000);
  useLive(['node_sample', 'resync', 'event'], (kind, data) => {
    if (kind === 'node_sample') {
      nodes.set((l) => l && l.map((n) => (n.id === data.node_id ? { ...n, latest: data.sample, state: 'ready', last_heartbeat_at: data.sample.at } : n)));
    } else if (kind === 'resync' || (kind === 'event' && /^node_/.test(data.kind))) {
      nodes.reload();
    }
  });
  return (
    <section class="card">
      <h2>Nodes</h2>
      <Problem error={nodes.error} what="Node metrics" />
      {nodes.loading && <Loading />}
      {nodes.data && (
        <table class="list" data-list="nodes">
          <thead><tr><th>Node</th><th>State</th><th>Heartbeat</th><th>CPU</th><th>Memory</th><th>Disk</th><th>Net rx / tx</th><th>Sandboxes</th></tr></thead>
          <tbody>
            {nodes.data.map((n) => {
              const l = n.latest || {};
              return (
                <tr data-node={n.id} class={n.state !== 'ready' ? 'unhealthy' : ''}>
                  <td><Link href={`/app/admin/nodes/${n.id}`}>{n.name}</Link></td>
                  <td><State state={n.state} /></td>
                  <td>{n.last_heartbeat_at ? `${age(n.last_heartbeat_at)} ago` : '–'}</td>
                  <td data-figure="cpu">{percent(l.cpu_percent)}{l.cpu_count ? ` of ${l.cpu_count}` : ''}</td>
                  <td>{of(l.memory_used_bytes, l.memory_total_bytes)}</td>
                  <td>{of(l.disk_used_bytes, l.disk_total_bytes)}</td>
                  <td>{rate(l.net_rx_bytes_per_second)} / {rate(l.net_tx_bytes_per_second)}</td>
                  <td>{l.sandboxes_running ?? '–'}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Events() {
  const events = useResource('/events?limit=50');
  useLive(['event', 'resync'], (kind, data) => {
    if (kind === 'event') events.set((l) => (l ? [data, ...l.filter((e) => e.id !== data.id)].slice(0, 50) : l));
    else events.reload();
  });
  return (
    <section class="card">
      <h2>Recent events</h2>
      <Problem error={events.error} what="The event list" />
      {events.data && events.data.length === 0 && <p class="muted">Nothing happened yet.</p>}
      {events.data && events.data.length > 0 && (
        <table class="list" data-list="events">
          <thead><tr><th>When</th><th>Kind</th><th>What</th><th>Sandbox</th></tr></thead>
          <tbody>
            {events.data.map((e) => (
              <tr data-event={e.kind} class={`sev-${e.severity}`}>
                <td>{when(e.at)}</td>
                <td>{e.kind.replace(/_/g, ' ')}{e.stage ? ` (${e.stage})` : ''}</td>
                <td>{e.message}</td>
                <td>{e.sandbox_id ? <Link href={`/app/sandboxes/${e.sandbox_id}`}>{e.sandbox_id.slice(0, 8)}</Link> : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function AdminPage({ me }) {
  if (!me.is_admin) return <Refused />;
  return (
    <main data-page="admin">
      <h1>Admin</h1>
      <Nodes />
      <Events />
    </main>
  );
}

export function NodePage({ me, id }) {
  const nodes = useResource(me.is_admin ? '/nodes' : null);
  const sandboxes = useResource(me.is_admin ? `/nodes/${id}/sandboxes` : null);
  useLive(['sandbox_sample', 'sandbox', 'resync'], (kind, data) => {
    if (kind === 'sandbox_sample') {
      sandboxes.set((l) => l && l.map((r) => (r.sandbox.id === data.sandbox_id ? { ...r, latest: data.sample } : r)));
    } else sandboxes.reload();
  });
  if (!me.is_admin) return <Refused />;
  const node = (nodes.data || []).find((n) => n.id === id);
  return (
    <main data-page="node" data-node={id}>
      <p><Link href="/app/admin">← Admin</Link></p>
      <h1>Node {node?.name || id}</h1>
      <Problem error={nodes.error} what="Node metrics" />
      {node && <p>State: <State state={node.state} /> · drivers {node.drivers.join(', ')} · heartbeat {when(node.last_heartbeat_at)}</p>}
      <section class="card">
        <h2>Host</h2>
        <MetricsCharts path={`/nodes/${id}/metrics`} charts={NODE_CHARTS}
          sampleKind="node_sample" sampleMatch={(e) => e.node_id === id} />
      </section>
      <section class="card">
        <h2>Sandboxes on this node</h2>
        <Problem error={sandboxes.error} what="Per-node sandboxes" />
        {sandboxes.data && (
          <table class="list" data-list="node-sandboxes">
            <thead><tr><th>Sandbox</th><th>State</th><th>Owner</th><th>CPU</th><th>Memory</th><th>Disk</th><th>Net rx / tx</th><th>PIDs</th></tr></thead>
            <tbody>
              {sandboxes.data.map(({ sandbox: s, latest: l, healthy }) => (
                <tr data-sandbox={s.id} class={healthy ? '' : 'unhealthy'} data-healthy={String(healthy)}>
                  <td><Link href={`/app/sandboxes/${s.id}`}>{s.id.slice(0, 8)}</Link></td>
                  <td><State state={s.state} />{healthy ? '' : ' ⚠'}</td>
                  <td>{s.owner.slice(0, 8)}</td>
                  <td>{percent(l?.cpu_percent)}</td>
                  <td>{l ? `${bytes(l.memory_bytes)}${l.memory_limit_bytes ? ` / ${bytes(l.memory_limit_bytes)}` : ''}` : '–'}</td>
                  <td>{bytes(l?.disk_bytes)}</td>
                  <td>{rate(l?.net_rx_bytes_per_second)} / {rate(l?.net_tx_bytes_per_second)}</td>
                  <td>{l?.pids ?? '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </main>
  );
}
