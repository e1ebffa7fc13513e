//! Nodes: table `nodes` (`id`, `name`, `address` or NULL, `drivers` as a JSON array of driver
//! names such as `["runc","qemu"]`, `last_heartbeat_at` and `created_at` in unix ms).

use hangar_core::{NodeId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool};

use crate::codec::{col, decode_strings, encode_strings, ms, parse, ts};
use crate::error::StoreError;
use crate::Pools;

/// One node as the control plane knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its id.
    pub id: NodeId,
    /// Its name (usually the host name). Not required to be unique.
    pub name: String,
    /// Where the control plane reaches its agent (`host:port`), if it is reachable at all.
    pub address: Option<String>,
    /// The drivers it offers (`runc`, `qemu`, `firecracker`), as the agent reported them.
    pub drivers: Vec<String>,
    /// Its latest heartbeat.
    pub last_heartbeat_at: Timestamp,
    /// When it first registered.
    pub created_at: Timestamp,
}

const NODE_COLUMNS: &str = "id, name, address, drivers, last_heartbeat_at, created_at";

/// The upsert of [`NodeRepo::upsert`] on a given connection (also used inside the heartbeat
/// transaction of [`crate::MetricsRepo::record_heartbeat`]).
pub(crate) async fn upsert_node(
    conn: &mut AnyConnection,
    node: &NodeRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO nodes (id, name, address, drivers, last_heartbeat_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address, \
         drivers = excluded.drivers, last_heartbeat_at = excluded.last_heartbeat_at",
    )
    .bind(node.id.to_string())
    .bind(node.name.as_str())
    .bind(node.address.as_deref())
    .bind(encode_strings("nodes.drivers", &node.drivers)?)
    .bind(ms(node.last_heartbeat_at))
    .bind(ms(node.created_at))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::from_write("node"))?;
    Ok(())
}

fn node_from_row(row: &AnyRow) -> Result<NodeRecord, StoreError> {
    let id: String = col(row, "id")?;
    let drivers: String = col(row, "drivers")?;
    Ok(NodeRecord {
        id: parse("nodes.id", &id)?,
        name: col(row, "name")?,
        address: col(row, "address")?,
        drivers: decode_strings("nodes.drivers", &drivers)?,
        last_heartbeat_at: ts(col(row, "last_heartbeat_at")?),
        created_at: ts(col(row, "created_at")?),
    })
}

/// Reads and writes nodes. Get one from [`crate::Store::nodes`].
#[derive(Clone, Copy, Debug)]
pub struct NodeRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> NodeRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Registers a node or refreshes it (a heartbeat): inserts it, or, if the id exists,
    /// overwrites name, address, drivers and `last_heartbeat_at` while keeping the first
    /// `created_at`. Returns the record as stored.
    pub async fn upsert(&self, node: &NodeRecord) -> Result<NodeRecord, StoreError> {
        let mut conn = self.write.acquire().await?;
        upsert_node(&mut conn, node).await?;
        drop(conn);
        self.get(node.id).await?.ok_or(StoreError::NotFound)
    }

    /// The node with this id, if any.
    pub async fn get(&self, id: NodeId) -> Result<Option<NodeRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    /// Every node, by name then id.
    pub async fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM nodes ORDER BY name, id"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(node_from_row).collect()
    }
}
