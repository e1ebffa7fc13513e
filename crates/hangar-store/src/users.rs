//! Users: table `users` (`id`, `name` unique, `is_admin` 0/1, `created_at` unix ms).

use hangar_core::{Timestamp, UserId};
use sqlx::any::AnyRow;
use sqlx::AnyPool;

use crate::codec::{bool_col, col, ms, parse, ts};
use crate::error::StoreError;
use crate::Pools;

/// One user (a human or a service account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its unique login name.
    pub name: String,
    /// Administrators see the fleet (nodes, metrics); they still only own their own sandboxes.
    pub is_admin: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

const USER_COLUMNS: &str = "id, name, is_admin, created_at";

/// Decodes a user from columns `id`, `name`, `is_admin`, `created_at`, or, when `prefixed`
/// (joined with another table), `u_id`, `u_name`, `u_is_admin`, `u_created_at`.
pub(crate) fn user_from_row(row: &AnyRow, prefixed: bool) -> Result<User, StoreError> {
    let (id, name, admin, created) = if prefixed {
        ("u_id", "u_name", "u_is_admin", "u_created_at")
    } else {
        ("id", "name", "is_admin", "created_at")
    };
    let id: String = col(row, id)?;
    Ok(User {
        id: parse("users.id", &id)?,
        name: col(row, name)?,
        is_admin: bool_col("users.is_admin", col(row, admin)?)?,
        created_at: ts(col(row, created)?),
    })
}

/// Reads and writes users. Get one from [`crate::Store::users`].
#[derive(Clone, Copy, Debug)]
pub struct UserRepo<'a> {
    pool: &'a AnyPool,
    write: &'a AnyPool,
}

impl<'a> UserRepo<'a> {
    pub(crate) fn new(pools: &'a Pools) -> Self {
        Self {
            pool: &pools.read,
            write: &pools.write,
        }
    }

    /// Records a new user. Errors: [`StoreError::Duplicate`] (`what: "user"`) if the name or the
    /// id is taken.
    pub async fn create(&self, user: &User) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.id.to_string())
            .bind(user.name.as_str())
            .bind(i64::from(user.is_admin))
            .bind(ms(user.created_at))
            .execute(self.write)
            .await
            .map_err(StoreError::from_write("user"))?;
        Ok(())
    }

    /// The user with this id, if any.
    pub async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool)
            .await?;
        row.map(|r| user_from_row(&r, false)).transpose()
    }

    /// The user with this exact (case-sensitive) name, if any.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool)
            .await?;
        row.map(|r| user_from_row(&r, false)).transpose()
    }

    /// Every user, by name.
    pub async fn list(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY name, id"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(|r| user_from_row(r, false)).collect()
    }

    /// How many users exist (0 means the bootstrap admin is still to be made).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool)
            .await?;
        u64::try_from(n).map_err(|err| StoreError::corrupt("users count", err))
    }
}
