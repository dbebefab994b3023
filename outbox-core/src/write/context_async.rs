//! `outbox_context_async` (feature `async`): the transaction in which outbox rows are
//! written on diesel-async's connections, with the sync context's rules.
//!
//! The rules are not written again: the buffer (coalescing), the rows' validation, the
//! poisoning of a write without its row, and the plan of the commit
//! ([`RowsToInsert`]) are the sync context's; the statements are the backends'
//! (`backend::asynchronous`). What is this module's own is the order of the awaits, and
//! cancellation: a future dropped between BEGIN and the end of COMMIT leaves its
//! transaction open on the connection, which diesel-async cannot know; the context marks
//! it ([`Abandon`]), the next context on the connection rolls it back, and pools discard
//! the connection.

use std::future::{poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use super::buffer::OutboxBuffer;
use super::context::{
    Abandon, Committed, HostParts, OutboxContext, RowsToInsert, Settings,
    DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_NOTIFY,
};
use crate::backend::asynchronous::{self as transaction, AsyncOutboxConnection};
use crate::backend::guard::{self, Scope};
use crate::key::error::{Error, Result};
use crate::key::token::Token;

/// The bound through which [`outbox_context_async`] asks the closure's future to be
/// `Send`: `AsyncFnOnce` cannot name its future on stable Rust. Implemented for every
/// async closure (`async |ctx| { .. }`); you never implement or name it. (diesel-async's
/// `AsyncConnection::transaction` uses the same device.)
pub trait AsyncContextFn<T, R>:
    AsyncFnOnce(T) -> R + FnOnce(T) -> <Self as AsyncContextFn<T, R>>::Fut
{
    /// The closure's future.
    type Fut: Future<Output = R>;
}

impl<F, T, Fut, R> AsyncContextFn<T, R> for F
where
    F: AsyncFnOnce(T) -> R + FnOnce(T) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// Something an [`outbox_context_async`] can be opened on: a diesel-async connection (a
/// new transaction) or an enclosing async [`OutboxContext`] (a savepoint whose rows go to
/// the enclosing context).
///
/// Sealed: implemented for every [`AsyncOutboxConnection`] and for [`OutboxContext`] on
/// one only.
pub trait AsyncContextHost: sealed::Sealed + Send {
    /// The connection type.
    type Connection: AsyncOutboxConnection;

    #[doc(hidden)]
    fn async_host_parts(&mut self, token: Token<'_>) -> HostParts<'_, Self::Connection>;
}

mod sealed {
    pub trait Sealed {}
}

impl<C: AsyncOutboxConnection> sealed::Sealed for C {}
impl<C: AsyncOutboxConnection> sealed::Sealed for OutboxContext<'_, C> {}

impl<C: AsyncOutboxConnection> AsyncContextHost for C {
    type Connection = C;

    fn async_host_parts(&mut self, _token: Token<'_>) -> HostParts<'_, C> {
        HostParts::connection(self)
    }
}

impl<C: AsyncOutboxConnection> AsyncContextHost for OutboxContext<'_, C> {
    type Connection = C;

    fn async_host_parts(&mut self, _token: Token<'_>) -> HostParts<'_, C> {
        HostParts::nested(self)
    }
}

impl<C: AsyncOutboxConnection> OutboxContext<'_, C> {
    /// [`unique_object_identifier`](OutboxContext::unique_object_identifier) on a
    /// diesel-async connection.
    pub async fn unique_object_identifier_async(&mut self) -> Result<i64> {
        let library = guard::enter_instrumentation(self.conn.instrumentation(), Scope::library);
        let minted = self.conn.next_object_identifier(Token::new()).await;
        guard::leave_instrumentation(self.conn.instrumentation(), library);
        Ok(minted?)
    }
}

/// [`outbox_context`](crate::outbox_context) on a diesel-async connection (feature
/// `async`): runs `f` in a transaction that records outbox rows, with the same rules.
///
/// * On a connection it opens a transaction (or a savepoint, if the connection is already
///   in one that is not abandoned, see below). When `f` succeeds, the buffered rows are
///   inserted in one multi-row INSERT (split only at the backend's limits) and the
///   transaction commits. A row with the coalescing key of an earlier one replaces it.
/// * On an enclosing context (`outbox_context_async(ctx, async |inner| ..)`) it opens a
///   savepoint; the rows join the enclosing context if `f` succeeds.
/// * If `f` returns an error or panics, everything rolls back; the panic goes on once
///   the rollback is done.
/// * **Cancellation.** If the returned future is dropped before it finished (a request
///   timeout, a `select!`), its transaction is left open on the connection, and the
///   connection is marked: the next `outbox_context_async` on it rolls that transaction
///   back before it begins its own (instead of opening a savepoint inside it, whose rows
///   would be lost with it), and bb8 and deadpool (through diesel-async's pools) do not
///   hand the connection out again. If it was dropped in the middle of diesel-async's
///   BEGIN, COMMIT or ROLLBACK, the next context refuses the connection with
///   [`Error::AbandonedConnection`]: nobody knows the server's side. On
///   `SyncConnectionWrapper<SqliteConnection>` a future dropped while a statement runs
///   on the wrapper's thread is marked once that statement ends.
///
/// The closure receives the context by `&mut` for a higher-ranked lifetime, as the sync
/// one: it cannot keep, return or spawn it, and the derives' `*_async` writes take nothing
/// else. The future is `Send` (axum handlers, `tokio::spawn`) when the closure's is.
///
/// ```no_run
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: cell } }
/// # }
/// # #[cfg(feature = "postgres")]
/// # async fn example() -> Result<(), diesel_outbox::Error> {
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
/// use diesel_outbox::{outbox_context_async, CellOutbox};
///
/// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// outbox_context_async(&mut conn, async |ctx| {
///     let event_id = ctx.unique_object_identifier_async().await?;
///     ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, event_id).payload("invited")?)?;
///     Ok::<_, diesel_outbox::Error>(())
/// })
/// .await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
pub async fn outbox_context_async<H, R, E, F>(host: &mut H, f: F) -> Result<R, E>
where
    H: AsyncContextHost + ?Sized,
    for<'c, 'tx> F: AsyncFnOnce(&'c mut OutboxContext<'tx, H::Connection>) -> Result<R, E>
        + AsyncContextFn<&'c mut OutboxContext<'tx, H::Connection>, Result<R, E>, Fut: Send>
        + Send,
    R: Send,
    E: From<Error> + Send,
{
    let HostParts { conn, parent } = host.async_host_parts(Token::new());
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
    run_async(conn, parent, &settings, f)
        .await
        .map(|(value, _)| value)
}

/// The context on a connection, reporting what the outermost commit wrote (for
/// `Outbox::context_async`). Its own statements are the library's to the guard; the
/// closure runs inside the context.
pub(crate) async fn run_async<C, R, E, F>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    settings: &Settings<'_>,
    f: F,
) -> Result<(R, Option<Committed>), E>
where
    C: AsyncOutboxConnection,
    for<'c, 'tx> F: AsyncFnOnce(&'c mut OutboxContext<'tx, C>) -> Result<R, E>
        + AsyncContextFn<&'c mut OutboxContext<'tx, C>, Result<R, E>, Fut: Send>
        + Send,
    R: Send,
    E: From<Error> + Send,
{
    let outer = guard::enter_instrumentation(conn.instrumentation(), Scope::library);
    let started = start(conn, parent.is_none()).await;
    let depth = match started {
        Ok(depth) => depth,
        Err(error) => {
            guard::leave_instrumentation(conn.instrumentation(), outer);
            return Err(error.into());
        }
    };
    let mut ctx = OutboxContext::start(conn, settings);
    // From here until the transaction ended, dropping the context marks the connection.
    ctx.abandon = Some(Abandon {
        hook: abandon::<C>,
        scope: outer,
    });
    if let Err(error) = ctx.conn.begin_context_transaction(Token::new()).await {
        // diesel-async rolled nothing forward: the depth is what it was.
        ctx.abandon = None;
        guard::leave_instrumentation(ctx.conn.instrumentation(), outer);
        return Err(Error::from(error).into());
    }
    let inside = guard::enter_instrumentation(ctx.conn.instrumentation(), Scope::in_context);
    let outcome = {
        let mut future = pin!(f(&mut ctx));
        // A panic must not leave a transaction open on a connection the caller keeps.
        poll_fn(
            |cx| match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(payload) => Poll::Ready(Err(payload)),
            },
        )
        .await
    };
    guard::leave_instrumentation(ctx.conn.instrumentation(), inside);
    let (buffer, notify, poisoned) = ctx.finish();
    let result = match outcome {
        Ok(Ok(_)) if poisoned.is_some() => {
            rollback(ctx.conn, depth).await;
            let reason = poisoned.unwrap_or_default();
            Err(Error::WriteWithoutOutboxRow { reason }.into())
        }
        Ok(Ok(value)) => {
            let settings = Settings {
                notify,
                ..*settings
            };
            match commit(ctx.conn, parent, buffer, depth, &settings).await {
                Ok(committed) => Ok((value, committed)),
                Err(error) => Err(error.into()),
            }
        }
        Ok(Err(error)) => {
            rollback(ctx.conn, depth).await;
            Err(error)
        }
        Err(payload) => {
            rollback(ctx.conn, depth).await;
            ctx.abandon = None;
            guard::leave_instrumentation(ctx.conn.instrumentation(), outer);
            panic::resume_unwind(payload)
        }
    };
    ctx.abandon = None;
    guard::leave_instrumentation(ctx.conn.instrumentation(), outer);
    result
}

/// Before BEGIN: on a connection (not inside an enclosing context), rolls back the
/// transaction an abandoned context left; the depth the context starts from.
async fn start<C: AsyncOutboxConnection>(conn: &mut C, on_connection: bool) -> Result<u32> {
    if on_connection && transaction::is_abandoned(conn) {
        if transaction::roll_back_abandoned(conn).await.is_err() {
            return Err(Error::AbandonedConnection {
                backend: C::BACKEND_NAME,
            });
        }
        tracing::warn!(
            backend = C::BACKEND_NAME,
            "an outbox_context_async future was dropped before its transaction ended: \
             its transaction was rolled back"
        );
    }
    Ok(transaction::depth(conn)?)
}

/// The mark an async context leaves when it is dropped before its transaction ended (see
/// [`transaction::mark_abandoned`]); the guard's scope goes back to what it was.
fn abandon<C: AsyncOutboxConnection>(conn: &mut C, scope: Option<Scope>) {
    let mark = |conn: &mut C| {
        transaction::mark_abandoned(conn);
        guard::leave_instrumentation(conn.instrumentation(), scope);
    };
    if std::thread::panicking() {
        // Dropped while unwinding: a second panic would abort, so only what cannot panic.
        if C::BACKEND_NAME != "SQLite" {
            mark(conn);
        } else {
            conn.mark_abandoned_later(Token::new());
        }
        return;
    }
    // SQLite's wrapper cannot reach its connection while its thread runs a statement.
    if panic::catch_unwind(AssertUnwindSafe(|| mark(conn))).is_err() {
        conn.mark_abandoned_later(Token::new());
    }
}

async fn commit<C: AsyncOutboxConnection>(
    conn: &mut C,
    parent: Option<&mut OutboxBuffer>,
    buffer: OutboxBuffer,
    depth: u32,
    settings: &Settings<'_>,
) -> Result<Option<Committed>> {
    // The closure returned with its own transactions closed, unless it leaked one: close
    // them before ours, or our COMMIT would only release a savepoint.
    if let Err(error) = transaction::unwind_to(conn, depth + 1).await {
        rollback(conn, depth).await;
        return Err(error.into());
    }
    match parent {
        Some(parent) => {
            transaction::commit(conn).await?;
            parent.append(buffer);
            Ok(None)
        }
        None => {
            let (rows, committed) = RowsToInsert::plan(buffer, depth, settings);
            if let Err(error) = insert_rows(conn, rows).await {
                rollback(conn, depth).await;
                return Err(error);
            }
            transaction::commit(conn).await?;
            Ok(Some(committed))
        }
    }
}

async fn insert_rows<C: AsyncOutboxConnection>(conn: &mut C, rows: RowsToInsert) -> Result<()> {
    let RowsToInsert {
        cell,
        control,
        notify,
    } = rows;
    if !cell.is_empty() {
        conn.insert_cell_rows(Token::new(), cell).await?;
    }
    if !control.is_empty() {
        conn.insert_control_rows(Token::new(), control).await?;
    }
    if notify {
        conn.notify_rows_written(Token::new()).await?;
    }
    Ok(())
}

/// Rolls back everything opened since the context began (`depth` was open before it).
async fn rollback<C: AsyncOutboxConnection>(conn: &mut C, depth: u32) {
    if let Err(error) = transaction::unwind_to(conn, depth).await {
        // The caller's own error (or panic) is what they need to see; diesel has marked
        // the connection broken, so its next use reports the failure too.
        tracing::error!(%error, "rolling back an outbox_context_async failed");
    }
}
