//! The benchmarks, written once and expanded per backend (diesel's traits want concrete
//! connection types, so a macro is simpler than generic bounds on every statement).

/// The SQL of Sentry's three indexes, by name (cell table).
pub const SENTRY_INDEXES: [(&str, &str); 3] = [
    (
        "cell_outboxes_coalescing",
        "(shard_scope, shard_identifier, category, object_identifier)",
    ),
    (
        "cell_outboxes_shard_scheduled",
        "(shard_scope, shard_identifier, scheduled_for)",
    ),
    (
        "cell_outboxes_shard_id",
        "(shard_scope, shard_identifier, id)",
    ),
];

/// The coalescing index with `id` as its last column (PostgreSQL does not append it).
pub const GROUP_INDEX: (&str, &str) = (
    "cell_outboxes_group",
    "(shard_scope, shard_identifier, category, object_identifier, id)",
);

/// Index sets compared by the write benchmark: a label and the indexes.
pub fn index_configs() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let [coalescing, scheduled, shard_id] = SENTRY_INDEXES;
    vec![
        ("no secondary index", vec![]),
        ("coalescing only", vec![coalescing]),
        ("shard_scheduled only", vec![scheduled]),
        ("shard_id only", vec![shard_id]),
        ("Sentry's three", vec![coalescing, scheduled, shard_id]),
        (
            "coalescing + shard_id (shipped)",
            vec![coalescing, shard_id],
        ),
        ("group(+id) + shard_id", vec![GROUP_INDEX, shard_id]),
    ]
}

macro_rules! suite {
    ($module:ident, $conn:ty, pg = $pg:expr) => {
        /// The benchmarks on one backend.
        pub mod $module {
            use std::sync::{Arc, Mutex};
            use std::time::{Duration, Instant};

            use chrono::NaiveDateTime;
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;
            use diesel::sql_types::{BigInt, Integer, Nullable, Text};
            use crate::model::cell_outboxes as co;
            use diesel_outbox::drain::Metrics;
            use diesel_outbox::row::{PayloadJson, DUE_AT_ONCE};
            use diesel_outbox::{
                outbox_context, DueShards, JsonPayload, Outbox, OutboxMessage, OutboxTable,
                Receivers,
            };

            use crate::model::{bench_projects as bp, project, Category, PlainProject, Project};
            use crate::stats::{count, median, micros, percentile, ratio, Table};
            use crate::suite::index_configs;
            use crate::{BResult, Sizes};

            /// The connection type.
            pub type Conn = $conn;
            const PG: bool = $pg;
            const NAME: &str = if PG { "PostgreSQL" } else { "SQLite" };

            /// Where the backend's connections go.
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
                    if !PG {
                        conn.batch_execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000;",
                        )?;
                    } else if !self.sync_commit {
                        conn.batch_execute("SET synchronous_commit = off")?;
                    }
                    Ok(conn)
                }
            }

            #[derive(QueryableByName)]
            struct Value {
                #[diesel(sql_type = BigInt)]
                value: i64,
            }

            #[derive(QueryableByName)]
            struct IndexDef {
                #[diesel(sql_type = Text)]
                def: String,
            }

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
                #[derive(QueryableByName)]
                struct V {
                    #[diesel(sql_type = Text)]
                    v: String,
                }
                let sql = if PG {
                    "SELECT current_setting('server_version') || ', synchronous_commit=' || \
                     (SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit') || ', fsync=' || \
                     current_setting('fsync') || ', shared_buffers=' || \
                     current_setting('shared_buffers') AS v"
                } else {
                    "SELECT sqlite_version() || ', WAL, synchronous=NORMAL' AS v"
                };
                Ok(diesel::sql_query(sql).get_result::<V>(&mut db.connect()?)?.v
                    + if PG && !db.sync_commit { " (the bench's sessions: synchronous_commit=off)" } else { "" })
            }

            /// Creates the model table next to the (migrated) outbox tables.
            pub fn setup(db: &Db) -> BResult<()> {
                let mut conn = db.connect()?;
                diesel_outbox::run_migrations(&mut conn)?;
                conn.batch_execute(crate::model::CREATE_PROJECTS)?;
                Ok(())
            }

            fn clear(conn: &mut Conn) -> BResult<()> {
                if PG {
                    conn.batch_execute("TRUNCATE cell_outboxes, bench_projects")?;
                } else {
                    conn.batch_execute("DELETE FROM cell_outboxes; DELETE FROM bench_projects")?;
                }
                Ok(())
            }

            // ---------------------------------------------------------------- writes

            #[derive(Clone, Copy, PartialEq, Eq, Debug)]
            enum Variant {
                Plain,
                Floor,
                Library,
            }

            fn plain_upsert(conn: &mut Conn, p: &Project) -> QueryResult<usize> {
                use diesel::upsert::excluded;
                let row = PlainProject {
                    id: p.id,
                    organization_id: p.organization_id,
                    name: &p.name,
                };
                diesel::insert_into(bp::table)
                    .values(&row)
                    .on_conflict(bp::id)
                    .do_update()
                    .set((
                        bp::organization_id.eq(excluded(bp::organization_id)),
                        bp::name.eq(excluded(bp::name)),
                    ))
                    .execute(conn)
            }

            fn write_txn(conn: &mut Conn, variant: Variant, models: &[Project]) -> BResult<()> {
                match variant {
                    Variant::Plain => conn.transaction(|c| {
                        for p in models {
                            plain_upsert(c, p)?;
                        }
                        Ok::<_, diesel::result::Error>(())
                    })?,
                    Variant::Floor => conn.transaction(|c| {
                        for p in models {
                            plain_upsert(c, p)?;
                        }
                        let at = now();
                        let rows: Vec<_> = models
                            .iter()
                            .map(|p| {
                                (
                                    co::shard_scope.eq(0),
                                    co::shard_identifier.eq(p.organization_id),
                                    co::category.eq(1),
                                    co::object_identifier.eq(p.id),
                                    co::payload.eq(None::<JsonPayload>),
                                    co::scheduled_from.eq(at),
                                    co::scheduled_for.eq(DUE_AT_ONCE),
                                    co::date_added.eq(at),
                                )
                            })
                            .collect();
                        diesel::insert_into(co::table).values(&rows).execute(c)?;
                        Ok::<_, diesel::result::Error>(())
                    })?,
                    Variant::Library => outbox_context(conn, |ctx| {
                        for p in models {
                            p.save(ctx)?;
                        }
                        Ok::<_, diesel_outbox::Error>(())
                    })?,
                }
                Ok(())
            }

            /// Per-transaction times (µs) of each variant, `rounds` interleaved rounds of
            /// `txns` transactions of `per_txn` saves each; the first round warms up. Rows
            /// with ids above `keep` are deleted after each round; `rotate` shifts the order
            /// of the variants (callers that run one round at a time pass their round).
            #[allow(clippy::too_many_arguments)]
            fn write_rounds(
                conn: &mut Conn,
                next_id: &mut i64,
                variants: &[Variant],
                per_txn: usize,
                txns: usize,
                rounds: usize,
                keep: i64,
                rotate: usize,
            ) -> BResult<Vec<Vec<f64>>> {
                let mut samples = vec![Vec::new(); variants.len()];
                for round in 0..=rounds {
                    for k in 0..variants.len() {
                        // Rotate the order each round so no variant always runs first.
                        let v = (k + round + rotate) % variants.len();
                        let batches: Vec<Vec<Project>> = (0..txns)
                            .map(|_| {
                                (0..per_txn)
                                    .map(|_| {
                                        *next_id += 1;
                                        project(*next_id)
                                    })
                                    .collect()
                            })
                            .collect();
                        let start = Instant::now();
                        for batch in &batches {
                            write_txn(conn, variants[v], batch)?;
                        }
                        let per = micros(start.elapsed()) / txns as f64;
                        if round > 0 {
                            samples[v].push(per);
                        }
                    }
                    // Remove what the round wrote, keeping the standing backlog (ids <= keep).
                    conn.batch_execute(&format!("DELETE FROM cell_outboxes WHERE id > {keep}"))?;
                }
                Ok(samples)
            }

            /// Benchmark 1: write overhead against plain diesel (a) and the floor (b).
            pub fn writes(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                let mut next_id = 0;
                let mut table = Table::new(
                    format!("{NAME}: write, µs per transaction (median of {} interleaved rounds)", sizes.write_rounds),
                    &["saves/txn", "(a) plain diesel", "(b) floor: hand-written", "outbox_context", "vs floor (b)", "vs plain (a)", "floor/plain"],
                );
                let variants = [Variant::Library, Variant::Plain, Variant::Floor];
                for per_txn in [1usize, 10, 100] {
                    let txns = (sizes.write_rows / per_txn).max(2);
                    let s = write_rounds(&mut conn, &mut next_id, &variants, per_txn, txns, sizes.write_rounds, 0, 0)?;
                    let (lib, plain, floor) = (median(&s[0]), median(&s[1]), median(&s[2]));
                    table.row(vec![
                        per_txn.to_string(),
                        format!("{plain:.1}"),
                        format!("{floor:.1}"),
                        format!("{lib:.1}"),
                        ratio(lib / floor),
                        ratio(lib / plain),
                        ratio(floor / plain),
                    ]);
                }
                clear(&mut conn)?;
                Ok(table)
            }

            fn current_indexes(conn: &mut Conn) -> BResult<Vec<String>> {
                let sql = if PG {
                    "SELECT indexdef AS def FROM pg_indexes WHERE tablename = 'cell_outboxes' \
                     AND schemaname = current_schema() AND indexname NOT LIKE '%pkey' ORDER BY indexname"
                } else {
                    "SELECT sql AS def FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'cell_outboxes' AND sql IS NOT NULL ORDER BY name"
                };
                Ok(diesel::sql_query(sql)
                    .load::<IndexDef>(conn)?
                    .into_iter()
                    .map(|d| d.def)
                    .collect())
            }

            fn drop_indexes(conn: &mut Conn) -> BResult<()> {
                #[derive(QueryableByName)]
                struct Name {
                    #[diesel(sql_type = Text)]
                    def: String,
                }
                let sql = if PG {
                    "SELECT indexname AS def FROM pg_indexes WHERE tablename = 'cell_outboxes' \
                     AND schemaname = current_schema() AND indexname NOT LIKE '%pkey'"
                } else {
                    "SELECT name AS def FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'cell_outboxes' AND sql IS NOT NULL"
                };
                for name in diesel::sql_query(sql).load::<Name>(conn)? {
                    conn.batch_execute(&format!("DROP INDEX {}", name.def))?;
                }
                Ok(())
            }

            /// The write cost of each index set, at 100 saves per transaction: each round
            /// runs every set (in a rotating order) on the emptied outbox table, so sets are
            /// compared within rounds as the variants are. Restores the migrations' indexes.
            pub fn index_costs(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                let shipped = current_indexes(&mut conn)?;
                let mut next_id = 0;
                // A standing backlog, so that index inserts land in trees of a real size.
                fill(&mut conn, sizes.index_backlog, 1_000, 1)?;
                let keep = scalar(&mut conn, "SELECT COALESCE(MAX(id), 0) AS value FROM cell_outboxes")?;
                let mut table = Table::new(
                    format!(
                        "{NAME}: cost of the outbox indexes, 100 saves per transaction over a standing backlog of {} rows, µs per transaction (median of {} interleaved rounds)",
                        count(sizes.index_backlog as f64),
                        sizes.index_rounds
                    ),
                    &["outbox indexes", "(a) plain", "(b) floor", "outbox_context", "floor/plain", "outbox cost (b)-(a)", "vs no index"],
                );
                let variants = [Variant::Library, Variant::Plain, Variant::Floor];
                let txns = (sizes.write_rows / 50).max(2);
                let configs = index_configs();
                let mut samples = vec![vec![Vec::new(); variants.len()]; configs.len()];
                for round in 0..sizes.index_rounds {
                    for k in 0..configs.len() {
                        let c = (k + round) % configs.len();
                        drop_indexes(&mut conn)?;
                        for (name, columns) in &configs[c].1 {
                            conn.batch_execute(&format!("CREATE INDEX {name} ON cell_outboxes {columns}"))?;
                        }
                        // One round per set and turn (its own warm-up round is dropped).
                        let s = write_rounds(&mut conn, &mut next_id, &variants, 100, txns, 1, keep, round)?;
                        for (v, times) in s.into_iter().enumerate() {
                            samples[c][v].extend(times);
                        }
                    }
                }
                let mut none_cost = 0.0;
                for (c, (label, _)) in configs.iter().enumerate() {
                    let s = &samples[c];
                    let (lib, plain, floor) = (median(&s[0]), median(&s[1]), median(&s[2]));
                    let cost = floor - plain;
                    if c == 0 {
                        none_cost = cost;
                    }
                    table.row(vec![
                        (*label).to_owned(),
                        format!("{plain:.0}"),
                        format!("{floor:.0}"),
                        format!("{lib:.0}"),
                        ratio(floor / plain),
                        format!("{cost:.0}"),
                        ratio(cost / none_cost),
                    ]);
                }
                drop_indexes(&mut conn)?;
                for def in &shipped {
                    conn.batch_execute(def)?;
                }
                clear(&mut conn)?;
                Ok(table)
            }

            // ---------------------------------------------------------------- drain

            /// Fills the cell outbox with `rows` due rows over `shards` shards, `per_object`
            /// rows per object (object `g % objects`, shard `object % shards`: the rows of
            /// one object are spread over the shard's queue, as repeated saves would be).
            pub fn fill(conn: &mut Conn, rows: usize, shards: usize, per_object: usize) -> BResult<()> {
                let objects = (rows / per_object).max(1);
                let sql = if PG {
                    format!(
                        "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
                         object_identifier, payload, scheduled_from, scheduled_for, date_added) \
                         SELECT 0, (g % {objects}) % {shards}, 1, g % {objects}, NULL, \
                         now() AT TIME ZONE 'UTC', TIMESTAMP '2016-08-01 00:00:00', now() AT TIME ZONE 'UTC' \
                         FROM generate_series(0, {last}) AS g; ANALYZE cell_outboxes;",
                        last = rows - 1
                    )
                } else {
                    format!(
                        "WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g + 1 < {rows}) \
                         INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
                         object_identifier, payload, scheduled_from, scheduled_for, date_added) \
                         SELECT 0, (g % {objects}) % {shards}, 1, g % {objects}, NULL, \
                         strftime('%Y-%m-%d %H:%M:%f', 'now'), '2016-08-01 00:00:00', \
                         strftime('%Y-%m-%d %H:%M:%f', 'now') FROM s;"
                    )
                };
                conn.batch_execute(&sql)?;
                Ok(())
            }

            /// An outbox whose one receiver does nothing.
            pub fn idle_outbox() -> Outbox<Conn> {
                Outbox::new(Receivers::new().cell(
                    Category::ProjectUpdate,
                    |_conn: &mut Conn, _message: &OutboxMessage| Ok::<_, diesel_outbox::Error>(()),
                ))
            }

            /// The library's periodic drain, round after round, until a round finds nothing.
            /// Returns the rows it deleted.
            pub fn drain_library(conn: &mut Conn, outbox: &Outbox<Conn>) -> BResult<usize> {
                let mut deleted = 0;
                loop {
                    let report = outbox.drain_due_shards(conn)?;
                    if !report.failures.is_empty() {
                        return Err(format!("{} deliveries failed", report.failures.len()).into());
                    }
                    deleted += report.rows_deleted;
                    if !report.did_work() && report.shards_not_claimed == 0 {
                        return Ok(deleted);
                    }
                }
            }

            /// The ceiling: hand-written batched DELETE ... RETURNING of the oldest rows.
            fn drain_ceiling(conn: &mut Conn, batch: usize) -> BResult<usize> {
                let sql = if PG {
                    format!(
                        "DELETE FROM cell_outboxes WHERE id IN (SELECT id FROM cell_outboxes \
                         ORDER BY id LIMIT {batch} FOR UPDATE SKIP LOCKED) RETURNING id, shard_scope, \
                         shard_identifier, category, object_identifier, payload"
                    )
                } else {
                    format!(
                        "DELETE FROM cell_outboxes WHERE id IN (SELECT id FROM cell_outboxes \
                         ORDER BY id LIMIT {batch}) RETURNING id, shard_scope, \
                         shard_identifier, category, object_identifier, payload"
                    )
                };
                let mut deleted = 0;
                loop {
                    let rows = diesel::sql_query(sql.as_str()).load::<DeletedRow>(conn)?;
                    if rows.is_empty() {
                        return Ok(deleted);
                    }
                    deleted += rows.len();
                }
            }

            /// Hand-written, one statement (and transaction) per coalesced group, shard by
            /// shard as the library goes: the shard's head row's whole group, deleted and
            /// returned. (Taking the table's global head instead degrades quadratically on
            /// PostgreSQL: every lookup walks the dead index entries of the rows deleted
            /// before it.)
            fn drain_per_group(conn: &mut Conn, shards: usize) -> BResult<usize> {
                let sql = if PG {
                    "WITH head AS (SELECT shard_scope, shard_identifier, category, object_identifier \
                     FROM cell_outboxes WHERE shard_scope = 0 AND shard_identifier = $1 \
                     ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     DELETE FROM cell_outboxes c USING head h WHERE c.shard_scope = h.shard_scope \
                     AND c.shard_identifier = h.shard_identifier AND c.category = h.category \
                     AND c.object_identifier = h.object_identifier RETURNING c.id, c.shard_scope, \
                     c.shard_identifier, c.category, c.object_identifier, c.payload"
                } else {
                    "DELETE FROM cell_outboxes WHERE (shard_scope, shard_identifier, category, \
                     object_identifier) = (SELECT shard_scope, shard_identifier, category, \
                     object_identifier FROM cell_outboxes WHERE shard_scope = 0 AND \
                     shard_identifier = ? ORDER BY id LIMIT 1) RETURNING id, \
                     shard_scope, shard_identifier, category, object_identifier, payload"
                };
                let mut deleted = 0;
                for shard in 0..shards as i64 {
                    loop {
                        let rows = diesel::sql_query(sql)
                            .bind::<BigInt, _>(shard)
                            .load::<DeletedRow>(conn)?;
                        if rows.is_empty() {
                            break;
                        }
                        deleted += rows.len();
                    }
                }
                Ok(deleted)
            }

            fn timed_drain(
                conn: &mut Conn,
                rows: usize,
                shards: usize,
                per_object: usize,
                run: &mut dyn FnMut(&mut Conn) -> BResult<usize>,
            ) -> BResult<f64> {
                fill(conn, rows, shards, per_object)?;
                let start = Instant::now();
                let deleted = run(conn)?;
                let secs = start.elapsed().as_secs_f64();
                let left = outbox_rows(conn)?;
                if deleted != rows || left != 0 {
                    return Err(format!("drain deleted {deleted} of {rows}, {left} left").into());
                }
                Ok(rows as f64 / secs)
            }

            /// Benchmark 2: drain throughput against the ceiling, on the same data.
            pub fn drain(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                let outbox = idle_outbox();
                let mut table = Table::new(
                    format!("{NAME}: drain, rows deleted per second ({} shards, receiver does nothing)", sizes.shards),
                    &["backlog", "rows/object", "library drain", "per-group SQL", "ceiling (batch 1000)", "library/ceiling", "library/per-group"],
                );
                for &rows in &sizes.drain_rows {
                    for per_object in [1usize, 10] {
                        let reps = if rows <= 10_000 { 2 } else { 1 };
                        let (mut lib, mut group, mut ceil) = (Vec::new(), Vec::new(), Vec::new());
                        for _ in 0..reps {
                            lib.push(timed_drain(&mut conn, rows, sizes.shards, per_object, &mut |c| drain_library(c, &outbox))?);
                            // The per-group decomposition, only on the smallest backlog on
                            // PostgreSQL (it would add a minute at 200,000 rows).
                            if !PG || rows == sizes.drain_rows[0] {
                                group.push(timed_drain(&mut conn, rows, sizes.shards, per_object, &mut |c| drain_per_group(c, sizes.shards))?);
                            }
                            ceil.push(timed_drain(&mut conn, rows, sizes.shards, per_object, &mut |c| drain_ceiling(c, 1000))?);
                        }
                        let (lib, ceil) = (median(&lib), median(&ceil));
                        let (group, vs_group) = if group.is_empty() {
                            ("-".to_owned(), "-".to_owned())
                        } else {
                            (count(median(&group)), ratio(lib / median(&group)))
                        };
                        table.row(vec![
                            count(rows as f64),
                            per_object.to_string(),
                            count(lib),
                            group,
                            count(ceil),
                            ratio(lib / ceil),
                            vs_group,
                        ]);
                    }
                }
                if PG {
                    // The same with a WAL flush per commit (the server's default).
                    let synced = Db { url: db.url.clone(), sync_commit: true };
                    let mut conn = synced.connect()?;
                    // Small: each group waits for a WAL flush.
                    let rows = sizes.drain_rows[0].min(2_000);
                    let lib = timed_drain(&mut conn, rows, sizes.shards, 1, &mut |c| drain_library(c, &outbox))?;
                    let group = timed_drain(&mut conn, rows, sizes.shards, 1, &mut |c| drain_per_group(c, sizes.shards))?;
                    let ceil = timed_drain(&mut conn, rows, sizes.shards, 1, &mut |c| drain_ceiling(c, 1000))?;
                    table.row(vec![
                        format!("{} (synchronous_commit=on)", count(rows as f64)),
                        "1".to_owned(),
                        count(lib),
                        count(group),
                        count(ceil),
                        ratio(lib / ceil),
                        ratio(lib / group),
                    ]);
                }
                Ok(table)
            }

            /// Benchmark 3a: the library's drain on 1, 2 and 4 threads (own connections,
            /// cooperating through the claims), against the batched ceiling on as many.
            pub fn scaling(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                let outbox = idle_outbox();
                let rows = sizes.scaling_rows;
                let mut table = Table::new(
                    format!("{NAME}: drain scaling, {} rows, {} shards, 1 row/object, rows/s", count(rows as f64), sizes.shards),
                    &["threads", "library drain", "speed-up", "ceiling (batch 1000)", "speed-up", "library/ceiling"],
                );
                let mut base = (0.0, 0.0);
                for threads in [1usize, 2, 4] {
                    let mut lib = Vec::new();
                    let mut ceil = Vec::new();
                    for (which, out) in [(0, &mut lib), (1, &mut ceil)] {
                        fill(&mut conn, rows, sizes.shards, 1)?;
                        let start = Instant::now();
                        let results: Vec<BResult<usize>> = std::thread::scope(|scope| {
                            let handles: Vec<_> = (0..threads)
                                .map(|_| {
                                    let outbox = outbox.clone();
                                    scope.spawn(move || -> BResult<usize> {
                                        let mut conn = db.connect()?;
                                        if which == 1 {
                                            return drain_ceiling(&mut conn, 1000);
                                        }
                                        let mut deleted = 0;
                                        loop {
                                            deleted += drain_library(&mut conn, &outbox)?;
                                            if outbox_rows(&mut conn)? == 0 {
                                                return Ok(deleted);
                                            }
                                            // Shards held or backed off by another thread.
                                            std::thread::sleep(Duration::from_millis(1));
                                        }
                                    })
                                })
                                .collect();
                            handles
                                .into_iter()
                                .map(|h| h.join().unwrap_or_else(|_| Err("a drain thread panicked".into())))
                                .collect()
                        });
                        let secs = start.elapsed().as_secs_f64();
                        let mut deleted = 0;
                        for r in results {
                            deleted += r?;
                        }
                        if deleted != rows {
                            return Err(format!("scaling drain deleted {deleted} of {rows}").into());
                        }
                        out.push(rows as f64 / secs);
                    }
                    let (lib, ceil) = (median(&lib), median(&ceil));
                    if threads == 1 {
                        base = (lib, ceil);
                    }
                    table.row(vec![
                        threads.to_string(),
                        count(lib),
                        ratio(lib / base.0),
                        count(ceil),
                        ratio(ceil / base.1),
                        ratio(lib / ceil),
                    ]);
                }
                Ok(table)
            }

            #[derive(QueryableByName)]
            struct PlanLine {
                #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
                line: String,
            }

            #[derive(QueryableByName)]
            struct SqlitePlan {
                #[diesel(sql_type = Text)]
                detail: String,
            }

            fn explain(conn: &mut Conn, sql: &str) -> BResult<Vec<String>> {
                Ok(if PG {
                    diesel::sql_query(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
                        .load::<PlanLine>(conn)?
                        .into_iter()
                        .map(|l| l.line)
                        .collect()
                } else {
                    diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                        .load::<SqlitePlan>(conn)?
                        .into_iter()
                        .map(|l| l.detail)
                        .collect()
                })
            }

            /// Benchmark 3b: due-shard discovery on a big backlog; EXPLAIN, and its time
            /// against one index lookup. Returns the table and the plans.
            pub fn discovery(db: &Db, sizes: &Sizes) -> BResult<(Table, Vec<String>)> {
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                let rows = sizes.discovery_rows;
                let shards = sizes.discovery_shards;
                fill(&mut conn, rows, shards, 1)?;
                let outbox = idle_outbox();
                let options = DueShards::new().table(OutboxTable::Cell).limit(100);
                let mut found = 0;
                let mut disc = Vec::new();
                for _ in 0..7 {
                    let start = Instant::now();
                    found = outbox.due_shards(&mut conn, &options)?.len();
                    disc.push(micros(start.elapsed()));
                }
                let mut lookup = Vec::new();
                for k in 0..200 {
                    let sql = format!(
                        "SELECT id AS value FROM cell_outboxes WHERE shard_scope = 0 AND \
                         shard_identifier = {} ORDER BY id LIMIT 1",
                        (k * 37) % shards
                    );
                    let start = Instant::now();
                    scalar(&mut conn, &sql)?;
                    lookup.push(micros(start.elapsed()));
                }
                let ts = now().format("%Y-%m-%d %H:%M:%S");
                let stamp = if PG { format!("TIMESTAMP '{ts}'") } else { format!("'{ts}'") };
                // The library's query: a loose index scan on PostgreSQL, GROUP BY on SQLite.
                let due_sql = if PG {
                    format!(
                        "WITH RECURSIVE s (shard_scope, shard_identifier) AS ( \
                             (SELECT shard_scope, shard_identifier FROM cell_outboxes \
                              ORDER BY shard_scope, shard_identifier LIMIT 1) \
                             UNION ALL \
                             SELECT n.* FROM s CROSS JOIN LATERAL ( \
                                 SELECT o.shard_scope, o.shard_identifier FROM cell_outboxes o \
                                 WHERE (o.shard_scope, o.shard_identifier) > (s.shard_scope, s.shard_identifier) \
                                 ORDER BY o.shard_scope, o.shard_identifier LIMIT 1) n) \
                         SELECT s.shard_scope, s.shard_identifier, CAST('' AS TEXT) AS cell_name FROM s \
                         CROSS JOIN LATERAL (SELECT o.scheduled_for AS first_due FROM cell_outboxes o \
                             WHERE o.shard_scope = s.shard_scope AND o.shard_identifier = s.shard_identifier \
                             ORDER BY o.scheduled_for LIMIT 1) d \
                         CROSS JOIN LATERAL (SELECT o.id AS last_id FROM cell_outboxes o \
                             WHERE o.shard_scope = s.shard_scope AND o.shard_identifier = s.shard_identifier \
                             ORDER BY o.id DESC LIMIT 1) m \
                         WHERE d.first_due <= {stamp} ORDER BY d.first_due, m.last_id LIMIT 100"
                    )
                } else {
                    format!(
                        "SELECT shard_scope, shard_identifier, CAST('' AS TEXT) AS cell_name FROM cell_outboxes \
                         WHERE scheduled_for <= {stamp} GROUP BY shard_scope, shard_identifier \
                         ORDER BY MIN(scheduled_for), MAX(id) LIMIT 100"
                    )
                };
                let mut plans = vec![format!("-- {NAME}, due shards, {} rows, {} shards:", count(rows as f64), count(shards as f64))];
                plans.extend(explain(&mut conn, &due_sql)?);
                plans.push(format!("-- {NAME}, one index lookup (the baseline):"));
                plans.extend(explain(
                    &mut conn,
                    "SELECT id FROM cell_outboxes WHERE shard_scope = 0 AND shard_identifier = 7 ORDER BY id LIMIT 1",
                )?);
                plans.push(format!("-- {NAME}, a drain step: a group's newest row:"));
                plans.extend(explain(
                    &mut conn,
                    "SELECT id FROM cell_outboxes WHERE shard_scope = 0 AND shard_identifier = 7 \
                     AND category = 1 AND object_identifier = 7 ORDER BY id DESC LIMIT 1",
                )?);
                clear(&mut conn)?;
                let mut table = Table::new(
                    format!("{NAME}: due-shard discovery, {} due rows over {} shards", count(rows as f64), count(shards as f64)),
                    &["query", "median µs", "p99 µs", "ratio"],
                );
                let (d, l) = (median(&disc), median(&lookup));
                table.row(vec![format!("find_due_shards (limit 100, found {found})"), format!("{d:.0}"), format!("{:.0}", percentile(&disc, 99.0)), ratio(d / l)]);
                table.row(vec!["one index lookup (a shard's head)".to_owned(), format!("{l:.0}"), format!("{:.0}", percentile(&lookup, 99.0)), ratio(1.0)]);
                Ok((table, plans))
            }

            // ---------------------------------------------------------------- flush

            struct SavedAt(Arc<Mutex<Option<Instant>>>);

            impl Metrics for SavedAt {
                fn rows_saved(&self, _table: OutboxTable, _category: i32, _rows: u64) {
                    if let Ok(mut at) = self.0.lock() {
                        *at = Some(Instant::now());
                    }
                }
            }

            /// Benchmark 4: from the commit of `Outbox::context` to the receiver having run.
            pub fn flush(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                let saved = Arc::new(Mutex::new(None));
                let handled = Arc::new(Mutex::new(None::<Instant>));
                let seen = handled.clone();
                let receivers = Receivers::new().cell(
                    Category::ProjectUpdate,
                    move |_conn: &mut Conn, _message: &OutboxMessage| {
                        if let Ok(mut at) = seen.lock() {
                            *at = Some(Instant::now());
                        }
                        Ok::<_, diesel_outbox::Error>(())
                    },
                );
                let outbox = Outbox::builder(receivers).metrics(SavedAt(saved.clone())).build();
                let mut latency = Vec::new();
                let mut call = Vec::new();
                let mut plain = Vec::new();
                for i in 0..=sizes.flush_samples {
                    let p = project(i as i64 + 1);
                    let start = Instant::now();
                    outbox.context(&mut conn, |ctx| p.save(ctx))?;
                    let total = start.elapsed();
                    let (s, h) = (*saved.lock().map_err(|_| "poisoned")?, *handled.lock().map_err(|_| "poisoned")?);
                    let (Some(s), Some(h)) = (s, h) else {
                        return Err("the flush did not run the receiver".into());
                    };
                    // The same save without the flush, interleaved.
                    let start = Instant::now();
                    outbox_context(&mut conn, |ctx| p.save(ctx))?;
                    let unflushed = start.elapsed();
                    conn.batch_execute("DELETE FROM cell_outboxes")?;
                    if i > 0 {
                        latency.push(micros(h.saturating_duration_since(s)));
                        call.push(micros(total));
                        plain.push(micros(unflushed));
                    }
                }
                clear(&mut conn)?;
                let mut table = Table::new(
                    format!("{NAME}: flush latency, 1 save per transaction, {} samples, µs", sizes.flush_samples),
                    &["measure", "median", "p99"],
                );
                table.row(vec!["commit -> receiver has run".to_owned(), format!("{:.0}", median(&latency)), format!("{:.0}", percentile(&latency, 99.0))]);
                table.row(vec!["Outbox::context call, with flush".to_owned(), format!("{:.0}", median(&call)), format!("{:.0}", percentile(&call, 99.0))]);
                table.row(vec!["outbox_context call, no flush".to_owned(), format!("{:.0}", median(&plain)), format!("{:.0}", percentile(&plain, 99.0))]);
                Ok(table)
            }

            // ---------------------------------------------------------------- memory

            /// Benchmark 5 (run in a child process): fills `rows` rows (`per_object` per
            /// object) and drains them; returns (peak KiB after the fill, peak KiB after the
            /// drain, seconds of drain).
            pub fn memory_child(db: &Db, rows: usize, shards: usize, per_object: usize) -> BResult<(u64, u64, f64)> {
                let mut conn = db.connect()?;
                fill(&mut conn, rows, shards, per_object)?;
                let before = crate::stats::memory_kib().0;
                let start = Instant::now();
                let deleted = drain_library(&mut conn, &idle_outbox())?;
                let secs = start.elapsed().as_secs_f64();
                if deleted != rows {
                    return Err(format!("memory drain deleted {deleted} of {rows}").into());
                }
                Ok((before, crate::stats::memory_kib().0, secs))
            }
        }
    };
}
pub(crate) use suite;
