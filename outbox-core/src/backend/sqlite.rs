//! SQLite: the embedded default.

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::sqlite::SqliteConnection;
use diesel::{OptionalExtension, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{common_outbox_sql, BigIntValue, OutboxConnection, Sealed};
use crate::drain::sql::{drain_sql, Prepared, RowLock, Schedule};
use crate::drain::Silo;
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

    drain_sql!(numbered = false);

    fn outbox_lock_row(&mut self, silo: Silo, id: i64, _wait: bool) -> QueryResult<RowLock> {
        // The write transaction (BEGIN IMMEDIATE) already excludes every other writer, so
        // "locking" is reading the row back.
        let schedule = Prepared(
            diesel::sql_query(format!(
                "SELECT scheduled_for, scheduled_from FROM {} WHERE id = ?",
                silo.table()
            ))
            .bind::<diesel::sql_types::BigInt, _>(id),
        )
        .get_result::<Schedule>(self)
        .optional()?;
        Ok(schedule.map_or(RowLock::Gone, RowLock::Locked))
    }

    fn outbox_write_transaction<T, E, F>(&mut self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        // BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a
        // deferred transaction that read the head and then tried to write could fail at
        // once with SQLITE_BUSY instead of waiting. Inside an enclosing transaction, the
        // lock is already decided: a savepoint.
        let depth = AnsiTransactionManager::transaction_manager_status_mut(self)
            .transaction_depth()
            .map_err(E::from)?;
        match depth {
            None => self.immediate_transaction(f),
            Some(_) => self.transaction(f),
        }
    }
}
