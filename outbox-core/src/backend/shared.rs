//! The statements that are the same on every backend, written once and expanded inside
//! each backend's `impl OutboxConnection` (a generic function would need higher-ranked
//! bounds on diesel's statement types, which the type system cannot express).
// MySQL writes its own statements: a build with it alone uses none of these.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_macros, unused_imports)
)]

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Integer, Text, Timestamp};

use super::claim::DueScan;
use super::parked::ParkedKey;
use crate::key::shard::ShardKey;

/// A raw statement that takes its binds one by one: diesel's boxed `sql_query` (SQLite,
/// PostgreSQL) or MySQL's own statement type (`mysql_raw`), so that the helpers below
/// bind a shard or a parked key the same way on every backend.
pub(crate) trait Binds: Sized {
    /// Binds an `INTEGER`.
    fn bind_integer(self, value: i32) -> Self;
    /// Binds a `BIGINT`.
    fn bind_bigint(self, value: i64) -> Self;
    /// Binds a text.
    fn bind_text(self, value: String) -> Self;
}

impl<'f, DB> Binds for BoxedSqlQuery<'f, DB, SqlQuery>
where
    DB: Backend + HasSqlType<Integer> + HasSqlType<BigInt> + HasSqlType<Text>,
    i32: ToSql<Integer, DB>,
    i64: ToSql<BigInt, DB>,
    String: ToSql<Text, DB>,
{
    fn bind_integer(self, value: i32) -> Self {
        self.bind::<Integer, _>(value)
    }

    fn bind_bigint(self, value: i64) -> Self {
        self.bind::<BigInt, _>(value)
    }

    fn bind_text(self, value: String) -> Self {
        self.bind::<Text, _>(value)
    }
}

/// Binds a shard's columns in the order of [`Names::shard`](super::sql::Names).
pub(crate) fn bind_shard<Q: Binds>(query: Q, key: &ShardKey) -> Q {
    let query = match key.cell_name() {
        Some(cell_name) => query.bind_text(cell_name.to_owned()),
        None => query,
    };
    let shard = key.shard();
    query
        .bind_integer(shard.scope)
        .bind_bigint(shard.identifier)
}

/// Binds a parked key's shard, category and object (nothing for "every key").
pub(crate) fn bind_parked_key<Q: Binds>(query: Q, key: Option<&ParkedKey>) -> Q {
    match key {
        Some(key) => bind_shard(query, &key.shard)
            .bind_integer(key.category)
            .bind_bigint(key.object_identifier),
        None => query,
    }
}

/// Binds a periodic claim's scan in the order both backends' statements number them:
/// from id, to id, rows, now, ignore schedules, shards at most.
pub(crate) fn bind_scan<'f, DB>(
    query: BoxedSqlQuery<'f, DB, SqlQuery>,
    scan: &DueScan,
    now: NaiveDateTime,
) -> BoxedSqlQuery<'f, DB, SqlQuery>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Timestamp> + HasSqlType<Bool>,
    i64: ToSql<BigInt, DB>,
    NaiveDateTime: ToSql<Timestamp, DB>,
    bool: ToSql<Bool, DB>,
{
    query
        .bind::<BigInt, _>(scan.from_id)
        .bind::<BigInt, _>(scan.to_id)
        .bind::<BigInt, _>(scan.scan_rows)
        .bind::<Timestamp, _>(now)
        .bind::<Bool, _>(scan.ignore_schedule)
        .bind::<BigInt, _>(scan.max_shards)
}

/// A typed NULL text column, on every backend.
pub(crate) const NULL_TEXT: &str = "CAST(NULL AS TEXT)";

/// The write path's INSERT of buffered outbox rows into `$table`, built once for every
/// executor: the sync connections (`[]`: diesel's `RunQueryDsl` in scope) and diesel-async's
/// (`[.await]`: its `RunQueryDsl` in scope). One row is a fixed statement, which diesel
/// caches as a prepared statement; more are one multi-row INSERT per bind-limit chunk.
macro_rules! insert_outbox_rows {
    ($conn:expr, $rows:expr, $max_binds:expr, $table:ident, $values:ident, $new:ident, [$($await:tt)*]) => {{
        use $crate::row::insert::{$new, $values};
        use $crate::row::schema::$table;
        let rows: &[$new] = $rows;
        if let [row] = rows {
            diesel::insert_into($table::table)
                .values($values::of(row))
                .execute($conn)
                $($await)*?;
        } else {
            for chunk in rows.chunks(($max_binds / $new::BINDS).max(1)) {
                let values: Vec<_> = chunk.iter().map($values::of).collect();
                diesel::insert_into($table::table)
                    .values(values)
                    .execute($conn)
                    $($await)*?;
            }
        }
        Ok(())
    }};
}
pub(crate) use insert_outbox_rows;

/// The shared bodies; `$text` turns `?`-placeholder text into the backend's.
macro_rules! shared_statements {
    (text = $text:path) => {
        fn insert_cell_rows(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            rows: &[$crate::row::insert::NewCellOutbox],
        ) -> diesel::QueryResult<()> {
            use diesel::RunQueryDsl;
            $crate::backend::shared::insert_outbox_rows!(
                self,
                rows,
                Self::MAX_BIND_PARAMS,
                cell_outboxes,
                CellValues,
                NewCellOutbox,
                []
            )
        }

        fn insert_control_rows(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            rows: &[$crate::row::insert::NewControlOutbox],
        ) -> diesel::QueryResult<()> {
            use diesel::RunQueryDsl;
            $crate::backend::shared::insert_outbox_rows!(
                self,
                rows,
                Self::MAX_BIND_PARAMS,
                control_outboxes,
                ControlValues,
                NewControlOutbox,
                []
            )
        }

        fn insert_tombstones(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::row::tombstone::TombstoneTable,
            table_name: &str,
            object_identifiers: &[i64],
            now: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<usize> {
            use diesel::{ExpressionMethods, RunQueryDsl};
            // Three binds per tombstone; one statement per chunk under the bind limit.
            let chunk_len = (Self::MAX_BIND_PARAMS / 3).max(1);
            let mut inserted = 0;
            macro_rules! insert_into {
                ($t:ident) => {{
                    use $crate::row::schema::$t::dsl;
                    for chunk in object_identifiers.chunks(chunk_len) {
                        let rows: Vec<_> = chunk
                            .iter()
                            .map(|object_identifier| {
                                (
                                    dsl::table_name.eq(table_name),
                                    dsl::object_identifier.eq(*object_identifier),
                                    dsl::created_at.eq(now),
                                )
                            })
                            .collect();
                        inserted += diesel::insert_into(dsl::$t)
                            .values(rows)
                            .on_conflict_do_nothing()
                            .execute(self)?;
                    }
                }};
            }
            match table {
                $crate::row::tombstone::TombstoneTable::Cell => insert_into!(cell_tombstones),
                $crate::row::tombstone::TombstoneTable::Control => {
                    insert_into!(control_tombstones)
                }
            }
            Ok(inserted)
        }

        fn load_tombstones(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::row::tombstone::TombstoneTable,
            table_name: Option<&str>,
        ) -> diesel::QueryResult<Vec<$crate::row::tombstone::Tombstone>> {
            use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
            type Row = (i64, String, i64, chrono::NaiveDateTime);
            macro_rules! load_from {
                ($t:ident) => {{
                    use $crate::row::schema::$t::dsl;
                    let mut query = dsl::$t
                        .select((
                            dsl::id,
                            dsl::table_name,
                            dsl::object_identifier,
                            dsl::created_at,
                        ))
                        .order(dsl::id)
                        .into_boxed();
                    if let Some(name) = table_name {
                        query = query.filter(dsl::table_name.eq(name.to_owned()));
                    }
                    query.load::<Row>(self)
                }};
            }
            let rows = match table {
                $crate::row::tombstone::TombstoneTable::Cell => load_from!(cell_tombstones),
                $crate::row::tombstone::TombstoneTable::Control => {
                    load_from!(control_tombstones)
                }
            }?;
            Ok(rows
                .into_iter()
                .map(|(id, table_name, object_identifier, created_at)| {
                    $crate::row::tombstone::Tombstone {
                        id,
                        table_name,
                        object_identifier,
                        created_at,
                    }
                })
                .collect())
        }

        fn window_identities(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            shard: &$crate::backend::claim::WindowRequest,
            window: i64,
        ) -> diesel::QueryResult<Vec<$crate::backend::claim::RowIdentity>> {
            use diesel::sql_types::BigInt;
            use diesel::RunQueryDsl;
            use $crate::backend::shared::{bind_shard, NULL_TEXT};
            use $crate::backend::sql::{rows, IdentityRow, Names, Prepared};
            let text = $text(&rows::window_identities(&Names::of(table), NULL_TEXT));
            let query = bind_shard(diesel::sql_query(text).into_boxed(), &shard.shard)
                .bind::<BigInt, _>(shard.bound)
                .bind::<BigInt, _>(window);
            let found = Prepared(query).load::<IdentityRow>(self)?;
            Ok(found
                .into_iter()
                .map(|row| row.into_identity(table))
                .collect())
        }

        fn renew_lease(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            lease: i64,
            expires_at: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<bool> {
            use diesel::sql_types::{BigInt, Timestamp};
            use diesel::RunQueryDsl;
            use $crate::backend::sql::Prepared;
            let text = $text("UPDATE outbox_drain_leases SET expires_at = ? WHERE id = ?");
            let query = diesel::sql_query(text)
                .bind::<Timestamp, _>(expires_at)
                .bind::<BigInt, _>(lease);
            Ok(Prepared(query).execute(self)? > 0)
        }

        fn shard_max_id(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            shard: &$crate::key::shard::ShardKey,
        ) -> diesel::QueryResult<Option<i64>> {
            use diesel::RunQueryDsl;
            use $crate::backend::shared::bind_shard;
            use $crate::backend::sql::{rows, MaybeBigInt, Names, Prepared};
            let text = $text(&rows::shard_max_id(&Names::of(shard.table())));
            let query = bind_shard(diesel::sql_query(text).into_boxed(), shard);
            Ok(Prepared(query).get_result::<MaybeBigInt>(self)?.value)
        }

        fn record_failures(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            failures: &[$crate::backend::state::ShardFailure],
        ) -> diesel::QueryResult<()> {
            use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
            use diesel::RunQueryDsl;
            use $crate::backend::shared::bind_shard;
            use $crate::backend::sql::{states, Names, Prepared};
            let text = $text(&states::record_failure(&Names::of(table)));
            for failure in failures {
                // In the order of STATE_COLUMNS, without `skipped`.
                let query = bind_shard(
                    diesel::sql_query(text.as_str()).into_boxed(),
                    &failure.shard,
                )
                .bind::<Timestamp, _>(failure.scheduled_from)
                .bind::<Timestamp, _>(failure.scheduled_for)
                .bind::<BigInt, _>(failure.covered_id)
                .bind::<Bool, _>(failure.isolated)
                .bind::<Integer, _>(failure.attempts)
                .bind::<Nullable<Timestamp>, _>(Some(failure.first_failure_at))
                .bind::<Nullable<Timestamp>, _>(Some(failure.scheduled_from))
                .bind::<Nullable<Text>, _>(Some(failure.error.clone()))
                .bind::<Nullable<BigInt>, _>(failure.row_id)
                .bind::<Nullable<Integer>, _>(failure.category)
                .bind::<Nullable<BigInt>, _>(failure.object_identifier);
                Prepared(query).execute(self)?;
            }
            Ok(())
        }

        fn record_successes(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            shards: &[($crate::key::shard::ShardKey, i64)],
        ) -> diesel::QueryResult<()> {
            use diesel::sql_types::BigInt;
            use diesel::RunQueryDsl;
            use $crate::backend::shared::bind_shard;
            use $crate::backend::sql::{states, Names, Prepared};
            let names = Names::of(table);
            let (delete, compacted) = (
                $text(&states::delete_unless_skipped(&names)),
                $text(&states::compacted(&names)),
            );
            for (shard, covered_id) in shards {
                Prepared(bind_shard(
                    diesel::sql_query(delete.as_str()).into_boxed(),
                    shard,
                ))
                .execute(self)?;
                let query = diesel::sql_query(compacted.as_str())
                    .into_boxed()
                    .bind::<BigInt, _>(*covered_id);
                Prepared(bind_shard(query, shard)).execute(self)?;
            }
            Ok(())
        }

        fn set_skipped(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            shard: &$crate::key::shard::ShardKey,
            skipped: bool,
            now: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<()> {
            use diesel::sql_types::{Bool, Timestamp};
            use diesel::RunQueryDsl;
            use $crate::backend::shared::bind_shard;
            use $crate::backend::sql::{states, Names, Prepared};
            let text = $text(&states::set_skipped(&Names::of(shard.table())));
            let query = bind_shard(diesel::sql_query(text).into_boxed(), shard)
                .bind::<Timestamp, _>(now)
                .bind::<Timestamp, _>($crate::row::write::DUE_AT_ONCE)
                .bind::<Bool, _>(skipped);
            Prepared(query).execute(self)?;
            Ok(())
        }

        fn load_shard_states(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            shards: Option<&[$crate::key::shard::ShardKey]>,
        ) -> diesel::QueryResult<Vec<$crate::backend::state::ShardState>> {
            use diesel::{OptionalExtension, RunQueryDsl};
            use $crate::backend::shared::{bind_shard, NULL_TEXT};
            use $crate::backend::sql::{states, Names, Prepared, StateRow};
            let names = Names::of(table);
            let Some(shards) = shards else {
                let text = $text(&states::load_all(&names, NULL_TEXT));
                let found = Prepared(diesel::sql_query(text)).load::<StateRow>(self)?;
                return Ok(found.into_iter().map(|row| row.into_state(table)).collect());
            };
            let text = $text(&states::load_one(&names, NULL_TEXT));
            let mut found = Vec::new();
            for shard in shards.iter().filter(|shard| shard.table() == table) {
                let query = bind_shard(diesel::sql_query(text.as_str()).into_boxed(), shard);
                if let Some(row) = Prepared(query).get_result::<StateRow>(self).optional()? {
                    found.push(row.into_state(table));
                }
            }
            Ok(found)
        }

        fn load_isolated_states(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
        ) -> diesel::QueryResult<Vec<$crate::backend::state::ShardState>> {
            use diesel::RunQueryDsl;
            use $crate::backend::shared::NULL_TEXT;
            use $crate::backend::sql::{states, Names, Prepared, StateRow};
            let text = $text(&states::load_isolated(&Names::of(table), NULL_TEXT));
            let found = Prepared(diesel::sql_query(text)).load::<StateRow>(self)?;
            Ok(found.into_iter().map(|row| row.into_state(table)).collect())
        }

        fn deliverable_rows(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
        ) -> diesel::QueryResult<u64> {
            use diesel::RunQueryDsl;
            use $crate::backend::sql::{rows, BigIntValue, Names, Prepared};
            let text = $text(&rows::deliverable(&Names::of(table)));
            let count = Prepared(diesel::sql_query(text)).get_result::<BigIntValue>(self)?;
            Ok(u64::try_from(count.value).unwrap_or(0))
        }

        fn load_cell_records(
            &mut self,
            _token: $crate::key::token::Token<'_>,
        ) -> diesel::QueryResult<Vec<$crate::row::record::CellOutboxRecord>> {
            use diesel::{QueryDsl, RunQueryDsl};
            use $crate::row::record::{CellOutboxRecord, CELL_COLUMNS};
            use $crate::row::schema::cell_outboxes;
            cell_outboxes::table
                .select(CELL_COLUMNS)
                .order(cell_outboxes::id)
                .load::<CellOutboxRecord>(self)
        }

        fn load_control_records(
            &mut self,
            _token: $crate::key::token::Token<'_>,
        ) -> diesel::QueryResult<Vec<$crate::row::record::ControlOutboxRecord>> {
            use diesel::{QueryDsl, RunQueryDsl};
            use $crate::row::record::{ControlOutboxRecord, CONTROL_COLUMNS};
            use $crate::row::schema::control_outboxes;
            control_outboxes::table
                .select(CONTROL_COLUMNS)
                .order(control_outboxes::id)
                .load::<ControlOutboxRecord>(self)
        }

        fn discard_parked(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            key: Option<&$crate::backend::parked::ParkedKey>,
        ) -> diesel::QueryResult<usize> {
            use diesel::RunQueryDsl;
            use $crate::backend::shared::bind_parked_key;
            use $crate::backend::sql::{parked, Names, Prepared};
            let text = $text(&parked::discard(&Names::of(table), key.is_some()));
            let query = bind_parked_key(diesel::sql_query(text).into_boxed(), key);
            Prepared(query).execute(self)
        }

        fn load_parked(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            limit: i64,
        ) -> diesel::QueryResult<Vec<$crate::backend::parked::ParkedGroup>> {
            use diesel::sql_types::BigInt;
            use diesel::RunQueryDsl;
            use $crate::backend::shared::NULL_TEXT;
            use $crate::backend::sql::{parked, Names, ParkedGroupRow, Prepared};
            let text = $text(&parked::groups(&Names::of(table), NULL_TEXT));
            let found = Prepared(diesel::sql_query(text).bind::<BigInt, _>(limit))
                .load::<ParkedGroupRow>(self)?;
            Ok(found.into_iter().map(|row| row.into_group(table)).collect())
        }

        fn parked_counts(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
        ) -> diesel::QueryResult<$crate::backend::parked::ParkedCounts> {
            use diesel::RunQueryDsl;
            use $crate::backend::sql::{parked, Names, ParkedCountsRow, Prepared};
            let text = parked::counts(&Names::of(table));
            Ok(Prepared(diesel::sql_query(text))
                .get_result::<ParkedCountsRow>(self)?
                .into_counts())
        }

        fn shard_depths(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            limit: i64,
        ) -> diesel::QueryResult<Vec<$crate::backend::inspect::ShardDepth>> {
            use diesel::sql_types::BigInt;
            use diesel::RunQueryDsl;
            use $crate::backend::shared::NULL_TEXT;
            use $crate::backend::sql::{inspect, Names, Prepared, ShardDepthRow};
            let text = $text(&inspect::shard_depths(&Names::of(table), NULL_TEXT));
            let found = Prepared(diesel::sql_query(text).bind::<BigInt, _>(limit))
                .load::<ShardDepthRow>(self)?;
            Ok(found.into_iter().map(|row| row.into_depth(table)).collect())
        }

        fn category_depths(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
        ) -> diesel::QueryResult<Vec<$crate::backend::inspect::CategoryDepth>> {
            use diesel::RunQueryDsl;
            use $crate::backend::sql::{inspect, CategoryDepthRow, Names, Prepared};
            let text = inspect::category_depths(&Names::of(table));
            let found = Prepared(diesel::sql_query(text)).load::<CategoryDepthRow>(self)?;
            Ok(found.into_iter().map(|row| row.into_depth(table)).collect())
        }

        fn oldest_due_row(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
            now: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<Option<$crate::backend::inspect::OldestRow>> {
            use diesel::sql_types::Timestamp;
            use diesel::{OptionalExtension, RunQueryDsl};
            use $crate::backend::sql::{inspect, Names, OldestRowRow, Prepared};
            let text = $text(&inspect::oldest_due(&Names::of(table)));
            let found = Prepared(diesel::sql_query(text).bind::<Timestamp, _>(now))
                .get_result::<OldestRowRow>(self)
                .optional()?;
            Ok(found.map(|row| row.into_oldest(table)))
        }

        fn retry_shard_now(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            shard: &$crate::key::shard::ShardKey,
            now: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<bool> {
            use diesel::sql_types::Timestamp;
            use diesel::RunQueryDsl;
            use $crate::backend::shared::bind_shard;
            use $crate::backend::sql::{inspect, Names, Prepared};
            let text = $text(&inspect::retry_now(&Names::of(shard.table())));
            let query = diesel::sql_query(text)
                .into_boxed()
                .bind::<Timestamp, _>(now)
                .bind::<Timestamp, _>(now);
            Ok(Prepared(bind_shard(query, shard)).execute(self)? > 0)
        }

        fn outbox_id_bounds(
            &mut self,
            _token: $crate::key::token::Token<'_>,
            table: $crate::key::shard::OutboxTable,
        ) -> diesel::QueryResult<Option<(i64, i64)>> {
            use diesel::RunQueryDsl;
            use $crate::backend::sql::{rows, IdBounds, Names, Prepared};
            let text = rows::id_bounds(&Names::of(table));
            let bounds = Prepared(diesel::sql_query(text)).get_result::<IdBounds>(self)?;
            Ok(bounds.lo.zip(bounds.hi))
        }
    };
}
pub(crate) use shared_statements;
