//! Replicated models: what `#[derive(ReplicatedCell)]` and `#[derive(ReplicatedControl)]`
//! implement: the model's identity and outbox rows, and its own SQL ([`ModelWrites`]).

use std::collections::BTreeSet;

use crate::key::category::{CellCategory, ControlCategory};
use crate::key::error::Result;
use crate::key::token::Token;
use crate::row::payload::JsonPayload;
use crate::row::write::{CellOutbox, ControlOutbox, OutboxWrite};

/// A model whose every write records a cell outbox row. Implemented by
/// `#[derive(ReplicatedCell)]`.
///
/// # The derive
///
/// On an ordinary diesel model (a struct with named fields that also derives `Queryable`
/// and `Selectable`):
///
/// | attribute | meaning |
/// | --- | --- |
/// | `#[outbox(category = Category::X)]` | required: the category of the rows; its scope follows from it, and it must be declared `silo: cell` or `both` |
/// | `#[outbox(shard)]` on a field | that field is the shard identifier (default: the field the scope's declaration names) |
/// | `#[outbox(shard = field)]` | the same, said on the struct |
/// | `#[outbox(payload)]` | rows carry the model serialised with serde (default: no payload; receivers reload the object) |
/// | `#[outbox(payload = path)]` | rows carry `path(&model)` serialised with serde |
/// | `#[outbox(flush = false)]` | writes are not flushed after commit: the periodic drain delivers them |
/// | `#[outbox(replication_version = N)]` | the model's replication version, 1 by default: raise it (by one) to have the [backfill](crate::backfill) write every existing object's outbox row again, e.g. after a replica table was added or a replication hook fixed |
/// | `#[diesel(table_name = ..)]`, `#[diesel(primary_key(..))]`, `#[diesel(column_name = ..)]` | read as diesel reads them: one table; the key must be one column, `id` by default; a column name may be an identifier or a string |
///
/// It generates these methods, all taking the [`OutboxContext`](crate::OutboxContext) and
/// never a connection: `insert`, `update`, `save` (upsert), `delete`, `delete_by_id`, and
/// the bulk `insert_all`, `save_all` (one statement each), `update_all`, `delete_all`,
/// `delete_by_ids` (one DELETE). Each writes the model's table and records the outbox
/// row(s) in the same transaction. A delete records the row as it was in the table, so
/// with the shard it had.
///
/// The model's table is written through a hidden type the derive generates, so the model
/// has no diesel write path of its own: `insert_into(t).values(&model)` and
/// `update(..).set(&model)` do not compile. Implementing diesel's `Insertable` (for the
/// model's table) or `AsChangeset` for the model or a reference to it (`&'a Model` of any
/// lifetime, `&'a mut Model`, `Box<Model>`), derived or by hand, would reopen that bypass
/// (a write recording no outbox row), so it is a compile error too: "multiple impls
/// satisfying `Project: ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<_>`
/// found" (or `...UpdatedInAnOutboxContextNotThroughAsChangeset<_>`).
///
/// The derive implements diesel's `HasTable` and `Identifiable` itself, for associations:
/// a replicated model is a parent (`Child::belonging_to(&model)`, `grouped_by`) and a
/// child (`#[derive(Associations)]`, `Model::belonging_to(&parent)`) as any model is, but
/// its table type is [`ReplicatedTable`](crate::model::ReplicatedTable), which reads as
/// the `table!` does and is never a write target: `diesel::update(&model)` and
/// `diesel::delete(&model)` fail with "a replicated model is not written with
/// `diesel::update(&model)` or `diesel::delete(&model)`". Deriving `Identifiable` as well
/// is a conflict (E0119): remove it.
///
/// By default the model's whole state is written: `None` in an `Option` field is NULL in
/// an insert and in an update, never "leave as is" or DEFAULT.
///
/// # diesel's write keys
///
/// The `#[diesel(...)]` keys that change a write keep the meaning diesel's own
/// `Insertable` and `AsChangeset` give them; `save` inserts a new row as `insert` would
/// and updates an existing one as `update` would:
///
/// | key (struct or field) | `insert`, `insert_all` | `update`, `update_all` | `save`, `save_all` |
/// | --- | --- | --- | --- |
/// | `treat_none_as_default_value = true` | a `None` is the column's DEFAULT (on SQLite, which has no DEFAULT in a VALUES list, diesel makes `insert_all` one INSERT per model) | no effect: `None` is NULL unless `treat_none_as_null = false` | a new row's `None` is the DEFAULT, an existing row's as `update`; one upsert per model |
/// | `treat_none_as_null = false` | no effect: `None` is NULL | a `None` leaves its column as it is; with nothing left to write, the row is only checked to exist (`Error::ModelNotFound` if not) and the outbox row recorded | an existing row's `None`s are left (with nothing to write the row is kept as it is: `ON CONFLICT DO NOTHING`); one upsert per model |
/// | `skip_insertion` (field) | the column is left to its DEFAULT | written | a new row as `insert`, an existing one as `update`; one upsert per model |
/// | `skip_update` (field) | written | left as it is | left as it is in an existing row |
/// | `serialize_as = T` (field) | written as `T::from(field.clone())`: the field must be `Clone` | the same | the same |
/// | `select_expression` (field) | never written: a computed field is not a column | never written | never written |
///
/// "One upsert per model": a multi-row upsert has one SET clause for all its rows, which
/// cannot leave one row's `None` and write another's, so `save_all` of such a model runs
/// one statement per model (in the same transaction). Any other model's `save_all` is one
/// statement.
///
/// diesel's keys that only its reading derives use are accepted and change no write:
/// `check_for_backend`, `belongs_to`, `sql_type`, `deserialize_as`,
/// `select_expression_type`, `base_query`, `base_query_type`, `sqlite_type`,
/// `postgres_type`, `mysql_type`, `aggregate`, `not_sized`, `foreign_derive`.
///
/// These do not compile, each with an error at the key that says why: `embed` (its
/// columns would be written by the embedded struct's own `Insertable`, recording no outbox
/// row), a second `table_name`, `treat_none_as_*` on a field that is not an `Option`,
/// `skip_insertion`, `select_expression` or `serialize_as` on the primary key (the object
/// identifier), `skip_insertion`, `skip_update` or `select_expression` on the shard field
/// (its outbox rows take the shard from the model, so the table must store the same
/// value; when the field is the one the scope names, the error is
/// "`ShardFieldMustBeWrittenByInsertAndUpdate` cannot be used as an outbox shard"), any
/// key diesel does not define, and diesel 1's forms of the keys that change a write
/// (`#[table_name = ".."]`, `#[primary_key(..)]`, `#[changeset_options(..)]`,
/// `#[column_name = ".."]`, which diesel 2 still reads under `with-deprecated`): write them
/// as `#[diesel(...)]`.
///
/// ```
/// use diesel::prelude::*;
/// use diesel_outbox::{outbox_context, run_migrations, ReplicatedCell};
///
/// diesel_outbox::outbox_scopes_and_categories! {
///     pub scopes Scope { Organization = 0 { shard: organization_id } }
///     pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
/// }
///
/// diesel::table! {
///     projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
/// }
///
/// #[derive(Queryable, Selectable, ReplicatedCell)]
/// #[diesel(table_name = projects)]
/// #[outbox(category = Category::ProjectUpdate)] // shard: `organization_id`, from the scope
/// struct Project {
///     id: i64,
///     organization_id: i64,
///     name: String,
/// }
///
/// fn main() -> Result<(), diesel_outbox::Error> {
///     let mut conn = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:")?;
///     run_migrations(&mut conn)?;
///     diesel::sql_query("CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL)")
///         .execute(&mut conn)?;
///
///     let project = Project { id: 7, organization_id: 42, name: "acme".into() };
///     outbox_context(&mut conn, |ctx| {
///         project.save(ctx)?;               // the row and its outbox row
///         Project::delete_by_id(ctx, 8)?;   // nothing to delete: no outbox row
///         Ok::<_, diesel_outbox::Error>(())
///     })?;
///     assert_eq!(project.shard_identifier(), 42);
///     Ok(())
/// }
/// ```
///
/// Writing it with a bare connection does not compile:
///
/// ```compile_fail
/// # use diesel::prelude::*;
/// # use diesel_outbox::ReplicatedCell;
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text } }
/// # #[derive(Queryable, Selectable, ReplicatedCell)]
/// # #[diesel(table_name = projects)]
/// # #[outbox(category = Category::ProjectUpdate)]
/// # struct Project { id: i64, organization_id: i64, name: String }
/// # fn main() {
/// let mut conn = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:").unwrap();
/// let project = Project { id: 7, organization_id: 42, name: "acme".into() };
/// diesel::insert_into(projects::table).values(&project).execute(&mut conn).unwrap();
/// # }
/// ```
pub trait ReplicatedCell: Sized + 'static {
    /// The category of the model's outbox rows (declared with `silo: cell` or `both`).
    type Category: CellCategory;
    /// The model's table, as recorded in tombstones.
    const TABLE_NAME: &'static str;
    /// Whether its writes are flushed after commit (`#[outbox(flush = false)]` says no).
    const FLUSH: bool = true;
    /// The model's replication version (`#[outbox(replication_version = N)]`, 1 by
    /// default): when it is above the version stored for the model, the
    /// [backfill](crate::backfill) writes every existing object's outbox row again.
    const REPLICATION_VERSION: i32 = 1;

    /// The object identifier: the primary key.
    fn object_identifier(&self) -> i64;
    /// The shard identifier: the `#[outbox(shard)]` field, or the field the category's
    /// scope names.
    fn shard_identifier(&self) -> i64;
    /// The payload carried by the model's outbox rows (none unless `#[outbox(payload)]`).
    fn outbox_payload(&self) -> Result<Option<JsonPayload>>;

    /// The outbox row a write of this model records.
    fn outbox_row(&self) -> Result<CellOutbox> {
        let row =
            CellOutbox::typed::<Self::Category>(self.shard_identifier(), self.object_identifier())
                .flush(Self::FLUSH);
        Ok(match self.outbox_payload()? {
            Some(payload) => row.json_payload(payload),
            None => row,
        })
    }
}

/// A model whose every write records one control outbox row per target cell.
/// Implemented by `#[derive(ReplicatedControl)]`.
///
/// The derive takes the attributes of [`ReplicatedCell`]'s (the category must be declared
/// `silo: control` or `both`) plus the target cells, required:
///
/// | attribute | meaning |
/// | --- | --- |
/// | `#[outbox(cells = field)]` or `#[outbox(cells)]` on a field | the cells are that field's value |
/// | `#[outbox(cells = path)]` | the cells are `path(&model)` |
///
/// The field or function may hold a `String`, `&str`, `Option<String>`, or a `Vec`,
/// array, slice or `BTreeSet` of them (see [`CellNames`]). A write records one row per
/// distinct cell.
///
/// ```
/// use diesel::prelude::*;
/// use diesel_outbox::{outbox_context, run_migrations, ReplicatedControl};
///
/// diesel_outbox::outbox_scopes_and_categories! {
///     pub scopes Scope { User = 1 { shard: user_id } }
///     pub categories Category { UserUpdate = 2 { scope: User, silo: control } }
/// }
///
/// diesel::table! { users (id) { id -> BigInt, name -> Text } }
///
/// #[derive(Queryable, Selectable, ReplicatedControl)]
/// #[diesel(table_name = users)]
/// #[outbox(category = Category::UserUpdate, cells = cells_of)]
/// struct User {
///     #[outbox(shard)]
///     id: i64,
///     name: String,
/// }
///
/// fn cells_of(user: &User) -> Vec<&'static str> {
///     vec!["eu", "us"]
/// }
///
/// fn main() -> Result<(), diesel_outbox::Error> {
///     let mut conn = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:")?;
///     run_migrations(&mut conn)?;
///     diesel::sql_query("CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
///         .execute(&mut conn)?;
///     let ada = User { id: 1, name: "ada".into() };
///     outbox_context(&mut conn, |ctx| ada.insert(ctx))?; // two control rows: eu, us
///     assert_eq!(ada.outbox_rows()?.len(), 2);
///     Ok(())
/// }
/// ```
pub trait ReplicatedControl: Sized + 'static {
    /// The category of the model's outbox rows (declared with `silo: control` or `both`).
    type Category: ControlCategory;
    /// The model's table, as recorded in tombstones.
    const TABLE_NAME: &'static str;
    /// Whether its writes are flushed after commit (`#[outbox(flush = false)]` says no).
    const FLUSH: bool = true;
    /// The model's replication version (see [`ReplicatedCell::REPLICATION_VERSION`]).
    const REPLICATION_VERSION: i32 = 1;

    /// The object identifier: the primary key.
    fn object_identifier(&self) -> i64;
    /// The shard identifier: the `#[outbox(shard)]` field, or the field the category's
    /// scope names.
    fn shard_identifier(&self) -> i64;
    /// The payload carried by the model's outbox rows (none unless `#[outbox(payload)]`).
    fn outbox_payload(&self) -> Result<Option<JsonPayload>>;
    /// The cells this object is replicated to (`#[outbox(cells = ...)]`).
    fn target_cells(&self) -> Vec<String>;

    /// The outbox rows a write of this model records: one per distinct target cell.
    fn outbox_rows(&self) -> Result<Vec<ControlOutbox>> {
        let payload = self.outbox_payload()?;
        let cells: BTreeSet<String> = self.target_cells().into_iter().collect();
        Ok(cells
            .into_iter()
            .map(|cell| {
                let row = ControlOutbox::typed::<Self::Category>(
                    self.shard_identifier(),
                    self.object_identifier(),
                    cell,
                )
                .flush(Self::FLUSH);
                match &payload {
                    Some(payload) => row.json_payload(payload.clone()),
                    None => row,
                }
            })
            .collect())
    }
}

/// What `#[outbox(cells = ...)]` may name: a field or a function result that lists cell
/// names.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot list the target cells of a control model",
    note = "`#[outbox(cells = ...)]` must name a field or a function returning a String, &str, Option<String> or a Vec / slice / set of them"
)]
pub trait CellNames {
    /// The cell names.
    fn cell_names(&self) -> Vec<String>;
}

impl CellNames for str {
    fn cell_names(&self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl CellNames for String {
    fn cell_names(&self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<T: CellNames + ?Sized> CellNames for &T {
    fn cell_names(&self) -> Vec<String> {
        (**self).cell_names()
    }
}

impl<T: CellNames> CellNames for Option<T> {
    fn cell_names(&self) -> Vec<String> {
        self.iter().flat_map(CellNames::cell_names).collect()
    }
}

impl<T: CellNames> CellNames for [T] {
    fn cell_names(&self) -> Vec<String> {
        self.iter().flat_map(CellNames::cell_names).collect()
    }
}

impl<T: CellNames> CellNames for Vec<T> {
    fn cell_names(&self) -> Vec<String> {
        self.as_slice().cell_names()
    }
}

impl<T: CellNames, const N: usize> CellNames for [T; N] {
    fn cell_names(&self) -> Vec<String> {
        self.as_slice().cell_names()
    }
}

impl<T: CellNames> CellNames for BTreeSet<T> {
    fn cell_names(&self) -> Vec<String> {
        self.iter().flat_map(CellNames::cell_names).collect()
    }
}

/// A replicated model's own SQL on the connection type `C`.
///
/// The derives implement it once per backend the build enables (so every statement is
/// type-checked against a concrete connection). Name it in a bound when you write code
/// generic over the connection: `fn f<C: OutboxConnection>(..) where Project: ModelWrites<C>`.
///
/// Its methods write the model's table without recording outbox rows, so each takes a
/// [`Token`] for this model that only the runtime can make: the generated write methods (`insert`,
/// `save`, ...) are what applications call, inside an
/// [`outbox_context`](crate::outbox_context).
///
/// (`tests/ui/fail/call_model_writes_*.rs` show the compiler refusing such calls.)
pub trait ModelWrites<C>: Sized {
    /// Bind parameters per model row (its column count).
    const COLUMNS: usize;
    /// One multi-row INSERT of `models`.
    fn insert_rows(conn: &mut C, models: &[Self], token: Token<'_, Self>) -> Result<()>;
    /// UPDATE of one model by primary key; the number of rows changed.
    fn update_row(conn: &mut C, model: &Self, token: Token<'_, Self>) -> Result<usize>;
    /// One multi-row INSERT ... ON CONFLICT (primary key) DO UPDATE.
    fn upsert_rows(conn: &mut C, models: &[Self], token: Token<'_, Self>) -> Result<()>;
    /// DELETE by primary keys, returning the deleted rows as they were.
    fn delete_rows(
        conn: &mut C,
        object_identifiers: &[i64],
        token: Token<'_, Self>,
    ) -> Result<Vec<Self>>;
    /// SELECT by primary key.
    fn load_row(conn: &mut C, object_identifier: i64) -> Result<Option<Self>>;
    /// SELECT of many by primary key, in one statement (`= ANY($1)` on PostgreSQL, `IN
    /// (..)` elsewhere: callers split `object_identifiers` at the backend's bind limit).
    /// The models found, in no particular order; an identifier not found is absent.
    fn load_rows(conn: &mut C, object_identifiers: &[i64]) -> Result<Vec<Self>>;
    /// Up to `limit` models in primary-key order, after the key `after` (from the first
    /// when `None`): the backfill's walk over the table. It reads, so it takes no token.
    fn load_page(conn: &mut C, after: Option<i64>, limit: i64) -> Result<Vec<Self>>;
    /// The table's row count (the backfill's estimate of its work).
    fn count_rows(conn: &mut C) -> Result<i64>;
}

/// The outbox rows a write of a model records, whichever silo it belongs to.
#[doc(hidden)]
pub trait OutboxRows {
    /// Appends the rows to `out`.
    fn outbox_rows_into(&self, out: &mut Vec<OutboxWrite>) -> Result<()>;
}

/// A model's table name and object identifier, for error messages.
#[doc(hidden)]
pub trait ModelIdentity {
    /// The model's table.
    const TABLE: &'static str;
    /// The model's object identifier.
    fn identity(&self) -> i64;
}

/// A replicated model's own write SQL on a diesel-async connection `C` (feature `async`):
/// the statements of [`ModelWrites`], built by the same generated code, run by
/// diesel-async. The derives implement it once per async backend the build enables; the
/// generated `*_async` write methods call it. Its futures are `Send`, so a model is `Sync`.
///
/// Every method takes a [`Token`] for this model that only the runtime can make, as
/// [`ModelWrites`]'s do.
#[cfg(feature = "async")]
pub trait AsyncModelWrites<C>: Sized + Sync {
    /// Bind parameters per model row (its column count).
    const COLUMNS: usize;
    /// One multi-row INSERT of `models`.
    fn insert_rows(
        conn: &mut C,
        models: &[Self],
        token: Token<'_, Self>,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
    /// UPDATE of one model by primary key; the number of rows changed.
    fn update_row(
        conn: &mut C,
        model: &Self,
        token: Token<'_, Self>,
    ) -> impl std::future::Future<Output = Result<usize>> + Send;
    /// One multi-row INSERT ... ON CONFLICT (primary key) DO UPDATE.
    fn upsert_rows(
        conn: &mut C,
        models: &[Self],
        token: Token<'_, Self>,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
    /// DELETE by primary keys, returning the deleted rows as they were.
    fn delete_rows(
        conn: &mut C,
        object_identifiers: &[i64],
        token: Token<'_, Self>,
    ) -> impl std::future::Future<Output = Result<Vec<Self>>> + Send;
}
