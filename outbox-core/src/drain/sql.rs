//! The drain's SQL, written once for every backend.
//!
//! Statements are raw SQL over one of the two tables (chosen at run time by [`Silo`]),
//! with `?` placeholders that [`placeholders`] numbers for PostgreSQL. Each statement
//! filters on a shard's leading index columns, so every step is an index scan: the shard's
//! lowest row on `(…shard, id)`, a group on `(…shard, category, object_identifier)`, the
//! due check and the reschedule on `(…shard, id)` (reading the shard in id order up to its
//! first due row).
//!
//! The bodies live in [`drain_sql!`], expanded inside each backend's `impl
//! OutboxConnection`; only the row lock and the transaction differ per backend and are
//! written there.

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, BoxedSqlQuery, Query, QueryFragment, QueryId, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Integer, Nullable, Text, Timestamp};
use diesel::QueryResult;

use super::shard::{ShardKey, Silo};
use crate::payload::JsonPayload;
use crate::receivers::OutboxMessage;
use crate::row::Shard;
use crate::schema::sql_types::PayloadJson;

/// Rows deleted per statement when a group is removed: never one unbounded DELETE.
pub(crate) const DELETE_BATCH: i64 = 1_000;

/// A shard found by discovery.
#[derive(diesel::QueryableByName)]
pub(crate) struct ShardRow {
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Text)]
    cell_name: String,
}

impl ShardRow {
    pub(crate) fn into_key(self, silo: Silo) -> ShardKey {
        let shard = Shard {
            scope: self.shard_scope,
            identifier: self.shard_identifier,
        };
        match silo {
            Silo::Cell => ShardKey::Cell(shard),
            Silo::Control => ShardKey::Control {
                cell_name: self.cell_name,
                shard,
            },
        }
    }
}

/// The lowest row of a shard: the head of its queue, whose group is delivered next.
#[derive(Clone, Debug, diesel::QueryableByName)]
#[doc(hidden)]
pub struct HeadRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Integer)]
    pub(crate) category: i32,
    #[diesel(sql_type = BigInt)]
    pub(crate) object_identifier: i64,
    #[diesel(sql_type = Timestamp)]
    pub(crate) date_added: NaiveDateTime,
}

/// A row's schedule, read when it is locked.
#[derive(Clone, Copy, Debug, diesel::QueryableByName)]
#[doc(hidden)]
pub struct Schedule {
    #[diesel(sql_type = Timestamp)]
    pub(crate) scheduled_for: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    pub(crate) scheduled_from: NaiveDateTime,
}

/// What locking a shard's head row found.
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub enum RowLock {
    /// Locked (or, on SQLite, held by the write transaction); its schedule.
    Locked(Schedule),
    /// Another transaction holds it.
    Busy,
    /// Deleted meanwhile.
    Gone,
}

/// A full row, as handed to a receiver.
#[derive(diesel::QueryableByName)]
pub(crate) struct MessageRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Integer)]
    category: i32,
    #[diesel(sql_type = BigInt)]
    object_identifier: i64,
    #[diesel(sql_type = Nullable<PayloadJson>)]
    payload: Option<JsonPayload>,
    #[diesel(sql_type = Timestamp)]
    scheduled_from: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    scheduled_for: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    date_added: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
}

impl MessageRow {
    pub(crate) fn into_message(self, silo: Silo) -> OutboxMessage {
        OutboxMessage {
            silo,
            id: self.id,
            category: self.category,
            shard: Shard {
                scope: self.shard_scope,
                identifier: self.shard_identifier,
            },
            object_identifier: self.object_identifier,
            payload: self.payload,
            cell_name: self.cell_name,
            date_added: self.date_added,
            scheduled_from: self.scheduled_from,
            scheduled_for: self.scheduled_for,
        }
    }
}

/// `MIN(id)` and `MAX(id)` of a table.
#[derive(diesel::QueryableByName)]
pub(crate) struct IdBounds {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) lo: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) hi: Option<i64>,
}

/// A drain statement that diesel may keep as a prepared statement.
///
/// Diesel never caches `sql_query`, since its text could be built from values. Ours is
/// not: the text depends only on the table and on which optional filters are present, and
/// every value is a bind, so a connection sees a handful of distinct texts. Caching them
/// saves the parse (SQLite) or parse and plan (PostgreSQL) of every statement of every
/// group the drain delivers.
#[derive(Debug)]
pub(crate) struct Prepared<Q>(pub(crate) Q);

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> diesel::RunQueryDsl<C> for Prepared<Q> {}

/// Numbers `?` placeholders as `$1, $2, …` for PostgreSQL; SQLite keeps `?`.
pub(crate) fn placeholders(sql: String, numbered: bool) -> String {
    if !numbered {
        return sql;
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The columns naming a shard, in index order.
fn shard_columns(silo: Silo) -> &'static str {
    match silo {
        Silo::Cell => "shard_scope, shard_identifier",
        Silo::Control => "cell_name, shard_scope, shard_identifier",
    }
}

/// The predicate selecting one shard; bound by [`bind_shard`].
fn shard_filter(silo: Silo) -> &'static str {
    match silo {
        Silo::Cell => "shard_scope = ? AND shard_identifier = ?",
        Silo::Control => "cell_name = ? AND shard_scope = ? AND shard_identifier = ?",
    }
}

/// Binds the parameters of [`shard_filter`].
pub(crate) fn bind_shard<'f, DB>(
    query: BoxedSqlQuery<'f, DB, SqlQuery>,
    key: &ShardKey,
) -> BoxedSqlQuery<'f, DB, SqlQuery>
where
    DB: Backend + HasSqlType<Integer> + HasSqlType<BigInt> + HasSqlType<Text>,
    i32: ToSql<Integer, DB>,
    i64: ToSql<BigInt, DB>,
    String: ToSql<Text, DB>,
{
    let query = match key.cell_name() {
        Some(cell_name) => query.bind::<Text, _>(cell_name.to_owned()),
        None => query,
    };
    let shard = key.shard();
    query
        .bind::<Integer, _>(shard.scope)
        .bind::<BigInt, _>(shard.identifier)
}

/// Distinct shards with a row due at `?`, oldest first (by earliest schedule, then newest
/// id), optionally only among rows with `? <= id < ?`, at most `?` of them.
pub(crate) fn due_shards(silo: Silo, id_range: bool, loose_scan: bool) -> String {
    if loose_scan && !id_range {
        return due_shards_by_loose_scan(silo);
    }
    let columns = shard_columns(silo);
    let cell_name = match silo {
        Silo::Cell => ", CAST('' AS TEXT) AS cell_name",
        Silo::Control => "",
    };
    let range = if id_range {
        " AND id >= ? AND id < ?"
    } else {
        ""
    };
    format!(
        "SELECT {columns}{cell_name} FROM {table} WHERE scheduled_for <= ?{range} \
         GROUP BY {columns} ORDER BY MIN(scheduled_for), MAX(id) LIMIT ?",
        table = silo.table()
    )
}

/// [`due_shards`] as a loose index scan (PostgreSQL, which has the `*_shard_scheduled`
/// index): skip from shard to shard on the shard index, then read each shard's earliest
/// schedule and newest id with one index probe each. The cost grows with the number of
/// shards, not with the number of due rows, where the `GROUP BY` form reads every due row
/// (and the planner prefers a sequential scan for it).
fn due_shards_by_loose_scan(silo: Silo) -> String {
    let table = silo.table();
    let (columns, cell_name) = match silo {
        Silo::Cell => (
            "shard_scope, shard_identifier",
            "CAST('' AS TEXT) AS cell_name",
        ),
        Silo::Control => ("cell_name, shard_scope, shard_identifier", "s.cell_name"),
    };
    let prefixed = |alias: &str| {
        columns
            .split(", ")
            .map(|column| format!("{alias}.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same_shard = columns
        .split(", ")
        .map(|column| format!("o.{column} = s.{column}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (o, s) = (prefixed("o"), prefixed("s"));
    format!(
        "WITH RECURSIVE s ({columns}) AS ( \
             (SELECT {columns} FROM {table} ORDER BY {columns} LIMIT 1) \
             UNION ALL \
             SELECT n.* FROM s CROSS JOIN LATERAL ( \
                 SELECT {o} FROM {table} o WHERE ({o}) > ({s}) ORDER BY {o} LIMIT 1) n \
         ) \
         SELECT s.shard_scope, s.shard_identifier, {cell_name} FROM s \
         CROSS JOIN LATERAL (SELECT o.scheduled_for AS first_due FROM {table} o \
             WHERE {same_shard} ORDER BY o.scheduled_for LIMIT 1) d \
         CROSS JOIN LATERAL (SELECT o.id AS last_id FROM {table} o \
             WHERE {same_shard} ORDER BY o.id DESC LIMIT 1) m \
         WHERE d.first_due <= ? ORDER BY d.first_due, m.last_id LIMIT ?"
    )
}

/// The shard's lowest row, optionally only among ids `<= ?`.
pub(crate) fn shard_head(silo: Silo, bounded: bool) -> String {
    let bound = if bounded { " AND id <= ?" } else { "" };
    format!(
        "SELECT id, category, object_identifier, date_added FROM {table} \
         WHERE {filter}{bound} ORDER BY id LIMIT 1",
        table = silo.table(),
        filter = shard_filter(silo)
    )
}

/// Any id of the shard due at `?`.
pub(crate) fn shard_due(silo: Silo) -> String {
    format!(
        "SELECT id AS value FROM {table} WHERE {filter} AND scheduled_for <= ? LIMIT 1",
        table = silo.table(),
        filter = shard_filter(silo)
    )
}

/// Sets the schedule (`scheduled_from = ?, scheduled_for = ?`) of every row of the shard.
pub(crate) fn reschedule(silo: Silo) -> String {
    format!(
        "UPDATE {table} SET scheduled_from = ?, scheduled_for = ? WHERE {filter}",
        table = silo.table(),
        filter = shard_filter(silo)
    )
}

/// The newest row of a group (`category = ?`, `object_identifier = ?`), optionally only
/// among ids `<= ?`.
pub(crate) fn group_newest(silo: Silo, bounded: bool) -> String {
    let cell_name = match silo {
        Silo::Cell => "CAST(NULL AS TEXT) AS cell_name",
        Silo::Control => "cell_name",
    };
    let bound = if bounded { " AND id <= ?" } else { "" };
    format!(
        "SELECT id, shard_scope, shard_identifier, category, object_identifier, payload, \
         scheduled_from, scheduled_for, date_added, {cell_name} FROM {table} \
         WHERE {filter} AND category = ? AND object_identifier = ?{bound} \
         ORDER BY id DESC LIMIT 1",
        table = silo.table(),
        filter = shard_filter(silo)
    )
}

/// Deletes up to `?` rows of a group (`category = ?`, `object_identifier = ?`) with
/// `id <= ?`.
pub(crate) fn delete_group_batch(silo: Silo) -> String {
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
         WHERE {filter} AND category = ? AND object_identifier = ? AND id <= ? LIMIT ?)",
        table = silo.table(),
        filter = shard_filter(silo)
    )
}

/// `MIN(id) AS lo, MAX(id) AS hi` of the table.
pub(crate) fn id_bounds(silo: Silo) -> String {
    format!(
        "SELECT MIN(id) AS lo, MAX(id) AS hi FROM {table}",
        table = silo.table()
    )
}

/// One row's id, if it exists.
pub(crate) fn row_exists(silo: Silo) -> String {
    format!(
        "SELECT id AS value FROM {table} WHERE id = ?",
        table = silo.table()
    )
}

/// The shared drain methods of `OutboxConnection`, expanded in each backend's impl.
/// `numbered` says whether the backend wants `$n` placeholders.
macro_rules! drain_sql {
    (numbered = $numbered:expr) => {
        fn outbox_due_shards(
            &mut self,
            silo: $crate::drain::Silo,
            now: chrono::NaiveDateTime,
            id_range: Option<std::ops::Range<i64>>,
            limit: i64,
        ) -> diesel::QueryResult<Vec<$crate::drain::ShardKey>> {
            use diesel::sql_types::{BigInt, Timestamp};
            use diesel::RunQueryDsl;
            use $crate::drain::sql;
            // PostgreSQL (numbered placeholders) keeps the `*_shard_scheduled` index that the
            // loose scan probes; SQLite dropped it to save its write cost.
            let text = sql::placeholders(
                sql::due_shards(silo, id_range.is_some(), $numbered),
                $numbered,
            );
            let query = diesel::sql_query(text)
                .into_boxed::<<Self as diesel::Connection>::Backend>()
                .bind::<Timestamp, _>(now);
            let query = match id_range {
                Some(range) => query
                    .bind::<BigInt, _>(range.start)
                    .bind::<BigInt, _>(range.end),
                None => query,
            };
            let rows = sql::Prepared(query.bind::<BigInt, _>(limit)).load::<sql::ShardRow>(self)?;
            Ok(rows.into_iter().map(|row| row.into_key(silo)).collect())
        }

        fn outbox_shard_head(
            &mut self,
            key: &$crate::drain::ShardKey,
            bound: Option<i64>,
        ) -> diesel::QueryResult<Option<$crate::drain::sql::HeadRow>> {
            use diesel::sql_types::BigInt;
            use diesel::{OptionalExtension, RunQueryDsl};
            use $crate::drain::sql;
            let text = sql::placeholders(sql::shard_head(key.silo(), bound.is_some()), $numbered);
            let query = sql::bind_shard(diesel::sql_query(text).into_boxed(), key);
            let query = match bound {
                Some(bound) => query.bind::<BigInt, _>(bound),
                None => query,
            };
            sql::Prepared(query).get_result(self).optional()
        }

        fn outbox_shard_is_due(
            &mut self,
            key: &$crate::drain::ShardKey,
            now: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<bool> {
            use diesel::sql_types::Timestamp;
            use diesel::{OptionalExtension, RunQueryDsl};
            use $crate::drain::sql;
            let text = sql::placeholders(sql::shard_due(key.silo()), $numbered);
            sql::Prepared(
                sql::bind_shard(diesel::sql_query(text).into_boxed(), key)
                    .bind::<Timestamp, _>(now),
            )
            .get_result::<$crate::backend::BigIntValue>(self)
            .optional()
            .map(|row| row.is_some())
        }

        fn outbox_reschedule(
            &mut self,
            key: &$crate::drain::ShardKey,
            from: chrono::NaiveDateTime,
            until: chrono::NaiveDateTime,
        ) -> diesel::QueryResult<usize> {
            use diesel::sql_types::Timestamp;
            use diesel::RunQueryDsl;
            use $crate::drain::sql;
            let text = sql::placeholders(sql::reschedule(key.silo()), $numbered);
            let query = diesel::sql_query(text)
                .into_boxed::<<Self as diesel::Connection>::Backend>()
                .bind::<Timestamp, _>(from)
                .bind::<Timestamp, _>(until);
            sql::Prepared(sql::bind_shard(query, key)).execute(self)
        }

        fn outbox_group_newest(
            &mut self,
            key: &$crate::drain::ShardKey,
            category: i32,
            object_identifier: i64,
            bound: Option<i64>,
        ) -> diesel::QueryResult<Option<$crate::OutboxMessage>> {
            use diesel::sql_types::{BigInt, Integer};
            use diesel::{OptionalExtension, RunQueryDsl};
            use $crate::drain::sql;
            let silo = key.silo();
            let text = sql::placeholders(sql::group_newest(silo, bound.is_some()), $numbered);
            let query = sql::bind_shard(diesel::sql_query(text).into_boxed(), key)
                .bind::<Integer, _>(category)
                .bind::<BigInt, _>(object_identifier);
            let query = match bound {
                Some(bound) => query.bind::<BigInt, _>(bound),
                None => query,
            };
            let row = sql::Prepared(query)
                .get_result::<sql::MessageRow>(self)
                .optional()?;
            Ok(row.map(|row| row.into_message(silo)))
        }

        fn outbox_delete_group(
            &mut self,
            key: &$crate::drain::ShardKey,
            category: i32,
            object_identifier: i64,
            up_to: i64,
        ) -> diesel::QueryResult<usize> {
            use diesel::sql_types::{BigInt, Integer};
            use diesel::RunQueryDsl;
            use $crate::drain::sql;
            let text = sql::placeholders(sql::delete_group_batch(key.silo()), $numbered);
            let mut deleted = 0;
            loop {
                let batch = sql::Prepared(
                    sql::bind_shard(diesel::sql_query(text.as_str()).into_boxed(), key)
                        .bind::<Integer, _>(category)
                        .bind::<BigInt, _>(object_identifier)
                        .bind::<BigInt, _>(up_to)
                        .bind::<BigInt, _>(sql::DELETE_BATCH),
                )
                .execute(self)?;
                deleted += batch;
                if (batch as i64) < sql::DELETE_BATCH {
                    return Ok(deleted);
                }
            }
        }

        fn outbox_id_bounds(
            &mut self,
            silo: $crate::drain::Silo,
        ) -> diesel::QueryResult<Option<(i64, i64)>> {
            use diesel::RunQueryDsl;
            use $crate::drain::sql;
            let bounds = sql::Prepared(diesel::sql_query(sql::id_bounds(silo)))
                .get_result::<sql::IdBounds>(self)?;
            Ok(bounds.lo.zip(bounds.hi))
        }

        fn outbox_row_count(&mut self, silo: $crate::drain::Silo) -> diesel::QueryResult<u64> {
            use diesel::RunQueryDsl;
            let text = format!("SELECT COUNT(*) AS value FROM {}", silo.table());
            let count = diesel::sql_query(text).get_result::<$crate::backend::BigIntValue>(self)?;
            Ok(u64::try_from(count.value).unwrap_or(0))
        }

        fn outbox_row_exists(
            &mut self,
            silo: $crate::drain::Silo,
            id: i64,
        ) -> diesel::QueryResult<bool> {
            use diesel::sql_types::BigInt;
            use diesel::{OptionalExtension, RunQueryDsl};
            use $crate::drain::sql;
            let text = sql::placeholders(sql::row_exists(silo), $numbered);
            sql::Prepared(diesel::sql_query(text).bind::<BigInt, _>(id))
                .get_result::<$crate::backend::BigIntValue>(self)
                .optional()
                .map(|row| row.is_some())
        }
    };
}
pub(crate) use drain_sql;
