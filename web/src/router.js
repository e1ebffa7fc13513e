// Client-side routes under /app/ (the server answers index.html for every one of them):
// history.pushState navigation, `Link` for in-app anchors, `match` for path patterns.

import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';

const changed = new EventTarget();

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  changed.dispatchEvent(new Event('change'));
}

window.addEventListener('popstate', () => changed.dispatchEvent(new Event('change')));

export function usePath() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const fn = () => setPath(location.pathname);
    changed.addEventListener('change', fn);
    return () => changed.removeEventListener('change', fn);
  }, []);
  return path;
}

/** `match('/app/sandboxes/:id', '/app/sandboxes/abc')` -> `{id: 'abc'}` or null. */
export function match(pattern, path) {
  const p = pattern.split('/');
  const s = path.replace(/\/+$/, '').split('/');
  if (p.length !== s.length) return null;
  const params = {};
  for (let i = 0; i < p.length; i += 1) {
    if (p[i].startsWith(':')) params[p[i].slice(1)] = decodeURIComponent(s[i]);
    else if (p[i] !== s[i]) return null;
  }
  return params;
}

export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    navigate(href);
  };
  return h('a', { href, onClick, ...rest }, children);
}
