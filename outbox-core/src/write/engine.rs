//! The write engine: what the generated write methods call. Each writes the model's table
//! and records the outbox rows in the same context; the hidden path for generated code
//! only re-exports these. The model's own SQL runs as the library's statements: the guard
//! does not read it.

use super::context::OutboxContext;
#[cfg(feature = "async")]
use super::model::AsyncModelWrites;
use super::model::{ModelIdentity, ModelWrites, OutboxRows, ReplicatedCell, ReplicatedControl};
#[cfg(feature = "async")]
use crate::backend::asynchronous::AsyncOutboxConnection;
use crate::backend::guard;
#[cfg(feature = "async")]
use crate::backend::guard::Scope;
use crate::backend::OutboxConnection;
use crate::key::error::{Error, Result};
use crate::key::token::Token;
use crate::row::write::OutboxWrite;

/// [`OutboxRows`] for a cell model.
pub fn cell_rows_into<M: ReplicatedCell>(model: &M, out: &mut Vec<OutboxWrite>) -> Result<()> {
    out.push(model.outbox_row()?.into());
    Ok(())
}

/// [`OutboxRows`] for a control model.
pub fn control_rows_into<M: ReplicatedControl>(
    model: &M,
    out: &mut Vec<OutboxWrite>,
) -> Result<()> {
    out.extend(model.outbox_rows()?.into_iter().map(OutboxWrite::from));
    Ok(())
}

fn rows_of<'m, M: OutboxRows + 'm>(
    models: impl IntoIterator<Item = &'m M>,
) -> Result<Vec<OutboxWrite>> {
    let mut rows = Vec::new();
    for model in models {
        model.outbox_rows_into(&mut rows)?;
    }
    Ok(rows)
}

/// Checks `rows` before the model's table is written, so that a write whose outbox row
/// cannot be stored fails before it reaches the table.
fn check<C>(ctx: &OutboxContext<'_, C>, rows: &[OutboxWrite]) -> Result<()> {
    rows.iter().try_for_each(|row| ctx.check(row))
}

/// Records the rows of a table write that happened. If one cannot be recorded, the
/// context is poisoned: its commit rolls back rather than keep the write without its row,
/// even if the caller ignores this error.
fn record<C>(ctx: &mut OutboxContext<'_, C>, rows: Vec<OutboxWrite>) -> Result<()> {
    let recorded = rows.into_iter().try_for_each(|row| ctx.write(row));
    if let Err(error) = &recorded {
        ctx.poison(error);
    }
    recorded
}

fn per_statement<C: OutboxConnection, M: ModelWrites<C>>() -> usize {
    (C::MAX_BIND_PARAMS / M::COLUMNS.max(1)).max(1)
}

/// Inserts `models` (one statement per bind-limit chunk) and records their rows.
pub fn insert<C, M>(ctx: &mut OutboxContext<'_, C>, models: &[M]) -> Result<()>
where
    C: OutboxConnection,
    M: ModelWrites<C> + OutboxRows,
{
    let rows = rows_of(models)?;
    check(ctx, &rows)?;
    for chunk in models.chunks(per_statement::<C, M>()) {
        guard::as_library(ctx.connection(), |conn| {
            M::insert_rows(conn, chunk, Token::new())
        })?;
    }
    record(ctx, rows)
}

/// Updates `models` by primary key and records their rows; a model whose row does not
/// exist is an error.
pub fn update<C, M>(ctx: &mut OutboxContext<'_, C>, models: &[M]) -> Result<()>
where
    C: OutboxConnection,
    M: ModelWrites<C> + OutboxRows + ModelIdentity,
{
    let rows = rows_of(models)?;
    check(ctx, &rows)?;
    for model in models {
        let updated = guard::as_library(ctx.connection(), |conn| {
            M::update_row(conn, model, Token::new())
        })?;
        if updated == 0 {
            return Err(Error::ModelNotFound {
                table: M::TABLE,
                object_identifier: model.identity(),
            });
        }
    }
    record(ctx, rows)
}

/// Inserts or updates `models` (upsert on the primary key) and records their rows.
pub fn save<C, M>(ctx: &mut OutboxContext<'_, C>, models: &[M]) -> Result<()>
where
    C: OutboxConnection,
    M: ModelWrites<C> + OutboxRows,
{
    let rows = rows_of(models)?;
    check(ctx, &rows)?;
    for chunk in models.chunks(per_statement::<C, M>()) {
        guard::as_library(ctx.connection(), |conn| {
            M::upsert_rows(conn, chunk, Token::new())
        })?;
    }
    record(ctx, rows)
}

/// Deletes the objects `object_identifiers` and records an outbox row for each deleted
/// one, computed from the row as it was (so with the shard it had). Returns how many
/// existed.
pub fn delete<C, M>(ctx: &mut OutboxContext<'_, C>, object_identifiers: &[i64]) -> Result<usize>
where
    C: OutboxConnection,
    M: ModelWrites<C> + OutboxRows,
{
    let mut deleted = 0;
    for chunk in object_identifiers.chunks(C::MAX_BIND_PARAMS) {
        let gone = guard::as_library(ctx.connection(), |conn| {
            M::delete_rows(conn, chunk, Token::new())
        })?;
        deleted += gone.len();
        // The rows are computed from the deleted rows, so only after the DELETE.
        let rows = rows_of(&gone).inspect_err(|error| ctx.poison(error))?;
        record(ctx, rows)?;
    }
    Ok(deleted)
}

/// Awaits one of a model's own statements as the library's, to the guard of an async
/// connection.
#[cfg(feature = "async")]
macro_rules! as_library_async {
    ($ctx:expr, |$conn:ident| $write:expr) => {{
        let $conn = $ctx.connection();
        let saved = guard::enter_instrumentation($conn.instrumentation(), Scope::library);
        let outcome = $write.await;
        let $conn = $ctx.connection();
        guard::leave_instrumentation($conn.instrumentation(), saved);
        outcome
    }};
}

#[cfg(feature = "async")]
fn per_statement_async<C: AsyncOutboxConnection, M: AsyncModelWrites<C>>() -> usize {
    (C::MAX_BIND_PARAMS / M::COLUMNS.max(1)).max(1)
}

/// [`insert`] on a diesel-async connection: the same checks, statements and rows.
#[cfg(feature = "async")]
pub async fn insert_async<C, M>(ctx: &mut OutboxContext<'_, C>, models: &[M]) -> Result<()>
where
    C: AsyncOutboxConnection,
    M: AsyncModelWrites<C> + OutboxRows,
{
    let rows = rows_of(models)?;
    check(ctx, &rows)?;
    for chunk in models.chunks(per_statement_async::<C, M>()) {
        as_library_async!(ctx, |conn| M::insert_rows(conn, chunk, Token::new()))?;
    }
    record(ctx, rows)
}

/// [`update`] on a diesel-async connection.
#[cfg(feature = "async")]
pub async fn update_async<C, M>(ctx: &mut OutboxContext<'_, C>, models: &[M]) -> Result<()>
where
    C: AsyncOutboxConnection,
    M: AsyncModelWrites<C> + OutboxRows + ModelIdentity,
{
    let rows = rows_of(models)?;
    check(ctx, &rows)?;
    for model in models {
        let updated = as_library_async!(ctx, |conn| M::update_row(conn, model, Token::new()))?;
        if updated == 0 {
            return Err(Error::ModelNotFound {
                table: M::TABLE,
                object_identifier: model.identity(),
            });
        }
    }
    record(ctx, rows)
}

/// [`save`] on a diesel-async connection.
#[cfg(feature = "async")]
pub async fn save_async<C, M>(ctx: &mut OutboxContext<'_, C>, models: &[M]) -> Result<()>
where
    C: AsyncOutboxConnection,
    M: AsyncModelWrites<C> + OutboxRows,
{
    let rows = rows_of(models)?;
    check(ctx, &rows)?;
    for chunk in models.chunks(per_statement_async::<C, M>()) {
        as_library_async!(ctx, |conn| M::upsert_rows(conn, chunk, Token::new()))?;
    }
    record(ctx, rows)
}

/// [`delete`] on a diesel-async connection.
#[cfg(feature = "async")]
pub async fn delete_async<C, M>(
    ctx: &mut OutboxContext<'_, C>,
    object_identifiers: &[i64],
) -> Result<usize>
where
    C: AsyncOutboxConnection,
    M: AsyncModelWrites<C> + OutboxRows,
{
    let mut deleted = 0;
    for chunk in object_identifiers.chunks(C::MAX_BIND_PARAMS) {
        let gone = as_library_async!(ctx, |conn| M::delete_rows(conn, chunk, Token::new()))?;
        deleted += gone.len();
        // The rows are computed from the deleted rows, so only after the DELETE.
        let rows = rows_of(&gone).inspect_err(|error| ctx.poison(error))?;
        record(ctx, rows)?;
    }
    Ok(deleted)
}

/// Converts an object identifier to the primary key's type.
pub fn primary_key<K: TryFrom<i64>>(table: &'static str, object_identifier: i64) -> Result<K> {
    K::try_from(object_identifier).map_err(|_| Error::IdentifierOutOfRange {
        table,
        object_identifier,
    })
}
