//! diesel-async connections (feature `async`): what the write path needs from
//! `AsyncPgConnection`, `AsyncMysqlConnection` and `SyncConnectionWrapper<SqliteConnection>`,
//! and their transaction depth.
//!
//! No statement is written here: the write path's statements are the sync backends'
//! (the same macros and query values, `shared::insert_outbox_rows!`,
//! `mysql::insert_mysql_rows!`, `postgres::next_object_identifier_query`, ...), run by
//! diesel-async's executor instead of diesel's. On SQLite the wrapper runs the sync
//! connection's own methods on its blocking thread.
//!
//! The drain stays on sync connections: only the write path, which runs inside the
//! application's request on its connection, is async.

use std::future::Future;

use diesel::connection::TransactionManagerStatus;
use diesel::QueryResult;
use diesel_async::{AsyncConnection, TransactionManager};

use super::Sealed;
use crate::key::token::Token;
use crate::row::insert::{NewCellOutbox, NewControlOutbox};

/// A diesel-async connection the write path can work on: `AsyncPgConnection` (features
/// `async` and `postgres`), `AsyncMysqlConnection` (`async` and `mysql`: MySQL 8 and
/// MariaDB 10.6 or later) and `SyncConnectionWrapper<SqliteConnection>` (`async` and
/// `sqlite`). A pooled connection (bb8, deadpool) works through `&mut *pooled`.
///
/// Sealed, like [`OutboxConnection`](crate::OutboxConnection), and its hidden methods
/// take the runtime's token: application code can name the trait in bounds, never call
/// what writes an outbox table. Every future it returns is `Send`.
pub trait AsyncOutboxConnection: AsyncConnection + Sealed + Send + 'static {
    /// The backend's limit on bind parameters in one statement; multi-row INSERTs are
    /// split only where they would exceed it.
    const MAX_BIND_PARAMS: usize;

    /// The backend's name, for messages.
    const BACKEND_NAME: &'static str;

    /// Opens the transaction of an `outbox_context_async` (a savepoint when one is open);
    /// on SQLite the outermost one is `BEGIN IMMEDIATE`, as on the sync connection.
    #[doc(hidden)]
    fn begin_context_transaction(
        &mut self,
        token: Token<'_>,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    #[doc(hidden)]
    fn insert_cell_rows(
        &mut self,
        token: Token<'_>,
        rows: Vec<NewCellOutbox>,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    #[doc(hidden)]
    fn insert_control_rows(
        &mut self,
        token: Token<'_>,
        rows: Vec<NewControlOutbox>,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    #[doc(hidden)]
    fn next_object_identifier(
        &mut self,
        token: Token<'_>,
    ) -> impl Future<Output = QueryResult<i64>> + Send;

    /// See [`OutboxConnection::notify_rows_written`](crate::OutboxConnection).
    #[doc(hidden)]
    fn notify_rows_written(
        &mut self,
        token: Token<'_>,
    ) -> impl Future<Output = QueryResult<()>> + Send;

    /// Marks the connection's transaction abandoned when [`mark_abandoned`] could not
    /// reach it (SQLite's wrapper while its blocking thread still runs a statement): by a
    /// task that runs once the connection is free. Nothing elsewhere.
    #[doc(hidden)]
    fn mark_abandoned_later(&mut self, _token: Token<'_>) {}
}

// ---- Transaction depth, through diesel-async's transaction manager.

fn status<C: AsyncConnection>(conn: &mut C) -> &mut TransactionManagerStatus {
    <C::TransactionManager as TransactionManager<C>>::transaction_manager_status_mut(conn)
}

/// How many transactions (the outermost and its savepoints) are open on `conn`.
pub(crate) fn depth<C: AsyncConnection>(conn: &mut C) -> QueryResult<u32> {
    Ok(status(conn)
        .transaction_depth()?
        .map_or(0, |depth| depth.get()))
}

/// Rolls back until at most `target` transactions are open.
pub(crate) async fn unwind_to<C: AsyncConnection>(conn: &mut C, target: u32) -> QueryResult<()> {
    while depth(conn)? > target {
        <C::TransactionManager as TransactionManager<C>>::rollback_transaction(conn).await?;
    }
    Ok(())
}

/// Commits the innermost transaction (or releases its savepoint).
pub(crate) async fn commit<C: AsyncConnection>(conn: &mut C) -> QueryResult<()> {
    <C::TransactionManager as TransactionManager<C>>::commit_transaction(conn).await
}

/// Marks `conn` as holding a transaction nobody owns any more: an `outbox_context_async`
/// future was dropped between its BEGIN and the end of its COMMIT or ROLLBACK. diesel's
/// status "in error" is the mark: diesel refuses every transaction on it, pools (bb8,
/// deadpool) discard it, and the next `outbox_context_async` on it rolls it back
/// ([`roll_back_abandoned`]).
pub(crate) fn mark_abandoned<C: AsyncConnection>(conn: &mut C) {
    status(conn).set_in_error();
}

/// Whether `conn` carries the mark of [`mark_abandoned`] (or diesel's own "in error").
pub(crate) fn is_abandoned<C: AsyncConnection>(conn: &mut C) -> bool {
    matches!(status(conn), TransactionManagerStatus::InError)
}

/// Rolls back what an abandoned context left open (see [`mark_abandoned`]), so that the
/// next context starts a transaction of its own instead of a savepoint inside the orphan
/// (whose rows would be lost with it). Fails, leaving the mark, when the connection cannot
/// be trusted: the future was dropped while diesel-async was sending BEGIN, COMMIT or
/// ROLLBACK, so nobody knows where the server stands.
pub(crate) async fn roll_back_abandoned<C: AsyncConnection>(conn: &mut C) -> QueryResult<()> {
    *status(conn) = TransactionManagerStatus::default();
    // Now clean as far as diesel's status goes: diesel-async still calls it broken if a
    // transaction statement was cut short.
    if <C::TransactionManager as TransactionManager<C>>::is_broken_transaction_manager(conn) {
        status(conn).set_in_error();
        return Err(diesel::result::Error::BrokenTransactionManager);
    }
    // Outside a transaction ROLLBACK is harmless (a warning on PostgreSQL, nothing on
    // MySQL); SQLite says there is none, which is what we want.
    if let Err(error) = conn.batch_execute("ROLLBACK").await {
        tracing::debug!(%error, "rolling back an abandoned outbox context");
    }
    Ok(())
}

// ---- PostgreSQL.

#[cfg(feature = "postgres")]
mod postgres {
    use diesel::QueryResult;
    use diesel_async::{AsyncPgConnection, RunQueryDsl, TransactionManager};

    use super::AsyncOutboxConnection;
    use crate::backend::postgres::{next_object_identifier_query, notify_query};
    use crate::backend::sql::BigIntValue;
    use crate::backend::{OutboxConnection, Sealed};
    use crate::key::token::Token;
    use crate::row::insert::{NewCellOutbox, NewControlOutbox};

    impl Sealed for AsyncPgConnection {}

    impl AsyncOutboxConnection for AsyncPgConnection {
        const MAX_BIND_PARAMS: usize = <diesel::PgConnection as OutboxConnection>::MAX_BIND_PARAMS;
        const BACKEND_NAME: &'static str = "PostgreSQL";

        async fn begin_context_transaction(&mut self, _token: Token<'_>) -> QueryResult<()> {
            <Self as diesel_async::AsyncConnection>::TransactionManager::begin_transaction(self)
                .await
        }

        async fn insert_cell_rows(
            &mut self,
            _token: Token<'_>,
            rows: Vec<NewCellOutbox>,
        ) -> QueryResult<()> {
            crate::backend::shared::insert_outbox_rows!(
                &mut *self,
                &rows,
                Self::MAX_BIND_PARAMS,
                cell_outboxes,
                CellValues,
                NewCellOutbox,
                [.await]
            )
        }

        async fn insert_control_rows(
            &mut self,
            _token: Token<'_>,
            rows: Vec<NewControlOutbox>,
        ) -> QueryResult<()> {
            crate::backend::shared::insert_outbox_rows!(
                &mut *self,
                &rows,
                Self::MAX_BIND_PARAMS,
                control_outboxes,
                ControlValues,
                NewControlOutbox,
                [.await]
            )
        }

        async fn next_object_identifier(&mut self, _token: Token<'_>) -> QueryResult<i64> {
            let row: BigIntValue = next_object_identifier_query().get_result(self).await?;
            Ok(row.value)
        }

        async fn notify_rows_written(&mut self, _token: Token<'_>) -> QueryResult<()> {
            notify_query().execute(self).await?;
            Ok(())
        }
    }
}

// ---- MySQL and MariaDB.

#[cfg(feature = "mysql")]
mod mysql {
    use diesel::QueryResult;
    use diesel_async::{AsyncMysqlConnection, RunQueryDsl, TransactionManager};

    use super::AsyncOutboxConnection;
    use crate::backend::mysql::insert_mysql_rows;
    use crate::backend::mysql::{next_object_identifier_query, CELL_SIZES, CONTROL_SIZES};
    use crate::backend::sql::BigIntValue;
    use crate::backend::{OutboxConnection, Sealed};
    use crate::key::token::Token;
    use crate::row::insert::{CellValues, ControlValues, NewCellOutbox, NewControlOutbox};

    impl Sealed for AsyncMysqlConnection {}

    impl AsyncOutboxConnection for AsyncMysqlConnection {
        const MAX_BIND_PARAMS: usize =
            <diesel::MysqlConnection as OutboxConnection>::MAX_BIND_PARAMS;
        const BACKEND_NAME: &'static str = "MySQL";

        async fn begin_context_transaction(&mut self, _token: Token<'_>) -> QueryResult<()> {
            <Self as diesel_async::AsyncConnection>::TransactionManager::begin_transaction(self)
                .await
        }

        async fn insert_cell_rows(
            &mut self,
            _token: Token<'_>,
            rows: Vec<NewCellOutbox>,
        ) -> QueryResult<()> {
            let conn = self;
            insert_mysql_rows!(conn, &rows[..], &CELL_SIZES, cell_outboxes, CellValues, [.await])
        }

        async fn insert_control_rows(
            &mut self,
            _token: Token<'_>,
            rows: Vec<NewControlOutbox>,
        ) -> QueryResult<()> {
            let conn = self;
            insert_mysql_rows!(
                conn,
                &rows[..],
                &CONTROL_SIZES,
                control_outboxes,
                ControlValues,
                [.await]
            )
        }

        async fn next_object_identifier(&mut self, _token: Token<'_>) -> QueryResult<i64> {
            let row: BigIntValue = next_object_identifier_query().get_result(self).await?;
            Ok(row.value)
        }

        async fn notify_rows_written(&mut self, _token: Token<'_>) -> QueryResult<()> {
            // MySQL has no notifications: workers find new rows by polling.
            Ok(())
        }
    }
}

// ---- SQLite, through diesel-async's wrapper of the sync connection.

#[cfg(feature = "sqlite")]
mod sqlite {
    use diesel::sqlite::SqliteConnection;
    use diesel::QueryResult;
    use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

    use super::AsyncOutboxConnection;
    use crate::backend::{OutboxConnection, Sealed};
    use crate::key::token::Token;
    use crate::row::insert::{NewCellOutbox, NewControlOutbox};

    impl Sealed for SyncConnectionWrapper<SqliteConnection> {}

    /// The wrapper runs the sync connection's own statements on its blocking thread: the
    /// same SQL, the same `BEGIN IMMEDIATE`.
    impl AsyncOutboxConnection for SyncConnectionWrapper<SqliteConnection> {
        const MAX_BIND_PARAMS: usize = <SqliteConnection as OutboxConnection>::MAX_BIND_PARAMS;
        const BACKEND_NAME: &'static str = "SQLite";

        async fn begin_context_transaction(&mut self, _token: Token<'_>) -> QueryResult<()> {
            self.spawn_blocking(|conn| conn.begin_context_transaction(Token::new()))
                .await
        }

        async fn insert_cell_rows(
            &mut self,
            _token: Token<'_>,
            rows: Vec<NewCellOutbox>,
        ) -> QueryResult<()> {
            self.spawn_blocking(move |conn| conn.insert_cell_rows(Token::new(), &rows))
                .await
        }

        async fn insert_control_rows(
            &mut self,
            _token: Token<'_>,
            rows: Vec<NewControlOutbox>,
        ) -> QueryResult<()> {
            self.spawn_blocking(move |conn| conn.insert_control_rows(Token::new(), &rows))
                .await
        }

        async fn next_object_identifier(&mut self, _token: Token<'_>) -> QueryResult<i64> {
            self.spawn_blocking(|conn| conn.next_object_identifier(Token::new()))
                .await
        }

        async fn notify_rows_written(&mut self, _token: Token<'_>) -> QueryResult<()> {
            // SQLite has no notifications: workers find new rows by polling.
            Ok(())
        }

        fn mark_abandoned_later(&mut self, _token: Token<'_>) {
            use diesel::connection::{AnsiTransactionManager, TransactionManager};
            // tokio starts a blocking task when it is spawned: it runs (once the statement
            // in flight has released the connection) even though its handle is dropped.
            drop(self.spawn_blocking(|conn| {
                AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
                Ok(())
            }));
        }
    }
}
