//! `outbox_context`: the transaction in which outbox rows are written.

use std::panic::{self, AssertUnwindSafe};

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::Connection;

use crate::backend::OutboxConnection;
use crate::buffer::OutboxBuffer;
use crate::drain::{ShardKey, Silo};
use crate::error::{Error, Result};
use crate::row::OutboxWrite;

/// The handle an [`outbox_context`] closure gets: the open transaction plus the rows
/// written in it so far.
///
/// It cannot be built outside this crate, and the closure's higher-ranked lifetime keeps
/// it from escaping: replicated models can therefore only be written inside a
/// transaction that also records their outbox rows.
pub struct OutboxContext<'tx, C: OutboxConnection> {
    conn: &'tx mut C,
    buffer: OutboxBuffer,
    flush: bool,
}

impl<C: OutboxConnection> OutboxContext<'_, C> {
    /// Records an outbox row. It is buffered and inserted, with every other row of the
    /// transaction, in one multi-row INSERT just before the outermost COMMIT. A row with
    /// the same coalescing key as an earlier one in this transaction replaces it.
    ///
    /// Fails with [`Error::InvalidCellName`] for a control row whose cell name cannot be
    /// stored; nothing is buffered then.
    pub fn write(&mut self, row: impl Into<OutboxWrite>) -> Result<()> {
        let row = row.into();
        if let OutboxWrite::Control(control) = &row {
            control.validate()?;
        }
        self.buffer.push(row);
        Ok(())
    }

    /// The connection, inside this context's transaction, for ordinary diesel queries.
    pub fn connection(&mut self) -> &mut C {
        self.conn
    }

    /// Mints an object identifier that no other call returns, for rows that must never
    /// coalesce (an audit event is its own object). Backed by a sequence on PostgreSQL
    /// and a counter table on SQLite; like a sequence, a value taken by a transaction that
    /// rolls back may or may not be handed out again, but never to two committed rows.
    pub fn unique_object_identifier(&mut self) -> Result<i64> {
        Ok(self.conn.next_object_identifier()?)
    }

    /// How many rows the transaction will insert so far (after coalescing).
    pub fn pending_rows(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the rows written in this context (and contexts nested in it) are flushed
    /// after the outermost commit. Only [`Outbox::context`](crate::Outbox::context)
    /// flushes, and by default it does; [`outbox_context`] never does (it has no
    /// receivers), so there this changes nothing.
    pub fn set_flush(&mut self, flush: bool) {
        self.flush = flush;
    }
}

/// What the outermost commit of a context wrote; returned to [`Outbox::context`] for the
/// flush and the saved-rows counter.
pub(crate) struct Committed {
    /// Shards whose rows asked for a flush.
    pub(crate) touched: Vec<ShardKey>,
    /// Rows inserted per table and category.
    pub(crate) saved: Vec<(Silo, i32, u64)>,
    /// Whether the transaction really committed (no enclosing transaction is open).
    pub(crate) outermost: bool,
}

/// Something an [`outbox_context`] can be opened on: a connection (a new transaction) or
/// an enclosing [`OutboxContext`] (a savepoint whose rows go to the enclosing context).
pub trait ContextHost {
    /// The connection type.
    type Connection: OutboxConnection;

    #[doc(hidden)]
    fn host_parts(&mut self) -> (&mut Self::Connection, Option<&mut OutboxBuffer>);
}

impl<C: OutboxConnection> ContextHost for C {
    type Connection = C;

    fn host_parts(&mut self) -> (&mut C, Option<&mut OutboxBuffer>) {
        (self, None)
    }
}

impl<C: OutboxConnection> ContextHost for OutboxContext<'_, C> {
    type Connection = C;

    fn host_parts(&mut self) -> (&mut C, Option<&mut OutboxBuffer>) {
        (self.conn, Some(&mut self.buffer))
    }
}

/// Runs `f` in a transaction that records outbox rows.
///
/// * On a connection it opens a transaction (or a savepoint, if the connection is already
///   in one). When `f` succeeds, the buffered rows are inserted in one multi-row INSERT
///   (split only at the backend's bind-parameter limit) and the transaction commits.
/// * On an enclosing context (`outbox_context(ctx, |inner| ...)`) it opens a savepoint.
///   If `f` fails, the savepoint and the rows written in it are dropped; if it succeeds,
///   the rows join the enclosing context and are written at its commit.
/// * If `f` returns an error or panics, everything rolls back: the model writes and the
///   outbox rows alike.
///
/// `E` is the closure's error; it must accept this crate's [`Error`], so a closure that
/// returns `diesel_outbox::Error` can use `?` on diesel results too.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: cell } }
/// # }
/// # fn main() -> Result<(), diesel_outbox::Error> {
/// use diesel::{Connection, SqliteConnection};
/// use diesel_outbox::{outbox_context, run_migrations, CellOutbox};
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// run_migrations(&mut conn)?;
/// outbox_context(&mut conn, |ctx| {
///     let event_id = ctx.unique_object_identifier()?;
///     ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, event_id).payload("invited")?)?;
///     Ok::<_, diesel_outbox::Error>(())
/// })?;
/// # Ok(()) }
/// ```
pub fn outbox_context<H, R, E, F>(host: &mut H, f: F) -> Result<R, E>
where
    H: ContextHost + ?Sized,
    F: for<'tx> FnOnce(&mut OutboxContext<'tx, H::Connection>) -> Result<R, E>,
    E: From<Error>,
{
    let (conn, parent) = host.host_parts();
    let now = || chrono::Utc::now().naive_utc();
    run_in_transaction(conn, parent, &now, true, f).map(|(value, _)| value)
}

/// [`outbox_context`] on a connection, reporting what the outermost commit wrote. `now`
/// gives the rows' `date_added`; `flush` is the context's initial flush setting.
pub(crate) fn run_recorded<C, R, E, F>(
    conn: &mut C,
    now: &dyn Fn() -> NaiveDateTime,
    flush: bool,
    f: F,
) -> Result<(R, Option<Committed>), E>
where
    C: OutboxConnection,
    F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
    E: From<Error>,
{
    run_in_transaction(conn, None, now, flush, f)
}

fn run_in_transaction<C, R, E, F>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    now: &dyn Fn() -> NaiveDateTime,
    flush: bool,
    f: F,
) -> Result<(R, Option<Committed>), E>
where
    C: OutboxConnection,
    F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
    E: From<Error>,
{
    C::TransactionManager::begin_transaction(conn).map_err(Error::from)?;
    let mut ctx = OutboxContext {
        conn,
        buffer: OutboxBuffer::default(),
        flush,
    };
    // A panic must not leave the transaction open on a connection the caller keeps.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut ctx)));
    let OutboxContext {
        conn,
        mut buffer,
        flush,
    } = ctx;
    if !flush {
        buffer.disable_flush();
    }
    match outcome {
        Ok(Ok(value)) => {
            let committed = commit(conn, parent, buffer, now)?;
            Ok((value, committed))
        }
        Ok(Err(error)) => {
            rollback(conn);
            Err(error)
        }
        Err(payload) => {
            rollback(conn);
            panic::resume_unwind(payload)
        }
    }
}

fn commit<C: OutboxConnection>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    buffer: OutboxBuffer,
    now: &dyn Fn() -> NaiveDateTime,
) -> Result<Option<Committed>> {
    match parent {
        Some(parent) => {
            C::TransactionManager::commit_transaction(conn)?;
            parent.append(buffer);
            Ok(None)
        }
        None => {
            let touched = buffer.flush_shards();
            let saved = buffer.counts();
            if let Err(error) = insert_rows(conn, buffer, now()) {
                rollback(conn);
                return Err(error);
            }
            C::TransactionManager::commit_transaction(conn)?;
            // Diesel has no after-commit hook: the depth tells whether this was a real
            // COMMIT or the release of a savepoint inside someone else's transaction.
            let outermost = AnsiTransactionManager::transaction_manager_status_mut(conn)
                .transaction_depth()?
                .is_none();
            Ok(Some(Committed {
                touched,
                saved,
                outermost,
            }))
        }
    }
}

fn insert_rows<C: OutboxConnection>(
    conn: &mut C,
    buffer: OutboxBuffer,
    now: NaiveDateTime,
) -> Result<()> {
    let (cell, control) = buffer.into_new_rows(now);
    if !cell.is_empty() {
        conn.insert_cell_rows(&cell)?;
    }
    if !control.is_empty() {
        conn.insert_control_rows(&control)?;
    }
    Ok(())
}

fn rollback<C: Connection>(conn: &mut C) {
    if let Err(error) = C::TransactionManager::rollback_transaction(conn) {
        // The caller's own error (or panic) is what they need to see; diesel has marked
        // the connection broken, so its next use reports the failure too.
        tracing::error!(%error, "rolling back an outbox_context failed");
    }
}
