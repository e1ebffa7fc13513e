// noVNC on a connect session's browser sandbox (GET /api/v1/connect/{id}/vnc, a binary
// WebSocket carrying RFB). The dashboard's session cookie authenticates it (same origin);
// a viewer token, when the page has one, rides the `hangar.bearer.` subprotocol as on the
// standalone viewer page. Loaded only by the connect page.
import RFB from '@novnc/novnc';

/** Connects `el` to the session's VNC stream at `path`. Returns the RFB object. */
export function openVnc(el, path, { token, onState }) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const protocols = token ? ['binary', `hangar.bearer.${token}`] : ['binary'];
  const rfb = new RFB(el, `${scheme}://${location.host}${path}`, { wsProtocols: protocols });
  rfb.scaleViewport = true;
  rfb.viewOnly = false;
  rfb.addEventListener('connect', () => onState('connected'));
  rfb.addEventListener('disconnect', () => onState('disconnected'));
  return rfb;
}
