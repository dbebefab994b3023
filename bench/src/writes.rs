//! Write benchmarks: the library's `outbox_context` against plain diesel (a) and a
//! hand-written floor (b) that sends the same statements; the write cost of each index
//! set; and, on SQLite, where one save's time goes (WAL pages, checkpoints, indexes).

/// Index sets compared by the index table: a label and the indexes (name, columns).
pub fn index_configs(pg: bool) -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let coalescing = (
        "cell_outboxes_coalescing",
        "(shard_scope, shard_identifier, category, object_identifier)",
    );
    // PostgreSQL does not append the row's id to an index as SQLite's rowid does: the
    // shipped PostgreSQL index names it (a key's newest row is then an index-only probe).
    let coalescing_id = (
        "cell_outboxes_coalescing",
        "(shard_scope, shard_identifier, category, object_identifier, id)",
    );
    let scheduled = (
        "cell_outboxes_shard_scheduled",
        "(shard_scope, shard_identifier, scheduled_for)",
    );
    let shard_id = (
        "cell_outboxes_shard_id",
        "(shard_scope, shard_identifier, id)",
    );
    let shipped = if pg { coalescing_id } else { coalescing };
    vec![
        ("no secondary index", vec![]),
        ("coalescing only", vec![shipped]),
        ("shard_id only", vec![shard_id]),
        ("Sentry's three", vec![coalescing, scheduled, shard_id]),
        ("shipped: coalescing + shard_id", vec![shipped, shard_id]),
    ]
}

/// The outbox tables of the SQLite anatomy: what each step adds to the one before.
pub const ANATOMY_STEPS: [(&str, &str); 4] = [
    (
        "outbox row, rowid id, no index",
        "CREATE TABLE cell_outboxes (id INTEGER PRIMARY KEY NOT NULL, {COLUMNS})",
    ),
    (
        "+ AUTOINCREMENT",
        "CREATE TABLE cell_outboxes (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, {COLUMNS})",
    ),
    (
        "+ coalescing index",
        "CREATE TABLE cell_outboxes (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, {COLUMNS}); \
         CREATE INDEX cell_outboxes_coalescing ON cell_outboxes \
         (shard_scope, shard_identifier, category, object_identifier)",
    ),
    (
        "+ shard_id index (the shipped table)",
        "CREATE TABLE cell_outboxes (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, {COLUMNS}); \
         CREATE INDEX cell_outboxes_coalescing ON cell_outboxes \
         (shard_scope, shard_identifier, category, object_identifier); \
         CREATE INDEX cell_outboxes_shard_id ON cell_outboxes (shard_scope, shard_identifier, id)",
    ),
];

/// The outbox table's columns after `id`, as the migration declares them.
pub const ANATOMY_COLUMNS: &str =
    "shard_scope INTEGER NOT NULL, shard_identifier BIGINT NOT NULL, \
     category INTEGER NOT NULL, object_identifier BIGINT NOT NULL, payload TEXT NULL, \
     scheduled_from TIMESTAMP NOT NULL, scheduled_for TIMESTAMP NOT NULL, \
     date_added TIMESTAMP NOT NULL";

/// The floor's outbox rows as one statement that takes every column as an array
/// (PostgreSQL: `unnest`) or one JSON text (SQLite: `json_each`): a single text whatever the
/// row count, so diesel caches it, where a multi-row VALUES list is never cached.
pub trait ArrayInsert {
    /// Inserts one due cell row of category 1 per `(shard, object)`, written `at`.
    fn insert_outbox_arrays(
        &mut self,
        rows: &[(i64, i64)],
        at: chrono::NaiveDateTime,
    ) -> diesel::QueryResult<usize>;
}

impl ArrayInsert for diesel::PgConnection {
    fn insert_outbox_arrays(
        &mut self,
        rows: &[(i64, i64)],
        at: chrono::NaiveDateTime,
    ) -> diesel::QueryResult<usize> {
        use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
        use diesel::RunQueryDsl;
        let sql = "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
             object_identifier, payload, scheduled_from, scheduled_for, date_added) \
             SELECT r.scope, r.shard, r.category, r.object, r.payload::jsonb, r.sf, r.sd, r.da \
             FROM unnest($1::int4[], $2::int8[], $3::int4[], $4::int8[], $5::text[], \
             $6::timestamp[], $7::timestamp[], $8::timestamp[]) \
             AS r(scope, shard, category, object, payload, sf, sd, da)";
        let n = rows.len();
        crate::suite::Cached(
            diesel::sql_query(sql)
                .bind::<Array<Integer>, _>(vec![0i32; n])
                .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                .bind::<Array<Integer>, _>(vec![1i32; n])
                .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                .bind::<Array<Nullable<Text>>, _>(vec![None::<String>; n])
                .bind::<Array<Timestamp>, _>(vec![at; n])
                .bind::<Array<Timestamp>, _>(vec![diesel_outbox::row::DUE_AT_ONCE; n])
                .bind::<Array<Timestamp>, _>(vec![at; n]),
        )
        .execute(self)
    }
}

impl ArrayInsert for diesel::SqliteConnection {
    fn insert_outbox_arrays(
        &mut self,
        rows: &[(i64, i64)],
        at: chrono::NaiveDateTime,
    ) -> diesel::QueryResult<usize> {
        use diesel::sql_types::Text;
        use diesel::RunQueryDsl;
        let sql = "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
             object_identifier, payload, scheduled_from, scheduled_for, date_added) \
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
             json_extract(value, '$[2]'), json_extract(value, '$[3]'), \
             json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
             json_extract(value, '$[6]'), json_extract(value, '$[7]') FROM json_each(?)";
        let stamp = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S%.f").to_string();
        let (now, due) = (stamp(at), stamp(diesel_outbox::row::DUE_AT_ONCE));
        let values: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!([0, r.0, 1, r.1, null, now, due, now]))
            .collect();
        crate::suite::Cached(
            diesel::sql_query(sql).bind::<Text, _>(serde_json::Value::Array(values).to_string()),
        )
        .execute(self)
    }
}

/// MySQL / MariaDB: the same, as the rows of one JSON text read by `JSON_TABLE`
/// (MariaDB 10.6+, MySQL 8).
#[cfg(feature = "mysql")]
impl ArrayInsert for diesel::MysqlConnection {
    fn insert_outbox_arrays(
        &mut self,
        rows: &[(i64, i64)],
        at: chrono::NaiveDateTime,
    ) -> diesel::QueryResult<usize> {
        use diesel::sql_types::Text;
        use diesel::RunQueryDsl;
        let sql = "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
             object_identifier, payload, scheduled_from, scheduled_for, date_added) \
             SELECT 0, r.shard, 1, r.object, NULL, r.at, r.due, r.at FROM JSON_TABLE(?, '$[*]' \
             COLUMNS (shard BIGINT PATH '$[0]', object BIGINT PATH '$[1]', \
             at DATETIME(6) PATH '$[2]', due DATETIME(6) PATH '$[3]')) AS r";
        let stamp = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
        let (now, due) = (stamp(at), stamp(diesel_outbox::row::DUE_AT_ONCE));
        let values: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!([r.0, r.1, now, due]))
            .collect();
        crate::suite::Raw::new(sql)
            .bind::<Text, _>(serde_json::Value::Array(values).to_string())
            .execute(self)
    }
}

/// Baseline (a)'s statement: the model's row upserted by plain diesel, in the backend's
/// own dialect (`ON CONFLICT` or `ON DUPLICATE KEY UPDATE`).
pub trait PlainUpsert {
    /// Inserts `row`, or updates every column of the row with its id.
    fn plain_upsert(&mut self, row: &crate::model::PlainProject<'_>) -> diesel::QueryResult<usize>;
}

macro_rules! on_conflict_upsert {
    ($conn:ty) => {
        impl PlainUpsert for $conn {
            fn plain_upsert(
                &mut self,
                row: &crate::model::PlainProject<'_>,
            ) -> diesel::QueryResult<usize> {
                use crate::model::bench_projects as bp;
                use diesel::prelude::*;
                use diesel::upsert::excluded;
                diesel::insert_into(bp::table)
                    .values(row)
                    .on_conflict(bp::id)
                    .do_update()
                    .set((
                        bp::organization_id.eq(excluded(bp::organization_id)),
                        bp::name.eq(excluded(bp::name)),
                    ))
                    .execute(self)
            }
        }
    };
}
on_conflict_upsert!(diesel::PgConnection);
on_conflict_upsert!(diesel::SqliteConnection);

#[cfg(feature = "mysql")]
impl PlainUpsert for diesel::MysqlConnection {
    /// diesel's own MySQL upsert (`on_conflict(DuplicatedKeys)`) was measured uncached
    /// (70-90 µs against the library's 40): the baselines send the library's SQL by hand,
    /// cached (see [`crate::suite::Raw`]), so that they are the best MySQL can do.
    fn plain_upsert(&mut self, row: &crate::model::PlainProject<'_>) -> diesel::QueryResult<usize> {
        use diesel::sql_types::{BigInt, Text};
        use diesel::RunQueryDsl;
        crate::suite::Raw::new(
            "INSERT INTO bench_projects (id, organization_id, name) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE organization_id = VALUES(organization_id), \
             name = VALUES(name)",
        )
        .bind::<BigInt, _>(row.id)
        .bind::<BigInt, _>(row.organization_id)
        .bind::<Text, _>(row.name.to_owned())
        .execute(self)
    }
}

macro_rules! writes_section {
    () => {
        /// Benchmark 1: writes.
        pub mod writes {
            use super::*;
            use crate::profile::Profile;

            #[derive(Clone, Copy, PartialEq, Eq, Debug)]
            enum Variant {
                Plain,
                Floor,
                Library,
                /// The floor with its outbox rows sent as arrays (PostgreSQL: `unnest`;
                /// SQLite: `json_each`): one cached statement whatever the row count.
                FloorArrays,
            }

            impl Variant {
                fn label(self) -> &'static str {
                    match self {
                        Variant::Plain => "(a) plain diesel",
                        Variant::Floor => "(b) floor",
                        Variant::Library => "outbox_context",
                        Variant::FloorArrays => "(c) floor, rows as arrays",
                    }
                }
            }

            fn plain_upsert(conn: &mut Conn, p: &Project) -> QueryResult<usize> {
                let row = PlainProject {
                    id: p.id,
                    organization_id: p.organization_id,
                    name: &p.name,
                };
                crate::writes::PlainUpsert::plain_upsert(conn, &row)
            }

            /// The floor's outbox rows: what the library inserts, by hand. One row is a
            /// fixed single-row statement (diesel caches it, as it does the library's);
            /// more are one multi-row INSERT per bind-limit chunk, as the library sends.
            fn floor_rows(conn: &mut Conn, models: &[Project]) -> QueryResult<()> {
                let at = now();
                let row = |p: &Project| {
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
                };
                if let [p] = models {
                    diesel::insert_into(co::table).values(row(p)).execute(conn)?;
                    return Ok(());
                }
                let limit = if PG || MY { 65_535 / 8 } else { 32_766 / 8 };
                for chunk in models.chunks(limit) {
                    let rows: Vec<_> = chunk.iter().map(row).collect();
                    diesel::insert_into(co::table).values(&rows).execute(conn)?;
                }
                Ok(())
            }

            /// PostgreSQL: the floor wakes listening workers as `outbox_context` does after
            /// writing outbox rows (one NOTIFY per transaction, the library's statement;
            /// PostgreSQL folds repeats). SQLite has no notifications.
            fn floor_notify(conn: &mut Conn) -> QueryResult<()> {
                if PG {
                    Cached(diesel::sql_query(
                        "SELECT pg_notify('diesel_outbox', COALESCE(current_schema(), ''))",
                    ))
                    .execute(conn)?;
                }
                Ok(())
            }

            /// The floor's outbox rows as one cached statement (see [`crate::writes::ArrayInsert`]).
            fn floor_array_rows(conn: &mut Conn, models: &[Project]) -> QueryResult<()> {
                let rows: Vec<(i64, i64)> = models.iter().map(|p| (p.organization_id, p.id)).collect();
                crate::writes::ArrayInsert::insert_outbox_arrays(conn, &rows, now())?;
                Ok(())
            }

            fn write_txn(conn: &mut Conn, variant: Variant, models: &[Project]) -> BResult<()> {
                match variant {
                    Variant::Plain => conn.transaction(|c| {
                        for p in models {
                            plain_upsert(c, p)?;
                        }
                        Ok::<_, diesel::result::Error>(())
                    })?,
                    Variant::Floor | Variant::FloorArrays => {
                        let begin = if PG || MY { "BEGIN" } else { "BEGIN IMMEDIATE" };
                        conn.batch_execute(begin)?;
                        let body = (|| {
                            for p in models {
                                plain_upsert(conn, p)?;
                            }
                            if variant == Variant::Floor {
                                floor_rows(conn, models)?;
                            } else {
                                floor_array_rows(conn, models)?;
                            }
                            floor_notify(conn)
                        })();
                        match body {
                            Ok(()) => conn.batch_execute("COMMIT")?,
                            Err(error) => {
                                conn.batch_execute("ROLLBACK")?;
                                return Err(error.into());
                            }
                        }
                    }
                    Variant::Library => outbox_context(conn, |ctx| {
                        for p in models {
                            p.save(ctx)?;
                        }
                        Ok::<_, diesel_outbox::Error>(())
                    })?,
                }
                Ok(())
            }

            fn batches(next_id: &mut i64, per_txn: usize, txns: usize) -> Vec<Vec<Project>> {
                (0..txns)
                    .map(|_| {
                        (0..per_txn)
                            .map(|_| {
                                *next_id += 1;
                                project(*next_id)
                            })
                            .collect()
                    })
                    .collect()
            }

            /// Per-transaction times (µs) of each variant: `rounds` rounds (after a warm-up
            /// round) of `txns` transactions of `per_txn` saves per variant, the variants
            /// taking turns transaction by transaction (in an order that rotates each
            /// turn), so that a burst of other work on the machine, or a checkpoint, falls
            /// on all of them alike. Rows with ids above `keep` are deleted after each round;
            /// `rotate` shifts the order (callers that run one round at a time pass their
            /// round).
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
                    let mut spent = vec![Duration::ZERO; variants.len()];
                    for turn in 0..txns {
                        for k in 0..variants.len() {
                            let v = (k + turn + round + rotate) % variants.len();
                            let batch = &batches(next_id, per_txn, 1)[0];
                            let start = Instant::now();
                            write_txn(conn, variants[v], batch)?;
                            spent[v] += start.elapsed();
                        }
                    }
                    if round > 0 {
                        for (v, time) in spent.iter().enumerate() {
                            samples[v].push(micros(*time) / txns as f64);
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
                let write_txns = if PG || MY { sizes.write_txns } else { sizes.sqlite_write_txns };
                let mut table = Table::new(
                    format!(
                        "{NAME}: write, µs per transaction (median of {} interleaved rounds; {} / {} / {} transactions per variant and round)",
                        sizes.write_rounds, count(write_txns[0] as f64), count(write_txns[1] as f64), count(write_txns[2] as f64)
                    ),
                    &["saves/txn", "(a) plain diesel", "(b) floor: same statements by hand", "outbox_context", "vs floor (b)", "vs plain (a)", "floor/plain", "(c) floor, rows as arrays", "(c)/plain"],
                );
                let variants = [Variant::Library, Variant::Plain, Variant::Floor, Variant::FloorArrays];
                for (per_txn, txns) in [1usize, 10, 100].into_iter().zip(write_txns) {
                    let s = write_rounds(&mut conn, &mut next_id, &variants, per_txn, txns, sizes.write_rounds, 0, 0)?;
                    let (lib, plain, floor, arrays) = (median(&s[0]), median(&s[1]), median(&s[2]), median(&s[3]));
                    table.row(vec![
                        per_txn.to_string(),
                        format!("{plain:.1}"),
                        format!("{floor:.1}"),
                        format!("{lib:.1}"),
                        ratio(lib / floor),
                        ratio(lib / plain),
                        ratio(floor / plain),
                        format!("{arrays:.1}"),
                        ratio(arrays / plain),
                    ]);
                }
                clear(&mut conn)?;
                Ok(table)
            }

            /// What each variant sends per transaction, which statements come from
            /// diesel's prepared-statement cache (the proof that the floor sends what the
            /// library sends), and each statement's time: the variants run one
            /// transaction each in turn, on connections of their own.
            pub fn statements(db: &Db, sizes: &Sizes) -> BResult<Table> {
                // Half the write table's transactions: enough that checkpoints fall on
                // every variant alike.
                let write_txns = if PG || MY { sizes.write_txns } else { sizes.sqlite_write_txns };
                let statement_txns = [(write_txns[0] / 2).max(1), (write_txns[2] / 2).max(1)];
                let mut table = Table::new(
                    format!(
                        "{NAME}: statements per write transaction ({} / {} transactions per variant at 1 / 100 saves, interleaved; µs are per transaction)",
                        statement_txns[0], statement_txns[1]
                    ),
                    &["saves/txn", "variant", "statements", "cached", "µs in statements", "µs in all", "statement: calls, cached?, µs"],
                );
                let mut next_id = 1_000_000_000;
                let variants = [Variant::Plain, Variant::Floor, Variant::Library];
                for (per_txn, txns) in [(1usize, statement_txns[0]), (100, statement_txns[1])] {
                    let txns = txns.max(1);
                    // One connection, as in the write table: connections taking turns on
                    // one SQLite file would make one another re-read pages and take
                    // their checkpoints.
                    let mut conn = db.connect()?;
                    let profile = Profile::default();
                    conn.set_instrumentation(profile.instrumentation());
                    for (v, variant) in variants.iter().enumerate() {
                        profile.set_bucket(v);
                        // Two transactions warm the statement cache.
                        for _ in 0..2 {
                            write_txn(&mut conn, *variant, &batches(&mut next_id, per_txn, 1)[0])?;
                        }
                    }
                    profile.take();
                    let mut wall = [Duration::ZERO; 3];
                    let mut overheads = [Duration::ZERO; 3];
                    for _ in 0..txns {
                        for (v, variant) in variants.iter().enumerate() {
                            profile.set_bucket(v);
                            let batch = &batches(&mut next_id, per_txn, 1)[0];
                            let start = Instant::now();
                            write_txn(&mut conn, *variant, batch)?;
                            wall[v] += start.elapsed();
                            overheads[v] += profile.take_overhead();
                        }
                    }
                    for (v, variant) in variants.iter().enumerate() {
                        let (kinds, _) = profile.take_bucket(v);
                        let overhead = overheads[v];
                        let per = |n: u64| n as f64 / txns as f64;
                        let calls: u64 = kinds.iter().map(|k| k.calls).sum();
                        let cached: u64 = kinds.iter().map(|k| k.cached_calls).sum();
                        let in_statements: Duration = kinds.iter().map(|k| k.total).sum();
                        let mut sent: Vec<String> = kinds
                            .iter()
                            .map(|k| {
                                let tag = if k.cached_calls == k.calls { "cached" } else if k.cached_calls == 0 { "uncached" } else { "partly cached" };
                                format!("{} {:.0}× {tag}, {:.1}", k.label, per(k.calls), micros(k.total) / txns as f64)
                            })
                            .collect();
                        sent.sort();
                        table.row(vec![
                            per_txn.to_string(),
                            variant.label().to_owned(),
                            format!("{:.0}", per(calls)),
                            format!("{:.0}", per(cached)),
                            format!("{:.1}", micros(in_statements) / txns as f64),
                            format!("{:.1}", micros(wall[v].saturating_sub(overhead)) / txns as f64),
                            sent.join("; "),
                        ]);
                    }
                }
                let mut conn = db.connect()?;
                clear(&mut conn)?;
                Ok(table)
            }

            #[derive(QueryableByName)]
            struct IndexDef {
                #[diesel(sql_type = Text)]
                def: String,
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
                let sql = if PG {
                    "SELECT indexname AS def FROM pg_indexes WHERE tablename = 'cell_outboxes' \
                     AND schemaname = current_schema() AND indexname NOT LIKE '%pkey'"
                } else {
                    "SELECT name AS def FROM sqlite_master WHERE type = 'index' \
                     AND tbl_name = 'cell_outboxes' AND sql IS NOT NULL"
                };
                for name in diesel::sql_query(sql).load::<IndexDef>(conn)? {
                    conn.batch_execute(&format!("DROP INDEX {}", name.def))?;
                }
                Ok(())
            }

            /// The write cost of each index set, at 100 saves per transaction over a
            /// standing backlog: each round runs every set (in a rotating order), so sets
            /// are compared within rounds as the variants are. Restores the migrations'
            /// indexes.
            pub fn index_costs(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                let shipped = current_indexes(&mut conn)?;
                let mut next_id = 0;
                // A standing backlog, so that index inserts land in trees of a real size.
                fill(&mut conn, &Backlog::uniform("index", 1_000, (sizes.index_backlog / 1_000).max(1), 1))?;
                let keep = scalar(&mut conn, "SELECT COALESCE(MAX(id), 0) AS value FROM cell_outboxes")?;
                let mut table = Table::new(
                    format!(
                        "{NAME}: cost of the outbox indexes, 100 saves per transaction over a standing backlog of {} rows, µs per transaction (median of {} interleaved rounds)",
                        count(sizes.index_backlog as f64),
                        sizes.index_rounds
                    ),
                    &["outbox indexes", "(a) plain", "(b) floor", "outbox_context", "floor/plain", "outbox cost (b)-(a)", "outbox cost, % of plain"],
                );
                let variants = [Variant::Library, Variant::Plain, Variant::Floor];
                let txns = (sizes.write_txns[2] / 5).max(2);
                let configs = crate::writes::index_configs(PG);
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
                // Each set's variants take turns, so the cost is compared with the same
                // set's plain run (sets run minutes apart, in which the machine's load moves).
                for (c, (label, _)) in configs.iter().enumerate() {
                    let s = &samples[c];
                    let (lib, plain, floor) = (median(&s[0]), median(&s[1]), median(&s[2]));
                    let cost = floor - plain;
                    table.row(vec![
                        (*label).to_owned(),
                        format!("{plain:.0}"),
                        format!("{floor:.0}"),
                        format!("{lib:.0}"),
                        ratio(floor / plain),
                        format!("{cost:.0}"),
                        format!("{:.0}%", 100.0 * cost / plain),
                    ]);
                }
                drop_indexes(&mut conn)?;
                for def in &shipped {
                    conn.batch_execute(def)?;
                }
                clear(&mut conn)?;
                Ok(table)
            }

            /// One database of the anatomy: what it has, and how it writes one save.
            struct Step {
                label: String,
                file: crate::SqliteFile,
                variant: Variant,
            }

            impl Step {
                fn db(&self) -> Db {
                    Db { url: self.file.url(), sync_commit: false }
                }
            }

            /// SQLite's WAL: frames (pages) appended since the last truncation.
            fn wal_frames(db: &Db) -> BResult<f64> {
                let bytes = std::fs::metadata(format!("{}-wal", db.url)).map(|m| m.len()).unwrap_or(0);
                Ok(bytes.saturating_sub(32) as f64 / (4096.0 + 24.0))
            }

            /// SQLite, one save per transaction: where the time goes. Each step adds one
            /// thing to the one before, in a database of its own (its own WAL and
            /// checkpoints), and the steps run in interleaved rounds. Then, with automatic
            /// checkpoints off, the WAL pages each transaction appends and what
            /// checkpointing them costs.
            pub fn anatomy(sizes: &Sizes) -> BResult<Table> {
                let mut steps: Vec<Step> = Vec::new();
                steps.push(Step { label: "(a) plain diesel: the model upsert".to_owned(), file: crate::SqliteFile::new("anatomy")?, variant: Variant::Plain });
                for (label, ddl) in crate::writes::ANATOMY_STEPS {
                    steps.push(Step { label: label.to_owned(), file: crate::SqliteFile::new("anatomy")?, variant: Variant::Floor });
                    let mut conn = steps[steps.len() - 1].db().connect()?;
                    conn.batch_execute(crate::model::CREATE_PROJECTS)?;
                    conn.batch_execute(&ddl.replace("{COLUMNS}", crate::writes::ANATOMY_COLUMNS))?;
                }
                steps.push(Step { label: "outbox_context (migrated tables)".to_owned(), file: crate::SqliteFile::new("anatomy")?, variant: Variant::Library });
                let backlog = sizes.index_backlog;
                steps.push(Step {
                    label: format!("outbox_context over a standing backlog of {} rows", count(backlog as f64)),
                    file: crate::SqliteFile::new("anatomy")?,
                    variant: Variant::Library,
                });
                for (i, step) in steps.iter().enumerate() {
                    let mut conn = step.db().connect()?;
                    match i {
                        0 => conn.batch_execute(crate::model::CREATE_PROJECTS)?,
                        i if step.variant == Variant::Library => {
                            setup(&step.db())?;
                            if i == steps.len() - 1 {
                                fill(&mut conn, &Backlog::uniform("standing", 1_000, (backlog / 1_000).max(1), 1))?;
                            }
                        }
                        _ => {}
                    }
                    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
                }
                let mut conns: Vec<Conn> = steps.iter().map(|s| s.db().connect()).collect::<BResult<_>>()?;
                let txns = sizes.write_txns[0];
                let mut next_id = 0;
                // The steps take turns transaction by transaction, as in the write table.
                let mut samples = vec![Vec::new(); steps.len()];
                for round in 0..=sizes.write_rounds {
                    let mut spent = vec![Duration::ZERO; steps.len()];
                    for turn in 0..txns {
                        for k in 0..steps.len() {
                            let s = (k + turn + round) % steps.len();
                            let batch = &batches(&mut next_id, 1, 1)[0];
                            let start = Instant::now();
                            write_txn(&mut conns[s], steps[s].variant, batch)?;
                            spent[s] += start.elapsed();
                        }
                    }
                    if round > 0 {
                        for (s, time) in spent.iter().enumerate() {
                            samples[s].push(micros(*time) / txns as f64);
                        }
                    }
                }
                // The WAL's side: automatic checkpoints off, then as many transactions as
                // append ~1,000 pages (where an automatic checkpoint would run), then one
                // checkpoint of all they appended.
                let mut wal = Vec::new();
                for (s, step) in steps.iter().enumerate() {
                    let conn = &mut conns[s];
                    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint = 0")?;
                    let sample = (txns / 40).max(2);
                    for batch in &batches(&mut next_id, 1, sample) {
                        write_txn(conn, step.variant, batch)?;
                    }
                    let pages = wal_frames(&step.db())? / sample as f64;
                    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
                    let probe = ((1000.0 / pages.max(1.0)) as usize).clamp(2, txns.max(2));
                    let batches = batches(&mut next_id, 1, probe);
                    let start = Instant::now();
                    for batch in &batches {
                        write_txn(conn, step.variant, batch)?;
                    }
                    let append = micros(start.elapsed()) / probe as f64;
                    let frames = wal_frames(&step.db())? / probe as f64;
                    let start = Instant::now();
                    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
                    let checkpoint = micros(start.elapsed()) / probe as f64;
                    conn.batch_execute("PRAGMA wal_autocheckpoint = 1000")?;
                    wal.push((frames, append, checkpoint, probe));
                }
                let mut table = Table::new(
                    format!(
                        "SQLite: one save per transaction, step by step (median of {} interleaved rounds of {} transactions; WAL columns: automatic checkpoints off, the transactions that append ~1,000 pages, then one checkpoint)",
                        sizes.write_rounds, count(txns as f64)
                    ),
                    &["what the transaction writes", "µs/txn", "vs (a)", "WAL pages/txn", "µs/txn appending", "checkpoint µs/txn", "txns per checkpoint"],
                );
                let plain = median(&samples[0]);
                for (s, step) in steps.iter().enumerate() {
                    let t = median(&samples[s]);
                    let (frames, append, checkpoint, probe) = wal[s];
                    table.row(vec![
                        step.label.clone(),
                        format!("{t:.1}"),
                        ratio(t / plain),
                        format!("{frames:.1}"),
                        format!("{append:.1}"),
                        format!("{checkpoint:.1}"),
                        probe.to_string(),
                    ]);
                }
                Ok(table)
            }
        }
    };
}
pub(crate) use writes_section;
