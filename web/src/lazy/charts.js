// uPlot line charts over the columnar metrics answers (`t` in unix seconds plus one array
// per field, `null` where a point is missing). Loaded only by pages that show charts.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#2f6fdf', '#d9822b', '#1f9d55', '#b83280'];

/**
 * Draws a chart of `series` (`[{field, label}]`) from `data` into `el`, `width` pixels wide;
 * `format(v)` labels the y axis. Returns the uPlot instance (`setData`, `setSize`, `destroy`).
 */
export function drawChart(el, { title, series, format, width }, data) {
  const opts = {
    title,
    width,
    height: 180,
    series: [
      {},
      ...series.map((s, i) => ({
        label: s.label,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        spanGaps: false,
        // Sparse history (a new sandbox, a fresh node) shows its points, not an empty chart.
        points: { show: (u, i) => u.data[i].filter((v) => v !== null && v !== undefined).length < 120, size: 5 },
        value: (u, v) => (v === null || v === undefined ? '–' : format(v)),
      })),
    ],
    axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => format(v)) }],
    scales: { y: { range: (u, min, max) => [Math.min(0, min ?? 0), Math.max(max ?? 1, 1)] } },
    legend: { live: true },
  };
  return new uPlot(opts, columns(series, data), el);
}

/** The uPlot data arrays (`[t, ...fields]`) for `series` from a columnar answer. */
export function columns(series, data) {
  const t = data.t || [];
  return [t, ...series.map((s) => data[s.field] || t.map(() => null))];
}
