//! Commit → receiver latency for an idle worker on PostgreSQL: woken by NOTIFY, or
//! polling every second (the default poll interval). Both run in the same run, samples
//! interleaved, each worker on its own schema; commits come at random moments so that
//! polling is measured over its whole cycle. Also the CPU an idle worker costs.
//!
//! ```text
//! cargo run --release -p diesel-outbox-cli --example notify_latency [SAMPLES]
//! ```
//!
//! `OUTBOX_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::error::Error as StdError;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::{Connection, PgConnection};
use diesel_outbox::{
    run_migrations, CellOutbox, Error, Outbox, OutboxMessage, Receivers, Worker, WorkerOptions,
};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
    }
}

type BResult<T> = Result<T, Box<dyn StdError>>;

/// A schema of its own, dropped at the end.
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    fn create(base: &str, name: &str) -> BResult<Self> {
        let mut admin = PgConnection::establish(base)?;
        admin.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))?;
        let schema = Schema {
            base: base.to_owned(),
            name: name.to_owned(),
        };
        run_migrations(&mut schema.connect()?)?;
        Ok(schema)
    }

    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }

    fn connect(&self) -> BResult<PgConnection> {
        Ok(PgConnection::establish(&self.url())?)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.base) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        }
    }
}

/// An outbox that only reports when its receiver ran; no flush.
fn reporting(notify: bool) -> (Outbox<PgConnection>, mpsc::Receiver<Instant>) {
    let (sender, delivered) = mpsc::channel();
    let sender = Mutex::new(sender);
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut PgConnection, _message: &OutboxMessage| {
            let _ = sender.lock().map(|sender| sender.send(Instant::now()));
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::builder(receivers)
        .flush_on_commit(false)
        .notify_on_commit(notify)
        .build();
    (outbox, delivered)
}

fn worker(schema: &Schema, outbox: &Outbox<PgConnection>, listen: bool) -> BResult<Worker> {
    let pool = Pool::builder()
        .max_size(2)
        .build(ConnectionManager::<PgConnection>::new(schema.url()))?;
    Ok(Worker::spawn(
        pool,
        outbox.clone(),
        WorkerOptions {
            listen,
            report_every: None,
            ..WorkerOptions::default()
        },
    )?)
}

/// xorshift: random gaps without a dependency.
struct Gaps(u64);

impl Gaps {
    fn next(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        max.mul_f64((self.0 % 10_000) as f64 / 10_000.0)
    }
}

/// This process's CPU time (user + system) from /proc.
fn cpu_time() -> BResult<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

fn idle_cpu(schema: &Schema, outbox: &Outbox<PgConnection>, listen: bool) -> BResult<f64> {
    let running = worker(schema, outbox, listen)?;
    std::thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (cpu_time()?, Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let used = cpu_time()? - cpu;
    running.stop();
    Ok(100.0 * used.as_secs_f64() / wall.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples[samples.len() - 1],
        mean
    );
}

fn main() -> BResult<()> {
    let samples: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100);
    let base = std::env::var("OUTBOX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pid = std::process::id();
    let notified_schema = Schema::create(&base, &format!("notify_latency_a_{pid}"))?;
    let polling_schema = Schema::create(&base, &format!("notify_latency_b_{pid}"))?;
    let (notified, notified_deliveries) = reporting(true);
    let (polling, polling_deliveries) = reporting(false);

    let listening_cpu = idle_cpu(&notified_schema, &notified, true)?;
    let polling_cpu = idle_cpu(&polling_schema, &polling, false)?;

    let workers = [
        worker(&notified_schema, &notified, true)?,
        worker(&polling_schema, &polling, false)?,
    ];
    std::thread::sleep(Duration::from_secs(1));
    let mut writers = [notified_schema.connect()?, polling_schema.connect()?];
    let mut gaps = Gaps(u64::from(pid) | 1);
    let mut latencies = [Vec::new(), Vec::new()];
    for sample in 0..samples {
        for variant in 0..2 {
            std::thread::sleep(gaps.next(Duration::from_secs(1)));
            let (outbox, deliveries) = match variant {
                0 => (&notified, &notified_deliveries),
                _ => (&polling, &polling_deliveries),
            };
            let object = i64::try_from(sample)?;
            outbox.context(&mut writers[variant], |ctx| {
                ctx.write(CellOutbox::new(
                    Category::OrganizationUpdate,
                    object,
                    object,
                ))
            })?;
            let committed = Instant::now();
            let delivered = deliveries.recv_timeout(Duration::from_secs(10))?;
            latencies[variant]
                .push(delivered.saturating_duration_since(committed).as_secs_f64() * 1e3);
        }
    }
    for worker in workers {
        worker.stop();
    }
    println!("commit → receiver latency of an idle worker, PostgreSQL, poll interval 1 s, ms");
    println!();
    println!("| worker | samples | p50 | p90 | p99 | max | mean |");
    println!("|---|---|---|---|---|---|---|");
    let [notified_ms, polling_ms] = latencies;
    report("woken by NOTIFY", notified_ms);
    report("polling", polling_ms);
    println!();
    println!(
        "idle CPU of the process over 10 s: listening {listening_cpu:.2}%, polling {polling_cpu:.2}%"
    );
    Ok(())
}
