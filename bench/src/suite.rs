//! The benchmarks, written once and expanded per backend (diesel's traits want concrete
//! connection types, so a macro is simpler than generic bounds on every statement).
//!
//! `suite!` expands the items every section shares (connections, the cached-statement
//! wrapper, filling a backlog, the library's drain and the ceiling) and then one module
//! per section, each from its own file's macro: `writes`, `drain`, `discovery`, `flush`.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A raw statement diesel may keep as a prepared statement, as the library's own are:
/// its text never contains a value (every value is a bind), so caching is safe. The
/// ceilings and baselines use it, so they pay no parse (SQLite) or parse and plan
/// (PostgreSQL) that the library does not.
#[derive(Debug)]
pub struct Cached<Q>(pub Q);

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> diesel::RunQueryDsl<C> for Cached<Q> {}

/// A raw statement that diesel caches on MySQL too: [`Cached`] does not reach MySQL's
/// statement cache (its connection passes the cache `&query`, and diesel's `&T` does not
/// forward `is_safe_to_cache_prepared`), so the MySQL baselines would pay three round
/// trips per statement that the library (`backend/mysql_raw.rs`) does not. This type walks
/// its own text and binds and never marks itself unsafe. Placeholders are `?`; diesel
/// writes each backend's own.
pub struct Raw<DB: Backend> {
    pieces: Vec<String>,
    binds: Vec<Box<dyn QueryFragment<DB>>>,
}

impl<DB: Backend> Raw<DB> {
    /// `text`, cut at its `?` placeholders (the bench's texts quote no `?`).
    pub fn new(text: &str) -> Self {
        Raw {
            pieces: text.split('?').map(str::to_owned).collect(),
            binds: Vec::new(),
        }
    }

    /// Binds `value` as `ST` to the next placeholder.
    pub fn bind<ST, U>(mut self, value: U) -> Self
    where
        U: diesel::expression::AsExpression<ST>,
        ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType,
        U::Expression: QueryFragment<DB> + 'static,
    {
        self.binds.push(Box::new(value.as_expression()));
        self
    }
}

impl<DB: Backend> QueryFragment<DB> for Raw<DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut pieces = self.pieces.iter();
        if let Some(first) = pieces.next() {
            out.push_sql(first);
        }
        for (bind, piece) in self.binds.iter().zip(pieces) {
            bind.walk_ast(out.reborrow())?;
            out.push_sql(piece);
        }
        Ok(())
    }
}

impl<DB: Backend> QueryId for Raw<DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB: Backend> Query for Raw<DB> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<DB: Backend, C> diesel::RunQueryDsl<C> for Raw<DB> {}

macro_rules! suite {
    ($module:ident, $conn:ty, pg = $pg:expr, mysql = $my:expr) => {
        /// The benchmarks on one backend.
        pub mod $module {
            #![allow(unused_imports)]
            use std::sync::{Arc, Mutex};
            use std::time::{Duration, Instant};

            use chrono::NaiveDateTime;
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;
            use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
            use diesel_outbox::drain::Metrics;
            use diesel_outbox::row::{PayloadJson, DUE_AT_ONCE};
            use diesel_outbox::{
                outbox_context, DueShards, JsonPayload, Outbox, OutboxMessage, OutboxTable,
                Receivers,
            };

            use crate::backlog::Backlog;
            use crate::model::cell_outboxes as co;
            use crate::model::{bench_projects as bp, project, Category, PlainProject, Project};
            use crate::stats::{count, median, micros, percentile, ratio, Table};
            use crate::suite::Cached;
            use crate::{BResult, Sizes};

            /// The connection type.
            pub type Conn = $conn;
            const PG: bool = $pg;
            /// MySQL or MariaDB (the bench's figures are MariaDB's).
            const MY: bool = $my;
            const NAME: &str = if PG { "PostgreSQL" } else if MY { "MariaDB" } else { "SQLite" };

            /// Where the backend's connections go.
            #[derive(Clone)]
            pub struct Db {
                /// The connection URL.
                pub url: String,
                /// PostgreSQL: keep `synchronous_commit` on (a WAL flush per commit). The
                /// bench turns it off for its sessions unless asked, see BENCHMARKS.md.
                pub sync_commit: bool,
            }

            impl Db {
                /// A new connection (SQLite: WAL, synchronous NORMAL, busy wait).
                pub fn connect(&self) -> BResult<Conn> {
                    let mut conn = Conn::establish(&self.url)?;
                    if MY {
                        // Nothing per session: InnoDB's flush at commit is a server
                        // setting (`version` reports it).
                    } else if !PG {
                        conn.batch_execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000;",
                        )?;
                    } else if !self.sync_commit {
                        conn.batch_execute("SET synchronous_commit = off")?;
                    }
                    Ok(conn)
                }

                /// The same database with `synchronous_commit` on (PostgreSQL).
                pub fn synced(&self) -> Db {
                    Db { url: self.url.clone(), sync_commit: true }
                }
            }

            #[derive(QueryableByName)]
            struct Value {
                #[diesel(sql_type = BigInt)]
                value: i64,
            }

            #[derive(QueryableByName)]
            struct TextValue {
                #[diesel(sql_type = Text)]
                value: String,
            }

            /// A row as the ceiling hands it over: every column a receiver's message has.
            #[derive(QueryableByName)]
            #[allow(dead_code)]
            struct DeletedRow {
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
            }

            fn scalar(conn: &mut Conn, sql: &str) -> BResult<i64> {
                Ok(diesel::sql_query(sql).get_result::<Value>(conn)?.value)
            }

            fn outbox_rows(conn: &mut Conn) -> BResult<i64> {
                scalar(conn, "SELECT COUNT(*) AS value FROM cell_outboxes")
            }

            fn now() -> NaiveDateTime {
                chrono::Utc::now().naive_utc()
            }

            /// The backend's version, for the report.
            pub fn version(db: &Db) -> BResult<String> {
                let sql = if PG {
                    "SELECT current_setting('server_version') || ', synchronous_commit=' || \
                     (SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit') || ', fsync=' || \
                     current_setting('fsync') || ', shared_buffers=' || \
                     current_setting('shared_buffers') AS value"
                } else if MY {
                    "SELECT CONCAT(VERSION(), ', innodb_flush_log_at_trx_commit=', \
                     @@innodb_flush_log_at_trx_commit, ', innodb_buffer_pool_size=', \
                     @@innodb_buffer_pool_size DIV 1048576, 'MiB') AS value"
                } else {
                    "SELECT sqlite_version() || ', WAL, synchronous=NORMAL' AS value"
                };
                Ok(diesel::sql_query(sql).get_result::<TextValue>(&mut db.connect()?)?.value
                    + if PG && !db.sync_commit { " (the bench's sessions: synchronous_commit=off)" } else { "" })
            }

            /// Creates the model table next to the (migrated) outbox tables.
            pub fn setup(db: &Db) -> BResult<()> {
                let mut conn = db.connect()?;
                diesel_outbox::run_migrations(&mut conn)?;
                conn.batch_execute(crate::model::CREATE_PROJECTS)?;
                conn.batch_execute(crate::model::CREATE_RECEIPTS)?;
                Ok(())
            }

            /// Empties the outbox, its shard states and leases, and the model table.
            fn clear(conn: &mut Conn) -> BResult<()> {
                if PG {
                    conn.batch_execute(
                        "TRUNCATE cell_outboxes, cell_outbox_shards, outbox_drain_leases, bench_projects, bench_receipts",
                    )?;
                } else if MY {
                    // One statement each (MySQL's TRUNCATE takes one table). It resets
                    // AUTO_INCREMENT, which is safe here: the shard states go too.
                    conn.batch_execute(
                        "TRUNCATE cell_outboxes; TRUNCATE cell_outbox_shards; \
                         TRUNCATE outbox_drain_leases; TRUNCATE bench_projects; \
                         TRUNCATE bench_receipts",
                    )?;
                } else {
                    conn.batch_execute(
                        "DELETE FROM cell_outboxes; DELETE FROM cell_outbox_shards; \
                         DELETE FROM outbox_drain_leases; DELETE FROM bench_projects; \
                         DELETE FROM bench_receipts",
                    )?;
                }
                Ok(())
            }

            /// Fills the emptied cell outbox with `backlog`, every row due. In each group,
            /// row `g` is about object `g % objects` of shard `object % shards`, so an
            /// object's rows spread over its shard's queue as repeated saves would; the
            /// groups' rows interleave in proportion to their sizes.
            pub fn fill(conn: &mut Conn, backlog: &Backlog) -> BResult<()> {
                clear(conn)?;
                let (mut shard_base, mut object_base) = (0usize, 0usize);
                let mut parts = Vec::new();
                let most = backlog.groups.iter().map(|g| g.rows()).max().unwrap_or(0);
                for group in &backlog.groups {
                    let (rows, objects, shards) = (group.rows(), group.objects(), group.shards);
                    let series = if PG {
                        format!("generate_series(0, {}) AS s(g)", rows.max(1) - 1)
                    } else if MY {
                        // MariaDB's SEQUENCE engine: a table of 0..=n, generated.
                        format!("(SELECT seq AS g FROM seq_0_to_{}) s", rows.max(1) - 1)
                    } else {
                        format!("s WHERE g < {rows}")
                    };
                    parts.push(format!(
                        "SELECT {shard_base} + (g % {objects}) % {shards} AS shard, \
                         {object_base} + g % {objects} AS object, \
                         (g + 0.5) / {rows}.0 AS ord FROM {series}"
                    ));
                    shard_base += shards;
                    object_base += objects;
                }
                let rows = parts.join(" UNION ALL ");
                let sql = if PG {
                    format!(
                        "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
                         object_identifier, payload, scheduled_from, scheduled_for, date_added) \
                         SELECT 0, shard, 1, object, NULL, now() AT TIME ZONE 'UTC', \
                         TIMESTAMP '2016-08-01 00:00:00', now() AT TIME ZONE 'UTC' \
                         FROM ({rows}) x ORDER BY ord; ANALYZE cell_outboxes;"
                    )
                } else if MY {
                    format!(
                        "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
                         object_identifier, payload, scheduled_from, scheduled_for, date_added) \
                         SELECT 0, shard, 1, object, NULL, UTC_TIMESTAMP(6), \
                         '2016-08-01 00:00:00', UTC_TIMESTAMP(6) \
                         FROM ({rows}) x ORDER BY ord; ANALYZE TABLE cell_outboxes;"
                    )
                } else {
                    format!(
                        "WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g + 1 < {most}) \
                         INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
                         object_identifier, payload, scheduled_from, scheduled_for, date_added) \
                         SELECT 0, shard, 1, object, NULL, strftime('%Y-%m-%d %H:%M:%f', 'now'), \
                         '2016-08-01 00:00:00', strftime('%Y-%m-%d %H:%M:%f', 'now') \
                         FROM ({rows}) ORDER BY ord;"
                    )
                };
                conn.batch_execute(&sql)?;
                Ok(())
            }

            /// An outbox whose one receiver does nothing, with the default drain sizes.
            pub fn idle_outbox() -> Outbox<Conn> {
                sized_outbox(&diesel_outbox::drain::DrainOptions::default())
            }

            /// An outbox whose one receiver does nothing, with `options`' sizes.
            pub fn sized_outbox(options: &diesel_outbox::drain::DrainOptions) -> Outbox<Conn> {
                Outbox::builder(Receivers::new().cell(
                    Category::ProjectUpdate,
                    |_conn: &mut Conn, _message: &OutboxMessage| Ok::<_, diesel_outbox::Error>(()),
                ))
                .window(options.window)
                .batch_shards(options.batch_shards)
                .scan_rows(options.scan_rows)
                .build()
            }

            /// What drain calls saw besides delivering: due shards another worker held,
            /// and calls that delivered nothing.
            #[derive(Default)]
            pub struct Seen {
                /// Calls of `drain_due_shards`.
                pub calls: std::sync::atomic::AtomicUsize,
                /// Calls that delivered nothing.
                pub empty_calls: std::sync::atomic::AtomicUsize,
                /// Due shards left to another worker (summed over calls).
                pub busy_shards: std::sync::atomic::AtomicUsize,
            }

            /// The library's periodic drain, round after round, until a round finds nothing.
            /// Returns the rows it deleted.
            pub fn drain_library(conn: &mut Conn, outbox: &Outbox<Conn>) -> BResult<usize> {
                drain_library_seen(conn, outbox, &Seen::default())
            }

            /// The same, counting into `seen`.
            pub fn drain_library_seen(conn: &mut Conn, outbox: &Outbox<Conn>, seen: &Seen) -> BResult<usize> {
                use std::sync::atomic::Ordering::Relaxed;
                let mut deleted = 0;
                loop {
                    let report = outbox.drain_due_shards(conn)?;
                    if !report.failures.is_empty() {
                        return Err(format!("{} deliveries failed: {:?}", report.failures.len(), report.failures.first()).into());
                    }
                    seen.calls.fetch_add(1, Relaxed);
                    seen.busy_shards.fetch_add(report.shards_not_claimed, Relaxed);
                    if !report.did_work() {
                        seen.empty_calls.fetch_add(1, Relaxed);
                    }
                    deleted += report.rows_deleted;
                    if !report.did_work() && report.shards_not_claimed == 0 {
                        return Ok(deleted);
                    }
                }
            }

            /// The ceiling: the oldest `batch` rows deleted and returned whole by one cached
            /// statement, in a loop (no per-shard order, no coalescing, no receivers).
            pub fn drain_ceiling(conn: &mut Conn, batch: usize) -> BResult<usize> {
                ceiling_in(conn, batch, "id")
            }

            /// The same, taking the rows in shard order (the `*_shard_id` index's order):
            /// on SQLite, whose deletes maintain every index, a batch then touches a few
            /// leaf pages of each index instead of one per row.
            pub fn drain_ceiling_by_shard(conn: &mut Conn, batch: usize) -> BResult<usize> {
                ceiling_in(conn, batch, "shard_scope, shard_identifier, id")
            }

            fn ceiling_in(conn: &mut Conn, batch: usize, order: &str) -> BResult<usize> {
                let columns = "id, shard_scope, shard_identifier, category, object_identifier, \
                     payload, scheduled_from, scheduled_for, date_added";
                if MY {
                    return ceiling_mysql(conn, batch, order, columns);
                }
                let sql = if PG {
                    // `= ANY(ARRAY(...))`, not `IN (...)`: PostgreSQL plans `IN` as a hash
                    // semi-join over a sequential scan of the whole table, every batch.
                    format!(
                        "DELETE FROM cell_outboxes WHERE id = ANY(ARRAY(SELECT id FROM cell_outboxes \
                         ORDER BY {order} LIMIT $1 FOR UPDATE SKIP LOCKED)) RETURNING {columns}"
                    )
                } else {
                    format!(
                        "DELETE FROM cell_outboxes WHERE id IN (SELECT id FROM cell_outboxes \
                         ORDER BY {order} LIMIT ?) RETURNING {columns}"
                    )
                };
                let mut deleted = 0;
                loop {
                    let rows = Cached(diesel::sql_query(sql.as_str()).bind::<BigInt, _>(batch as i64))
                        .load::<DeletedRow>(conn)?;
                    if rows.is_empty() {
                        return Ok(deleted);
                    }
                    deleted += rows.len();
                }
            }

            /// MySQL / MariaDB: per batch, one transaction that reads the oldest rows with
            /// a locking SELECT and deletes them with one range DELETE (the batch is the
            /// lowest ids, so `id <= its last`). MariaDB's `DELETE ... RETURNING` would be
            /// one statement, but its prepared form returns no result metadata (diesel:
            /// "No metadata exists"), and MySQL 8 has none.
            fn ceiling_mysql(conn: &mut Conn, batch: usize, order: &str, columns: &str) -> BResult<usize> {
                if order != "id" {
                    return Err("the MySQL ceiling takes rows in id order only".into());
                }
                let select = format!("SELECT {columns} FROM cell_outboxes ORDER BY id LIMIT ? FOR UPDATE");
                let delete = "DELETE FROM cell_outboxes WHERE id <= ?";
                let mut deleted = 0;
                loop {
                    let n = conn.transaction(|c| {
                        let rows = crate::suite::Raw::new(&select).bind::<BigInt, _>(batch as i64)
                            .load::<DeletedRow>(c)?;
                        let Some(last) = rows.iter().map(|r| r.id).max() else {
                            return Ok::<_, diesel::result::Error>(0);
                        };
                        let gone = crate::suite::Raw::new(delete).bind::<BigInt, _>(last).execute(c)?;
                        if gone != rows.len() {
                            return Err(diesel::result::Error::RollbackTransaction);
                        }
                        Ok(gone)
                    })?;
                    if n == 0 {
                        return Ok(deleted);
                    }
                    deleted += n;
                }
            }

            /// Fills `backlog`, runs `run` on it and returns rows per second, after checking
            /// that it deleted every row.
            fn timed_drain(
                conn: &mut Conn,
                backlog: &Backlog,
                run: &mut dyn FnMut(&mut Conn) -> BResult<usize>,
            ) -> BResult<f64> {
                fill(conn, backlog)?;
                let rows = backlog.rows();
                let start = Instant::now();
                let deleted = run(conn)?;
                let secs = start.elapsed().as_secs_f64();
                let left = outbox_rows(conn)?;
                if deleted != rows || left != 0 {
                    return Err(format!("drain of {} deleted {deleted} of {rows}, {left} left", backlog.label()).into());
                }
                Ok(rows as f64 / secs)
            }

            crate::writes::writes_section!();
            crate::drain::drain_section!();
            crate::discovery::discovery_section!();
            crate::flush::flush_section!();
            crate::backfill::backfill_section!();
            crate::guard::guard_section!();
            crate::sustained::sustained_section!();
        }
    };
}
pub(crate) use suite;
