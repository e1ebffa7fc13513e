// hangar's remote-browser viewer: shows a connect session's browser sandbox through noVNC.
// The page is /connect/<session id>#viewer=<viewer token>: a token good for this one session
// only, in the fragment, which never reaches a server. REST calls send it as a bearer header;
// the VNC WebSocket carries it as a `hangar.bearer.<token>` subprotocol (browsers cannot set
// headers on WebSockets).
import RFB from '@novnc/novnc';

const id = location.pathname.split('/').filter(Boolean).pop();
const fragment = new URLSearchParams(location.hash.slice(1));
const token = fragment.get('viewer') || fragment.get('token') || '';
const statusEl = document.getElementById('status');
const screenEl = document.getElementById('screen');
let rfb = null;

function say(text) {
  statusEl.textContent = text;
}

async function session() {
  const r = await fetch(`/api/v1/connect/${id}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!r.ok) {
    const problem = await r.json().catch(() => ({ detail: r.statusText }));
    throw new Error(problem.detail || r.statusText);
  }
  return r.json();
}

function connectVnc(path) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  rfb = new RFB(screenEl, `${scheme}://${location.host}${path}`, {
    wsProtocols: ['binary', `hangar.bearer.${token}`],
  });
  rfb.scaleViewport = true;
  rfb.viewOnly = false;
  rfb.addEventListener('connect', () => {
    document.body.dataset.vnc = 'connected';
    say('Sign in with the provider in the browser below.');
  });
  rfb.addEventListener('disconnect', () => {
    document.body.dataset.vnc = 'disconnected';
  });
}

async function tick() {
  try {
    const s = await session();
    document.body.dataset.state = s.state;
    if (s.state === 'completed') {
      say(`${s.provider} is connected. You can close this page.`);
      if (rfb) rfb.disconnect();
      return;
    }
    if (['failed', 'expired', 'cancelled'].includes(s.state)) {
      say(`Not connected: ${s.state}${s.failure ? ` (${s.failure})` : ''}`);
      if (rfb) rfb.disconnect();
      return;
    }
    if (s.viewer_websocket && !rfb) connectVnc(s.viewer_websocket);
    if (!s.viewer_websocket) say(`Preparing the remote browser (${s.state})...`);
  } catch (e) {
    say(`Error: ${e.message}`);
  }
  setTimeout(tick, 1000);
}

tick();
