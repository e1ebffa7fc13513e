//! Sandbox records: table `sandboxes`, one row per [`Sandbox`], every field kept.
//!
//! | column | holds |
//! |---|---|
//! | `id`, `owner_id`, `node_id` | hyphenated UUIDs (`owner_id` -> `users`, `node_id` -> `nodes`) |
//! | `image`, `image_digest` | text |
//! | `driver` | `runc` / `qemu` / `firecracker` |
//! | `cpu_millis`, `memory_mib`, `pids_max` | the [`hangar_core::Limits`] |
//! | `network` | the [`hangar_core::NetworkPolicy`] name (`none`, `egress`) |
//! | `state` | the [`SandboxState`] name (`creating`, `running`, ...) |
//! | `boot` | JSON `[{"stage":"created","at_ms":1700000000000}, ...]`, in the order reached |
//! | `failure` | NULL or JSON `{"kind":"boot_timeout","stage_reached":"rootfs_ready"|null,"message":"...","console_tail":["..."]}` |
//! | `retention`, `retention_ttl_s` | `delete` and NULL, or `keep` and the TTL in seconds |
//! | `readiness_timeout_ms` | milliseconds |
//! | `released_at`, `created_at`, `updated_at` | unix milliseconds (`released_at` NULL until released) |
//! | `version` | 0 on insert, +1 on every write: the compare-and-set token |
//!
//! Every write after the insert is a compare-and-set on `version` (and, for lifecycle
//! changes, on `state`): read the row, compute the new row, `UPDATE ... WHERE id = $ AND
//! state = $from AND version = $seen`. If the state moved the write is refused with
//! [`StoreError::Conflict`]; if only the version moved (a concurrent boot event), the write is
//! retried on the fresh row, a bounded number of times.

use hangar_core::{
    BootEvent, DriverKind, Failure, Limits, NetworkPolicy, NodeId, RetentionPolicy, Sandbox,
    SandboxId, SandboxState, Timestamp, UserId,
};
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use crate::codec::{
    col, decode_boot, decode_failure, encode_boot, encode_failure, ms, opt_ms, opt_ts, parse, ts,
    u32_col,
};
use crate::error::StoreError;
use crate::Pools;

/// Extra field updates applied in the same compare-and-set as a state change.
/// `Default` changes nothing but the state (and `updated_at`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateChange {
    /// Sets (replaces) the failure. `None` leaves the stored failure as it is.
    pub failure: Option<Failure>,
    /// Clears the boot events first, for a new boot attempt (`stopped -> starting`).
    pub reset_boot: bool,
    /// Appends one boot event (after the reset, if both are given).
    pub boot_event: Option<BootEvent>,
    /// Sets `released_at`. `None` leaves it as it is.
    pub released_at: Option<Timestamp>,
}

/// How often a write is retried when only the row's version moved underneath it (state still
/// as expected). Each retry means another writer succeeded, so this bounds the work, not a wait.
const MAX_CAS_ATTEMPTS: usize = 16;

const SANDBOX_COLUMNS: &str = "id, owner_id, node_id, image, image_digest, driver, cpu_millis, \
     memory_mib, pids_max, state, boot, failure, retention, retention_ttl_s, \
     readiness_timeout_ms, released_at, created_at, updated_at, version, network";

fn sandbox_from_row(row: &AnyRow) -> Result<(Sandbox, i64), StoreError> {
    let id: String = col(row, "id")?;
    let owner: String = col(row, "owner_id")?;
    let node: String = col(row, "node_id")?;
    let driver: String = col(row, "driver")?;
    let state: String = col(row, "state")?;
    let boot: String = col(row, "boot")?;
    let failure: Option<String> = col(row, "failure")?;
    let retention: String = col(row, "retention")?;
    let ttl: Option<i64> = col(row, "retention_ttl_s")?;
    let retention = match (retention.as_str(), ttl) {
        ("delete", None) => RetentionPolicy::Delete,
        ("keep", Some(ttl_s)) => RetentionPolicy::Keep {
            ttl_s: u32_col("sandboxes.retention_ttl_s", ttl_s)?,
        },
        (other, ttl) => {
            return Err(StoreError::corrupt(
                "sandboxes.retention",
                format!("{other:?} with ttl {ttl:?}"),
            ))
        }
    };
    let readiness: i64 = col(row, "readiness_timeout_ms")?;
    let network: String = col(row, "network")?;
    let sandbox = Sandbox {
        id: parse("sandboxes.id", &id)?,
        owner: parse("sandboxes.owner_id", &owner)?,
        node: parse("sandboxes.node_id", &node)?,
        image: col(row, "image")?,
        image_digest: col(row, "image_digest")?,
        driver: parse::<DriverKind>("sandboxes.driver", &driver)?,
        limits: Limits {
            cpu_millis: u32_col("sandboxes.cpu_millis", col(row, "cpu_millis")?)?,
            memory_mib: u32_col("sandboxes.memory_mib", col(row, "memory_mib")?)?,
            pids_max: u32_col("sandboxes.pids_max", col(row, "pids_max")?)?,
        },
        network: parse::<NetworkPolicy>("sandboxes.network", &network)?,
        state: parse("sandboxes.state", &state)?,
        boot: decode_boot(&boot)?,
        failure: decode_failure(failure.as_deref())?,
        retention,
        readiness_timeout_ms: u64::try_from(readiness)
            .map_err(|err| StoreError::corrupt("sandboxes.readiness_timeout_ms", err))?,
        released_at: opt_ts(col(row, "released_at")?),
        created_at: ts(col(row, "created_at")?),
        updated_at: ts(col(row, "updated_at")?),
    };
    Ok((sandbox, col(row, "version")?))
}

fn retention_columns(policy: RetentionPolicy) -> (&'static str, Option<i64>) {
    match policy {
        RetentionPolicy::Delete => ("delete", None),
        RetentionPolicy::Keep { ttl_s } => ("keep", Some(i64::from(ttl_s))),
    }
}

/// Reads and writes sandbox records. Get one from [`crate::Store::sandboxes`].
#[derive(Clone, Copy, Debug)]
pub struct SandboxRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> SandboxRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records a new sandbox exactly as given (any state; normally `creating`).
    ///
    /// Errors: [`StoreError::Duplicate`] (`what: "sandbox"`) if the id exists,
    /// [`StoreError::MissingReference`] if the owner or node does not,
    /// [`StoreError::OutOfRange`] if `readiness_timeout_ms` exceeds `i64::MAX`.
    pub async fn insert(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        let (retention, ttl) = retention_columns(sandbox.retention);
        let readiness =
            i64::try_from(sandbox.readiness_timeout_ms).map_err(|_| StoreError::OutOfRange {
                what: "readiness_timeout_ms",
            })?;
        sqlx::query(&format!(
            "INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0, $19)"
        ))
        .bind(sandbox.id.to_string())
        .bind(sandbox.owner.to_string())
        .bind(sandbox.node.to_string())
        .bind(sandbox.image.as_str())
        .bind(sandbox.image_digest.as_str())
        .bind(sandbox.driver.as_str())
        .bind(i64::from(sandbox.limits.cpu_millis))
        .bind(i64::from(sandbox.limits.memory_mib))
        .bind(i64::from(sandbox.limits.pids_max))
        .bind(sandbox.state.as_str())
        .bind(encode_boot(&sandbox.boot)?)
        .bind(encode_failure(sandbox.failure.as_ref())?)
        .bind(retention)
        .bind(ttl)
        .bind(readiness)
        .bind(opt_ms(sandbox.released_at))
        .bind(ms(sandbox.created_at))
        .bind(ms(sandbox.updated_at))
        .bind(sandbox.network.as_str())
        .execute(self.write)
        .await
        .map_err(StoreError::from_write("sandbox"))?;
        Ok(())
    }

    /// The sandbox with this id, whoever owns it (for the node agent and the reconciler; user
    /// requests go through [`SandboxRepo::get_owned`]).
    pub async fn get(&self, id: SandboxId) -> Result<Option<Sandbox>, StoreError> {
        Ok(self.get_versioned(id).await?.map(|(s, _)| s))
    }

    /// The sandbox with this id if `owner` owns it; another user's sandbox answers `None`,
    /// exactly like a missing one (the tenant wall).
    pub async fn get_owned(
        &self,
        owner: UserId,
        id: SandboxId,
    ) -> Result<Option<Sandbox>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1 AND owner_id = $2"
        ))
        .bind(id.to_string())
        .bind(owner.to_string())
        .fetch_optional(self.pool)
        .await?;
        row.map(|r| sandbox_from_row(&r).map(|(s, _)| s))
            .transpose()
    }

    /// `owner`'s sandboxes, newest first; `destroyed` ones only if `include_destroyed`.
    pub async fn list_owned(
        &self,
        owner: UserId,
        include_destroyed: bool,
    ) -> Result<Vec<Sandbox>, StoreError> {
        let filter = if include_destroyed {
            ""
        } else {
            " AND state <> 'destroyed'"
        };
        let rows = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE owner_id = $1{filter} \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(owner.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| sandbox_from_row(r).map(|(s, _)| s))
            .collect()
    }

    /// How many sandboxes are in each state, over all owners and nodes (for monitoring).
    /// States with none are left out.
    pub async fn count_by_state(&self) -> Result<Vec<(SandboxState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM sandboxes GROUP BY state ORDER BY state")
                .fetch_all(self.pool)
                .await?;
        rows.into_iter()
            .map(|(state, n)| {
                Ok((
                    parse("sandboxes.state", &state)?,
                    u64::try_from(n).map_err(|err| StoreError::corrupt("sandboxes count", err))?,
                ))
            })
            .collect()
    }

    /// Every sandbox placed on `node`, in all states, oldest first (for the reconciler).
    pub async fn list_on_node(&self, node: NodeId) -> Result<Vec<Sandbox>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE node_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(node.to_string())
        .fetch_all(self.pool)
        .await?;
        rows.iter()
            .map(|r| sandbox_from_row(r).map(|(s, _)| s))
            .collect()
    }

    /// Moves sandbox `id` from `from` to `to` as one compare-and-set, applying `change` and
    /// setting `updated_at = now` in the same statement. Returns the record as written.
    ///
    /// Errors: [`StoreError::InvalidTransition`] if the lifecycle forbids `from -> to` (nothing
    /// is read or written); [`StoreError::NotFound`] if there is no such sandbox;
    /// [`StoreError::Conflict`] with the state found if it is not (or no longer) in `from`
    /// (its `actual` can equal `from` only if the record kept changing through every retry).
    pub async fn transition(
        &self,
        id: SandboxId,
        from: SandboxState,
        to: SandboxState,
        change: StateChange,
        now: Timestamp,
    ) -> Result<Sandbox, StoreError> {
        from.transition(to)?;
        self.compare_and_set(id, from, now, |sandbox| {
            sandbox.state = to;
            if change.reset_boot {
                sandbox.boot.clear();
            }
            if let Some(event) = change.boot_event {
                sandbox.boot.push(event);
            }
            if let Some(failure) = &change.failure {
                sandbox.failure = Some(failure.clone());
            }
            if let Some(at) = change.released_at {
                sandbox.released_at = Some(at);
            }
        })
        .await
    }

    /// Appends `event` to the boot events of sandbox `id`, only while it is still in
    /// `expected_state` (a boot that already failed or was destroyed records nothing more).
    /// Sets `updated_at = now`. Returns the record as written.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] if the state moved on.
    pub async fn record_boot_event(
        &self,
        id: SandboxId,
        expected_state: SandboxState,
        event: BootEvent,
        now: Timestamp,
    ) -> Result<Sandbox, StoreError> {
        self.compare_and_set(id, expected_state, now, |sandbox| {
            sandbox.boot.push(event);
        })
        .await
    }

    /// Records that the node-side resources of sandbox `id` were released at `now`, once:
    /// returns `true` if this call set `released_at`, `false` if it was already set (the first
    /// time is kept). Also sets `updated_at`. Errors: [`StoreError::NotFound`].
    pub async fn mark_released(&self, id: SandboxId, now: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sandboxes SET released_at = $2, updated_at = $2, version = version + 1 \
             WHERE id = $1 AND released_at IS NULL",
        )
        .bind(id.to_string())
        .bind(ms(now))
        .execute(self.write)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        match self.get_versioned(id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound),
        }
    }

    async fn get_versioned(&self, id: SandboxId) -> Result<Option<(Sandbox, i64)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(sandbox_from_row).transpose()
    }

    /// Reads the row, applies `edit` to it, and writes every mutable column back with
    /// `WHERE id AND state = expected AND version = seen`. Retries only when the version moved
    /// but the state did not.
    async fn compare_and_set(
        &self,
        id: SandboxId,
        expected: SandboxState,
        now: Timestamp,
        edit: impl Fn(&mut Sandbox),
    ) -> Result<Sandbox, StoreError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut sandbox, version) =
                self.get_versioned(id).await?.ok_or(StoreError::NotFound)?;
            if sandbox.state != expected {
                return Err(StoreError::Conflict {
                    id,
                    expected,
                    actual: Some(sandbox.state),
                });
            }
            edit(&mut sandbox);
            sandbox.updated_at = now;
            let done = sqlx::query(
                "UPDATE sandboxes SET state = $1, boot = $2, failure = $3, released_at = $4, \
                 updated_at = $5, version = version + 1 \
                 WHERE id = $6 AND state = $7 AND version = $8",
            )
            .bind(sandbox.state.as_str())
            .bind(encode_boot(&sandbox.boot)?)
            .bind(encode_failure(sandbox.failure.as_ref())?)
            .bind(opt_ms(sandbox.released_at))
            .bind(ms(now))
            .bind(id.to_string())
            .bind(expected.as_str())
            .bind(version)
            .execute(self.write)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(sandbox);
            }
            // Lost the race: the next read reports the new state as a conflict, or retries
            // if only the version moved.
            tracing::debug!(%id, %expected, "sandbox compare-and-set lost, re-reading");
        }
        let actual = self.get_versioned(id).await?.map(|(s, _)| s.state);
        Err(StoreError::Conflict {
            id,
            expected,
            actual,
        })
    }
}
