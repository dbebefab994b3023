//! diesel's transaction depth: read it, and unwind to it after a panic.
//!
//! A receiver, or an `outbox_context` closure, may open its own nested transactions. A
//! panic inside one leaves its savepoint open; rolling back only our own level would then
//! leave a transaction open on a connection the caller keeps.

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::QueryResult;

/// How many transactions (the outermost and its savepoints) are open on `conn`.
pub(crate) fn depth<C>(conn: &mut C) -> QueryResult<u32>
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    Ok(AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?
        .map_or(0, |depth| depth.get()))
}

/// Rolls back until at most `target` transactions are open.
pub(crate) fn unwind_to<C>(conn: &mut C, target: u32) -> QueryResult<()>
where
    C: Connection<TransactionManager = AnsiTransactionManager>,
{
    while depth(conn)? > target {
        AnsiTransactionManager::rollback_transaction(conn)?;
    }
    Ok(())
}
