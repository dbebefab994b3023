//! `outbox_context`: the transaction in which outbox rows are written.

use std::panic::{self, AssertUnwindSafe};

use chrono::NaiveDateTime;
use diesel::connection::TransactionManager;
use diesel::Connection;

use super::buffer::OutboxBuffer;
use crate::backend::guard::{self, Scope};
use crate::backend::transaction;
use crate::backend::OutboxConnection;
use crate::key::error::{Error, Result};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;
use crate::row::insert::{NewCellOutbox, NewControlOutbox};
use crate::row::write::OutboxWrite;

/// The default largest payload a context accepts: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Whether a context that committed outbox rows no flush will deliver wakes listening
/// workers by default (PostgreSQL's NOTIFY, one per transaction; nothing on other
/// backends). See [`OutboxBuilder::notify_on_commit`](crate::OutboxBuilder::notify_on_commit).
pub const DEFAULT_NOTIFY: bool = true;

/// The handle an [`outbox_context`] closure gets: the open transaction plus the rows
/// written in it so far.
///
/// It cannot be built outside this crate, and the closure's higher-ranked lifetime keeps
/// it from escaping: replicated models can therefore only be written inside a
/// transaction that also records their outbox rows.
///
/// The same type serves the sync connections ([`OutboxConnection`]) and, with the feature
/// `async`, diesel-async's (`AsyncOutboxConnection`, through `outbox_context_async`).
pub struct OutboxContext<'tx, C> {
    pub(crate) conn: &'tx mut C,
    pub(crate) buffer: OutboxBuffer,
    pub(crate) flush: bool,
    pub(crate) max_payload_bytes: usize,
    /// Whether the commit wakes listening workers for rows no flush will deliver.
    pub(crate) notify: bool,
    /// Why a model write in this context has no outbox row: its commit rolls back.
    pub(crate) poisoned: Option<String>,
    /// What to do with the connection if the context is dropped before its transaction
    /// ended: an async context's future dropped between BEGIN and COMMIT (see
    /// `outbox_context_async`). `None` for sync contexts, and once the transaction ended.
    pub(crate) abandon: Option<Abandon<C>>,
}

/// An async context's mark for a transaction it can no longer end: called with the
/// connection and the guard's scope from before the context.
pub(crate) struct Abandon<C> {
    pub(crate) hook: fn(&mut C, Option<crate::backend::guard::Scope>),
    pub(crate) scope: Option<crate::backend::guard::Scope>,
}

impl<C> Drop for OutboxContext<'_, C> {
    fn drop(&mut self) {
        if let Some(Abandon { hook, scope }) = self.abandon.take() {
            hook(self.conn, scope);
        }
    }
}

impl<C> OutboxContext<'_, C> {
    /// Records an outbox row. It is buffered and inserted, with every other row of the
    /// transaction, in one multi-row INSERT just before the outermost COMMIT. A row with
    /// the same coalescing key as an earlier one in this transaction replaces it.
    ///
    /// Nothing is buffered when the row cannot be stored on every backend, and the error
    /// names the row: [`Error::InvalidCellName`] for a control row's cell name (empty,
    /// too long, or holding a control character), [`Error::Payload`] for a payload over
    /// the context's size limit (see [`set_max_payload_bytes`](Self::set_max_payload_bytes))
    /// or holding the character U+0000 (PostgreSQL's `jsonb` cannot store it).
    pub fn write(&mut self, row: impl Into<OutboxWrite>) -> Result<()> {
        let row = row.into();
        row.validate(self.max_payload_bytes)?;
        self.buffer.push(row);
        Ok(())
    }

    /// Checks that `row` can be stored, as [`write`](Self::write) does, without
    /// recording it.
    pub(crate) fn check(&self, row: &OutboxWrite) -> Result<()> {
        row.validate(self.max_payload_bytes)
    }

    /// Marks the context so that it cannot commit: a model's table was written and its
    /// outbox row could not be recorded.
    pub(crate) fn poison(&mut self, error: &Error) {
        self.poisoned.get_or_insert_with(|| error.to_string());
    }

    /// The largest payload, in bytes of JSON, that [`write`](Self::write) accepts (default
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`], 1 MiB); contexts nested in this one start with it.
    /// A payload is delivered with every retry and held in memory by the drain: carry a
    /// key to large data rather than the data.
    pub fn set_max_payload_bytes(&mut self, bytes: usize) {
        self.max_payload_bytes = bytes;
    }

    /// The connection, inside this context's transaction, for ordinary diesel queries.
    pub fn connection(&mut self) -> &mut C {
        self.conn
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

    /// Whether this transaction's commit wakes the workers listening on PostgreSQL for
    /// the rows no flush will deliver (default [`DEFAULT_NOTIFY`], or the outbox's
    /// [`notify_on_commit`](crate::OutboxBuilder::notify_on_commit)). Only the outermost
    /// context commits: in a nested one this changes nothing.
    pub fn set_notify(&mut self, notify: bool) {
        self.notify = notify;
    }
}

impl<C: OutboxConnection> OutboxContext<'_, C> {
    /// Mints an object identifier that no other call returns, for rows that must never
    /// coalesce (an audit event is its own object). Backed by a sequence on PostgreSQL,
    /// a counter table on SQLite and `UUID_SHORT()` on MySQL (unique while the server's
    /// `server_id` is unique and its clock is not set back across a restart; values are
    /// large and not consecutive); like a sequence, a value taken by a transaction that
    /// rolls back may or may not be handed out again, but never to two committed rows.
    pub fn unique_object_identifier(&mut self) -> Result<i64> {
        let minted = guard::as_library(self.conn, |conn| conn.next_object_identifier(Token::new()));
        Ok(minted?)
    }
}

impl<'tx, C> OutboxContext<'tx, C> {
    /// A context on `conn`, started with `settings`.
    pub(crate) fn start(conn: &'tx mut C, settings: &Settings<'_>) -> Self {
        OutboxContext {
            conn,
            buffer: OutboxBuffer::default(),
            flush: settings.flush,
            max_payload_bytes: settings.max_payload_bytes,
            notify: settings.notify,
            poisoned: None,
            abandon: None,
        }
    }

    /// Takes what the closure left: the rows (without flush if the context turned it
    /// off), whether to notify, and why the context cannot commit, if it cannot.
    pub(crate) fn finish(&mut self) -> (OutboxBuffer, bool, Option<String>) {
        let mut buffer = std::mem::take(&mut self.buffer);
        if !self.flush {
            buffer.disable_flush();
        }
        (buffer, self.notify, self.poisoned.take())
    }
}

/// What the outermost commit of a context wrote; returned to [`Outbox::context`] for the
/// flush and the saved-rows counter.
pub(crate) struct Committed {
    /// Shards whose rows asked for a flush.
    pub(crate) touched: Vec<ShardKey>,
    /// Rows inserted per table and category.
    pub(crate) saved: Vec<(OutboxTable, i32, u64)>,
    /// Whether the transaction really committed (no enclosing transaction is open).
    pub(crate) outermost: bool,
}

/// Something an [`outbox_context`] can be opened on: a connection (a new transaction) or
/// an enclosing [`OutboxContext`] (a savepoint whose rows go to the enclosing context).
///
/// Sealed: implemented for every [`OutboxConnection`] and for [`OutboxContext`] only (an
/// implementation of its own would receive the runtime's token).
pub trait ContextHost: sealed::Sealed {
    /// The connection type.
    type Connection: OutboxConnection;

    #[doc(hidden)]
    fn host_parts(&mut self, token: Token<'_>) -> HostParts<'_, Self::Connection>;
}

/// What a context is opened on: the connection, and the enclosing context's buffer and
/// payload limit, if there is one.
#[doc(hidden)]
pub struct HostParts<'h, C> {
    pub(crate) conn: &'h mut C,
    pub(crate) parent: Option<(&'h mut OutboxBuffer, usize)>,
}

impl<'h, C> HostParts<'h, C> {
    /// A new transaction on `conn`.
    pub(crate) fn connection(conn: &'h mut C) -> Self {
        HostParts { conn, parent: None }
    }

    /// A savepoint inside `context`, whose rows go to the context's buffer.
    pub(crate) fn nested(context: &'h mut OutboxContext<'_, C>) -> Self {
        HostParts {
            conn: &mut *context.conn,
            parent: Some((&mut context.buffer, context.max_payload_bytes)),
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

impl<C: OutboxConnection> sealed::Sealed for C {}
impl<C: OutboxConnection> sealed::Sealed for OutboxContext<'_, C> {}

impl<C: OutboxConnection> ContextHost for C {
    type Connection = C;

    fn host_parts(&mut self, _token: Token<'_>) -> HostParts<'_, C> {
        HostParts::connection(self)
    }
}

impl<C: OutboxConnection> ContextHost for OutboxContext<'_, C> {
    type Connection = C;

    fn host_parts(&mut self, _token: Token<'_>) -> HostParts<'_, C> {
        HostParts::nested(self)
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
/// let mut conn = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:")?;
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
    let HostParts { conn, parent } = host.host_parts(Token::new());
    let now = || chrono::Utc::now().naive_utc();
    let (parent, max_payload_bytes) = match parent {
        Some((buffer, limit)) => (Some(buffer), limit),
        None => (None, DEFAULT_MAX_PAYLOAD_BYTES),
    };
    let settings = Settings {
        now: &now,
        flush: true,
        flushes: false,
        max_payload_bytes,
        notify: DEFAULT_NOTIFY,
    };
    run_in_transaction(conn, parent, &settings, f).map(|(value, _)| value)
}

/// How a context starts: where `date_added` comes from, whether its rows ask for a flush
/// and whether the caller flushes after commit, its payload limit, and whether its commit
/// wakes listening workers.
pub(crate) struct Settings<'s> {
    pub(crate) now: &'s (dyn Fn() -> NaiveDateTime + Sync),
    /// The rows ask for a flush (unless a context or row turns it off).
    pub(crate) flush: bool,
    /// The caller flushes the rows that ask for it once the outermost transaction has
    /// committed ([`Outbox::context`](crate::Outbox::context)).
    pub(crate) flushes: bool,
    pub(crate) max_payload_bytes: usize,
    /// Wake listening workers for rows no flush will deliver.
    pub(crate) notify: bool,
}

/// [`outbox_context`] on a connection, reporting what the outermost commit wrote.
pub(crate) fn run_recorded<C, R, E, F>(
    conn: &mut C,
    settings: &Settings<'_>,
    f: F,
) -> Result<(R, Option<Committed>), E>
where
    C: OutboxConnection,
    F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
    E: From<Error>,
{
    run_in_transaction(conn, None, settings, f)
}

/// The context's own statements (BEGIN, the outbox rows, COMMIT) are the library's; its
/// closure runs inside the context, as far as the guard is concerned.
fn run_in_transaction<C, R, E, F>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    settings: &Settings<'_>,
    f: F,
) -> Result<(R, Option<Committed>), E>
where
    C: OutboxConnection,
    F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
    E: From<Error>,
{
    guard::as_library(conn, |conn| run_as_library(conn, parent, settings, f))
}

fn run_as_library<C, R, E, F>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    settings: &Settings<'_>,
    f: F,
) -> Result<(R, Option<Committed>), E>
where
    C: OutboxConnection,
    F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
    E: From<Error>,
{
    // Where to unwind to: the closure may open transactions of its own, and a panic
    // inside one leaves them open.
    let depth = transaction::depth(conn).map_err(Error::from)?;
    conn.begin_context_transaction(Token::new())
        .map_err(Error::from)?;
    let mut ctx = OutboxContext::start(conn, settings);
    // A panic must not leave a transaction open on a connection the caller keeps.
    let library = guard::enter(ctx.conn, Scope::in_context);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut ctx)));
    guard::leave(ctx.conn, library);
    let (buffer, notify, poisoned) = ctx.finish();
    let conn = &mut *ctx.conn;
    match outcome {
        Ok(Ok(_)) if poisoned.is_some() => {
            rollback(conn, depth);
            let reason = poisoned.unwrap_or_default();
            Err(Error::WriteWithoutOutboxRow { reason }.into())
        }
        Ok(Ok(value)) => {
            let settings = Settings {
                notify,
                ..*settings
            };
            let committed = commit(conn, parent, buffer, depth, &settings)?;
            Ok((value, committed))
        }
        Ok(Err(error)) => {
            rollback(conn, depth);
            Err(error)
        }
        Err(payload) => {
            rollback(conn, depth);
            panic::resume_unwind(payload)
        }
    }
}

fn commit<C: OutboxConnection>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    buffer: OutboxBuffer,
    depth: u32,
    settings: &Settings<'_>,
) -> Result<Option<Committed>> {
    // The closure returned with its own transactions closed, unless it leaked one: close
    // them before ours, or our COMMIT would only release a savepoint.
    if let Err(error) = transaction::unwind_to(conn, depth + 1) {
        rollback(conn, depth);
        return Err(error.into());
    }
    match parent {
        Some(parent) => {
            C::TransactionManager::commit_transaction(conn)?;
            parent.append(buffer);
            Ok(None)
        }
        None => {
            let (rows, committed) = RowsToInsert::plan(buffer, depth, settings);
            if let Err(error) = insert_rows(conn, rows) {
                rollback(conn, depth);
                return Err(error);
            }
            C::TransactionManager::commit_transaction(conn)?;
            Ok(Some(committed))
        }
    }
}

/// What the outermost commit of a context inserts: the buffered rows, split by table, and
/// whether to wake listening workers. The rule is the same for every executor.
pub(crate) struct RowsToInsert {
    pub(crate) cell: Vec<NewCellOutbox>,
    pub(crate) control: Vec<NewControlOutbox>,
    /// Wake listening workers once the transaction commits (inside an enclosing
    /// transaction: once that commits).
    pub(crate) notify: bool,
}

impl RowsToInsert {
    /// The rows of `buffer` to insert before the COMMIT of a context that began at
    /// `depth`, and what that commit will have written.
    pub(crate) fn plan(
        buffer: OutboxBuffer,
        depth: u32,
        settings: &Settings<'_>,
    ) -> (RowsToInsert, Committed) {
        let touched = buffer.flush_shards();
        let saved = buffer.counts();
        // Rows this process flushes right after the commit need no worker: NOTIFY only
        // for the others (and for everything inside an enclosing transaction, which
        // flushes nothing).
        let flushed = settings.flushes && depth == 0 && buffer.all_flush();
        let (cell, control) = buffer.into_new_rows((settings.now)());
        let notify = settings.notify && !flushed && !(cell.is_empty() && control.is_empty());
        // Diesel has no after-commit hook: the depth tells whether this is a real COMMIT
        // or the release of a savepoint inside someone else's transaction.
        let committed = Committed {
            touched,
            saved,
            outermost: depth == 0,
        };
        (
            RowsToInsert {
                cell,
                control,
                notify,
            },
            committed,
        )
    }
}

/// Inserts the buffered rows and, if asked, wakes listening workers.
fn insert_rows<C: OutboxConnection>(conn: &mut C, rows: RowsToInsert) -> Result<()> {
    if !rows.cell.is_empty() {
        conn.insert_cell_rows(Token::new(), &rows.cell)?;
    }
    if !rows.control.is_empty() {
        conn.insert_control_rows(Token::new(), &rows.control)?;
    }
    if rows.notify {
        conn.notify_rows_written(Token::new())?;
    }
    Ok(())
}

/// Rolls back everything opened since the context began (`depth` was open before it).
fn rollback<C: Connection<TransactionManager = diesel::connection::AnsiTransactionManager>>(
    conn: &mut C,
    depth: u32,
) {
    if let Err(error) = transaction::unwind_to(conn, depth) {
        // The caller's own error (or panic) is what they need to see; diesel has marked
        // the connection broken, so its next use reports the failure too.
        tracing::error!(%error, "rolling back an outbox_context failed");
    }
}
