// What the dashboard's first page loads, from Vite's build manifest: the index entry and its
// static imports (not the chunks loaded by route), with their raw, gzip and Brotli sizes in
// bytes (the .gz/.br files written by compress.mjs). Prints one JSON line.
// Usage: node scripts/size.mjs [dist]
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

const dist = process.argv[2] || 'dist';
const manifest = JSON.parse(readFileSync(join(dist, '.vite/manifest.json'), 'utf8'));
const seen = new Set();
const css = new Set();
function visit(key) {
  if (seen.has(key)) return;
  seen.add(key);
  const chunk = manifest[key];
  for (const c of chunk.css || []) css.add(c);
  for (const i of chunk.imports || []) visit(i);
}
visit('index.html');
const size = (file) => {
  const path = join(dist, file);
  const of = (p) => (existsSync(p) ? statSync(p).size : statSync(path).size);
  return { file, raw: statSync(path).size, gzip: of(`${path}.gz`), br: of(`${path}.br`) };
};
const js = [...seen].map((k) => size(manifest[k].file));
const sum = (list, key) => list.reduce((n, f) => n + f[key], 0);
const styles = [...css].map(size);
console.log(JSON.stringify({
  first_load_js: { files: js, raw: sum(js, 'raw'), gzip: sum(js, 'gzip'), br: sum(js, 'br') },
  first_load_css: { raw: sum(styles, 'raw'), gzip: sum(styles, 'gzip'), br: sum(styles, 'br') },
  lazy_chunks: Object.values(manifest).filter((c) => c.isDynamicEntry).map((c) => size(c.file)),
}));
