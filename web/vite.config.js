// Vite builds two pages into dist/: the dashboard (index.html, served at / and /app/...) and
// the remote-browser viewer (viewer.html, served at /connect/{id}). Assets get content hashes
// under /assets/ (served with immutable caching); xterm.js, uPlot and noVNC are split into
// chunks loaded by route (dynamic import), so the first page stays small.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsDir: 'assets',
    sourcemap: false,
    // The manifest lists what each entry loads at once: scripts/size.mjs sums it.
    manifest: true,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 600,
    rollupOptions: {
      input: { index: 'index.html', viewer: 'viewer.html' },
    },
  },
});
