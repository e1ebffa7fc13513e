// One sandbox: its record, the boot stages as a timeline, the failure (stage reached and
// console tail), metrics charts, and a terminal when it runs.

import { useEffect, useRef, useState } from 'preact/hooks';
import { MetricsCharts } from '../charts.jsx';
import { age, bytes, limits, percent, rate, when } from '../format.js';
import { useResource, useTick } from '../hooks.js';
import { useLive } from '../live.js';
import { Link } from '../router.js';
import { Loading, Problem, State } from '../ui.jsx';
import { SandboxActions } from './sandboxes.jsx';

const STAGES = ['created', 'rootfs_ready', 'process_started', 'agent_ready'];

export const SANDBOX_CHARTS = [
  { name: 'cpu', title: 'CPU (% of one core)', series: [{ field: 'cpu_percent', label: 'CPU' }], format: percent },
  {
    name: 'memory', title: 'Memory',
    series: [{ field: 'memory_bytes', label: 'used' }, { field: 'memory_limit_bytes', label: 'limit' }],
    format: bytes,
  },
  {
    name: 'network', title: 'Network',
    series: [{ field: 'net_rx_bytes_per_second', label: 'rx' }, { field: 'net_tx_bytes_per_second', label: 'tx' }],
    format: rate,
  },
  { name: 'disk', title: 'Writable layer', series: [{ field: 'disk_bytes', label: 'disk' }], format: bytes },
];

function Timeline({ sandbox }) {
  const reached = new Map(sandbox.boot.map((b) => [b.stage, b.at]));
  const start = sandbox.boot.length ? Date.parse(sandbox.boot[0].at) : 0;
  const failedAt = sandbox.failure?.stage_reached;
  return (
    <ol class="timeline" data-timeline>
      {STAGES.map((stage) => {
        const at = reached.get(stage);
        const cls = at ? 'done' : sandbox.state === 'failed' ? 'missed' : 'pending';
        return (
          <li class={`${cls}${failedAt === stage ? ' last' : ''}`} data-stage={stage} data-reached={at ? 'yes' : 'no'}>
            <span class="dot" />
            <span class="name">{stage.replace('_', ' ')}</span>
            <span class="at">{at ? `+${Date.parse(at) - start} ms` : cls === 'missed' ? 'not reached' : '…'}</span>
          </li>
        );
      })}
    </ol>
  );
}

function Failure({ failure }) {
  if (!failure) return null;
  return (
    <section class="card failure" data-failure={failure.kind}>
      <h2>Failed: {failure.kind.replace('_', ' ')}</h2>
      <p>{failure.message}</p>
      <p>Stage reached: <strong>{failure.stage_reached || 'none'}</strong></p>
      {failure.console_tail.length > 0 && (
        <>
          <h3>Console (last lines)</h3>
          <pre class="console">{failure.console_tail.join('\n')}</pre>
        </>
      )}
    </section>
  );
}

function TerminalPanel({ id }) {
  const el = useRef(null);
  const handle = useRef(null);
  const [open, setOpen] = useState(false);
  const [status, setStatus] = useState('');
  useEffect(() => {
    if (!open) return undefined;
    let cancelled = false;
    setStatus('loading');
    import('../lazy/terminal.js').then(({ openTerminal }) => {
      if (cancelled) return;
      handle.current = openTerminal(el.current, id, {
        status: setStatus,
        exit: (m) => setStatus(m.type === 'exit' ? `exited (code ${m.code ?? '–'}${m.signal ? `, signal ${m.signal}` : ''})` : `closed: ${m.message}`),
      });
    }, (e) => setStatus(`could not load the terminal: ${e.message}`));
    return () => {
      cancelled = true;
      handle.current?.close();
      handle.current = null;
    };
  }, [open, id]);
  return (
    <section class="card terminal-card">
      <h2>Terminal</h2>
      {!open && <button data-action="open-terminal" onClick={() => setOpen(true)}>Open a terminal</button>}
      {open && (
        <div class="term-bar">
          <span class="muted" data-terminal-status={status}>{status}</span>
          <button onClick={() => handle.current?.copy()} title="Ctrl+Shift+C">Copy</button>
          <button onClick={() => handle.current?.paste()} title="Ctrl+Shift+V">Paste</button>
          <button onClick={() => setOpen(false)}>Close</button>
        </div>
      )}
      {open && <div class="terminal" ref={el} data-terminal={id} />}
    </section>
  );
}

export function SandboxPage({ id }) {
  const sb = useResource(`/sandboxes/${id}`);
  useTick(10000);
  useLive(['sandbox', 'resync'], (kind, data) => {
    if (kind === 'sandbox') {
      if (data.id === id) sb.set(() => data);
    } else sb.reload();
  });
  const s = sb.data;
  return (
    <main data-page="sandbox" data-sandbox={id} data-state={s?.state}>
      <p><Link href="/app/sandboxes">← Sandboxes</Link></p>
      <h1>Sandbox <code>{id}</code></h1>
      <Problem error={sb.error} />
      {sb.loading && <Loading />}
      {s && (
        <>
          <section class="card">
            <dl class="facts">
              <dt>State</dt><dd><State state={s.state} /></dd>
              <dt>Image</dt><dd>{s.image} <code class="muted">{s.image_digest.slice(0, 19)}</code></dd>
              <dt>Driver</dt><dd>{s.driver}</dd>
              <dt>Limits</dt><dd>{limits(s.limits)}</dd>
              <dt>Network</dt><dd>{s.network}{s.address ? ` (${s.address})` : ''}</dd>
              <dt>Created</dt><dd title={s.created_at}>{when(s.created_at)} ({age(s.created_at)} ago)</dd>
            </dl>
            <SandboxActions sandbox={s} onDone={(r) => (r ? sb.set(() => r) : sb.reload())} />
          </section>
          <section class="card">
            <h2>Boot</h2>
            <Timeline sandbox={s} />
          </section>
          <Failure failure={s.failure} />
          {s.state === 'running' && <TerminalPanel id={id} />}
          {s.state !== 'destroyed' && (
            <section class="card">
              <h2>Metrics</h2>
              <MetricsCharts path={`/sandboxes/${id}/metrics`} charts={SANDBOX_CHARTS}
                sampleKind="sandbox_sample" sampleMatch={(e) => e.sandbox_id === id} />
            </section>
          )}
        </>
      )}
    </main>
  );
}
