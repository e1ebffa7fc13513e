//! Columnar history answers: stored rows bucketed onto an aligned time axis (what uPlot
//! draws). Pure: rows in, arrays out.

use hangar_core::{NodeSample, SandboxSample, Timestamp};

/// Most points one answer may hold (per array).
pub const MAX_POINTS: usize = 20_000;

/// A history window in columns: `t` (unix seconds, the start of each step, aligned to the
/// step since the epoch) and one array per numeric field of the sample, aligned with `t`,
/// `None` where no row fell in that step. Where several rows fall in one step their values
/// are averaged.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The window's start as asked for.
    pub since: Timestamp,
    /// The step in seconds.
    pub step_seconds: u32,
    /// Step starts, unix seconds.
    pub t: Vec<i64>,
    /// `(field name, values)`, in the sample's field order.
    pub columns: Vec<(&'static str, Vec<Option<f64>>)>,
}

/// The numeric fields of a sample, by their wire names.
pub trait Columns {
    /// The field names, in order.
    const NAMES: &'static [&'static str];
    /// When the sample (or aggregate bucket) starts.
    fn at(&self) -> Timestamp;
    /// The values, in the order of [`Columns::NAMES`].
    fn values(&self) -> Vec<Option<f64>>;
}

impl Columns for NodeSample {
    const NAMES: &'static [&'static str] = &[
        "cpu_percent",
        "cpu_count",
        "memory_used_bytes",
        "memory_total_bytes",
        "disk_used_bytes",
        "disk_total_bytes",
        "net_rx_bytes_per_second",
        "net_tx_bytes_per_second",
        "sandboxes_running",
    ];
    fn at(&self) -> Timestamp {
        self.at
    }
    fn values(&self) -> Vec<Option<f64>> {
        vec![
            self.cpu_percent,
            Some(f64::from(self.cpu_count)),
            Some(self.memory_used_bytes as f64),
            Some(self.memory_total_bytes as f64),
            Some(self.disk_used_bytes as f64),
            Some(self.disk_total_bytes as f64),
            self.net_rx_bytes_per_second,
            self.net_tx_bytes_per_second,
            Some(f64::from(self.sandboxes_running)),
        ]
    }
}

impl Columns for SandboxSample {
    const NAMES: &'static [&'static str] = &[
        "cpu_percent",
        "memory_bytes",
        "memory_limit_bytes",
        "disk_bytes",
        "net_rx_bytes_per_second",
        "net_tx_bytes_per_second",
        "pids",
    ];
    fn at(&self) -> Timestamp {
        self.at
    }
    fn values(&self) -> Vec<Option<f64>> {
        vec![
            self.cpu_percent,
            Some(self.memory_bytes as f64),
            self.memory_limit_bytes.map(|l| l as f64),
            Some(self.disk_bytes as f64),
            self.net_rx_bytes_per_second,
            self.net_tx_bytes_per_second,
            Some(f64::from(self.pids)),
        ]
    }
}

/// The first step start at or before `since` (ms), aligned to `step_seconds`.
pub fn aligned_start(since: Timestamp, step_seconds: u32) -> i64 {
    let step_ms = i64::from(step_seconds.max(1)) * 1000;
    since.unix_ms().div_euclid(step_ms) * step_ms
}

/// How many steps cover `[aligned_start(since), until)`.
pub fn point_count(since: Timestamp, until: Timestamp, step_seconds: u32) -> usize {
    let step_ms = i64::from(step_seconds.max(1)) * 1000;
    let span = until.unix_ms() - aligned_start(since, step_seconds);
    usize::try_from((span + step_ms - 1).div_euclid(step_ms)).unwrap_or(0)
}

/// Buckets `rows` (any order) onto the steps of `[since, until)`.
pub fn bucket<S: Columns>(
    rows: &[S],
    since: Timestamp,
    until: Timestamp,
    step_seconds: u32,
) -> Series {
    let step_ms = i64::from(step_seconds.max(1)) * 1000;
    let start = aligned_start(since, step_seconds);
    let n = point_count(since, until, step_seconds);
    let width = S::NAMES.len();
    let mut sums = vec![vec![(0.0_f64, 0_u32); n]; width];
    for row in rows {
        let offset = row.at().unix_ms() - start;
        let Ok(slot) = usize::try_from(offset.div_euclid(step_ms)) else {
            continue;
        };
        if offset < 0 || slot >= n {
            continue;
        }
        for (column, value) in row.values().into_iter().enumerate() {
            if let Some(v) = value {
                let cell = &mut sums[column][slot];
                cell.0 += v;
                cell.1 += 1;
            }
        }
    }
    Series {
        since,
        step_seconds,
        t: (0..n)
            .map(|i| (start + step_ms * i as i64).div_euclid(1000))
            .collect(),
        columns: S::NAMES
            .iter()
            .zip(sums)
            .map(|(name, cells)| {
                let values = cells
                    .into_iter()
                    .map(|(sum, count)| (count > 0).then(|| sum / f64::from(count)))
                    .collect();
                (*name, values)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, cpu: Option<f64>, pids: u32) -> SandboxSample {
        SandboxSample {
            at: Timestamp::from_unix_ms(at_ms),
            cpu_percent: cpu,
            memory_bytes: 10,
            memory_limit_bytes: None,
            disk_bytes: 0,
            net_rx_bytes_per_second: None,
            net_tx_bytes_per_second: None,
            pids,
        }
    }

    #[test]
    fn rows_land_in_aligned_steps_with_gaps_as_none() {
        let since = Timestamp::from_unix_ms(1_000_005_000);
        let until = Timestamp::from_unix_ms(1_000_040_000);
        let rows = [
            sample(1_000_001_000, Some(1.0), 1), // before `since` but in the first step
            sample(1_000_008_000, Some(3.0), 3),
            sample(1_000_031_000, None, 5),
            sample(1_000_050_000, Some(9.0), 9), // after the window
        ];
        let s = bucket(&rows, since, until, 10);
        assert_eq!(s.t, vec![1_000_000, 1_000_010, 1_000_020, 1_000_030]);
        let cpu = &s.columns[0];
        assert_eq!(cpu.0, "cpu_percent");
        assert_eq!(cpu.1, vec![Some(2.0), None, None, None]);
        let pids = s.columns.iter().find(|c| c.0 == "pids").expect("pids");
        assert_eq!(pids.1, vec![Some(2.0), None, None, Some(5.0)]);
        let limit = s
            .columns
            .iter()
            .find(|c| c.0 == "memory_limit_bytes")
            .expect("limit");
        assert_eq!(limit.1, vec![None; 4]);
        assert!(s.columns.iter().all(|(_, v)| v.len() == s.t.len()));
    }
}
