// Metrics charts for a sandbox or a node: ranges 1 h / 1 d / 1 w from the columnar metrics
// route; uPlot is loaded when the first chart is drawn. Live samples (from the stream)
// extend the 1 h view. A server without metrics routes shows "not available".

import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { useLive } from './live.js';
import { Problem } from './ui.jsx';

const RANGES = [['1h', '1 hour'], ['24h', '1 day'], ['7d', '1 week']];

function Chart({ spec, data }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    let cancelled = false;
    import('./lazy/charts.js').then(({ drawChart, columns }) => {
      if (cancelled || !el.current) return;
      const width = Math.max(280, el.current.clientWidth || 400);
      if (plot.current) plot.current.setData(columns(spec.series, data));
      else plot.current = drawChart(el.current, { ...spec, width }, data);
      const points = spec.series.reduce(
        (n, s) => n + (data[s.field] || []).filter((v) => v !== null && v !== undefined).length, 0);
      el.current.dataset.points = String(points);
    });
    return () => {
      cancelled = true;
    };
  }, [data]);
  useEffect(() => () => plot.current?.destroy(), []);
  return <div class="chart" ref={el} data-chart={spec.name} />;
}

/**
 * `path`: the metrics route (`/sandboxes/{id}/metrics`); `charts`: `[{name, title, series:
 * [{field, label}], format}]`; `sampleKind`/`sampleMatch`: the live event that carries new
 * samples for this object.
 */
export function MetricsCharts({ path, charts, sampleKind, sampleMatch }) {
  const [range, setRange] = useState('1h');
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const load = () =>
    api(`${path}?since=${range}`).then((d) => {
      setData(d);
      setError(null);
    }, setError);
  useEffect(() => {
    setData(null);
    load();
  }, [path, range]);
  useLive([sampleKind, 'resync'], (kind, ev) => {
    if (kind === 'resync') {
      load();
      return;
    }
    if (range !== '1h' || !data || !sampleMatch(ev)) return;
    const sample = ev.sample;
    const t = Math.floor(Date.parse(sample.at) / 1000);
    if (data.t.length && t <= data.t[data.t.length - 1]) return;
    const next = { ...data, t: [...data.t, t] };
    for (const key of Object.keys(data)) {
      if (Array.isArray(data[key]) && key !== 't') next[key] = [...data[key], sample[key] ?? null];
    }
    setData(next);
  });
  return (
    <section class="charts" data-charts={path}>
      <div class="range">
        {RANGES.map(([r, label]) => (
          <button class={r === range ? 'active' : ''} data-range={r} onClick={() => setRange(r)}>{label}</button>
        ))}
      </div>
      <Problem error={error} what="Metrics history" />
      {data && (
        <div class="chart-grid">
          {charts.map((c) => <Chart key={`${c.name}-${range}`} spec={c} data={data} />)}
        </div>
      )}
    </section>
  );
}
