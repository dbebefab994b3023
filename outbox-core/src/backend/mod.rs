//! What the library needs from a diesel connection, implemented once per backend.
//!
//! Everything backend-specific (bind limits, sequences, migrations, and later locking)
//! lives behind [`OutboxConnection`], so the rest of the library is written once.

use std::ops::Range;

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, Connection};
use diesel::QueryResult;

use crate::drain::sql::{HeadRow, RowLock};
use crate::drain::{ShardKey, Silo};
use crate::error::Result;
use crate::receivers::OutboxMessage;
use crate::row::{NewCellOutbox, NewControlOutbox};

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// A diesel connection the outbox can work on: `SqliteConnection` (feature `sqlite`) and
/// `PgConnection` (feature `postgres`). A pooled connection works through `&mut *pooled`.
///
/// The trait is sealed; its hidden methods are the library's per-backend SQL.
pub trait OutboxConnection:
    Connection<TransactionManager = AnsiTransactionManager> + Sealed + Send + 'static
{
    /// The backend's limit on bind parameters in one statement; multi-row INSERTs are
    /// split only where they would exceed it.
    const MAX_BIND_PARAMS: usize;

    /// Runs the library's migrations (see [`run_migrations`](crate::run_migrations)).
    fn run_outbox_migrations(&mut self) -> Result<()>;

    #[doc(hidden)]
    fn insert_cell_rows(&mut self, rows: &[NewCellOutbox]) -> QueryResult<()>;

    #[doc(hidden)]
    fn insert_control_rows(&mut self, rows: &[NewControlOutbox]) -> QueryResult<()>;

    #[doc(hidden)]
    fn next_object_identifier(&mut self) -> QueryResult<i64>;

    #[doc(hidden)]
    fn insert_tombstone(
        &mut self,
        table: crate::tombstone::TombstoneTable,
        table_name: &str,
        object_identifier: i64,
        now: chrono::NaiveDateTime,
    ) -> QueryResult<usize>;

    #[doc(hidden)]
    fn load_tombstones(
        &mut self,
        table: crate::tombstone::TombstoneTable,
        table_name: Option<&str>,
    ) -> QueryResult<Vec<crate::tombstone::Tombstone>>;

    // The drain's SQL: the shared statements are in `drain::sql::drain_sql!`; the lock and
    // the transaction below are the backend's own.

    #[doc(hidden)]
    fn outbox_due_shards(
        &mut self,
        silo: Silo,
        now: NaiveDateTime,
        id_range: Option<Range<i64>>,
        limit: i64,
    ) -> QueryResult<Vec<ShardKey>>;

    #[doc(hidden)]
    fn outbox_shard_head(
        &mut self,
        key: &ShardKey,
        bound: Option<i64>,
    ) -> QueryResult<Option<HeadRow>>;

    #[doc(hidden)]
    fn outbox_shard_is_due(&mut self, key: &ShardKey, now: NaiveDateTime) -> QueryResult<bool>;

    #[doc(hidden)]
    fn outbox_reschedule(
        &mut self,
        key: &ShardKey,
        from: NaiveDateTime,
        until: NaiveDateTime,
    ) -> QueryResult<usize>;

    #[doc(hidden)]
    fn outbox_group_newest(
        &mut self,
        key: &ShardKey,
        category: i32,
        object_identifier: i64,
        bound: Option<i64>,
    ) -> QueryResult<Option<OutboxMessage>>;

    #[doc(hidden)]
    fn outbox_delete_group(
        &mut self,
        key: &ShardKey,
        category: i32,
        object_identifier: i64,
        up_to: i64,
    ) -> QueryResult<usize>;

    #[doc(hidden)]
    fn outbox_id_bounds(&mut self, silo: Silo) -> QueryResult<Option<(i64, i64)>>;

    #[doc(hidden)]
    fn outbox_row_count(&mut self, silo: Silo) -> QueryResult<u64>;

    #[doc(hidden)]
    fn outbox_row_exists(&mut self, silo: Silo, id: i64) -> QueryResult<bool>;

    /// Locks row `id` for the rest of the transaction: waiting for another holder when
    /// `wait`, otherwise reporting it busy at once.
    #[doc(hidden)]
    fn outbox_lock_row(&mut self, silo: Silo, id: i64, wait: bool) -> QueryResult<RowLock>;

    /// The transaction a drain step runs in: one that excludes other drains of the shard
    /// it locks (see each backend).
    #[doc(hidden)]
    fn outbox_write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>;
}

/// The bodies that are the same SQL on every backend, written once and expanded inside
/// each backend's `impl OutboxConnection`. (A generic function would need higher-ranked
/// bounds on diesel's statement types, which the type system cannot express.)
macro_rules! common_outbox_sql {
    () => {
        fn insert_cell_rows(
            &mut self,
            rows: &[$crate::row::NewCellOutbox],
        ) -> diesel::QueryResult<()> {
            use diesel::RunQueryDsl;
            // One row: a fixed statement, which diesel caches as a prepared statement.
            if let [row] = rows {
                diesel::insert_into($crate::schema::cell_outboxes::table)
                    .values(row)
                    .execute(self)?;
                return Ok(());
            }
            let per_statement = Self::MAX_BIND_PARAMS / $crate::row::NewCellOutbox::BINDS;
            for chunk in rows.chunks(per_statement) {
                diesel::insert_into($crate::schema::cell_outboxes::table)
                    .values(chunk)
                    .execute(self)?;
            }
            Ok(())
        }

        fn insert_control_rows(
            &mut self,
            rows: &[$crate::row::NewControlOutbox],
        ) -> diesel::QueryResult<()> {
            use diesel::RunQueryDsl;
            // One row: a fixed statement, which diesel caches as a prepared statement.
            if let [row] = rows {
                diesel::insert_into($crate::schema::control_outboxes::table)
                    .values(row)
                    .execute(self)?;
                return Ok(());
            }
            let per_statement = Self::MAX_BIND_PARAMS / $crate::row::NewControlOutbox::BINDS;
            for chunk in rows.chunks(per_statement) {
                diesel::insert_into($crate::schema::control_outboxes::table)
                    .values(chunk)
                    .execute(self)?;
            }
            Ok(())
        }
    };
}
pub(crate) use common_outbox_sql;

/// One `BIGINT` column named `value`, for `sql_query` results.
#[derive(diesel::QueryableByName)]
pub(crate) struct BigIntValue {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) value: i64,
}
