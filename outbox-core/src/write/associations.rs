//! Replicated models in diesel's associations: readable, never a write target.
//!
//! diesel's `Identifiable` serves two masters: associations (`belonging_to`, `grouped_by`,
//! a child's `#[diesel(belongs_to(Parent))]`), which read, and `diesel::update(&model)` /
//! `diesel::delete(&model)`, which write the model's row with no outbox row. The derives
//! implement `HasTable` and `Identifiable` for every replicated model (deriving them too
//! is a conflict), with a table type of their own, [`ReplicatedTable`]:
//!
//! * reads go to the model's table: `HasTable::table()` filters and selects as the
//!   `table!` does, and a parent's `Identifiable` only gives its key;
//! * the write paths do not compile: `update(&model)` and `delete(&model)` look the row
//!   up with `find` on the table's primary key, which [`ReplicatedKey`] refuses (the error
//!   says what to do), and a statement on [`ReplicatedTable`] itself cannot be built.

use std::marker::PhantomData;

use diesel::expression::{
    is_aggregate, AppearsOnTable, Expression, SelectableExpression, ValidGrouping,
};
use diesel::expression_methods::EqAll;
use diesel::query_builder::AsQuery;
use diesel::query_source::{QuerySource, Table};
use diesel::sql_types::Bool;

/// The table a replicated model's `HasTable` names: the model's `table!`, for reads only.
/// Filtering and selecting from it (`Model::table().filter(..)`, a child's
/// `belonging_to`) query the model's table; `find` on it, and so `diesel::update(&model)`
/// and `diesel::delete(&model)`, do not compile.
#[derive(Clone, Copy, Debug, Default, diesel::query_builder::QueryId)]
pub struct ReplicatedTable<T>(T);

impl<T> ReplicatedTable<T> {
    /// The model's table, read-only.
    pub fn new(table: T) -> Self {
        ReplicatedTable(table)
    }
}

/// The primary key of a [`ReplicatedTable`]: it appears in no query, and comparing it
/// with a key (`find`) is refused.
#[derive(Debug)]
pub struct ReplicatedKey<T>(PhantomData<T>);

impl<T> Clone for ReplicatedKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ReplicatedKey<T> {}

/// The source a statement on a [`ReplicatedTable`] would name: it has no SQL, so none can
/// run. The model's table is written through an outbox context.
#[derive(Clone, Copy, Debug)]
pub struct WrittenThroughAnOutboxContext;

mod sealed {
    pub trait Sealed {}
}

/// What `diesel::update(&model)` and `diesel::delete(&model)` would need of a replicated
/// model's key, and never get.
#[diagnostic::on_unimplemented(
    message = "a replicated model is not written with `diesel::update(&model)` or `diesel::delete(&model)`: they record no outbox row",
    label = "write it with its methods in an outbox context: `model.update(ctx)`, `model.delete(ctx)`, `Model::delete_by_id(ctx, id)`",
    note = "the model's `Identifiable` (from its replicated derive) serves associations, which read"
)]
pub trait UpdatedThroughAnOutboxContext: sealed::Sealed {
    /// The comparison `find` would build.
    type Comparison: Expression<SqlType = Bool>;
    /// Builds it.
    fn compare(self) -> Self::Comparison;
}

impl<T: Table> Expression for ReplicatedKey<T> {
    type SqlType = <T::PrimaryKey as Expression>::SqlType;
}

impl<T: Table> AppearsOnTable<ReplicatedTable<T>> for ReplicatedKey<T> {}

impl<T: Table> SelectableExpression<ReplicatedTable<T>> for ReplicatedKey<T> {}

impl<T: Table> ValidGrouping<()> for ReplicatedKey<T> {
    type IsAggregate = is_aggregate::Never;
}

impl<T: Table, Key: UpdatedThroughAnOutboxContext> EqAll<Key> for ReplicatedKey<T> {
    type Output = Key::Comparison;

    fn eq_all(self, key: Key) -> Key::Comparison {
        key.compare()
    }
}

impl<T: Table> QuerySource for ReplicatedTable<T> {
    type FromClause = WrittenThroughAnOutboxContext;
    type DefaultSelection = ReplicatedKey<T>;

    fn from_clause(&self) -> WrittenThroughAnOutboxContext {
        WrittenThroughAnOutboxContext
    }

    fn default_selection(&self) -> ReplicatedKey<T> {
        ReplicatedKey(PhantomData)
    }
}

impl<T: Table> AsQuery for ReplicatedTable<T> {
    type SqlType = T::SqlType;
    type Query = T::Query;

    fn as_query(self) -> T::Query {
        self.0.as_query()
    }
}

impl<T: Table> Table for ReplicatedTable<T> {
    type PrimaryKey = ReplicatedKey<T>;
    type AllColumns = ReplicatedKey<T>;

    fn primary_key(&self) -> ReplicatedKey<T> {
        ReplicatedKey(PhantomData)
    }

    fn all_columns() -> ReplicatedKey<T> {
        ReplicatedKey(PhantomData)
    }
}
