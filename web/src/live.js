// Live updates: one EventSource on GET /api/v1/stream (named events `sandbox`, `event`,
// `node_sample`, `sandbox_sample`, `resync`), reconnected with exponential backoff and
// jitter (1 s doubling to 30 s). After every (re)connection and on the server's `resync`
// the pages refetch, since events may have been missed. A server without the stream route
// (404) gets a slow refetch every 5 s instead; nothing polls faster.
//
// `document.body.dataset.live` tells the mode: `connecting`, `stream`, `polling`, `offline`.

import { useEffect, useRef } from 'preact/hooks';

const KINDS = ['sandbox', 'event', 'node_sample', 'sandbox_sample'];
const POLL_MS = 5000;
const bus = new EventTarget();
let source = null;
let backoffMs = 1000;
let timer = null;
let started = false;

function mode(m) {
  document.body.dataset.live = m;
  bus.dispatchEvent(new CustomEvent('mode', { detail: m }));
}

function emit(kind, data) {
  bus.dispatchEvent(new CustomEvent(kind, { detail: data }));
}

function open() {
  clearTimeout(timer);
  mode('connecting');
  const es = new EventSource('/api/v1/stream');
  source = es;
  es.onopen = () => {
    backoffMs = 1000;
    mode('stream');
    emit('resync', null);
  };
  for (const kind of KINDS) {
    es.addEventListener(kind, (e) => {
      try {
        emit(kind, JSON.parse(e.data));
      } catch {
        // A malformed event is dropped; the next resync repairs the view.
      }
    });
  }
  es.addEventListener('resync', () => emit('resync', null));
  es.onerror = () => {
    es.close();
    if (source === es) source = null;
    retry();
  };
}

async function retry() {
  // Why did it fail? EventSource cannot say; a plain request can (aborted after headers).
  const ctl = new AbortController();
  let status = 0;
  try {
    const r = await fetch('/api/v1/stream', { signal: ctl.signal, credentials: 'same-origin' });
    status = r.status;
    ctl.abort();
  } catch {
    status = 0;
  }
  if (status === 404) {
    poll();
    return;
  }
  mode(status === 401 ? 'offline' : 'connecting');
  if (status === 401) return;
  const wait = backoffMs * (0.75 + Math.random() / 2);
  backoffMs = Math.min(backoffMs * 2, 30000);
  timer = setTimeout(open, wait);
}

function poll() {
  mode('polling');
  emit('resync', null);
  timer = setTimeout(poll, POLL_MS);
}

/** Starts the live connection once (after sign-in). */
export function startLive() {
  if (started) return;
  started = true;
  open();
}

/** Subscribes `handler(data)` to the named live events while the component is mounted. */
export function useLive(kinds, handler) {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const listeners = kinds.map((k) => {
      const fn = (e) => ref.current(k, e.detail);
      bus.addEventListener(k, fn);
      return [k, fn];
    });
    return () => listeners.forEach(([k, fn]) => bus.removeEventListener(k, fn));
  }, [kinds.join(',')]);
}
