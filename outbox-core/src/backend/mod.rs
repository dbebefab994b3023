//! What the library needs from a diesel connection, implemented once per backend.
//!
//! Everything backend-specific (bind limits, sequences, migrations, and later locking)
//! lives behind [`OutboxConnection`], so the rest of the library is written once.

use diesel::connection::{AnsiTransactionManager, Connection};
use diesel::QueryResult;

use crate::error::Result;
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
