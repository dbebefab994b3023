//! Creating the library's tables.

use super::guard;
use super::OutboxConnection;
use crate::key::error::Result;

/// Creates (or brings up to date) the outbox and tombstone tables on `conn`.
///
/// The migrations are embedded in the library, one set per backend, and run through
/// diesel's migration harness, so they are recorded in `__diesel_schema_migrations` beside
/// the application's own. Their versions start with `0000000000` and so sort before any
/// timestamped application migration: `diesel migration revert` keeps reverting the
/// application's migrations, never the library's. Running this twice is harmless.
///
/// ```
/// use diesel::{Connection, SqliteConnection};
/// let mut conn = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:")?;
/// diesel_outbox::run_migrations(&mut conn)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_migrations<C: OutboxConnection>(conn: &mut C) -> Result<()> {
    guard::as_library(conn, |conn| conn.run_outbox_migrations())
}
