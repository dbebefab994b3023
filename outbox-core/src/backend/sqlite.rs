//! SQLite: the embedded default.

use diesel::sqlite::SqliteConnection;
use diesel::{QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{common_outbox_sql, BigIntValue, OutboxConnection, Sealed};
use crate::error::{Error, Result};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

impl Sealed for SqliteConnection {}

impl OutboxConnection for SqliteConnection {
    /// SQLITE_MAX_VARIABLE_NUMBER of the bundled build (3.32 and later).
    const MAX_BIND_PARAMS: usize = 32_766;

    fn run_outbox_migrations(&mut self) -> Result<()> {
        self.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(Error::Migration)
    }

    common_outbox_sql!();
    crate::tombstone::tombstone_sql!();

    fn next_object_identifier(&mut self) -> QueryResult<i64> {
        // SQLite has no sequences: a one-row counter, bumped in the caller's transaction.
        diesel::sql_query(
            "UPDATE diesel_outbox_object_ids SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .get_result::<BigIntValue>(self)
        .map(|row| row.value)
    }
}
