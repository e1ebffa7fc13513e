// The dashboard's first load in a real headless Chromium on loopback (run by
// `hangar bench --dashboard`, or by hand against any hangar):
//
//   node tests/bench.mjs BASE_URL TOKEN [RUNS]
//
// Signs in once (POST /login/token), then loads /app/sandboxes RUNS times (default 7), each
// in a fresh browser context (cold cache, the session cookie only) and reports, as one JSON
// line: the JavaScript the first page loads (bytes on the wire, as the server compressed it
// for Chromium's Accept-Encoding, and decoded), and the medians of first contentful paint and
// of "rendered" (the sandbox list shown with its data: the page's `hangar:rendered` mark),
// in milliseconds since navigation start. Every wait has a deadline.
import { chromium } from 'playwright-core';

const [base, token, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 7);
const DEADLINE_MS = 20000;

const signIn = await fetch(`${base}/login/token`, {
  method: 'POST',
  redirect: 'manual',
  headers: { Origin: base, 'Content-Type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ token, return_to: '/' }),
});
const setCookie = signIn.headers.get('set-cookie') || '';
const session = /hangar_session=([^;]+)/.exec(setCookie)?.[1];
if (!session) {
  console.error(`sign-in answered ${signIn.status} without a session cookie`);
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const loads = [];
try {
  for (let i = 0; i < runs; i += 1) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const url = new URL(base);
    await context.addCookies([{ name: 'hangar_session', value: session, domain: url.hostname, path: '/', httpOnly: true, sameSite: 'Lax' }]);
    const page = await context.newPage();
    const scripts = [];
    page.on('requestfinished', async (req) => {
      if (req.resourceType() !== 'script') return;
      scripts.push(req);
    });
    await page.goto(`${base}/app/sandboxes`, { timeout: DEADLINE_MS, waitUntil: 'load' });
    await page.waitForFunction(() => performance.getEntriesByName('hangar:rendered').length > 0,
      null, { timeout: DEADLINE_MS, polling: 50 });
    const timing = await page.evaluate(() => ({
      fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
      rendered: performance.getEntriesByName('hangar:rendered')[0].startTime,
    }));
    let wire = 0;
    let decoded = 0;
    const files = [];
    for (const req of scripts) {
      const sizes = await req.sizes();
      const res = await req.response();
      wire += sizes.responseBodySize;
      files.push({ path: new URL(req.url()).pathname, bytes: sizes.responseBodySize, encoding: res ? (await res.headerValue('content-encoding')) : null });
      const body = res ? await res.body() : Buffer.alloc(0);
      decoded += body.length;
    }
    loads.push({ ...timing, js_wire_bytes: wire, js_decoded_bytes: decoded, files });
    await context.close();
  }
  const first = loads[0];
  console.log(JSON.stringify({
    runs,
    first_load_js_compressed_bytes: first.js_wire_bytes,
    first_load_js_compressed_kib: Math.round((first.js_wire_bytes / 1024) * 10) / 10,
    first_load_js_decoded_bytes: first.js_decoded_bytes,
    first_load_js_files: first.files,
    first_contentful_paint_ms_median: median(loads.map((l) => l.fcp).filter((x) => x !== null)),
    rendered_with_data_ms_median: median(loads.map((l) => l.rendered)),
    rendered_with_data_ms_all: loads.map((l) => Math.round(l.rendered)),
  }));
} catch (e) {
  console.error(`bench failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
