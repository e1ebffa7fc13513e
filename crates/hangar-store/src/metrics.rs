//! Health history: tables `node_samples` and `sandbox_samples` (migration 0007), one row per
//! `(subject, resolution_s, at)`. `resolution_s = 0` rows are raw samples as the agent sent
//! them; `60` and `600` rows are aggregates of the bucket starting at `at` (unix ms, aligned to
//! the epoch), made by [`MetricsRepo::downsample`] and removed by age by
//! [`MetricsRepo::prune`]. Values are stored as integers: CPU in hundredths of a percent,
//! rates in whole bytes per second, NULL for a missing value (a first reading has no rate).
//!
//! Aggregation (the same for 1-minute buckets of raw rows and 10-minute buckets of 1-minute
//! rows):
//! - **average** (rounded) of `cpu_percent`, `memory_bytes` / `memory_used_bytes` and both
//!   network rates: gauges and rates whose mean over the bucket is what a chart shows;
//! - **maximum** of `pids`, `disk_bytes` / `disk_used_bytes`, `memory_limit_bytes`,
//!   `memory_total_bytes`, `disk_total_bytes`, `cpu_count` and `sandboxes_running`: counts
//!   and sizes whose peak matters (a pids limit, a disk filling up) or that barely change.
//!
//! NULLs are left out of both (a bucket whose readings all lacked a rate stays NULL).

use hangar_core::{NodeId, NodeSample, Resolution, Retention, SandboxId, SandboxSample, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool};

use crate::codec::{col, ms, parse, ts};
use crate::error::StoreError;
use crate::nodes::{upsert_node, NodeRecord};
use crate::Pools;

/// Rows per multi-row `INSERT` (10 columns each; well under both databases' parameter caps).
const INSERT_CHUNK: usize = 500;

/// How many buckets before its watermark a resolution is computed again, so samples that
/// arrive late (a slow heartbeat) still reach their aggregate.
const LATE_BUCKETS: i64 = 2;

/// What one [`MetricsRepo::downsample`] or [`MetricsRepo::prune`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Aggregate rows written or rewritten.
    pub aggregated: u64,
    /// Rows deleted for age.
    pub deleted: u64,
}

const NODE_VALUES: &str = "cpu_centipercent, cpu_count, memory_used_bytes, memory_total_bytes, \
     disk_used_bytes, disk_total_bytes, net_rx_bytes_per_second, net_tx_bytes_per_second, \
     sandboxes_running";
const SANDBOX_VALUES: &str = "cpu_centipercent, memory_bytes, memory_limit_bytes, disk_bytes, \
     net_rx_bytes_per_second, net_tx_bytes_per_second, pids";

/// How each value column is aggregated, per table (see the module doc).
const NODE_AGGREGATES: &str = "CAST(ROUND(AVG(cpu_centipercent)) AS BIGINT), MAX(cpu_count), \
     CAST(ROUND(AVG(memory_used_bytes)) AS BIGINT), MAX(memory_total_bytes), \
     MAX(disk_used_bytes), MAX(disk_total_bytes), \
     CAST(ROUND(AVG(net_rx_bytes_per_second)) AS BIGINT), \
     CAST(ROUND(AVG(net_tx_bytes_per_second)) AS BIGINT), MAX(sandboxes_running)";
const SANDBOX_AGGREGATES: &str = "CAST(ROUND(AVG(cpu_centipercent)) AS BIGINT), \
     CAST(ROUND(AVG(memory_bytes)) AS BIGINT), MAX(memory_limit_bytes), MAX(disk_bytes), \
     CAST(ROUND(AVG(net_rx_bytes_per_second)) AS BIGINT), \
     CAST(ROUND(AVG(net_tx_bytes_per_second)) AS BIGINT), MAX(pids)";

/// The two sample tables, described for the shared downsampling and pruning SQL.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    subject: &'static str,
    values: &'static str,
    aggregates: &'static str,
}

const NODE_TABLE: Table = Table {
    name: "node_samples",
    subject: "node_id",
    values: NODE_VALUES,
    aggregates: NODE_AGGREGATES,
};
const SANDBOX_TABLE: Table = Table {
    name: "sandbox_samples",
    subject: "sandbox_id",
    values: SANDBOX_VALUES,
    aggregates: SANDBOX_AGGREGATES,
};

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|err| StoreError::corrupt(what, err))
}

fn u32_of(what: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|err| StoreError::corrupt(what, err))
}

fn centi(percent: Option<f64>) -> Option<i64> {
    percent
        .filter(|p| p.is_finite())
        .map(|p| (p * 100.0).round() as i64)
}

fn whole(rate: Option<f64>) -> Option<i64> {
    rate.filter(|r| r.is_finite()).map(|r| r.round() as i64)
}

fn percent(centi: Option<i64>) -> Option<f64> {
    centi.map(|c| c as f64 / 100.0)
}

fn rate(value: Option<i64>) -> Option<f64> {
    value.map(|v| v as f64)
}

fn node_sample_from_row(row: &AnyRow) -> Result<NodeSample, StoreError> {
    Ok(NodeSample {
        at: ts(col(row, "at")?),
        cpu_percent: percent(col(row, "cpu_centipercent")?),
        cpu_count: u32_of("node_samples.cpu_count", col(row, "cpu_count")?)?,
        memory_used_bytes: uint(
            "node_samples.memory_used_bytes",
            col(row, "memory_used_bytes")?,
        )?,
        memory_total_bytes: uint(
            "node_samples.memory_total_bytes",
            col(row, "memory_total_bytes")?,
        )?,
        disk_used_bytes: uint("node_samples.disk_used_bytes", col(row, "disk_used_bytes")?)?,
        disk_total_bytes: uint(
            "node_samples.disk_total_bytes",
            col(row, "disk_total_bytes")?,
        )?,
        net_rx_bytes_per_second: rate(col(row, "net_rx_bytes_per_second")?),
        net_tx_bytes_per_second: rate(col(row, "net_tx_bytes_per_second")?),
        sandboxes_running: u32_of(
            "node_samples.sandboxes_running",
            col(row, "sandboxes_running")?,
        )?,
    })
}

fn sandbox_sample_from_row(row: &AnyRow) -> Result<SandboxSample, StoreError> {
    let limit: Option<i64> = col(row, "memory_limit_bytes")?;
    Ok(SandboxSample {
        at: ts(col(row, "at")?),
        cpu_percent: percent(col(row, "cpu_centipercent")?),
        memory_bytes: uint("sandbox_samples.memory_bytes", col(row, "memory_bytes")?)?,
        memory_limit_bytes: limit
            .map(|l| uint("sandbox_samples.memory_limit_bytes", l))
            .transpose()?,
        disk_bytes: uint("sandbox_samples.disk_bytes", col(row, "disk_bytes")?)?,
        net_rx_bytes_per_second: rate(col(row, "net_rx_bytes_per_second")?),
        net_tx_bytes_per_second: rate(col(row, "net_tx_bytes_per_second")?),
        pids: u32_of("sandbox_samples.pids", col(row, "pids")?)?,
    })
}

/// `($1, $2, ...), (...)` for `rows` rows of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut text = String::new();
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for c in 0..columns {
            if c > 0 {
                text.push_str(", ");
            }
            text.push('$');
            text.push_str(&(r * columns + c + 1).to_string());
        }
        text.push(')');
    }
    text
}

async fn insert_node_sample(
    conn: &mut AnyConnection,
    node: NodeId,
    sample: &NodeSample,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO node_samples (node_id, resolution_s, at, {NODE_VALUES}) \
         VALUES {} ON CONFLICT (node_id, resolution_s, at) DO NOTHING",
        placeholders(1, 12)
    ))
    .bind(node.to_string())
    .bind(0_i64)
    .bind(ms(sample.at))
    .bind(centi(sample.cpu_percent))
    .bind(i64::from(sample.cpu_count))
    .bind(int(sample.memory_used_bytes))
    .bind(int(sample.memory_total_bytes))
    .bind(int(sample.disk_used_bytes))
    .bind(int(sample.disk_total_bytes))
    .bind(whole(sample.net_rx_bytes_per_second))
    .bind(whole(sample.net_tx_bytes_per_second))
    .bind(i64::from(sample.sandboxes_running))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::from_write("node sample"))?;
    Ok(())
}

/// Binds one `sandbox_samples` row: id, resolution, `at`, then the [`SANDBOX_VALUES`] columns.
fn bind_sandbox_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    sandbox: SandboxId,
    resolution: Resolution,
    s: &SandboxSample,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(sandbox.to_string())
        .bind(resolution.seconds())
        .bind(ms(s.at))
        .bind(centi(s.cpu_percent))
        .bind(int(s.memory_bytes))
        .bind(s.memory_limit_bytes.map(int))
        .bind(int(s.disk_bytes))
        .bind(whole(s.net_rx_bytes_per_second))
        .bind(whole(s.net_tx_bytes_per_second))
        .bind(i64::from(s.pids))
}

async fn insert_sandbox_samples(
    conn: &mut AnyConnection,
    samples: &[(SandboxId, SandboxSample)],
) -> Result<(), StoreError> {
    for chunk in samples.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO sandbox_samples (sandbox_id, resolution_s, at, {SANDBOX_VALUES}) \
             VALUES {} ON CONFLICT (sandbox_id, resolution_s, at) DO NOTHING",
            placeholders(chunk.len(), 10)
        );
        let mut query = sqlx::query(&sql);
        for (id, s) in chunk {
            query = bind_sandbox_row(query, *id, Resolution::Raw, s);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_write("sandbox samples"))?;
    }
    Ok(())
}

/// Reads and writes the health history. Get one from [`crate::Store::metrics`].
#[derive(Clone, Copy, Debug)]
pub struct MetricsRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> MetricsRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records one heartbeat in **one transaction**: the node's record is upserted (as
    /// [`crate::NodeRepo::upsert`] does; `node.last_heartbeat_at` is the control plane's
    /// receive time), its raw sample inserted, and the sandboxes' raw samples inserted with
    /// multi-row inserts. The caller passes only sandboxes that belong to the node. A sample
    /// whose `(subject, at)` is already stored is skipped (a retried heartbeat adds nothing).
    ///
    /// Errors: [`StoreError::Database`].
    pub async fn record_heartbeat(
        &self,
        node: &NodeRecord,
        node_sample: &NodeSample,
        sandboxes: &[(SandboxId, SandboxSample)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        upsert_node(&mut tx, node).await?;
        insert_node_sample(&mut tx, node.id, node_sample).await?;
        insert_sandbox_samples(&mut tx, sandboxes).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts raw sandbox samples only (for history imports and benches), in one
    /// transaction. Errors: [`StoreError::Database`].
    pub async fn insert_sandbox_samples(
        &self,
        samples: &[(SandboxId, SandboxSample)],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        insert_sandbox_samples(&mut tx, samples).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts stored rows of any resolution for one sandbox (`at` is the bucket start for an
    /// aggregate), replacing rows at the same `(resolution, at)`, in one transaction. For
    /// importing history and for benches; the collector path is [`Self::record_heartbeat`].
    /// Errors: [`StoreError::Database`].
    pub async fn put_sandbox_rows(
        &self,
        sandbox: SandboxId,
        resolution: Resolution,
        rows: &[SandboxSample],
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO sandbox_samples (sandbox_id, resolution_s, at, {SANDBOX_VALUES}) \
                 VALUES {} ON CONFLICT (sandbox_id, resolution_s, at) DO NOTHING",
                placeholders(chunk.len(), 10)
            );
            let mut query = sqlx::query(&sql);
            for s in chunk {
                query = bind_sandbox_row(query, sandbox, resolution, s);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_write("sandbox samples"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs a series query `sql` whose parameters are (owner id, resolution seconds, from,
    /// until).
    async fn series_rows(
        &self,
        sql: &str,
        owner: String,
        resolution: Resolution,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AnyRow>, StoreError> {
        Ok(sqlx::query(sql)
            .bind(owner)
            .bind(resolution.seconds())
            .bind(ms(from))
            .bind(ms(until))
            .fetch_all(self.pool)
            .await?)
    }

    /// The node's stored rows of `resolution` with `from <= at < until`, oldest first.
    pub async fn node_series(
        &self,
        node: NodeId,
        resolution: Resolution,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<NodeSample>, StoreError> {
        let sql = format!(
            "SELECT at, {NODE_VALUES} FROM node_samples \
             WHERE node_id = $1 AND resolution_s = $2 AND at >= $3 AND at < $4 ORDER BY at"
        );
        let rows = self
            .series_rows(&sql, node.to_string(), resolution, from, until)
            .await?;
        rows.iter().map(node_sample_from_row).collect()
    }

    /// The sandbox's stored rows of `resolution` with `from <= at < until`, oldest first.
    pub async fn sandbox_series(
        &self,
        sandbox: SandboxId,
        resolution: Resolution,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<SandboxSample>, StoreError> {
        let sql = format!(
            "SELECT at, {SANDBOX_VALUES} FROM sandbox_samples \
             WHERE sandbox_id = $1 AND resolution_s = $2 AND at >= $3 AND at < $4 ORDER BY at"
        );
        let rows = self
            .series_rows(&sql, sandbox.to_string(), resolution, from, until)
            .await?;
        rows.iter().map(sandbox_sample_from_row).collect()
    }

    /// The node's newest raw sample, if any.
    pub async fn latest_node(&self, node: NodeId) -> Result<Option<NodeSample>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT at, {NODE_VALUES} FROM node_samples \
             WHERE node_id = $1 AND resolution_s = 0 ORDER BY at DESC LIMIT 1"
        ))
        .bind(node.to_string())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(node_sample_from_row).transpose()
    }

    /// The newest raw sample taken at or after `since` of each of `sandboxes` that has one.
    pub async fn latest_sandboxes(
        &self,
        sandboxes: &[SandboxId],
        since: Timestamp,
    ) -> Result<Vec<(SandboxId, SandboxSample)>, StoreError> {
        let mut latest: std::collections::HashMap<SandboxId, SandboxSample> =
            std::collections::HashMap::new();
        for chunk in sandboxes.chunks(INSERT_CHUNK) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT sandbox_id, at, {SANDBOX_VALUES} FROM sandbox_samples \
                 WHERE resolution_s = 0 AND at >= $1 AND sandbox_id IN ({})",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(ms(since));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(self.pool).await? {
                let id: String = col(&row, "sandbox_id")?;
                let id: SandboxId = parse("sandbox_samples.sandbox_id", &id)?;
                let sample = sandbox_sample_from_row(&row)?;
                match latest.get(&id) {
                    Some(have) if have.at >= sample.at => {}
                    _ => {
                        latest.insert(id, sample);
                    }
                }
            }
        }
        Ok(latest.into_iter().collect())
    }

    /// Computes the 1-minute aggregates from raw rows, then the 10-minute ones from 1-minute
    /// rows, for every bucket that ended by `now` and was not computed yet (plus the
    /// [`LATE_BUCKETS`] before the watermark, for late samples). Idempotent: a second run
    /// with the same rows writes the same aggregates. On the first run a resolution starts
    /// where its source's retention starts. One transaction per resolution.
    ///
    /// Errors: [`StoreError::Database`].
    pub async fn downsample(
        &self,
        now: Timestamp,
        retention: &Retention,
    ) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        for target in [Resolution::Minute, Resolution::TenMinutes] {
            let Some(source) = target.source() else {
                continue;
            };
            let step_ms = target.seconds() * 1000;
            let until = now.unix_ms().div_euclid(step_ms) * step_ms;
            let mut tx = self.write.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT done_until FROM metric_rollups WHERE resolution_s = $1")
                    .bind(target.seconds())
                    .fetch_optional(&mut *tx)
                    .await?;
            let kept_ms = i64::try_from(retention.of(source).as_millis()).unwrap_or(i64::MAX);
            let from = match done {
                Some(done) => done - LATE_BUCKETS * step_ms,
                None => until.saturating_sub(kept_ms),
            }
            .div_euclid(step_ms)
                * step_ms;
            if from >= until {
                continue;
            }
            for table in [NODE_TABLE, SANDBOX_TABLE] {
                let sql = format!(
                    "INSERT INTO {name} ({subject}, resolution_s, at, {values}) \
                     SELECT {subject}, $1, bucket, {aggregates} FROM \
                     (SELECT *, (at / $2) * $2 AS bucket FROM {name} \
                      WHERE resolution_s = $3 AND at >= $4 AND at < $5) AS source \
                     GROUP BY {subject}, bucket \
                     ON CONFLICT ({subject}, resolution_s, at) DO UPDATE SET {updates}",
                    name = table.name,
                    subject = table.subject,
                    values = table.values,
                    aggregates = table.aggregates,
                    updates = table
                        .values
                        .split(',')
                        .map(|c| format!("{c} = excluded.{c}", c = c.trim()))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                let done = sqlx::query(&sql)
                    .bind(target.seconds())
                    .bind(step_ms)
                    .bind(source.seconds())
                    .bind(from)
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
                report.aggregated += done.rows_affected();
            }
            sqlx::query(
                "INSERT INTO metric_rollups (resolution_s, done_until) VALUES ($1, $2) \
                 ON CONFLICT (resolution_s) DO UPDATE SET done_until = excluded.done_until",
            )
            .bind(target.seconds())
            .bind(until)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Deletes every row older than its resolution's retention (`at < now - retention`).
    /// Idempotent. Errors: [`StoreError::Database`].
    pub async fn prune(
        &self,
        now: Timestamp,
        retention: &Retention,
    ) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        for resolution in Resolution::ALL {
            let kept_ms = i64::try_from(retention.of(resolution).as_millis()).unwrap_or(i64::MAX);
            let cutoff = now.unix_ms().saturating_sub(kept_ms);
            for table in [NODE_TABLE, SANDBOX_TABLE] {
                let done = sqlx::query(&format!(
                    "DELETE FROM {} WHERE resolution_s = $1 AND at < $2",
                    table.name
                ))
                .bind(resolution.seconds())
                .bind(cutoff)
                .execute(self.write)
                .await?;
                report.deleted += done.rows_affected();
            }
        }
        Ok(report)
    }

    /// Rows stored per resolution, `(sandbox rows, node rows)` in [`Resolution::ALL`] order
    /// (for tests, the bench and the README's size figure).
    pub async fn row_counts(&self) -> Result<[(u64, u64); 3], StoreError> {
        let mut counts = [(0, 0); 3];
        for (i, resolution) in Resolution::ALL.into_iter().enumerate() {
            let mut pair = [0_u64; 2];
            for (j, table) in [SANDBOX_TABLE, NODE_TABLE].into_iter().enumerate() {
                let n: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM {} WHERE resolution_s = $1",
                    table.name
                ))
                .bind(resolution.seconds())
                .fetch_one(self.pool)
                .await?;
                pair[j] = uint("count", n)?;
            }
            counts[i] = (pair[0], pair[1]);
        }
        Ok(counts)
    }
}
