// Display helpers: sizes, ages, rates, times. Pure functions.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  let v = Number(n);
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${v.toFixed(v >= 100 || u === 0 ? 0 : 1)} ${UNITS[u]}`;
}

export const rate = (n) => (n === null || n === undefined ? '–' : `${bytes(n)}/s`);
export const percent = (n) => (n === null || n === undefined ? '–' : `${Number(n).toFixed(1)} %`);

export function age(ts, now = Date.now()) {
  if (!ts) return '–';
  const s = Math.max(0, Math.round((now - Date.parse(ts)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function when(ts) {
  if (!ts) return '–';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toLocaleString();
}

export function limits(l) {
  if (!l) return '–';
  return `${(l.cpu_millis / 1000).toFixed(2)} CPU · ${l.memory_mib} MiB · ${l.pids_max} pids`;
}
