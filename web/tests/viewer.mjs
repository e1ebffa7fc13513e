// Drives hangar's remote-browser viewer in a real headless Chromium (Debian's, through
// playwright-core) until the browser sandbox's desktop is drawn, and saves a screenshot.
// Usage: node tests/viewer.mjs <viewer url with #token=...> <screenshot.png>
// Prints one JSON line of timings (ms since the page was opened) and exits 0, or exits 1
// with the reason. Every wait has a deadline.
import { chromium } from 'playwright-core';

const [url, shot] = process.argv.slice(2);
const DEADLINE_MS = 30000;
const started = Date.now();
const since = () => Date.now() - started;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  await page.goto(url, { timeout: DEADLINE_MS });
  const loaded = since();
  await page.waitForFunction(() => document.body.dataset.vnc === 'connected', null, { timeout: DEADLINE_MS });
  const connected = since();
  // Drawn: the noVNC canvas shows more than one colour.
  await page.waitForFunction(() => {
    const canvas = document.querySelector('#screen canvas');
    if (!canvas || canvas.width < 100) return false;
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4 * 997) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    return seen.size > 8;
  }, null, { timeout: DEADLINE_MS, polling: 100 });
  const drawn = since();
  const size = await page.evaluate(() => {
    const c = document.querySelector('#screen canvas');
    return { width: c.width, height: c.height };
  });
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ loaded_ms: loaded, vnc_connected_ms: connected, drawn_ms: drawn, canvas: size }));
} catch (e) {
  console.error(`viewer test failed after ${since()} ms: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
