// An xterm.js terminal on a sandbox's PTY WebSocket (GET /api/v1/sandboxes/{id}/pty; see
// crates/hangar-server/src/api/pty.rs): binary messages both ways are terminal bytes; the
// client sends `{"type":"resize","rows","cols"}` text messages (fit addon + ResizeObserver);
// the server ends with `{"type":"exit","code","signal"}` or `{"type":"error","message"}`.
// Copy: select, then Ctrl+Shift+C or the Copy button; paste: Ctrl+Shift+V, the browser's
// paste, or the Paste button (clipboard API). Loaded only
// by the sandbox page, when a terminal is opened.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';

/**
 * Opens a terminal into `sandboxId` inside `el`. `on.status(text)` reports progress,
 * `on.exit({code, signal} | {message})` the end. Returns `{close, copy, paste, readBuffer}`.
 */
export function openTerminal(el, sandboxId, on) {
  const term = new Terminal({
    cursorBlink: true,
    fontSize: 14,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
    scrollback: 5000,
    theme: { background: '#111318' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/api/v1/sandboxes/${sandboxId}/pty?rows=${term.rows}&cols=${term.cols}`;
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  let ended = false;
  on.status('connecting');

  ws.onopen = () => {
    on.status('connected');
    term.focus();
  };
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      try {
        const msg = JSON.parse(e.data);
        ended = true;
        on.exit(msg);
      } catch {
        term.write(e.data);
      }
    } else {
      term.write(new Uint8Array(e.data));
    }
  };
  ws.onclose = () => {
    if (!ended) on.exit({ type: 'error', message: 'the terminal connection closed' });
  };
  const send = (data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(data);
  };
  term.onData((d) => send(encoder.encode(d)));
  term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
  term.onResize(({ rows, cols }) => send(JSON.stringify({ type: 'resize', rows, cols })));

  const copy = () => {
    const text = term.getSelection();
    if (text && navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    return text;
  };
  const paste = async () => {
    if (!navigator.clipboard) return;
    const text = await navigator.clipboard.readText().catch(() => '');
    if (text) term.paste(text);
  };
  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === 'KeyC') {
      copy();
      return false;
    }
    // Ctrl+Shift+V: not a ^V for the shell; the browser's own paste event (which xterm
    // handles) brings the text.
    if (e.code === 'KeyV') return false;
    return true;
  });

  const observer = new ResizeObserver(() => {
    try {
      fit.fit();
    } catch {
      // Not laid out (hidden): the next resize fits.
    }
  });
  observer.observe(el);

  const readBuffer = () => {
    const b = term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i += 1) lines.push(b.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  };
  el.readBuffer = readBuffer;
  el.terminalSize = () => ({ rows: term.rows, cols: term.cols });

  return {
    copy,
    paste,
    readBuffer,
    close() {
      observer.disconnect();
      ended = true;
      ws.close();
      term.dispose();
    },
  };
}
