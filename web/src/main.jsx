// The dashboard: app shell, sign-in view, routes. Heavy pages' libraries (xterm.js, uPlot,
// noVNC) are imported by the pages that need them, when they need them.

import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, signinProviders, unauthenticated } from './api.js';
import { startLive } from './live.js';
import { Link, match, navigate, usePath } from './router.js';
import { Loading, Problem } from './ui.jsx';
import { SandboxList } from './pages/sandboxes.jsx';
import { SandboxPage } from './pages/sandbox.jsx';
import { AccountsPage, ConnectPage } from './pages/accounts.jsx';
import { AccessPage } from './pages/access.jsx';
import { AdminPage, NodePage } from './pages/admin.jsx';
import './style.css';

const ROUTES = [
  ['/', SandboxList],
  ['/app', SandboxList],
  ['/app/sandboxes', SandboxList],
  ['/app/sandboxes/:id', SandboxPage],
  ['/app/accounts', AccountsPage],
  ['/app/connect/:id', ConnectPage],
  ['/app/access', AccessPage],
  ['/app/admin', AdminPage],
  ['/app/admin/nodes/:id', NodePage],
];

function SignIn() {
  const [providers, setProviders] = useState([]);
  useEffect(() => {
    signinProviders().then(setProviders);
  }, []);
  const returnTo = location.pathname + location.search;
  return (
    <main class="signin" data-page="signin">
      <h1>Sign in to hangar</h1>
      {providers.map((p) => (
        <a class="button" href={`/login/${encodeURIComponent(p.name)}?return_to=${encodeURIComponent(returnTo)}`}>
          Sign in with {p.label}
        </a>
      ))}
      {providers.length > 0 && <hr />}
      <form method="post" action="/login/token">
        <label for="token">Personal access token</label>
        <input id="token" name="token" type="password" autocomplete="off" required placeholder="hgr_pat_..." />
        <input type="hidden" name="return_to" value={returnTo} />
        <button type="submit">Sign in with a token</button>
      </form>
      <p class="muted">
        On a local install, the admin's token is in the data directory's <code>admin-token</code> file.
      </p>
    </main>
  );
}

function Nav({ me }) {
  const path = usePath();
  const item = (href, label, prefix = href) => (
    <Link href={href} class={path.startsWith(prefix) ? 'active' : ''}>{label}</Link>
  );
  return (
    <header class="top">
      <Link href="/" class="brand">hangar</Link>
      <nav>
        {item('/app/sandboxes', 'Sandboxes')}
        {item('/app/accounts', 'CLI accounts', '/app/accounts')}
        {item('/app/access', 'Tokens & apps')}
        {me.is_admin && item('/app/admin', 'Admin')}
      </nav>
      <span class="spacer" />
      <span class="live-mode" title="live updates" />
      <span class="who" data-user={me.name}>{me.name}{me.is_admin ? ' (admin)' : ''}</span>
      <form method="post" action="/logout" class="inline">
        <button type="submit" class="link">Sign out</button>
      </form>
    </header>
  );
}

function App() {
  const [me, setMe] = useState(undefined);
  const [error, setError] = useState(null);
  const path = usePath();
  useEffect(() => {
    api('/me')
      .then((m) => {
        setMe(m);
        startLive();
      })
      .catch((e) => (e.status === 401 ? setMe(null) : setError(e)));
    const out = () => setMe(null);
    unauthenticated.addEventListener('signed-out', out);
    return () => unauthenticated.removeEventListener('signed-out', out);
  }, []);
  useEffect(() => {
    if (me && (path === '/' || path === '/app')) navigate('/app/sandboxes', { replace: true });
  }, [me, path]);
  if (error) return <main><Problem error={error} /></main>;
  if (me === undefined) return <main><Loading /></main>;
  if (me === null) return <SignIn />;
  let page = <main><p>No such page. <Link href="/app/sandboxes">Sandboxes</Link></p></main>;
  for (const [pattern, Page] of ROUTES) {
    const params = match(pattern, path);
    if (params) {
      page = <Page me={me} {...params} />;
      break;
    }
  }
  return (
    <>
      <Nav me={me} />
      {page}
    </>
  );
}

const root = document.getElementById('app');
root.textContent = '';
render(<App />, root);
document.body.dataset.app = 'ready';
