//! PostgreSQL: the production backend.

use diesel::pg::PgConnection;
use diesel::{Connection, OptionalExtension, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{common_outbox_sql, BigIntValue, OutboxConnection, Sealed};
use crate::drain::sql::{drain_sql, Prepared, RowLock, Schedule};
use crate::drain::Silo;
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

    drain_sql!(numbered = true);

    fn outbox_lock_row(&mut self, silo: Silo, id: i64, wait: bool) -> QueryResult<RowLock> {
        // SKIP LOCKED instead of NOWAIT: a busy row comes back as "no row" rather than as
        // an error that would abort the transaction (and whose text we would have to parse).
        let skip = if wait { "" } else { " SKIP LOCKED" };
        let schedule = Prepared(
            diesel::sql_query(format!(
                "SELECT scheduled_for, scheduled_from FROM {} WHERE id = $1 FOR UPDATE{skip}",
                silo.table()
            ))
            .bind::<diesel::sql_types::BigInt, _>(id),
        )
        .get_result::<Schedule>(self)
        .optional()?;
        Ok(match schedule {
            Some(schedule) => RowLock::Locked(schedule),
            // Waiting returns nothing only when the holder deleted the row.
            None if wait => RowLock::Gone,
            None if self.outbox_row_exists(silo, id)? => RowLock::Busy,
            None => RowLock::Gone,
        })
    }

    fn outbox_write_transaction<T, E, F>(&mut self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        // Row locks do the excluding; READ COMMITTED lets each statement see the latest
        // committed rows, which the head-locking loop relies on.
        self.transaction(f)
    }
}
