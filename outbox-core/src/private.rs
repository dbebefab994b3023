//! The one path generated code reaches the runtime through. Not a public API.

pub use diesel;

pub use crate::backend::OutboxConnection;
pub use crate::category::{field_id, Identifier, NamedField, OutboxCategory, ShardOf};
pub use crate::context::OutboxContext;
pub use crate::error::{Error, Result};
pub use crate::model::{CellNames, ReplicatedCell, ReplicatedControl};
pub use crate::payload::JsonPayload;
pub use crate::row::OutboxWrite;

/// A replicated model's own SQL on the connection type `C`.
///
/// The derives implement it once per backend the build enables (so every statement is
/// type-checked against a concrete connection). Name it in a bound when you write code
/// generic over the connection: `fn f<C: OutboxConnection>(..) where Project: ModelWrites<C>`.
/// Its methods write the model's table only, without outbox rows: the generated write
/// methods (`insert`, `save`, ...) are what applications call.
pub trait ModelWrites<C>: Sized {
    /// Bind parameters per model row (its column count).
    const COLUMNS: usize;
    /// One multi-row INSERT of `models`.
    fn insert_rows(conn: &mut C, models: &[Self]) -> Result<()>;
    /// UPDATE of one model by primary key; the number of rows changed.
    fn update_row(conn: &mut C, model: &Self) -> Result<usize>;
    /// One multi-row INSERT ... ON CONFLICT (primary key) DO UPDATE.
    fn upsert_rows(conn: &mut C, models: &[Self]) -> Result<()>;
    /// DELETE by primary keys, returning the deleted rows as they were.
    fn delete_rows(conn: &mut C, object_identifiers: &[i64]) -> Result<Vec<Self>>;
    /// SELECT by primary key.
    fn load_row(conn: &mut C, object_identifier: i64) -> Result<Option<Self>>;
}

/// The outbox rows a write of a model records, whichever silo it belongs to.
pub trait OutboxRows {
    /// Appends the rows to `out`.
    fn outbox_rows_into(&self, out: &mut Vec<OutboxWrite>) -> Result<()>;
}

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

fn record<C: OutboxConnection>(
    ctx: &mut OutboxContext<'_, C>,
    rows: Vec<OutboxWrite>,
) -> Result<()> {
    rows.into_iter().try_for_each(|row| ctx.write(row))
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
    for chunk in models.chunks(per_statement::<C, M>()) {
        M::insert_rows(ctx.connection(), chunk)?;
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
    for model in models {
        if M::update_row(ctx.connection(), model)? == 0 {
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
    for chunk in models.chunks(per_statement::<C, M>()) {
        M::upsert_rows(ctx.connection(), chunk)?;
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
        let gone = M::delete_rows(ctx.connection(), chunk)?;
        deleted += gone.len();
        let rows = rows_of(&gone)?;
        record(ctx, rows)?;
    }
    Ok(deleted)
}

/// Loads one object by identifier (used by the replicated receivers).
pub fn load<C, M>(conn: &mut C, object_identifier: i64) -> Result<Option<M>>
where
    M: ModelWrites<C>,
{
    M::load_row(conn, object_identifier)
}

/// A model's table name and object identifier, for error messages.
pub trait ModelIdentity {
    /// The model's table.
    const TABLE: &'static str;
    /// The model's object identifier.
    fn identity(&self) -> i64;
}

/// Converts an object identifier to the primary key's type.
pub fn primary_key<K: TryFrom<i64>>(table: &'static str, object_identifier: i64) -> Result<K> {
    K::try_from(object_identifier).map_err(|_| Error::IdentifierOutOfRange {
        table,
        object_identifier,
    })
}

/// Expands `$mac!(ConnectionType);` once per backend this build enables.
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_for_each_connection {
    ($mac:ident) => {
        $crate::__outbox_if_sqlite! { $mac!($crate::__private::diesel::sqlite::SqliteConnection); }
        $crate::__outbox_if_postgres! { $mac!($crate::__private::diesel::pg::PgConnection); }
    };
}

#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_sqlite {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "sqlite"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_sqlite {
    ($($tokens:tt)*) => {};
}

#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_postgres {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_postgres {
    ($($tokens:tt)*) => {};
}
