//! The backfill's state, `outbox_backfills` (migration 800): one row per replicated model
//! and outbox table, and the statements that read and write it.
//!
//! Every statement is the same on the three backends but two, which are parameters of
//! [`backfill_statements!`]: how a batch holds its model's row (PostgreSQL and MySQL: a
//! row lock taken with `FOR UPDATE SKIP LOCKED`, so that a second process skips the model
//! instead of waiting; SQLite: nothing, the batch's `BEGIN IMMEDIATE` already made it the
//! one writer) and how an insert keeps a row that exists (`ON CONFLICT DO NOTHING`, or
//! MySQL's duplicate-key form). They are written once, in diesel's DSL, whose statements
//! every backend caches. [`BackfillStatements`] is a supertrait of
//! [`OutboxConnection`](super::OutboxConnection) rather than more methods of it.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::QueryResult;

use crate::key::shard::OutboxTable;
use crate::key::token::Token;

diesel::table! {
    outbox_backfills (outbox_table, model) {
        outbox_table -> Text,
        model -> Text,
        version -> Integer,
        target_version -> Nullable<Integer>,
        last_id -> Nullable<BigInt>,
        rows_done -> BigInt,
        rows_total -> Nullable<BigInt>,
        started_at -> Nullable<Timestamp>,
        updated_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        next_batch_at -> Timestamp,
        declared_version -> Nullable<Integer>,
        declared_at -> Nullable<Timestamp>,
        requested_at -> Nullable<Timestamp>,
        rows_per_second -> Nullable<Integer>,
        last_error -> Nullable<Text>,
    }
}

/// A model's backfill as the statements hand it over. Its row type stays inside the
/// crate: a type that public signatures reach and that is `Selectable` over the
/// library's table would hand that table to anyone (`Column::Table`), and a `DELETE` of
/// it would compile.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredBackfill(pub(crate) BackfillRow);

/// One model's backfill as stored (see the migration for each column's meaning).
#[derive(Clone, Debug, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox_backfills)]
pub(crate) struct BackfillRow {
    /// `cell_outboxes` or `control_outboxes`.
    pub outbox_table: String,
    /// The model's table.
    pub model: String,
    /// The version whose backfill finished (0: never).
    pub version: i32,
    /// The version being backfilled, while a run is under way.
    pub target_version: Option<i32>,
    /// The highest key the run has done.
    pub last_id: Option<i64>,
    /// Objects the run has done.
    pub rows_done: i64,
    /// The table's rows when the run started.
    pub rows_total: Option<i64>,
    /// When the run started.
    pub started_at: Option<NaiveDateTime>,
    /// When its last batch committed.
    pub updated_at: Option<NaiveDateTime>,
    /// When the last run finished.
    pub finished_at: Option<NaiveDateTime>,
    /// The throttle: no batch before this.
    pub next_batch_at: NaiveDateTime,
    /// What the application declared last (`None`: no longer declared).
    pub declared_version: Option<i32>,
    /// When it declared it.
    pub declared_at: Option<NaiveDateTime>,
    /// An operator asked for the run (`diesel-outbox backfill run`).
    pub requested_at: Option<NaiveDateTime>,
    /// An operator's rate for this run, over the application's.
    pub rows_per_second: Option<i32>,
    /// Why the last batch failed, until one succeeds.
    pub last_error: Option<String>,
}

impl BackfillRow {
    /// The row a model starts with: never backfilled, due at once.
    pub(crate) fn new(table: OutboxTable, model: &str) -> Self {
        BackfillRow {
            outbox_table: table.name().to_owned(),
            model: model.to_owned(),
            version: 0,
            target_version: None,
            last_id: None,
            rows_done: 0,
            rows_total: None,
            started_at: None,
            updated_at: None,
            finished_at: None,
            next_batch_at: crate::row::write::DUE_AT_ONCE,
            declared_version: None,
            declared_at: None,
            requested_at: None,
            rows_per_second: None,
            last_error: None,
        }
    }

    /// The outbox table the row is about, if it names one.
    pub(crate) fn table(&self) -> Option<OutboxTable> {
        OutboxTable::ALL
            .into_iter()
            .find(|table| table.name() == self.outbox_table)
    }
}

/// The backfill's statements on one connection type. Sealed with
/// [`OutboxConnection`](super::OutboxConnection), of which it is a supertrait; every
/// method takes the runtime's [`Token`].
pub trait BackfillStatements {
    /// Records the versions the application declares for `table`'s models (`(model,
    /// version)`), creating the rows of models never seen, and marks every other model of
    /// `table` as no longer declared.
    #[doc(hidden)]
    fn declare_backfills(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        declared: &[(&str, i32)],
        now: NaiveDateTime,
    ) -> QueryResult<()>;

    /// The model's row, held until the transaction ends; `None` when another process holds
    /// it (or it does not exist).
    #[doc(hidden)]
    fn lock_backfill(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        model: &str,
    ) -> QueryResult<Option<StoredBackfill>>;

    /// Writes a row back.
    #[doc(hidden)]
    fn save_backfill(&mut self, token: Token<'_>, row: &StoredBackfill) -> QueryResult<()>;

    /// Every row, by table and model.
    #[doc(hidden)]
    fn load_backfills(&mut self, token: Token<'_>) -> QueryResult<Vec<StoredBackfill>>;

    /// Asks for the model's backfill now, at `rows_per_second` if given; how many rows
    /// matched (0: no such model).
    #[doc(hidden)]
    fn request_backfill(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        model: &str,
        rows_per_second: Option<i32>,
        now: NaiveDateTime,
    ) -> QueryResult<usize>;

    /// Records why a batch failed and when to try again (the batch itself rolled back).
    #[doc(hidden)]
    fn record_backfill_failure(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        model: &str,
        error: &str,
        retry_at: NaiveDateTime,
    ) -> QueryResult<usize>;
}

/// `impl BackfillStatements for $conn`: `lock` turns the SELECT of a model's row into the
/// backend's locking read, `conflict` is the insert's conflict target.
macro_rules! backfill_statements {
    ($conn:ty, lock = |$query:ident| $lock:expr, conflict = $conflict:expr) => {
        impl BackfillStatements for $conn {
            fn declare_backfills(
                &mut self,
                _token: Token<'_>,
                table: OutboxTable,
                declared: &[(&str, i32)],
                now: NaiveDateTime,
            ) -> QueryResult<()> {
                use outbox_backfills::dsl;
                for &(model, version) in declared {
                    diesel::insert_into(dsl::outbox_backfills)
                        .values(BackfillRow::new(table, model))
                        .on_conflict($conflict)
                        .do_nothing()
                        .execute(self)?;
                    diesel::update(
                        dsl::outbox_backfills
                            .filter(dsl::outbox_table.eq(table.name()))
                            .filter(dsl::model.eq(model)),
                    )
                    .set((
                        dsl::declared_version.eq(Some(version)),
                        dsl::declared_at.eq(Some(now)),
                    ))
                    .execute(self)?;
                }
                let names: Vec<&str> = declared.iter().map(|(model, _)| *model).collect();
                diesel::update(
                    dsl::outbox_backfills
                        .filter(dsl::outbox_table.eq(table.name()))
                        .filter(dsl::model.ne_all(names))
                        .filter(dsl::declared_version.is_not_null()),
                )
                .set((
                    dsl::declared_version.eq(None::<i32>),
                    dsl::declared_at.eq(Some(now)),
                ))
                .execute(self)?;
                Ok(())
            }

            fn lock_backfill(
                &mut self,
                _token: Token<'_>,
                table: OutboxTable,
                model: &str,
            ) -> QueryResult<Option<StoredBackfill>> {
                use outbox_backfills::dsl;
                let $query = dsl::outbox_backfills
                    .filter(dsl::outbox_table.eq(table.name()))
                    .filter(dsl::model.eq(model))
                    .select(BackfillRow::as_select());
                Ok($lock.first(self).optional()?.map(StoredBackfill))
            }

            fn save_backfill(
                &mut self,
                _token: Token<'_>,
                stored: &StoredBackfill,
            ) -> QueryResult<()> {
                use outbox_backfills::dsl;
                let row = &stored.0;
                diesel::update(
                    dsl::outbox_backfills
                        .filter(dsl::outbox_table.eq(&row.outbox_table))
                        .filter(dsl::model.eq(&row.model)),
                )
                .set((
                    dsl::version.eq(row.version),
                    dsl::target_version.eq(row.target_version),
                    dsl::last_id.eq(row.last_id),
                    dsl::rows_done.eq(row.rows_done),
                    dsl::rows_total.eq(row.rows_total),
                    dsl::started_at.eq(row.started_at),
                    dsl::updated_at.eq(row.updated_at),
                    dsl::finished_at.eq(row.finished_at),
                    dsl::next_batch_at.eq(row.next_batch_at),
                    dsl::requested_at.eq(row.requested_at),
                    dsl::rows_per_second.eq(row.rows_per_second),
                    dsl::last_error.eq(&row.last_error),
                ))
                .execute(self)?;
                Ok(())
            }

            fn load_backfills(&mut self, _token: Token<'_>) -> QueryResult<Vec<StoredBackfill>> {
                use outbox_backfills::dsl;
                let rows: Vec<BackfillRow> = dsl::outbox_backfills
                    .select(BackfillRow::as_select())
                    .order((dsl::outbox_table, dsl::model))
                    .load(self)?;
                Ok(rows.into_iter().map(StoredBackfill).collect())
            }

            fn request_backfill(
                &mut self,
                _token: Token<'_>,
                table: OutboxTable,
                model: &str,
                rows_per_second: Option<i32>,
                now: NaiveDateTime,
            ) -> QueryResult<usize> {
                use outbox_backfills::dsl;
                let target = dsl::outbox_backfills
                    .filter(dsl::outbox_table.eq(table.name()))
                    .filter(dsl::model.eq(model));
                match rows_per_second {
                    Some(rate) => diesel::update(target)
                        .set((
                            dsl::requested_at.eq(Some(now)),
                            dsl::rows_per_second.eq(Some(rate)),
                        ))
                        .execute(self),
                    None => diesel::update(target)
                        .set(dsl::requested_at.eq(Some(now)))
                        .execute(self),
                }
            }

            fn record_backfill_failure(
                &mut self,
                _token: Token<'_>,
                table: OutboxTable,
                model: &str,
                error: &str,
                retry_at: NaiveDateTime,
            ) -> QueryResult<usize> {
                use outbox_backfills::dsl;
                diesel::update(
                    dsl::outbox_backfills
                        .filter(dsl::outbox_table.eq(table.name()))
                        .filter(dsl::model.eq(model)),
                )
                .set((
                    dsl::last_error.eq(Some(error)),
                    dsl::next_batch_at.eq(retry_at),
                ))
                .execute(self)
            }
        }
    };
}

#[cfg(feature = "sqlite")]
backfill_statements!(
    diesel::SqliteConnection,
    lock = |query| query,
    conflict = (outbox_backfills::outbox_table, outbox_backfills::model)
);

#[cfg(feature = "postgres")]
backfill_statements!(
    diesel::PgConnection,
    lock = |query| query.for_update().skip_locked(),
    conflict = (outbox_backfills::outbox_table, outbox_backfills::model)
);

#[cfg(feature = "mysql")]
backfill_statements!(
    diesel::MysqlConnection,
    lock = |query| query.for_update().skip_locked(),
    conflict = diesel::dsl::DuplicatedKeys
);
