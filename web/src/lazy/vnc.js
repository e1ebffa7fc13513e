// noVNC on a connect session's browser sandbox (GET /api/v1/connect/{id}/vnc, a binary
// WebSocket carrying RFB). The dashboard's session cookie authenticates it (a same-origin
// upgrade). Loaded only by the connect page.
import RFB from '@novnc/novnc';

/** Connects `el` to the session's VNC stream at `path`. Returns the RFB object. */
export function openVnc(el, path, { onState }) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const rfb = new RFB(el, `${scheme}://${location.host}${path}`, { wsProtocols: ['binary'] });
  rfb.scaleViewport = true;
  rfb.viewOnly = false;
  rfb.addEventListener('connect', () => onState('connected'));
  rfb.addEventListener('disconnect', () => onState('disconnected'));
  return rfb;
}
