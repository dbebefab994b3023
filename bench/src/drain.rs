//! Drain benchmarks: throughput against the batched-delete ceiling on each backlog
//! (PostgreSQL also with `synchronous_commit = on`), deep against shallow shards, the
//! sweep of the drain's sizes, workers on PostgreSQL, and the statement profile.

/// One of the drain's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// Rows of one shard per batch.
    Window,
    /// Shards per batch.
    BatchShards,
    /// Rows read per scan for due shards.
    ScanRows,
}

impl Knob {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Knob::Window => "window",
            Knob::BatchShards => "batch_shards",
            Knob::ScanRows => "scan_rows",
        }
    }

    /// `options` with this size set to `value`.
    pub fn set(
        self,
        mut options: diesel_outbox::drain::DrainOptions,
        value: usize,
    ) -> diesel_outbox::drain::DrainOptions {
        match self {
            Knob::Window => options.window = value,
            Knob::BatchShards => options.batch_shards = value,
            Knob::ScanRows => options.scan_rows = value,
        }
        options
    }

    /// This size in `options`.
    pub fn get(self, options: &diesel_outbox::drain::DrainOptions) -> usize {
        match self {
            Knob::Window => options.window,
            Knob::BatchShards => options.batch_shards,
            Knob::ScanRows => options.scan_rows,
        }
    }
}

/// One grid of the sweep: two sizes varied together (the third at its default) on some
/// backlogs.
#[derive(Clone, Debug)]
pub struct Grid {
    /// The backlogs, one table each.
    pub backlogs: Vec<crate::backlog::Backlog>,
    /// The size down the table, and its values.
    pub rows: (Knob, Vec<usize>),
    /// The size across the table, and its values.
    pub columns: (Knob, Vec<usize>),
    /// Runs per cell (the median is reported).
    pub reps: usize,
}

macro_rules! drain_section {
    () => {
        /// Benchmark 2: the drain.
        pub mod drain {
            use super::*;
            use crate::profile::Profile;
            use diesel_outbox::drain::{Delivery, DrainOptions};

            /// Rows per second of the library (default delivery), the ceiling, (SQLite) the
            /// ceiling in shard order, and the library with its receiver inside the drain's
            /// transaction and outside it under the batch's lease, on `backlog`: the median
            /// of `reps` runs, interleaved (each rep starts with another contender).
            /// PostgreSQL's deletes do not touch the indexes, so the order does not matter
            /// there (`NaN`).
            fn contenders(conn: &mut Conn, backlog: &Backlog, reps: usize) -> BResult<[f64; 5]> {
                // `OUTBOX_BENCH_DRAIN_ONLY=default|in-transaction|leased`: that library drain
                // alone, e.g. to count its instructions with callgrind against another
                // build or delivery.
                let only = std::env::var("OUTBOX_BENCH_DRAIN_ONLY").ok();
                let kinds: &[usize] = if let Some(only) = only.as_deref() {
                    match only {
                        "in-transaction" => &[3],
                        "leased" => &[4],
                        _ => &[0],
                    }
                } else if PG || MY {
                    &[0, 1, 3, 4]
                } else {
                    &[0, 1, 2, 3, 4]
                };
                let mut rates: [Vec<f64>; 5] = Default::default();
                for rep in 0..reps.max(1) {
                    for k in 0..kinds.len() {
                        let which = kinds[(k + rep) % kinds.len()];
                        let rate = match which {
                            0 => {
                                let outbox = idle_outbox();
                                timed_drain(conn, backlog, &mut |c| drain_library(c, &outbox))?
                            }
                            1 => timed_drain(conn, backlog, &mut |c| drain_ceiling(c, 1000))?,
                            2 => timed_drain(conn, backlog, &mut |c| drain_ceiling_by_shard(c, 1000))?,
                            3 => {
                                let outbox = delivery_outbox(Delivery::InTransaction);
                                timed_drain(conn, backlog, &mut |c| drain_library(c, &outbox))?
                            }
                            _ => {
                                let outbox = delivery_outbox(Delivery::Leased);
                                timed_drain(conn, backlog, &mut |c| drain_library(c, &outbox))?
                            }
                        };
                        rates[which].push(rate);
                    }
                }
                let by_shard = if PG || MY { f64::NAN } else { median(&rates[2]) };
                Ok([median(&rates[0]), median(&rates[1]), by_shard, median(&rates[3]), median(&rates[4])])
            }

            /// An outbox whose receiver does nothing, delivered as `delivery` says: under
            /// a lease its receiver declares it writes nothing on the drain's connection
            /// (so it runs with no transaction open); in-transaction it is the default
            /// receiver, inside the drain's transaction.
            fn delivery_outbox(delivery: Delivery) -> Outbox<Conn> {
                let receivers = match delivery {
                    Delivery::Leased => Receivers::new().cell_leased(
                        Category::ProjectUpdate,
                        |_conn: &mut Conn, _message: &OutboxMessage| Ok::<_, diesel_outbox::Error>(()),
                    ),
                    _ => Receivers::new().cell(
                        Category::ProjectUpdate,
                        |_conn: &mut Conn, _message: &OutboxMessage| Ok::<_, diesel_outbox::Error>(()),
                    ),
                };
                Outbox::builder(receivers).delivery(delivery).build()
            }

            /// Runs per backlog: fewer for big backlogs (each run is long, so steadier)
            /// and with `synchronous_commit = on`.
            fn reps_for(reps: usize, backlog: &Backlog, synced: bool) -> usize {
                if synced {
                    1
                } else if backlog.rows() >= 100_000 {
                    reps.div_ceil(2)
                } else {
                    reps
                }
            }

            /// Benchmark 2a: the library's drain against the ceiling on every backlog;
            /// and 2b: 200 rows per shard against 10.
            pub fn drain(db: &Db, sizes: &Sizes) -> BResult<(Table, Table)> {
                let mut table = Table::new(
                    format!(
                        "{NAME}: drain, rows deleted per second (receiver does nothing; median of {} runs each, interleaved; {} from 100,000 rows; {})",
                        sizes.drain_reps, sizes.drain_reps.div_ceil(2), if PG { "one with synchronous_commit=on" } else if MY { "the ceiling: a locking SELECT and a range DELETE per batch" } else { "SQLite's ceiling also in shard order" }
                    ),
                    &["backlog (shards × rows)", "rows", "library drain", "ceiling: batched delete, id order", "ceiling, shard order", "library/ceiling", "library/best ceiling", "in-transaction delivery", "leased delivery", "leased/in-transaction"],
                );
                let mut results = Vec::new();
                let mut modes = vec![(db.clone(), "")];
                if PG && sizes.drain_synced {
                    modes.push((db.synced(), ", synchronous_commit=on"));
                }
                for (mode_db, mode) in &modes {
                    let mut conn = mode_db.connect()?;
                    for backlog in &sizes.drain_backlogs {
                        let reps = reps_for(sizes.drain_reps, backlog, !mode.is_empty());
                        let [lib, ceil, by_shard, in_tx, leased] = contenders(&mut conn, backlog, reps)?;
                        let shown = |x: f64| if x.is_nan() { "-".to_owned() } else { count(x) };
                        table.row(vec![
                            format!("{} {}{mode}", backlog.name, backlog.label()),
                            count(backlog.rows() as f64),
                            count(lib),
                            count(ceil),
                            shown(by_shard),
                            ratio(lib / ceil),
                            ratio(lib / ceil.max(by_shard)),
                            count(in_tx),
                            count(leased),
                            ratio(leased / in_tx),
                        ]);
                        results.push((backlog.name, !mode.is_empty(), lib, ceil));
                    }
                    clear(&mut conn)?;
                }
                let mut depth = Table::new(
                    format!("{NAME}: deep against shallow shards (from the table above)"),
                    &["", "deep: c", "shallow: s10", "deep/shallow"],
                );
                for (synced, mode) in [(false, ""), (true, ", synchronous_commit=on")] {
                    let find = |name: &str| results.iter().find(|r| r.0 == name && r.1 == synced);
                    if let (Some(deep), Some(shallow)) = (find("c"), find("s10")) {
                        depth.row(vec![format!("library rows/s{mode}"), count(deep.2), count(shallow.2), ratio(deep.2 / shallow.2)]);
                        depth.row(vec![format!("ceiling rows/s{mode}"), count(deep.3), count(shallow.3), ratio(deep.3 / shallow.3)]);
                        depth.row(vec![format!("library/ceiling{mode}"), ratio(deep.2 / deep.3), ratio(shallow.2 / shallow.3), ratio((deep.2 / deep.3) / (shallow.2 / shallow.3))]);
                    }
                }
                Ok((table, depth))
            }

            /// Benchmark 2c: the drain's sizes, two at a time, each grid on its
            /// backlogs: rows per second, and the ratio to the defaults (run first and
            /// last; their mean).
            pub fn sweep(db: &Db, sizes: &Sizes) -> BResult<Vec<Table>> {
                let mut conn = db.connect()?;
                let defaults = DrainOptions::default();
                let mut tables = Vec::new();
                for grid in &sizes.sweep {
                    let (rows_knob, row_values) = &grid.rows;
                    let (column_knob, column_values) = &grid.columns;
                    for backlog in &grid.backlogs {
                        let mut run = |options: &DrainOptions| -> BResult<f64> {
                            let mut runs = Vec::new();
                            for _ in 0..grid.reps.max(1) {
                                let outbox = sized_outbox(options);
                                runs.push(timed_drain(&mut conn, backlog, &mut |c| drain_library(c, &outbox))?);
                            }
                            Ok(median(&runs))
                        };
                        let first = run(&defaults)?;
                        let mut cells = Vec::new();
                        for &r in row_values {
                            let mut line = Vec::new();
                            for &c in column_values {
                                let options = column_knob.set(rows_knob.set(defaults.clone(), r), c);
                                line.push(run(&options)?);
                            }
                            cells.push(line);
                        }
                        let base = (first + run(&defaults)?) / 2.0;
                        let mut ceilings = Vec::new();
                        for _ in 0..grid.reps.max(1) {
                            ceilings.push(timed_drain(&mut conn, backlog, &mut |c| drain_ceiling(c, 1000))?);
                        }
                        let ceiling = median(&ceilings);
                        let mut header = vec![format!("{} \\ {}", rows_knob.name(), column_knob.name())];
                        header.extend(column_values.iter().map(|v| v.to_string()));
                        let header: Vec<&str> = header.iter().map(String::as_str).collect();
                        let mut table = Table::new(
                            format!(
                                "{NAME}: drain sizes on {} {}: rows/s and against the defaults ({} / {} / {} window / batch_shards / scan_rows: {} rows/s, {} of the ceiling's {}); median of {} runs",
                                backlog.name, backlog.label(), defaults.window, defaults.batch_shards, defaults.scan_rows,
                                count(base), ratio(base / ceiling), count(ceiling), grid.reps
                            ),
                            &header,
                        );
                        for (i, &r) in row_values.iter().enumerate() {
                            let mut line = vec![r.to_string()];
                            for rate in &cells[i] {
                                line.push(format!("{} ({})", count(*rate), ratio(rate / base)));
                            }
                            table.row(line);
                        }
                        tables.push(table);
                    }
                }
                clear(&mut conn)?;
                Ok(tables)
            }

            /// Benchmark 2d: the library's drain on 1, 2 and 4 workers (own connections,
            /// cooperating through their claims), against the ceiling on as many.
            pub fn scaling(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                let mut table = Table::new(
                    format!("{NAME}: drain workers, rows deleted per second (median of {} runs)", sizes.scaling_reps),
                    &["backlog", "workers", "library drain", "speed-up", "ceiling (batched delete)", "speed-up", "library/ceiling", "library: calls, empty calls, busy shards seen (per run)"],
                );
                for backlog in &sizes.scaling_backlogs {
                    let mut base = (0.0, 0.0);
                    for workers in [1usize, 2, 4] {
                        let mut lib = Vec::new();
                        let mut ceil = Vec::new();
                        let seen = Seen::default();
                        let reps = reps_for(sizes.scaling_reps, backlog, false);
                        for rep in 0..reps {
                            for which in [rep % 2, 1 - rep % 2] {
                                let rate = timed_drain(&mut conn, backlog, &mut |_| parallel_drain(db, workers, which == 1, &seen))?;
                                if which == 0 { lib.push(rate) } else { ceil.push(rate) }
                            }
                        }
                        use std::sync::atomic::Ordering::Relaxed;
                        let per_run = |n: &std::sync::atomic::AtomicUsize| count(n.load(Relaxed) as f64 / reps as f64);
                        let (lib, ceil) = (median(&lib), median(&ceil));
                        if workers == 1 {
                            base = (lib, ceil);
                        }
                        table.row(vec![
                            format!("{} {}", backlog.name, backlog.label()),
                            workers.to_string(),
                            count(lib),
                            ratio(lib / base.0),
                            count(ceil),
                            ratio(ceil / base.1),
                            ratio(lib / ceil),
                            format!("{}, {}, {}", per_run(&seen.calls), per_run(&seen.empty_calls), per_run(&seen.busy_shards)),
                        ]);
                    }
                }
                clear(&mut conn)?;
                Ok(table)
            }

            /// `workers` threads, each on its own connection, draining until the table is
            /// empty (the library's, sharing one `Outbox` as a `Worker`'s threads do, or
            /// the ceiling's); the rows they deleted.
            fn parallel_drain(db: &Db, workers: usize, ceiling: bool, seen: &Seen) -> BResult<usize> {
                let outbox = idle_outbox();
                let results: Vec<BResult<usize>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..workers)
                        .map(|_| {
                            let outbox = outbox.clone();
                            scope.spawn(move || -> BResult<usize> {
                                let mut conn = db.connect()?;
                                if ceiling {
                                    return drain_ceiling(&mut conn, 1000);
                                }
                                let mut deleted = 0;
                                loop {
                                    deleted += drain_library_seen(&mut conn, &outbox, seen)?;
                                    if outbox_rows(&mut conn)? == 0 {
                                        return Ok(deleted);
                                    }
                                    // Shards another worker holds.
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
                let mut deleted = 0;
                for r in results {
                    deleted += r?;
                }
                Ok(deleted)
            }

            /// A batch receiver that does nothing.
            struct IdleBatch;

            impl diesel_outbox::BatchReceiver<Conn> for IdleBatch {
                fn receive_batch(&self, _conn: &mut Conn, _messages: &[OutboxMessage]) -> Result<(), diesel_outbox::BatchError> {
                    Ok(())
                }
            }

            /// Records a receipt per key on the drain's connection (idempotent).
            fn write_receipt(conn: &mut Conn, message: &OutboxMessage) -> QueryResult<usize> {
                let sql = if PG {
                    "INSERT INTO bench_receipts (object_identifier, row_id) VALUES ($1, $2) \
                     ON CONFLICT (object_identifier) DO UPDATE SET row_id = excluded.row_id"
                } else if MY {
                    // diesel's MySQL connection prepares this anew each time, `Cached` or
                    // not (see the library's `backend/mysql_raw.rs`): as a receiver would.
                    "INSERT INTO bench_receipts (object_identifier, row_id) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE row_id = VALUES(row_id)"
                } else {
                    "INSERT INTO bench_receipts (object_identifier, row_id) VALUES (?, ?) \
                     ON CONFLICT (object_identifier) DO UPDATE SET row_id = excluded.row_id"
                };
                Cached(diesel::sql_query(sql).bind::<BigInt, _>(message.object_identifier).bind::<BigInt, _>(message.id)).execute(conn)
            }

            /// The receivers compared: a name and the outbox.
            fn receiver_kinds() -> Vec<(&'static str, Outbox<Conn>)> {
                let one = |receivers: Receivers<Conn>| Outbox::new(receivers);
                vec![
                    ("does nothing", idle_outbox()),
                    (
                        "one savepoint per key (what per-key savepoints would add)",
                        one(Receivers::new().cell(Category::ProjectUpdate, |conn: &mut Conn, _message: &OutboxMessage| {
                            conn.transaction(|_| Ok::<_, diesel::result::Error>(()))
                        })),
                    ),
                    (
                        "writes one row per key",
                        one(Receivers::new().cell(Category::ProjectUpdate, |conn: &mut Conn, message: &OutboxMessage| {
                            write_receipt(conn, message).map(|_| ())
                        })),
                    ),
                    ("batch receiver that does nothing", one(Receivers::new().cell_batch(Category::ProjectUpdate, IdleBatch))),
                    (
                        "fails at one key in 997 (rollback and replay)",
                        // 997 is prime to the shard counts: the failing keys spread over shards.
                        one(Receivers::new().cell(Category::ProjectUpdate, |_conn: &mut Conn, message: &OutboxMessage| {
                            if message.object_identifier % 997 == 0 {
                                Err("the bench's receiver fails at this key")
                            } else {
                                Ok(())
                            }
                        })),
                    ),
                ]
            }

            /// Drains until nothing is left to do now, failures allowed; (rows deleted,
            /// failures).
            fn drain_tolerating(conn: &mut Conn, outbox: &Outbox<Conn>) -> BResult<(usize, usize)> {
                let (mut deleted, mut failures) = (0, 0);
                loop {
                    let report = outbox.drain_due_shards(conn)?;
                    deleted += report.rows_deleted;
                    failures += report.failures.len();
                    if !report.did_work() && report.failures.is_empty() && report.shards_not_claimed == 0 {
                        return Ok((deleted, failures));
                    }
                }
            }

            /// Benchmark 2f: what a receiver costs the drain: rows delivered per second with
            /// each kind of receiver, against the one that does nothing.
            pub fn receivers(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut conn = db.connect()?;
                let kinds = receiver_kinds();
                let mut header = vec!["receiver".to_owned()];
                for backlog in &sizes.receiver_backlogs {
                    header.push(format!("{} {}", backlog.name, backlog.label()));
                    header.push("vs does nothing".to_owned());
                }
                let header: Vec<&str> = header.iter().map(String::as_str).collect();
                let mut table = Table::new(
                    format!("{NAME}: receivers, rows deleted per second (median of {} runs, interleaved)", sizes.receiver_reps),
                    &header,
                );
                let mut rates = vec![vec![Vec::new(); sizes.receiver_backlogs.len()]; kinds.len()];
                let mut failed = vec![0usize; kinds.len()];
                for (b, backlog) in sizes.receiver_backlogs.iter().enumerate() {
                    for rep in 0..sizes.receiver_reps.max(1) {
                        for k in 0..kinds.len() {
                            let r = (k + rep) % kinds.len();
                            fill(&mut conn, backlog)?;
                            let start = Instant::now();
                            let (deleted, failures) = drain_tolerating(&mut conn, &kinds[r].1)?;
                            let secs = start.elapsed().as_secs_f64();
                            let left = outbox_rows(&mut conn)? as usize;
                            if deleted + left != backlog.rows() || (failures == 0 && left != 0) {
                                return Err(format!("receiver {}: deleted {deleted}, {left} left of {}", kinds[r].0, backlog.rows()).into());
                            }
                            failed[r] += failures;
                            rates[r][b].push(deleted as f64 / secs);
                        }
                    }
                }
                for (k, (name, _)) in kinds.iter().enumerate() {
                    let mut row = vec![(*name).to_owned()];
                    for b in 0..sizes.receiver_backlogs.len() {
                        let rate = median(&rates[k][b]);
                        row.push(count(rate));
                        row.push(ratio(rate / median(&rates[0][b])));
                    }
                    table.row(row);
                }
                clear(&mut conn)?;
                Ok(table)
            }

            /// Benchmark 2e: one drain of each profiled backlog, statement by statement
            /// (on one connection, warmed by a small drain first, as a worker's would be);
            /// on PostgreSQL, the plan of the claim of one-row shards.
            pub fn profile(db: &Db, sizes: &Sizes) -> BResult<(Vec<Table>, Vec<String>)> {
                let mut tables = Vec::new();
                let mut conn = db.connect()?;
                if !sizes.profile_backlogs.is_empty() {
                    fill(&mut conn, &Backlog::uniform("warm-up", 50, 2, 1))?;
                    drain_library(&mut conn, &idle_outbox())?;
                }
                let profile = Profile::default();
                conn.set_instrumentation(profile.instrumentation());
                for backlog in &sizes.profile_backlogs {
                    profile.set_bucket(1);
                    fill(&mut conn, backlog)?;
                    profile.set_bucket(0);
                    profile.take_bucket(0);
                    let outbox = idle_outbox();
                    let start = Instant::now();
                    let deleted = drain_library(&mut conn, &outbox)?;
                    let wall = start.elapsed();
                    let (kinds, overhead) = profile.take_bucket(0);
                    if deleted != backlog.rows() {
                        return Err(format!("profiled drain deleted {deleted} of {}", backlog.rows()).into());
                    }
                    let wall = wall.saturating_sub(overhead);
                    let rows = backlog.rows() as f64;
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    let mut table = Table::new(
                        format!(
                            "{NAME}: where one drain of {} {} goes ({} rows in {:.1} ms, {} rows/s; instrumented, so a little slower)",
                            backlog.name, backlog.label(), count(rows), ms(wall), count(rows / wall.as_secs_f64())
                        ),
                        &["statement", "calls", "per 1,000 rows", "ms", "share", "µs per call"],
                    );
                    let mut in_statements = Duration::ZERO;
                    for kind in &kinds {
                        in_statements += kind.total;
                        table.row(vec![
                            kind.label.clone(),
                            count(kind.calls as f64),
                            format!("{:.1}", kind.calls as f64 * 1000.0 / rows),
                            format!("{:.1}", ms(kind.total)),
                            format!("{:.0}%", 100.0 * kind.total.as_secs_f64() / wall.as_secs_f64()),
                            format!("{:.0}", micros(kind.total) / kind.calls.max(1) as f64),
                        ]);
                    }
                    let rest = wall.saturating_sub(in_statements);
                    table.row(vec![
                        "the library's Rust (between statements)".to_owned(),
                        "".to_owned(),
                        "".to_owned(),
                        format!("{:.1}", ms(rest)),
                        format!("{:.0}%", 100.0 * rest.as_secs_f64() / wall.as_secs_f64()),
                        "".to_owned(),
                    ]);
                    tables.push(table);
                }
                let mut plans = Vec::new();
                if let Some(backlog) = sizes.profile_backlogs.iter().find(|b| b.name == "a").filter(|_| PG) {
                    plans = claim_plan(db, backlog)?;
                }
                clear(&mut conn)?;
                Ok((tables, plans))
            }

            /// PostgreSQL: EXPLAIN ANALYZE of the first claim statement of a drain of
            /// `backlog`, as the connection saw it (rolled back, its locks released).
            fn claim_plan(db: &Db, backlog: &Backlog) -> BResult<Vec<String>> {
                let label = "claim due shards (scan, lock, lease)";
                let mut conn = db.connect()?;
                fill(&mut conn, backlog)?;
                let traced = Profile::keeping_text();
                conn.set_instrumentation(traced.instrumentation());
                idle_outbox().drain_due_shards(&mut conn)?;
                conn.set_instrumentation(|_: diesel::connection::InstrumentationEvent<'_>| {});
                let Some((sql, binds)) = traced.first_text(label).as_deref().and_then(crate::discovery::parse_statement) else {
                    return Ok(vec![format!("-- ({label}: not seen, or its binds could not be read back)")]);
                };
                fill(&mut conn, backlog)?;
                let mut lines = vec![format!("-- {NAME}, {label}, on {} {} (EXPLAIN ANALYZE, rolled back):", backlog.name, backlog.label())];
                conn.batch_execute("BEGIN")?;
                let plan = super::discovery::explain(&mut conn, &sql, &binds);
                conn.batch_execute("ROLLBACK")?;
                diesel::sql_query("SELECT pg_advisory_unlock_all()").execute(&mut conn)?;
                lines.extend(plan?);
                Ok(lines)
            }
        }
    };
}
pub(crate) use drain_section;
