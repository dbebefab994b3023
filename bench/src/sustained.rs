//! The steady state under load: writer processes commit one save per transaction at a
//! fixed offered rate (objects spread over shards as a busy application's would), while
//! 1, 2 or 4 drain worker processes (the library's `Worker`, a receiver that only notes
//! each row's latency) keep up, or do not. Each step is one offered rate for one worker
//! count; the rate steps up until the backlog stops being bounded.

use std::time::Duration;

/// Objects the writers save (ids `0..OBJECTS`).
pub const OBJECTS: i64 = 100_000;

/// Shards the objects fall in (`organization_id = id % SHARDS`).
pub const SHARDS: i64 = 10_000;

/// The offered rates the steps go through (saves per second, all writers together).
pub const LADDER: [f64; 14] = [
    250.0, 500.0, 1_000.0, 1_500.0, 2_000.0, 3_000.0, 4_000.0, 6_000.0, 8_000.0, 12_000.0,
    16_000.0, 24_000.0, 32_000.0, 48_000.0,
];

/// How a sustained run is sized.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Seconds per step.
    pub seconds: f64,
    /// Worker process counts (SQLite: at most 2, its one writer lock).
    pub workers: Vec<usize>,
    /// Writer processes sharing the offered rate.
    pub writers: usize,
    /// The rates to try, lowest first.
    pub ladder: Vec<f64>,
}

/// Latency histogram: 100 µs buckets up to 20 s (the last bucket holds the rest).
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    max_us: u64,
}

/// Width of a histogram bucket in µs.
const BUCKET_US: u64 = 100;
/// Buckets of a histogram.
const BUCKETS: usize = 200_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            max_us: 0,
        }
    }
}

impl Histogram {
    /// Notes one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = usize::try_from(us / BUCKET_US)
            .unwrap_or(usize::MAX)
            .min(BUCKETS - 1);
        self.buckets[index] += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Samples noted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `p` quantile (0..=1) in ms, the bucket's upper edge; `NaN` when empty.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return f64::NAN;
        }
        let want = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return ((index as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    /// One line: `max bucket:count ...` (non-empty buckets only).
    pub fn encode(&self) -> String {
        let mut line = self.max_us.to_string();
        for (index, &n) in self.buckets.iter().enumerate() {
            if n > 0 {
                line.push_str(&format!(" {index}:{n}"));
            }
        }
        line
    }

    /// Adds a line of [`Histogram::encode`].
    pub fn merge_encoded(&mut self, line: &str) -> Option<()> {
        let mut parts = line.split_whitespace();
        let max: u64 = parts.next()?.parse().ok()?;
        self.max_us = self.max_us.max(max);
        for part in parts {
            let (index, n) = part.split_once(':')?;
            let index: usize = index.parse().ok()?;
            let n: u64 = n.parse().ok()?;
            *self.buckets.get_mut(index)? += n;
        }
        Some(())
    }
}

/// One step's outcome.
#[derive(Clone, Debug)]
pub struct Step {
    /// Offered saves per second.
    pub offered: f64,
    /// Saves per second the writers committed.
    pub achieved: f64,
    /// Rows delivered per second (the workers' receivers).
    pub delivered: f64,
    /// Backlog (rows) at the end of the step.
    pub backlog_end: i64,
    /// Largest backlog sampled in the step's second half.
    pub backlog_max: i64,
    /// Shards with rows at the end.
    pub shards_end: i64,
    /// Median and p99 commit → delivered latency, ms.
    pub p50_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
}

impl Step {
    /// The backlog stayed bounded: at the end (and at its largest in the second half)
    /// within one second of writes (at least 1,000 rows).
    pub fn bounded(&self) -> bool {
        let bound = (self.achieved).max(1_000.0) as i64;
        self.backlog_end <= bound && self.backlog_max <= 2 * bound
    }

    /// The writers committed at least 95% of the offered rate: otherwise the step
    /// measures the writers (and the machine), not the drain.
    pub fn offered_in_full(&self) -> bool {
        self.achieved >= 0.95 * self.offered
    }
}

/// Draws the highest sustained rate against worker processes, one line per backend, as
/// an SVG file.
pub fn plot(path: &std::path::Path, series: &[(String, Vec<(usize, f64)>)]) -> crate::BResult<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Highest write rate drained with a bounded backlog (one save per transaction)",
            ("sans-serif", 16),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..4.5f64, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("worker processes")
        .y_desc("saves committed per second")
        .x_labels(4)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (index, (name, points)) in series.iter().enumerate() {
        let color = colors[index % colors.len()];
        let line: Vec<(f64, f64)> = points.iter().map(|&(w, r)| (w as f64, r)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

macro_rules! sustained_section {
    () => {
        /// Benchmark: the steady state under a fixed offered write rate.
        pub mod sustained {
            use super::*;
            use crate::sustained::{Histogram, Plan, Step, LADDER, OBJECTS, SHARDS};
            use diesel::r2d2::{ConnectionManager, Pool};
            use diesel_outbox::{Worker, WorkerOptions};
            use std::io::{BufRead, BufReader};
            use std::process::{Child, Command, Stdio};

            /// The backend's name for the child processes.
            fn tag() -> &'static str {
                if PG { "postgres" } else if MY { "mysql" } else { "sqlite" }
            }

            /// Steps up the offered rate for each worker count; the table of steps and,
            /// per worker count, the highest rate sustained.
            pub fn sustained(db: &Db, plan: &Plan) -> BResult<(Table, Vec<(usize, f64)>)> {
                let mut table = Table::new(
                    format!(
                        "{NAME}: sustained load, one save per transaction over {} objects in {} shards, {} writer processes, {} s per step (bounded: the backlog within one second of writes; \"writers short\": they committed < 95% of the offer)",
                        count(OBJECTS as f64), count(SHARDS as f64), plan.writers, plan.seconds
                    ),
                    &["worker processes", "offered saves/s", "committed saves/s", "delivered rows/s", "backlog at end", "largest backlog (2nd half)", "rows per shard at end", "p50 ms", "p99 ms", "bounded"],
                );
                let mut best: Vec<(usize, f64)> = Vec::new();
                let mut conn = db.connect()?;
                for &workers in &plan.workers {
                    let floor = best.iter().map(|b| b.1).fold(0.0, f64::max) / 3.0;
                    let mut highest = 0.0;
                    for &rate in plan.ladder.iter().filter(|&&r| r >= floor.min(plan.ladder[plan.ladder.len() - 1])) {
                        let step = run_step(db, &mut conn, plan, workers, rate)?;
                        let (bounded, full) = (step.bounded(), step.offered_in_full());
                        table.row(vec![
                            workers.to_string(),
                            count(step.offered),
                            count(step.achieved),
                            count(step.delivered),
                            count(step.backlog_end as f64),
                            count(step.backlog_max as f64),
                            if step.shards_end > 0 { format!("{:.2}", step.backlog_end as f64 / step.shards_end as f64) } else { "-".to_owned() },
                            format!("{:.1}", step.p50_ms),
                            format!("{:.1}", step.p99_ms),
                            match (bounded, full) {
                                (true, true) => "yes".to_owned(),
                                (true, false) => "yes, writers short".to_owned(),
                                (false, _) => "**no**".to_owned(),
                            },
                        ]);
                        if bounded {
                            // The rate the drain kept up with: what the writers committed.
                            highest = f64::max(highest, step.achieved);
                        }
                        // Higher offers are pointless once the backlog grows, or once the
                        // writers fall well short of the offer (they, not the drain, are
                        // what the machine can do).
                        if !bounded || step.achieved < 0.8 * step.offered {
                            break;
                        }
                    }
                    best.push((workers, highest));
                }
                Ok((table, best))
            }

            /// One step: an emptied outbox, `workers` worker processes, then the writers
            /// for `plan.seconds`; the backlog sampled every 250 ms.
            fn run_step(db: &Db, conn: &mut Conn, plan: &Plan, workers: usize, rate: f64) -> BResult<Step> {
                clear(conn)?;
                let exe = std::env::current_exe()?;
                let seconds = plan.seconds;
                // Workers run a little longer than the writers, so the last rows are
                // delivered and their latencies counted.
                let worker_secs = seconds + 1.0;
                let mut children: Vec<Child> = Vec::new();
                for _ in 0..workers {
                    children.push(
                        Command::new(&exe)
                            .args(["--sustained-worker", tag(), &db.url, &worker_secs.to_string()])
                            .stdout(Stdio::piped())
                            .spawn()?,
                    );
                }
                std::thread::sleep(Duration::from_millis(300));
                let per_writer = rate / plan.writers as f64;
                let mut writers: Vec<Child> = Vec::new();
                for index in 0..plan.writers {
                    writers.push(
                        Command::new(&exe)
                            .args([
                                "--sustained-writer",
                                tag(),
                                &db.url,
                                &per_writer.to_string(),
                                &seconds.to_string(),
                                &index.to_string(),
                                &plan.writers.to_string(),
                            ])
                            .stdout(Stdio::piped())
                            .spawn()?,
                    );
                }
                let start = Instant::now();
                let mut samples: Vec<(f64, i64)> = Vec::new();
                while start.elapsed().as_secs_f64() < seconds {
                    std::thread::sleep(Duration::from_millis(250));
                    samples.push((start.elapsed().as_secs_f64(), outbox_rows(conn)?));
                }
                let (backlog_end, shards_end) = backlog_shape(conn)?;
                let mut committed = 0u64;
                let mut writer_secs: f64 = 0.0;
                for writer in writers {
                    let out = writer.wait_with_output()?;
                    let text = String::from_utf8_lossy(&out.stdout);
                    let line = text.lines().find(|l| l.starts_with("WRITER ")).ok_or("a writer child failed")?;
                    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                    committed += v.first().copied().unwrap_or(0.0) as u64;
                    writer_secs = writer_secs.max(v.get(1).copied().unwrap_or(seconds));
                }
                let mut histogram = Histogram::default();
                let mut delivered = 0u64;
                for child in children {
                    let out = child.wait_with_output()?;
                    let reader = BufReader::new(out.stdout.as_slice());
                    let mut found = false;
                    for line in reader.lines() {
                        let line = line?;
                        if let Some(rest) = line.strip_prefix("WORKER ") {
                            let (rows, hist) = rest.split_once(' ').unwrap_or((rest, ""));
                            delivered += rows.parse::<u64>().unwrap_or(0);
                            histogram.merge_encoded(hist).ok_or("a worker's histogram does not read")?;
                            found = true;
                        }
                    }
                    if !found {
                        return Err("a worker child failed".into());
                    }
                }
                let second_half = samples.iter().filter(|s| s.0 >= seconds / 2.0).map(|s| s.1).max().unwrap_or(backlog_end);
                Ok(Step {
                    offered: rate,
                    achieved: committed as f64 / writer_secs.max(seconds),
                    delivered: delivered as f64 / writer_secs.max(seconds),
                    backlog_end,
                    backlog_max: second_half,
                    shards_end,
                    p50_ms: histogram.quantile_ms(0.50),
                    p99_ms: histogram.quantile_ms(0.99),
                })
            }

            #[derive(QueryableByName)]
            struct Shape {
                #[diesel(sql_type = BigInt)]
                backlog_rows: i64,
                #[diesel(sql_type = BigInt)]
                backlog_shards: i64,
            }

            /// Rows, and shards with rows, read together.
            fn backlog_shape(conn: &mut Conn) -> BResult<(i64, i64)> {
                let int = if MY { "SIGNED" } else { "BIGINT" };
                let shape = diesel::sql_query(format!(
                    "SELECT CAST(COALESCE(SUM(n), 0) AS {int}) AS backlog_rows, COUNT(*) AS backlog_shards FROM \
                     (SELECT COUNT(*) AS n FROM cell_outboxes GROUP BY shard_scope, shard_identifier) s"
                ))
                .get_result::<Shape>(conn)?;
                Ok((shape.backlog_rows, shape.backlog_shards))
            }

            /// A pool of `size` connections set up as `Db::connect` sets one up.
            fn pool(url: &str, size: u32) -> BResult<Pool<ConnectionManager<Conn>>> {
                Ok(Pool::builder()
                    .max_size(size)
                    .connection_customizer(Box::new(crate::sustained::setup::Setup))
                    .build(ConnectionManager::<Conn>::new(url))?)
            }

            /// A writer child: `rate` saves per second for `seconds`, one per
            /// transaction, objects `index, index + writers, ...` in a scattered order.
            /// Prints `WRITER committed seconds`.
            pub fn writer(url: &str, rate: f64, seconds: f64, index: usize, writers: usize) -> BResult<()> {
                let db = Db { url: url.to_owned(), sync_commit: false };
                let mut conn = db.connect()?;
                let outbox: Outbox<Conn> = Outbox::builder(Receivers::new()).flush_on_commit(false).build();
                let start = Instant::now();
                let mut committed = 0u64;
                let mut n: i64 = 0;
                let writers = writers.max(1) as i64;
                while start.elapsed().as_secs_f64() < seconds {
                    let due = Duration::from_secs_f64(committed as f64 / rate.max(0.001));
                    let elapsed = start.elapsed();
                    if due > elapsed {
                        std::thread::sleep(due - elapsed);
                    }
                    // A scattered walk over this writer's objects (7919 is prime).
                    let slot = (n * 7_919) % (OBJECTS / writers);
                    let id = slot * writers + index as i64;
                    n += 1;
                    let model = Project { id, organization_id: id % SHARDS, name: format!("project {id} v{n}") };
                    outbox.context(&mut conn, |ctx| {
                        model.save(ctx)?;
                        Ok::<_, diesel_outbox::Error>(())
                    })?;
                    committed += 1;
                }
                println!("WRITER {committed} {}", start.elapsed().as_secs_f64());
                Ok(())
            }

            /// A worker child: the library's `Worker` (one thread, polling every 10 ms
            /// when idle, woken by notifications where the backend sends them) for
            /// `seconds`, its receiver noting each row's latency from its save. Prints
            /// `WORKER rows histogram`.
            pub fn worker(url: &str, seconds: f64) -> BResult<()> {
                let histogram = Arc::new(Mutex::new(Histogram::default()));
                let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let (h, d) = (Arc::clone(&histogram), Arc::clone(&delivered));
                let receivers = Receivers::new().cell(
                    Category::ProjectUpdate,
                    move |_conn: &mut Conn, message: &OutboxMessage| {
                        let latency = (chrono::Utc::now().naive_utc() - message.date_added).to_std().unwrap_or_default();
                        h.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(latency);
                        d.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok::<_, diesel_outbox::Error>(())
                    },
                );
                let outbox: Outbox<Conn> = Outbox::builder(receivers).build();
                let options = WorkerOptions {
                    poll_interval: Duration::from_millis(10),
                    report_every: None,
                    ..WorkerOptions::default()
                };
                let worker = Worker::spawn(pool(url, 2)?, outbox, options)?;
                std::thread::sleep(Duration::from_secs_f64(seconds));
                worker.stop();
                let histogram = histogram.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                println!("WORKER {} {}", delivered.load(std::sync::atomic::Ordering::Relaxed), histogram.encode());
                Ok(())
            }
        }
    };
}
pub(crate) use sustained_section;

/// The pooled connections of the sustained children, set up as the bench's own
/// connections are (`Db::connect`).
pub mod setup {
    use diesel::connection::SimpleConnection;
    use diesel::r2d2::{CustomizeConnection, Error};

    /// The session settings of the bench's connections.
    #[derive(Clone, Copy, Debug)]
    pub struct Setup;

    impl CustomizeConnection<diesel::SqliteConnection, Error> for Setup {
        fn on_acquire(&self, conn: &mut diesel::SqliteConnection) -> Result<(), Error> {
            conn.batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = 10000;",
            )
            .map_err(Error::QueryError)
        }
    }

    impl CustomizeConnection<diesel::PgConnection, Error> for Setup {
        fn on_acquire(&self, conn: &mut diesel::PgConnection) -> Result<(), Error> {
            conn.batch_execute("SET synchronous_commit = off")
                .map_err(Error::QueryError)
        }
    }

    #[cfg(feature = "mysql")]
    impl CustomizeConnection<diesel::MysqlConnection, Error> for Setup {
        fn on_acquire(&self, _conn: &mut diesel::MysqlConnection) -> Result<(), Error> {
            Ok(())
        }
    }
}
