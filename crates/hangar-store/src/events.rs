//! Operational events: table `events` (migration 0008), one row per [`Event`].
//!
//! | column | holds |
//! |---|---|
//! | `id` | hyphenated UUID v7 |
//! | `at` | unix milliseconds |
//! | `kind`, `severity` | the [`EventKind`] / [`Severity`] names (`sandbox_failed`, `error`, ...) |
//! | `message` | human text |
//! | `sandbox_id`, `node_id`, `user_id`, `connect_session_id` | hyphenated UUIDs or NULL (no foreign keys: events outlive what they name) |
//! | `stage` | the [`hangar_core::BootStage`] name or NULL |
//!
//! Order is newest first by `(at, id)`. The table is bounded by [`EventRepo::prune`] (count
//! and age), which the control plane runs periodically.

use hangar_core::{Event, EventId, EventKind, Severity, Timestamp};
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use crate::codec::{boot_stage_from_str, col, ms, parse, ts};
use crate::error::StoreError;
use crate::Pools;

const EVENT_COLUMNS: &str =
    "id, at, kind, severity, message, sandbox_id, node_id, user_id, connect_session_id, stage";

/// Where a page of [`EventRepo::list`] starts (exclusive): strictly older than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventCursor {
    /// Events before this time.
    Before(Timestamp),
    /// Events after this one in newest-first order (older, or as old with a smaller id).
    After(EventId),
}

fn opt_id<T>(what: &'static str, text: Option<String>) -> Result<Option<T>, StoreError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.map(|t| parse(what, &t)).transpose()
}

fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    let id: String = col(row, "id")?;
    let kind: String = col(row, "kind")?;
    let severity: String = col(row, "severity")?;
    let stage: Option<String> = col(row, "stage")?;
    Ok(Event {
        id: parse("events.id", &id)?,
        at: ts(col(row, "at")?),
        kind: parse::<EventKind>("events.kind", &kind)?,
        severity: parse::<Severity>("events.severity", &severity)?,
        message: col(row, "message")?,
        sandbox_id: opt_id("events.sandbox_id", col(row, "sandbox_id")?)?,
        node_id: opt_id("events.node_id", col(row, "node_id")?)?,
        user_id: opt_id("events.user_id", col(row, "user_id")?)?,
        connect_session_id: opt_id("events.connect_session_id", col(row, "connect_session_id")?)?,
        stage: stage
            .as_deref()
            .map(|s| boot_stage_from_str("events.stage", s))
            .transpose()?,
    })
}

/// Reads and writes events. Get one from [`crate::Store::events`].
#[derive(Clone, Copy, Debug)]
pub struct EventRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> EventRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records one event. Errors: [`StoreError::Duplicate`] for a reused id,
    /// [`StoreError::Database`].
    pub async fn insert(&self, event: &Event) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(event.id.to_string())
        .bind(ms(event.at))
        .bind(event.kind.as_str())
        .bind(event.severity.as_str())
        .bind(event.message.as_str())
        .bind(event.sandbox_id.map(|id| id.to_string()))
        .bind(event.node_id.map(|id| id.to_string()))
        .bind(event.user_id.map(|id| id.to_string()))
        .bind(event.connect_session_id.map(|id| id.to_string()))
        .bind(event.stage.map(|s| s.as_str()))
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("event"))?;
        Ok(())
    }

    /// At most `limit` events, newest first (by time, then id), starting after `cursor`.
    /// An [`EventCursor::After`] naming an event that does not exist (pruned, or never
    /// recorded) is [`StoreError::NotFound`].
    pub async fn list(
        &self,
        limit: u32,
        cursor: Option<EventCursor>,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = i64::from(limit);
        let rows = match cursor {
            None => {
                sqlx::query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events ORDER BY at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(self.pool)
                .await?
            }
            Some(EventCursor::Before(t)) => {
                sqlx::query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE at < $1 \
                     ORDER BY at DESC, id DESC LIMIT $2"
                ))
                .bind(ms(t))
                .bind(limit)
                .fetch_all(self.pool)
                .await?
            }
            Some(EventCursor::After(id)) => {
                let at: i64 = sqlx::query_scalar("SELECT at FROM events WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                sqlx::query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE at < $1 OR (at = $1 AND id < $2) \
                     ORDER BY at DESC, id DESC LIMIT $3"
                ))
                .bind(at)
                .bind(id.to_string())
                .bind(limit)
                .fetch_all(self.pool)
                .await?
            }
        };
        rows.iter().map(event_from_row).collect()
    }

    /// How many events are stored.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(self.pool)
            .await?;
        u64::try_from(n).map_err(|err| StoreError::corrupt("events count", err))
    }

    /// Bounds the table: deletes events older than `older_than`, then all but the newest
    /// `keep` (by time, then id). Returns how many were deleted.
    pub async fn prune(&self, older_than: Timestamp, keep: u32) -> Result<u64, StoreError> {
        let mut deleted = sqlx::query("DELETE FROM events WHERE at < $1")
            .bind(ms(older_than))
            .execute(self.write)
            .await?
            .rows_affected();
        // The newest event that falls outside the `keep` newest; it and all older ones go.
        let cut: Option<(i64, String)> =
            sqlx::query_as("SELECT at, id FROM events ORDER BY at DESC, id DESC LIMIT 1 OFFSET $1")
                .bind(i64::from(keep))
                .fetch_optional(self.pool)
                .await?;
        if let Some((at, id)) = cut {
            deleted += sqlx::query("DELETE FROM events WHERE at < $1 OR (at = $1 AND id <= $2)")
                .bind(at)
                .bind(id)
                .execute(self.write)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }
}
