//! Rebuilds the crate when a migration is added, changed or removed: `sqlx::migrate!` embeds
//! the `migrations/` directories at compile time, and Cargo does not watch a directory's
//! listing by itself (the sqlx documentation's advice for `migrate!`).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
