//! PostgreSQL: the production backend.

use diesel::pg::PgConnection;
use diesel::{QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{common_outbox_sql, BigIntValue, OutboxConnection, Sealed};
use crate::error::{Error, Result};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

impl Sealed for PgConnection {}

impl OutboxConnection for PgConnection {
    /// The wire protocol counts bind parameters in 16 bits.
    const MAX_BIND_PARAMS: usize = 65_535;

    fn run_outbox_migrations(&mut self) -> Result<()> {
        self.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(Error::Migration)
    }

    common_outbox_sql!();
    crate::tombstone::tombstone_sql!();

    fn next_object_identifier(&mut self) -> QueryResult<i64> {
        diesel::sql_query("SELECT nextval('diesel_outbox_object_ids') AS value")
            .get_result::<BigIntValue>(self)
            .map(|row| row.value)
    }
}
