//! Flush latency (commit to receiver) and the memory child (peak RSS while draining).

macro_rules! flush_section {
    () => {
        /// Benchmarks 4 and 5: flush latency, and memory while draining.
        pub mod flush {
            use super::*;
            use crate::profile::Profile;

            /// Notes when the commit is done (the metrics hook runs right after it, before
            /// the flush), and moves the statement profile to its flush bucket.
            struct SavedAt(Arc<Mutex<Option<Instant>>>, Profile);

            impl Metrics for SavedAt {
                fn rows_saved(&self, _table: OutboxTable, _category: i32, _rows: u64) {
                    if let Ok(mut at) = self.0.lock() {
                        *at = Some(Instant::now());
                    }
                    self.1.set_bucket(1);
                }
            }

            /// Benchmark 4: from the commit of `Outbox::context` to the receiver having run;
            /// and the statements of the write and of its flush.
            pub fn flush(db: &Db, sizes: &Sizes) -> BResult<(Table, Table)> {
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
                let profile = Profile::default();
                let outbox = Outbox::builder(receivers)
                    .metrics(SavedAt(saved.clone(), profile.clone()))
                    .build();
                let mut latency = Vec::new();
                let mut call = Vec::new();
                let mut plain = Vec::new();
                for i in 0..=sizes.flush_samples {
                    let p = project(i as i64 + 1);
                    *handled.lock().map_err(|_| "poisoned")? = None;
                    let start = Instant::now();
                    outbox.context(&mut conn, |ctx| p.save(ctx))?;
                    let total = start.elapsed();
                    let (s, h) = (
                        *saved.lock().map_err(|_| "poisoned")?,
                        *handled.lock().map_err(|_| "poisoned")?,
                    );
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
                // The same again, instrumented: which statements a write and its flush send.
                let samples = sizes.flush_samples.div_ceil(5);
                let mut traced = db.connect()?;
                traced.set_instrumentation(profile.instrumentation());
                for i in 0..=samples {
                    if i == 1 {
                        profile.take();
                    }
                    profile.set_bucket(0);
                    let p = project(i as i64 + 1);
                    outbox.context(&mut traced, |ctx| p.save(ctx))?;
                    profile.set_bucket(2);
                    traced.batch_execute("DELETE FROM cell_outboxes")?;
                }
                let mut statements = Table::new(
                    format!("{NAME}: statements of one save with its flush (mean of {samples})"),
                    &["part", "statement", "calls", "µs"],
                );
                for (bucket, part) in [(0, "write"), (1, "flush")] {
                    let (kinds, _) = profile.take_bucket(bucket);
                    let mut total = 0.0;
                    let mut calls = 0;
                    for kind in &kinds {
                        let us = micros(kind.total) / samples as f64;
                        total += us;
                        calls += kind.calls;
                        statements.row(vec![
                            part.to_owned(),
                            kind.label.clone(),
                            format!("{:.1}", kind.calls as f64 / samples as f64),
                            format!("{us:.0}"),
                        ]);
                    }
                    statements.row(vec![
                        part.to_owned(),
                        "all statements".to_owned(),
                        format!("{:.1}", calls as f64 / samples as f64),
                        format!("{total:.0}"),
                    ]);
                }
                clear(&mut conn)?;
                let mut table = Table::new(
                    format!(
                        "{NAME}: flush latency, 1 save per transaction, {} samples, µs",
                        sizes.flush_samples
                    ),
                    &["measure", "median", "p99"],
                );
                table.row(vec![
                    "commit -> receiver has run".to_owned(),
                    format!("{:.0}", median(&latency)),
                    format!("{:.0}", percentile(&latency, 99.0)),
                ]);
                table.row(vec![
                    "Outbox::context call, with flush".to_owned(),
                    format!("{:.0}", median(&call)),
                    format!("{:.0}", percentile(&call, 99.0)),
                ]);
                table.row(vec![
                    "outbox_context call, no flush".to_owned(),
                    format!("{:.0}", median(&plain)),
                    format!("{:.0}", percentile(&plain, 99.0)),
                ]);
                Ok((table, statements))
            }

            /// Benchmark 5 (run in a child process): fills `rows` rows (`per_object` per
            /// object, over `shards` shards) and drains them with `window`; returns (peak KiB after the
            /// fill, peak KiB after the drain, seconds of drain).
            pub fn memory_child(
                db: &Db,
                rows: usize,
                shards: usize,
                per_object: usize,
                window: usize,
            ) -> BResult<(u64, u64, f64)> {
                let mut conn = db.connect()?;
                let backlog =
                    Backlog::uniform("memory", shards, (rows / shards).max(1), per_object);
                fill(&mut conn, &backlog)?;
                let before = crate::stats::memory_kib().0;
                let start = Instant::now();
                let options = crate::drain::Knob::Window.set(Default::default(), window);
                let deleted = drain_library(&mut conn, &sized_outbox(&options))?;
                let secs = start.elapsed().as_secs_f64();
                if deleted != backlog.rows() {
                    return Err(
                        format!("memory drain deleted {deleted} of {}", backlog.rows()).into(),
                    );
                }
                Ok((before, crate::stats::memory_kib().0, secs))
            }
        }
    };
}
pub(crate) use flush_section;
