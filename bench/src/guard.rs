//! The runtime guard's cost: the same transactions and the same drains on two connections
//! to one database, one without a guard and one with the guard the test helpers install,
//! taking turns, in one run.

macro_rules! guard_section {
    () => {
        /// The runtime guard: writes and drains with it and without it.
        pub mod guard {
            use super::*;
            use diesel_outbox::guard::{Guard, OnViolation, Protected};

            // The write rounds' and drains' fixtures are written past the guard
            // (`guard::allow`); what is timed never is.

            /// A connection with the guard a test suite installs: the model's table and
            /// the library's protected, panicking at a violation (none is expected).
            fn guarded(db: &Db) -> BResult<Conn> {
                let mut conn = db.connect()?;
                Guard::new(Protected::models::<Project>())
                    .on_violation(OnViolation::Panic)
                    .install(&mut conn);
                Ok(conn)
            }

            /// What a transaction does.
            #[derive(Clone, Copy, PartialEq, Eq)]
            enum Work {
                /// The model's `save`s: the library's statements, which the guard trusts.
                Saves,
                /// The same upserts written by the application with plain diesel inside an
                /// outbox context: statements the guard reads (SQL text, then its lexer).
                Application,
            }

            fn transaction(conn: &mut Conn, work: Work, models: &[Project]) -> BResult<()> {
                outbox_context(conn, |ctx| {
                    for p in models {
                        match work {
                            Work::Saves => p.save(ctx)?,
                            Work::Application => {
                                let row = PlainProject {
                                    id: p.id,
                                    organization_id: p.organization_id,
                                    name: &p.name,
                                };
                                crate::writes::PlainUpsert::plain_upsert(ctx.connection(), &row)?;
                            }
                        }
                    }
                    Ok::<_, diesel_outbox::Error>(())
                })?;
                Ok(())
            }

            /// Writes: µs per transaction of `saves` saves, for each work with and without
            /// the guard (medians of interleaved rounds, as the write benchmark's).
            pub fn writes(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut plain = db.connect()?;
                let mut guarded = guarded(db)?;
                clear(&mut plain)?;
                let write_txns = if PG || MY { sizes.write_txns } else { sizes.sqlite_write_txns };
                let mut table = Table::new(
                    format!(
                        "{NAME}: the runtime guard on writes, µs per transaction (median of {} interleaved rounds)",
                        sizes.write_rounds
                    ),
                    &["saves/txn", "save(ctx): no guard", "guard", "guard/none", "plain diesel in a context: no guard", "guard", "guard/none"],
                );
                let combos = [
                    (Work::Saves, false),
                    (Work::Saves, true),
                    (Work::Application, false),
                    (Work::Application, true),
                ];
                let mut next_id = 0i64;
                for (per_txn, txns) in [1usize, 10, 100].into_iter().zip(write_txns) {
                    let mut samples = vec![Vec::new(); combos.len()];
                    for round in 0..=sizes.write_rounds {
                        let mut spent = vec![Duration::ZERO; combos.len()];
                        for turn in 0..txns {
                            for k in 0..combos.len() {
                                let c = (k + turn + round) % combos.len();
                                let (work, with_guard) = combos[c];
                                let models: Vec<Project> = (0..per_txn)
                                    .map(|_| {
                                        next_id += 1;
                                        project(next_id)
                                    })
                                    .collect();
                                let conn = if with_guard { &mut guarded } else { &mut plain };
                                let start = Instant::now();
                                transaction(conn, work, &models)?;
                                spent[c] += start.elapsed();
                            }
                        }
                        if round > 0 {
                            for (c, time) in spent.iter().enumerate() {
                                samples[c].push(micros(*time) / txns as f64);
                            }
                        }
                        // The rows are the outbox's: removed by the unguarded connection.
                        plain.batch_execute("DELETE FROM cell_outboxes")?;
                    }
                    let m: Vec<f64> = samples.iter().map(|s| median(s)).collect();
                    table.row(vec![
                        per_txn.to_string(),
                        format!("{:.1}", m[0]),
                        format!("{:.1}", m[1]),
                        ratio(m[1] / m[0]),
                        format!("{:.1}", m[2]),
                        format!("{:.1}", m[3]),
                        ratio(m[3] / m[2]),
                    ]);
                }
                Ok(table)
            }

            /// Drains: rows per second of the library's periodic drain (a receiver that does
            /// nothing) with and without the guard, each backlog filled anew per run, the
            /// two taking turns (median of the runs).
            pub fn drains(db: &Db, sizes: &Sizes) -> BResult<Table> {
                let mut plain = db.connect()?;
                let mut guarded = guarded(db)?;
                let outbox = idle_outbox();
                let reps = sizes.drain_reps.max(3);
                let mut table = Table::new(
                    format!("{NAME}: the runtime guard on the drain, rows/s (median of {reps} runs each, taking turns)"),
                    &["backlog", "no guard", "guard", "guard/none"],
                );
                for name in ["a", "b"] {
                    let Some(backlog) = crate::backlog::Backlog::find(&sizes.drain_backlogs, name) else {
                        continue;
                    };
                    let mut rates = [Vec::new(), Vec::new()];
                    for rep in 0..reps {
                        for turn in 0..2 {
                            let with_guard = (turn + rep) % 2 == 1;
                            let conn = if with_guard { &mut guarded } else { &mut plain };
                            // Filled by the connection that drains (SQLite keeps a page
                            // cache per connection): past the guard, as a fixture.
                            diesel_outbox::guard::allow(&mut *conn, |conn| fill(conn, backlog))?;
                            let start = Instant::now();
                            let deleted = drain_library(conn, &outbox)?;
                            let secs = start.elapsed().as_secs_f64();
                            if deleted != backlog.rows() || outbox_rows(&mut plain)? != 0 {
                                return Err(format!("the drain of {} deleted {deleted} rows", backlog.label()).into());
                            }
                            rates[usize::from(with_guard)].push(backlog.rows() as f64 / secs);
                        }
                    }
                    let (none, with) = (median(&rates[0]), median(&rates[1]));
                    table.row(vec![
                        backlog.label(),
                        count(none),
                        count(with),
                        ratio(with / none),
                    ]);
                }
                Ok(table)
            }
        }
    };
}
pub(crate) use guard_section;
