// Precompresses the built text assets: for every .js/.css/.html/.svg/.json file in the
// directory given (recursively) writes FILE.gz (gzip level 9) and FILE.br (Brotli quality
// 11) beside it, when that is smaller. The server embeds them and answers with the one the
// request's Accept-Encoding prefers, so it never compresses at run time.
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';

const root = process.argv[2] || 'dist';
const text = /\.(js|mjs|css|html|svg|json|txt|map)$/;

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (text.test(name)) compress(path);
  }
}

function compress(path) {
  const raw = readFileSync(path);
  const gz = gzipSync(raw, { level: 9 });
  const br = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
  if (gz.length < raw.length) writeFileSync(`${path}.gz`, gz);
  if (br.length < raw.length) writeFileSync(`${path}.br`, br);
}

walk(root);
