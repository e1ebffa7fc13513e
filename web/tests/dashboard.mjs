// Drives hangar's dashboard in a real headless Chromium (Debian's, through playwright-core)
// for crates/hangar/tests/dashboard.rs. One scenario per run:
//
//   node tests/dashboard.mjs SCENARIO BASE_URL TOKEN ARTIFACT_DIR [ARG]
//
// Scenarios: `sandbox` (sign in with a PAT, create a sandbox, watch it run, a terminal,
// resize, stop/start/destroy), `access` (tokens: create with scopes showing the secret once,
// use, revoke; CLI accounts and linked apps pages), `refused` (a non-admin on the admin page),
// `failed` (a failed sandbox: stage reached, console tail; ARG = sandbox id), `connect` (a
// browser-flow connect session's remote desktop through noVNC, then cancelled),
// `charts` (needs the metrics routes: sandbox and node charts with data; ARG = sandbox id),
// `live` (needs the stream: updates arrive by SSE, not by refetching).
// Prints one JSON line with what it saw and exits 0, or exits 1 with the reason. Screenshots
// go to ARTIFACT_DIR. Every wait has a deadline.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [scenario, base, token, artifacts, arg] = process.argv.slice(2);
const WAIT_MS = 30000;
const BOOT_MS = 90000;
mkdirSync(artifacts, { recursive: true });
const result = { scenario };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
const page = await context.newPage();
const consoleErrors = [];
// Script errors count; the browser's own notes on refused requests (401 before sign-in,
// a 403/404 the page shows as such, a stream route that is absent) do not.
page.on('console', (m) => {
  if (m.type() === 'error' && !/^Failed to load resource|EventSource/.test(m.text())) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
page.on('dialog', (d) => d.accept());

const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
const until = (fn, arg0, ms = WAIT_MS) => page.waitForFunction(fn, arg0, { timeout: ms, polling: 100 });

async function signIn(secret) {
  await page.goto(`${base}/`, { timeout: WAIT_MS });
  await page.waitForSelector('[data-page="signin"]', { timeout: WAIT_MS });
  await page.fill('#token', secret);
  await Promise.all([
    page.waitForURL((u) => u.pathname.startsWith('/app/'), { timeout: WAIT_MS }),
    page.click('form[action="/login/token"] button[type="submit"]'),
  ]);
  await page.waitForSelector('.who', { timeout: WAIT_MS });
  return page.textContent('.who');
}

/** The status of a same-origin API call made by the page (with its session cookie). */
const pageFetch = (path, method = 'GET') =>
  page.evaluate(async ([p, m]) => (await fetch(p, { method: m })).status, [path, method]);

async function sandboxScenario() {
  // A refused token: the sign-in page again with the error, 401, no cookie.
  await page.goto(`${base}/`, { timeout: WAIT_MS });
  await page.waitForSelector('[data-page="signin"]', { timeout: WAIT_MS });
  await shot('signin');
  await page.fill('#token', 'hgr_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/login/token'), { timeout: WAIT_MS }),
    page.click('form[action="/login/token"] button[type="submit"]'),
  ]);
  result.bad_token_status = refused.status();
  result.bad_token_page_error = (await page.textContent('.error', { timeout: WAIT_MS })).trim();
  result.cookies_after_bad_token = (await context.cookies()).map((c) => c.name);

  // Signing in from that server-rendered page, with the right token, lands on the dashboard.
  await page.fill('#token', token);
  await Promise.all([
    page.waitForURL((u) => u.pathname.startsWith('/app/'), { timeout: WAIT_MS }),
    page.click('form[action="/login/token"] button[type="submit"]'),
  ]);
  result.signed_in_as = (await page.textContent('.who', { timeout: WAIT_MS })).trim();
  await page.waitForSelector('[data-page="sandboxes"]', { timeout: WAIT_MS });
  const cookie = (await context.cookies()).find((c) => c.name === 'hangar_session');
  result.cookie = cookie ? { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite } : null;

  // Create through the form: the image picker lists the node's images.
  await page.waitForSelector('[data-form="create-sandbox"] select[name="image"] option[value="busybox"]',
    { state: 'attached', timeout: WAIT_MS });
  await page.selectOption('select[name="image"]', 'busybox');
  await page.fill('input[name="memory_mib"]', '256');
  await Promise.all([
    page.waitForURL(/\/app\/sandboxes\/[0-9a-f-]+$/, { timeout: WAIT_MS }),
    page.click('[data-form="create-sandbox"] button[type="submit"]'),
  ]);
  const id = new URL(page.url()).pathname.split('/').pop();
  result.sandbox_id = id;
  await page.waitForSelector('main[data-page="sandbox"][data-state]', { timeout: WAIT_MS });
  result.first_state = await page.getAttribute('main[data-page="sandbox"]', 'data-state');
  await page.waitForSelector('main[data-page="sandbox"][data-state="running"]', { timeout: BOOT_MS });
  result.stages_reached = await page.$$eval('[data-timeline] li[data-reached="yes"]', (l) => l.map((e) => e.dataset.stage));
  await shot('sandbox');

  // The terminal: type a command, read its output from xterm's buffer.
  await page.click('[data-action="open-terminal"]');
  await page.waitForSelector('[data-terminal-status="connected"]', { timeout: WAIT_MS });
  await page.click('[data-terminal]');
  await page.keyboard.type('echo hello-$((6*7))');
  await page.keyboard.press('Enter');
  await until(() => {
    const text = document.querySelector('[data-terminal]')?.readBuffer?.() || '';
    return text.split('\n').some((l) => l.trim() === 'hello-42');
  });
  result.terminal_output_seen = true;
  // Resize: a smaller window refits the terminal; the shell sees the new size.
  const before = await page.evaluate(() => document.querySelector('[data-terminal]').terminalSize());
  await page.setViewportSize({ width: 900, height: 900 });
  await until((cols) => document.querySelector('[data-terminal]').terminalSize().cols < cols, before.cols);
  const after = await page.evaluate(() => document.querySelector('[data-terminal]').terminalSize());
  await page.keyboard.type('stty size');
  await page.keyboard.press('Enter');
  await until((want) => (document.querySelector('[data-terminal]').readBuffer() || '')
    .split('\n').some((l) => l.trim() === want), `${after.rows} ${after.cols}`);
  result.terminal_size = { before, after };
  // Paste: Ctrl+Shift+V sends the clipboard's text to the shell.
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((2+3))'));
  await page.click('[data-terminal]');
  await page.keyboard.press('Control+Shift+V');
  await page.keyboard.press('Enter');
  await until(() => (document.querySelector('[data-terminal]').readBuffer() || '')
    .split('\n').some((l) => l.trim() === 'pasted-5'));
  result.paste_seen = true;
  await shot('terminal');
  await page.setViewportSize({ width: 1280, height: 900 });

  // Stop, start and destroy from the list.
  await page.click('a[href="/app/sandboxes"]');
  const row = `tr[data-sandbox="${id}"]`;
  await page.waitForSelector(`${row} [data-state="running"]`, { timeout: WAIT_MS });
  await shot('sandboxes');
  await page.click(`${row} [data-action="stop"]`);
  await page.waitForSelector(`${row} [data-state="stopped"]`, { timeout: BOOT_MS });
  await page.click(`${row} [data-action="start"]`);
  await page.waitForSelector(`${row} [data-state="running"]`, { timeout: BOOT_MS });
  await page.click(`${row} [data-action="destroy"]`);
  await page.waitForSelector(row, { state: 'detached', timeout: BOOT_MS });
  result.destroyed_from_page = true;
}

async function accessScenario() {
  result.signed_in_as = (await signIn(token)).trim();
  await page.click('a[href="/app/access"]');
  await page.waitForSelector('[data-list="tokens"]', { timeout: WAIT_MS });
  await page.fill('[data-form="create-token"] input[name="name"]', 'dashboard-made');
  await page.selectOption('[data-form="create-token"] select[name="expires"]', String(30 * 86400));
  await page.check('[data-form="create-token"] input[value="sandboxes:read"]');
  await page.click('[data-form="create-token"] button[type="submit"]');
  const secret = (await page.textContent('[data-secret] code.token', { timeout: WAIT_MS })).trim();
  result.secret_prefix = secret.slice(0, 8);
  await page.waitForSelector('tr[data-token="dashboard-made"]', { timeout: WAIT_MS });
  result.token_row = await page.textContent('tr[data-token="dashboard-made"]');
  await shot('tokens');
  // The secret works, within its scope (from outside the browser, as a bearer token).
  const call = async (method) => (await fetch(`${base}/api/v1/sandboxes`, {
    method,
    headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
    body: method === 'POST' ? '{}' : undefined,
  })).status;
  result.secret_read_status = await call('GET');
  result.secret_write_status = await call('POST');
  // Once dismissed, the secret is nowhere on the page.
  await page.click('[data-secret] button:has-text("Done")');
  result.secret_still_shown = (await page.content()).includes(secret);
  await page.click('tr[data-token="dashboard-made"] [data-action="revoke"]');
  await page.waitForSelector('tr[data-token="dashboard-made"]', { state: 'detached', timeout: WAIT_MS });
  result.revoked_read_status = await call('GET');

  await page.click('a[href="/app/accounts"]');
  await page.waitForSelector('[data-page="accounts"] [data-form="connect"] option', { state: 'attached', timeout: WAIT_MS });
  result.connect_providers = await page.$$eval('[data-form="connect"] select[name="provider"] option', (o) => o.map((e) => e.value));
  await shot('accounts');

  // Sign out (a same-origin form post): the session ends, the dashboard asks to sign in.
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/login', { timeout: WAIT_MS }),
    page.click('header form[action="/logout"] button'),
  ]);
  await page.goto(`${base}/app/sandboxes`, { timeout: WAIT_MS });
  await page.waitForSelector('[data-page="signin"]', { timeout: WAIT_MS });
  result.after_sign_out_api_status = await pageFetch('/api/v1/me');
  result.signed_out = true;
}

async function refusedScenario() {
  result.signed_in_as = (await signIn(token)).trim();
  result.admin_link = await page.$('a[href="/app/admin"]') !== null;
  await page.goto(`${base}/app/admin`, { timeout: WAIT_MS });
  await page.waitForSelector('[data-page="admin"][data-refused]', { timeout: WAIT_MS });
  result.refusal = (await page.textContent('[data-page="admin"] .refused')).trim();
  for (const path of ['/api/v1/users', '/api/v1/nodes', '/api/v1/events']) {
    result[`status ${path}`] = await pageFetch(path);
  }
  await shot('admin-refused');
}

/** Pixels of chart `name`'s canvas in its first series' colour (#2f6fdf): drawn data. */
const drawn = (name) => page.evaluate((n) => {
  const canvas = document.querySelector(`[data-chart="${n}"] canvas`);
  if (!canvas) return 0;
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - 47) < 40 && Math.abs(data[i + 1] - 111) < 40 && Math.abs(data[i + 2] - 223) < 40) count += 1;
  }
  return count;
}, name);

async function chartsScenario() {
  const id = arg;
  result.signed_in_as = (await signIn(token)).trim();
  await page.goto(`${base}/app/sandboxes/${id}`, { timeout: WAIT_MS });
  await page.waitForSelector('main[data-page="sandbox"][data-state="running"]', { timeout: WAIT_MS });
  const points = (name) => until((n) => Number(document.querySelector(`[data-chart="${n}"]`)?.dataset.points || 0) > 0, name, BOOT_MS);
  for (const name of ['cpu', 'memory']) await points(name);
  result.sandbox_chart_points = await page.$$eval('[data-chart]', (l) => Object.fromEntries(l.map((e) => [e.dataset.chart, Number(e.dataset.points || 0)])));
  result.sandbox_canvases = await page.$$eval('[data-chart] canvas', (l) => l.length);
  result.sandbox_cpu_pixels = await drawn('cpu');
  await shot('sandbox-charts');
  for (const range of ['24h', '7d']) {
    await page.click(`[data-range="${range}"]`);
    await page.waitForSelector(`[data-range="${range}"].active`, { timeout: WAIT_MS });
    await page.waitForSelector('[data-chart="cpu"] canvas', { timeout: WAIT_MS });
  }
  await page.goto(`${base}/app/admin`, { timeout: WAIT_MS });
  await page.waitForSelector('[data-list="nodes"] tr[data-node]', { timeout: WAIT_MS });
  await until(() => !/^–/.test(document.querySelector('[data-list="nodes"] tr[data-node] [data-figure="cpu"]')?.textContent || '–'), null, BOOT_MS);
  result.node_cpu = (await page.textContent('[data-list="nodes"] tr[data-node] [data-figure="cpu"]')).trim();
  result.node_state = await page.getAttribute('[data-list="nodes"] tr[data-node] [data-state]', 'data-state');
  await shot('admin');
  await page.click('[data-list="nodes"] tr[data-node] a');
  await page.waitForSelector('[data-page="node"]', { timeout: WAIT_MS });
  for (const name of ['cpu', 'memory', 'disk']) await points(name);
  await page.waitForSelector(`[data-list="node-sandboxes"] tr[data-sandbox="${id}"]`, { timeout: WAIT_MS });
  result.node_sandbox_healthy = await page.getAttribute(`[data-list="node-sandboxes"] tr[data-sandbox="${id}"]`, 'data-healthy');
  result.node_cpu_pixels = await drawn('cpu');
  result.node_chart_points = await page.$$eval('[data-chart]', (l) => Object.fromEntries(l.map((e) => [e.dataset.chart, Number(e.dataset.points || 0)])));
  await shot('node');
}

async function liveScenario() {
  result.signed_in_as = (await signIn(token)).trim();
  await page.waitForSelector('[data-page="sandboxes"]', { timeout: WAIT_MS });
  await until(() => document.body.dataset.live === 'stream');
  // Once the sandbox is created, count the list refetches: its boot must arrive on the
  // stream (the reconnection refetch happened before).
  let counting = false;
  let refetches = 0;
  page.on('request', (r) => {
    if (counting && new URL(r.url()).pathname === '/api/v1/sandboxes' && r.method() === 'GET') refetches += 1;
  });
  const created = await page.evaluate(async () => {
    const r = await fetch('/api/v1/sandboxes', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ image: 'busybox' }),
    });
    return r.json();
  });
  result.sandbox_id = created.id;
  counting = true;
  await page.waitForSelector(`tr[data-sandbox="${created.id}"] [data-state="running"]`, { timeout: BOOT_MS });
  result.list_refetches_while_booting = refetches;
  result.live_mode = await page.evaluate(() => document.body.dataset.live);
  // The admin page's events: a failing boot shows up without a reload.
  await page.click('a[href="/app/admin"]');
  await page.waitForSelector('[data-page="admin"]', { timeout: WAIT_MS });
  await page.evaluate(async () => {
    await fetch('/api/v1/sandboxes', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ image: 'hang', readiness_timeout_ms: 500 }),
    });
  });
  await page.waitForSelector('[data-list="events"] tr[data-event="sandbox_failed"]', { timeout: BOOT_MS });
  result.failed_event_seen = true;
  await shot('admin-events');
}

async function failedScenario() {
  const id = arg;
  result.signed_in_as = (await signIn(token)).trim();
  await page.goto(`${base}/app/sandboxes/${id}`, { timeout: WAIT_MS });
  await page.waitForSelector('main[data-page="sandbox"][data-state="failed"] [data-failure]', { timeout: WAIT_MS });
  result.failure_kind = await page.getAttribute('[data-failure]', 'data-failure');
  result.failure_text = await page.textContent('[data-failure]');
  result.console_tail = await page.textContent('[data-failure] pre.console');
  result.stages = await page.$$eval('[data-timeline] li', (l) => l.map((e) => [e.dataset.stage, e.dataset.reached, e.className]));
  result.terminal_offered = (await page.$('[data-action="open-terminal"]')) !== null;
  await shot('sandbox-failed');
  await page.click('a[href="/app/sandboxes"]');
  await page.waitForSelector(`tr[data-sandbox="${id}"].unhealthy`, { timeout: WAIT_MS });
  result.list_marks_unhealthy = true;
}

async function connectScenario() {
  result.signed_in_as = (await signIn(token)).trim();
  await page.click('a[href="/app/accounts"]');
  await page.waitForSelector('[data-form="connect"] select[name="provider"] option[value="codex"]', { state: 'attached', timeout: WAIT_MS });
  await page.selectOption('[data-form="connect"] select[name="provider"]', 'codex');
  await page.selectOption('[data-form="connect"] select[name="flow"]', 'browser');
  await Promise.all([
    page.waitForURL(/\/app\/connect\/[0-9a-f-]+$/, { timeout: WAIT_MS }),
    page.click('[data-form="connect"] button[type="submit"]'),
  ]);
  result.session_id = new URL(page.url()).pathname.split('/').pop();
  // The remote browser through noVNC, with the session cookie only: connected and drawn.
  await page.waitForSelector('[data-vnc="connected"]', { timeout: BOOT_MS });
  await until(() => {
    const canvas = document.querySelector('[data-vnc] canvas');
    if (!canvas || canvas.width < 100) return false;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4 * 997) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    return seen.size > 8;
  }, null, BOOT_MS);
  result.desktop_drawn = true;
  await shot('connect');
  await page.click('[data-page="connect"] button.danger');
  await page.waitForSelector('main[data-page="connect"][data-state="cancelled"]', { timeout: WAIT_MS });
  result.cancelled_from_page = true;
}

const SCENARIOS = { connect: connectScenario, failed: failedScenario, sandbox: sandboxScenario, access: accessScenario, refused: refusedScenario, charts: chartsScenario, live: liveScenario };
const started = Date.now();
try {
  if (!SCENARIOS[scenario]) throw new Error(`no scenario ${scenario}`);
  await SCENARIOS[scenario]();
  result.ms = Date.now() - started;
  result.console_errors = consoleErrors;
  console.log(JSON.stringify(result));
} catch (e) {
  await shot(`${scenario}-failure`).catch(() => {});
  console.error(`dashboard ${scenario} failed after ${Date.now() - started} ms: ${e.message}\nsaw: ${JSON.stringify(result)}\nconsole: ${consoleErrors.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
