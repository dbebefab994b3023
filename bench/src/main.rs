//! Benchmarks of diesel-outbox, each figure a ratio against a baseline measured in the same
//! process, on the same database, over the same data (see BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p diesel-outbox-bench                # SQLite, and PostgreSQL if
//!                                                           # OUTBOX_BENCH_POSTGRES_URL is set
//! cargo run --release -p diesel-outbox-bench -- --quick     # smaller sizes
//! cargo run -p diesel-outbox-bench -- --tiny                # a smoke run (CI)
//! ```
//!
//! MariaDB / MySQL too with the `mysql` feature and `OUTBOX_BENCH_MYSQL_URL` (the sections
//! whose SQL is dialect-specific are skipped there, see `NOT_ON_MYSQL`).
//!
//! Options: `--quick`, `--tiny`, `--sqlite-only`, `--postgres-only`, `--mysql-only`, `--skip-memory`,
//! `--only SECTION[,SECTION...]` (writes, statements, indexes, anatomy, drain, sweep,
//! scaling, receivers, profile, discovery, flush, backfill, guard, sustained, memory),
//! `--backlog NAME[,NAME...]` (the drain sections on those backlogs only: a, s10, b, c,
//! c10, e, d), `--sustained-seconds N` (each sustained step's length: 60 s at full size,
//! 15 s quick, 2 s tiny), `--svg PATH` (plot the sustained rates against worker processes).
//!
//! `--record` also writes the whole output to `bench/results/<date>-<host>.md` and the
//! plots of BENCHMARKS.md, drawn from the run's own tables, into `bench/results/`.

mod backfill;
mod backlog;
mod discovery;
mod drain;
mod flush;
mod guard;
mod model;
mod plot;
mod profile;
mod stats;
mod suite;
mod sustained;
mod writes;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::Connection;

use backlog::Backlog;

/// Errors end the program with a message.
pub type BResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How big each benchmark is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Transactions per variant and round of the write benchmark at 1, 10 and 100 saves
    /// per transaction: long enough that each variant's round spans several SQLite
    /// checkpoints (one per ~1,000 WAL pages), so that none misses its share.
    pub write_txns: [usize; 3],
    /// The same on SQLite, where a transaction of 100 saves appends ~15 WAL pages: more
    /// of them, so that each round holds several checkpoints.
    pub sqlite_write_txns: [usize; 3],
    /// Interleaved rounds of the write benchmark (and of the SQLite anatomy).
    pub write_rounds: usize,
    /// Rounds per index set.
    pub index_rounds: usize,
    /// Standing backlog of the index benchmark (and of the anatomy's last step).
    pub index_backlog: usize,
    /// Backlogs of the drain table.
    pub drain_backlogs: Vec<Backlog>,
    /// Runs per backlog and contender (the median is reported).
    pub drain_reps: usize,
    /// PostgreSQL: the drain table again with `synchronous_commit = on`.
    pub drain_synced: bool,
    /// The grids of the sweep of drain sizes.
    pub sweep: Vec<drain::Grid>,
    /// Backlogs of the workers benchmark (PostgreSQL).
    pub scaling_backlogs: Vec<Backlog>,
    /// Runs per worker count.
    pub scaling_reps: usize,
    /// Backlogs of the receivers benchmark.
    pub receiver_backlogs: Vec<Backlog>,
    /// Runs per receiver and backlog.
    pub receiver_reps: usize,
    /// Backlogs of the statement profile.
    pub profile_backlogs: Vec<Backlog>,
    /// Rows of the discovery backlog.
    pub discovery_rows: usize,
    /// Shards of the discovery backlog.
    pub discovery_shards: usize,
    /// Timed calls of discovery (ten times as many lookups).
    pub discovery_samples: usize,
    /// Samples of the flush latency.
    pub flush_samples: usize,
    /// Existing objects the backfill benchmark writes outbox rows for, and its runs.
    pub backfill_objects: usize,
    /// Runs of the backfill benchmark (the median is reported).
    pub backfill_reps: usize,
    /// Backlogs drained by the memory children, with the default window; the largest is
    /// drained once more with a window of 100 rows.
    pub memory_rows: Vec<usize>,
    /// The sustained-load steps.
    pub sustained: sustained::Plan,
}

impl Sizes {
    fn with_backlogs(backlogs: Vec<Backlog>) -> Self {
        let pick = |names: &[&str]| -> Vec<Backlog> {
            names
                .iter()
                .filter_map(|n| Backlog::find(&backlogs, n).cloned())
                .collect()
        };
        Sizes {
            write_txns: [1_000, 300, 100],
            sqlite_write_txns: [2_000, 500, 300],
            write_rounds: 9,
            index_rounds: 5,
            index_backlog: 100_000,
            drain_reps: 3,
            drain_synced: true,
            sweep: vec![
                drain::Grid {
                    backlogs: pick(&["a", "e"]),
                    rows: (drain::Knob::BatchShards, vec![100, 200, 400, 800]),
                    columns: (drain::Knob::ScanRows, vec![500, 1_000, 2_000, 4_000]),
                    reps: 2,
                },
                drain::Grid {
                    backlogs: pick(&["d"]),
                    rows: (drain::Knob::BatchShards, vec![25, 50, 100]),
                    columns: (drain::Knob::Window, vec![100, 250, 500, 1_000, 2_000]),
                    reps: 1,
                },
            ],
            scaling_backlogs: pick(&["a", "c"]),
            scaling_reps: 3,
            profile_backlogs: pick(&["a", "c", "e", "d"]),
            receiver_backlogs: pick(&["s10", "b"]),
            receiver_reps: 2,
            drain_backlogs: backlog::drain_table(&backlogs),
            discovery_rows: 1_000_000,
            discovery_shards: 10_000,
            discovery_samples: 200,
            flush_samples: 500,
            backfill_objects: 100_000,
            backfill_reps: 3,
            memory_rows: vec![100_000, 1_000_000],
            sustained: sustained::Plan {
                seconds: 60.0,
                workers: vec![1, 2, 4],
                writers: 4,
                ladder: sustained::LADDER.to_vec(),
            },
        }
    }

    fn full() -> Self {
        Sizes::with_backlogs(backlog::full())
    }

    fn quick() -> Self {
        Sizes {
            write_txns: [500, 100, 20],
            sqlite_write_txns: [500, 100, 60],
            write_rounds: 5,
            index_rounds: 3,
            index_backlog: 20_000,
            drain_reps: 1,
            receiver_reps: 1,
            scaling_reps: 1,
            discovery_rows: 200_000,
            discovery_shards: 2_000,
            discovery_samples: 10,
            flush_samples: 200,
            backfill_objects: 20_000,
            memory_rows: vec![20_000, 100_000],
            sustained: sustained::Plan {
                seconds: 15.0,
                workers: vec![1, 2, 4],
                writers: 4,
                ladder: sustained::LADDER.to_vec(),
            },
            ..Sizes::with_backlogs(backlog::quick())
        }
        .small_grids()
    }

    fn tiny() -> Self {
        Sizes {
            drain_synced: false,
            write_txns: [4, 2, 2],
            sqlite_write_txns: [4, 2, 2],
            write_rounds: 1,
            index_rounds: 1,
            index_backlog: 1_000,
            drain_reps: 1,
            receiver_reps: 1,
            scaling_reps: 1,
            discovery_rows: 2_000,
            discovery_shards: 100,
            discovery_samples: 2,
            flush_samples: 5,
            backfill_objects: 1_000,
            backfill_reps: 1,
            memory_rows: vec![1_000, 2_000],
            sustained: sustained::Plan {
                seconds: 2.0,
                workers: vec![1],
                writers: 1,
                ladder: vec![100.0],
            },
            ..Sizes::with_backlogs(backlog::tiny())
        }
        .small_grids()
        .one_backlog_per_grid()
    }

    /// Each grid of the sweep with its first, middle and last values, one run each.
    fn small_grids(mut self) -> Self {
        for grid in &mut self.sweep {
            for values in [&mut grid.rows.1, &mut grid.columns.1] {
                let picked = [
                    values[0],
                    values[values.len() / 2],
                    values[values.len() - 1],
                ];
                let mut picked = picked.to_vec();
                picked.dedup();
                *values = picked;
            }
            grid.reps = 1;
        }
        self
    }

    /// Each grid of the sweep on its first backlog only (the smoke run's PostgreSQL time
    /// is mostly refills).
    fn one_backlog_per_grid(mut self) -> Self {
        for grid in &mut self.sweep {
            grid.backlogs.truncate(1);
        }
        self
    }

    /// Keeps only the backlogs named in `names`.
    fn only_backlogs(&mut self, names: &[&str]) {
        for list in [
            &mut self.drain_backlogs,
            &mut self.scaling_backlogs,
            &mut self.profile_backlogs,
            &mut self.receiver_backlogs,
        ] {
            list.retain(|b| names.contains(&b.name));
        }
        for grid in &mut self.sweep {
            grid.backlogs.retain(|b| names.contains(&b.name));
        }
    }
}

suite::suite!(sqlite, diesel::SqliteConnection, pg = false, mysql = false);
suite::suite!(pg, diesel::PgConnection, pg = true, mysql = false);
#[cfg(feature = "mysql")]
suite::suite!(my, diesel::MysqlConnection, pg = false, mysql = true);

/// A SQLite database file in a fresh temp dir, removed on drop.
struct SqliteFile {
    dir: PathBuf,
}

impl SqliteFile {
    fn new(tag: &str) -> BResult<Self> {
        let dir = std::env::temp_dir().join(format!(
            "diesel-outbox-bench-{tag}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(SqliteFile { dir })
    }

    fn url(&self) -> String {
        self.dir.join("bench.db").display().to_string()
    }

    fn db(&self) -> sqlite::Db {
        sqlite::Db {
            url: self.url(),
            sync_commit: false,
        }
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL schema of the bench's own, dropped on drop.
struct PgSchema {
    base: String,
    schema: String,
}

impl PgSchema {
    fn new(base: &str, tag: &str) -> BResult<Self> {
        let schema = format!("outbox_bench_{tag}_{}", std::process::id());
        let mut admin = diesel::PgConnection::establish(base)?;
        admin.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))?;
        Ok(PgSchema {
            base: base.to_owned(),
            schema,
        })
    }

    fn db(&self) -> pg::Db {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        pg::Db {
            url: format!("{}{sep}options=-csearch_path%3D{}", self.base, self.schema),
            sync_commit: false,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = diesel::PgConnection::establish(&self.base) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// A MySQL / MariaDB database of the bench's own, dropped on drop.
#[cfg(feature = "mysql")]
struct MysqlDatabase {
    base: String,
    database: String,
}

#[cfg(feature = "mysql")]
impl MysqlDatabase {
    fn new(base: &str, tag: &str) -> BResult<Self> {
        let database = format!("outbox_bench_{tag}_{}", std::process::id());
        let mut admin = diesel::MysqlConnection::establish(base)?;
        admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {database}; \
             CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))?;
        Ok(MysqlDatabase {
            base: base.to_owned(),
            database,
        })
    }

    /// `base` (`mysql://user@host:port/db?options`) with its database replaced.
    fn db(&self) -> my::Db {
        let (head, query) = self
            .base
            .split_at(self.base.find('?').unwrap_or(self.base.len()));
        let authority = head.find("://").map_or(0, |at| at + 3);
        let host_end = head[authority..]
            .find('/')
            .map_or(head.len(), |at| authority + at);
        my::Db {
            url: format!("{}/{}{query}", &head[..host_end], self.database),
            sync_commit: false,
        }
    }
}

#[cfg(feature = "mysql")]
impl Drop for MysqlDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = diesel::MysqlConnection::establish(&self.base) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.database));
        }
    }
}

#[cfg(feature = "mysql")]
fn mysql_url() -> Option<String> {
    ["OUTBOX_BENCH_MYSQL_URL", "OUTBOX_MYSQL_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|u| !u.is_empty())
}

/// Sections whose SQL is written for SQLite and PostgreSQL only (catalog queries, the
/// anatomy's files, advisory-lock workers, statement names): MariaDB runs the others.
const NOT_ON_MYSQL: [&str; 4] = ["indexes", "anatomy", "scaling", "profile"];

fn postgres_url() -> Option<String> {
    ["OUTBOX_BENCH_POSTGRES_URL", "OUTBOX_POSTGRES_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|u| !u.is_empty())
}

/// The sections a run prints, in order.
const SECTIONS: [&str; 15] = [
    "writes",
    "statements",
    "indexes",
    "anatomy",
    "drain",
    "sweep",
    "scaling",
    "receivers",
    "profile",
    "discovery",
    "flush",
    "backfill",
    "guard",
    "sustained",
    "memory",
];

macro_rules! run_suite {
    ($module:ident, $db:expr, $sizes:expr, $pg:expr, $my:expr, $want:expr, $series:expr) => {{
        let db = $db;
        let sizes = $sizes;
        let want = $want;
        $module::setup(&db)?;
        let name = if $pg {
            "PostgreSQL"
        } else if $my {
            "MariaDB"
        } else {
            "SQLite"
        };
        println!("\n## {name} ({})", $module::version(&db)?);
        let t = Instant::now();
        let timed = |section: &str, run: &mut dyn FnMut() -> BResult<()>| -> BResult<()> {
            if want(section) && !($my && NOT_ON_MYSQL.contains(&section)) {
                let t = Instant::now();
                run()?;
                println!(
                    "\n({name} {section}: {:.0} s, load average {})",
                    t.elapsed().as_secs_f64(),
                    load_average()
                );
            }
            Ok(())
        };
        timed("writes", &mut || {
            Ok($module::writes::writes(&db, sizes)?.print())
        })?;
        timed("statements", &mut || {
            Ok($module::writes::statements(&db, sizes)?.print())
        })?;
        timed("indexes", &mut || {
            Ok($module::writes::index_costs(&db, sizes)?.print())
        })?;
        if !$pg && !$my {
            timed("anatomy", &mut || {
                Ok($module::writes::anatomy(sizes)?.print())
            })?;
        }
        timed("drain", &mut || {
            let (table, depth) = $module::drain::drain(&db, sizes)?;
            table.print();
            depth.print();
            Ok(())
        })?;
        timed("sweep", &mut || {
            for table in $module::drain::sweep(&db, sizes)? {
                table.print();
            }
            Ok(())
        })?;
        if $pg {
            timed("scaling", &mut || {
                Ok($module::drain::scaling(&db, sizes)?.print())
            })?;
        }
        timed("receivers", &mut || {
            Ok($module::drain::receivers(&db, sizes)?.print())
        })?;
        timed("profile", &mut || {
            let (tables, plans) = $module::drain::profile(&db, sizes)?;
            for table in tables {
                table.print();
            }
            if !plans.is_empty() {
                println!("\n```text");
                for line in plans {
                    println!("{line}");
                }
                println!("```");
            }
            Ok(())
        })?;
        timed("discovery", &mut || {
            let (table, plans) = $module::discovery::discovery(&db, sizes)?;
            table.print();
            println!("\n```text");
            for line in plans {
                println!("{line}");
            }
            println!("```");
            Ok(())
        })?;
        timed("flush", &mut || {
            let (latency, statements) = $module::flush::flush(&db, sizes)?;
            latency.print();
            statements.print();
            Ok(())
        })?;
        timed("backfill", &mut || {
            Ok($module::backfill::backfill(&db, sizes)?.print())
        })?;
        timed("guard", &mut || {
            $module::guard::writes(&db, sizes)?.print();
            $module::guard::drains(&db, sizes)?.print();
            Ok(())
        })?;
        timed("sustained", &mut || {
            let mut plan = sizes.sustained.clone();
            if !$pg && !$my {
                // SQLite: one writer at a time; more worker processes only queue on it.
                plan.workers.retain(|&w| w <= 2);
            }
            let (table, best) = $module::sustained::sustained(&db, &plan)?;
            table.print();
            $series.push((name.to_owned(), best));
            Ok(())
        })?;
        println!("\n({name} suite: {:.0} s)", t.elapsed().as_secs_f64());
    }};
}

/// The machine's load average (1, 5 and 15 minutes): other work on the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Rows per object and shards of the memory backlogs.
const MEMORY_ROWS_PER_OBJECT: usize = 10;
const MEMORY_SHARDS: usize = 1_000;

/// Runs the memory benchmark in child processes (peak RSS cannot be reset).
fn memory(backend: &str, sizes: &Sizes) -> BResult<()> {
    let exe = std::env::current_exe()?;
    let mut table = stats::Table::new(
        format!("{backend}: peak resident memory while draining ({MEMORY_ROWS_PER_OBJECT} rows/object, {} shards; one child process per size)", stats::count(MEMORY_SHARDS as f64)),
        &["backlog", "window", "window × shards per batch", "peak KiB after fill", "peak KiB after drain", "growth KiB", "drain rows/s"],
    );
    let defaults = diesel_outbox::drain::DrainOptions::default();
    let mut runs: Vec<(usize, usize)> = sizes
        .memory_rows
        .iter()
        .map(|&rows| (rows, defaults.window))
        .collect();
    if let Some(&largest) = sizes.memory_rows.iter().max() {
        runs.push((largest, 100));
    }
    for (rows, window) in runs {
        let out = Command::new(&exe)
            .args([
                "--memory-child",
                backend,
                &rows.to_string(),
                &window.to_string(),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("MEMORY "))
            .ok_or_else(|| {
                format!(
                    "memory child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() != 3 {
            return Err(format!("bad memory line: {line}").into());
        }
        let shards = MEMORY_SHARDS.min(rows / MEMORY_ROWS_PER_OBJECT).max(1);
        let per_batch = (rows / shards).min(window) * shards.min(defaults.batch_shards);
        table.row(vec![
            stats::count(rows as f64),
            stats::count(window as f64),
            stats::count(per_batch as f64),
            stats::count(v[0]),
            stats::count(v[1]),
            stats::count(v[1] - v[0]),
            stats::count(rows as f64 / v[2]),
        ]);
    }
    table.print();
    Ok(())
}

fn memory_child(backend: &str, rows: usize, window: usize) -> BResult<()> {
    let shards = MEMORY_SHARDS.min(rows / MEMORY_ROWS_PER_OBJECT).max(1);
    let (before, after, secs) = match backend {
        "postgres" => {
            let url = postgres_url().ok_or("OUTBOX_BENCH_POSTGRES_URL is not set")?;
            let schema = PgSchema::new(&url, "mem")?;
            let db = schema.db();
            pg::setup(&db)?;
            pg::flush::memory_child(&db, rows, shards, MEMORY_ROWS_PER_OBJECT, window)?
        }
        _ => {
            let file = SqliteFile::new("mem")?;
            let db = file.db();
            sqlite::setup(&db)?;
            sqlite::flush::memory_child(&db, rows, shards, MEMORY_ROWS_PER_OBJECT, window)?
        }
    };
    println!("MEMORY {before} {after} {secs}");
    Ok(())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cpus} CPUs, {mem_gib:.0} GiB RAM")
}

/// The comma-separated values of option `name`, if given.
fn list_option(args: &[String], name: &str) -> BResult<Option<Vec<String>>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let value = args
                .get(i + 1)
                .ok_or_else(|| format!("{name} needs a value"))?;
            Ok(Some(value.split(',').map(str::to_owned).collect()))
        }
    }
}

fn main() -> BResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let usage = "--memory-child BACKEND ROWS WINDOW";
        let backend = args.get(i + 1).ok_or(usage)?;
        let rows = args.get(i + 2).ok_or(usage)?.parse()?;
        let window = args.get(i + 3).ok_or(usage)?.parse()?;
        return memory_child(backend, rows, window);
    }
    if let Some(i) = args.iter().position(|a| a == "--sustained-writer") {
        let usage = "--sustained-writer BACKEND URL RATE SECONDS INDEX WRITERS";
        let arg = |k: usize| args.get(i + k).ok_or(usage);
        let (backend, url) = (arg(1)?, arg(2)?);
        let (rate, seconds) = (arg(3)?.parse()?, arg(4)?.parse()?);
        let (index, writers) = (arg(5)?.parse()?, arg(6)?.parse()?);
        return match backend.as_str() {
            "postgres" => pg::sustained::writer(url, rate, seconds, index, writers),
            #[cfg(feature = "mysql")]
            "mysql" => my::sustained::writer(url, rate, seconds, index, writers),
            _ => sqlite::sustained::writer(url, rate, seconds, index, writers),
        };
    }
    if let Some(i) = args.iter().position(|a| a == "--sustained-worker") {
        let usage = "--sustained-worker BACKEND URL SECONDS";
        let arg = |k: usize| args.get(i + k).ok_or(usage);
        let (backend, url, seconds) = (arg(1)?, arg(2)?, arg(3)?.parse()?);
        return match backend.as_str() {
            "postgres" => pg::sustained::worker(url, seconds),
            #[cfg(feature = "mysql")]
            "mysql" => my::sustained::worker(url, seconds),
            _ => sqlite::sustained::worker(url, seconds),
        };
    }
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let recording = has("--record");
    if recording && std::env::var_os(RECORDING_CHILD).is_none() {
        return record(&args);
    }
    let (mut sizes, size_name) = if has("--tiny") {
        (Sizes::tiny(), "tiny")
    } else if has("--quick") {
        (Sizes::quick(), "quick")
    } else {
        (Sizes::full(), "full")
    };
    if let Some(names) = list_option(&args, "--backlog")? {
        let mut known: Vec<&str> = sizes.drain_backlogs.iter().map(|b| b.name).collect();
        known.extend(
            sizes
                .sweep
                .iter()
                .flat_map(|g| g.backlogs.iter().map(|b| b.name)),
        );
        if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(format!("unknown backlog {bad}; known: {}", known.join(", ")).into());
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        sizes.only_backlogs(&names);
    }
    let only = list_option(&args, "--only")?;
    if let Some(bad) = only
        .iter()
        .flatten()
        .find(|s| !SECTIONS.contains(&s.as_str()))
    {
        return Err(format!("unknown section {bad}; known: {}", SECTIONS.join(", ")).into());
    }
    let want = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    let started = Instant::now();
    println!("# diesel-outbox benchmarks ({size_name} sizes)\n");
    println!("Machine: {}", machine());
    println!(
        "Load average at the start (1, 5, 15 min): {}",
        load_average()
    );
    if let Some(seconds) = list_option(&args, "--sustained-seconds")? {
        let seconds = seconds.first().ok_or("--sustained-seconds needs a value")?;
        sizes.sustained.seconds = seconds.parse()?;
    }
    let svg = list_option(&args, "--svg")?.and_then(|v| v.into_iter().next());
    let mut series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    let pg_url = postgres_url();
    let memory_wanted = !has("--skip-memory") && want("memory");
    if !has("--postgres-only") && !has("--mysql-only") {
        let file = SqliteFile::new("main")?;
        run_suite!(sqlite, file.db(), &sizes, false, false, &want, series);
        if memory_wanted {
            memory("sqlite", &sizes)?;
        }
    }
    match (&pg_url, has("--sqlite-only") || has("--mysql-only")) {
        (Some(url), false) => {
            let schema = PgSchema::new(url, "main")?;
            run_suite!(pg, schema.db(), &sizes, true, false, &want, series);
            drop(schema);
            if memory_wanted {
                memory("postgres", &sizes)?;
            }
        }
        (None, false) => println!(
            "\n(PostgreSQL skipped: set OUTBOX_BENCH_POSTGRES_URL, e.g. \
             postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => {}
    }
    #[cfg(feature = "mysql")]
    match (mysql_url(), has("--sqlite-only") || has("--postgres-only")) {
        (Some(url), false) => {
            let database = MysqlDatabase::new(&url, "main")?;
            run_suite!(my, database.db(), &sizes, false, true, &want, series);
        }
        (None, false) => println!(
            "\n(MariaDB skipped: set OUTBOX_BENCH_MYSQL_URL, e.g. mysql://root@127.0.0.1:3306/test)"
        ),
        _ => {}
    }
    if let (Some(path), false) = (&svg, series.is_empty()) {
        sustained::plot(std::path::Path::new(path), &series)?;
        println!("\n(sustained rates plotted in {path})");
    }
    println!(
        "\nTotal: {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    if recording {
        for path in plot::write_all(&results_dir())? {
            println!("\nPlot: {}", path.display());
        }
    }
    Ok(())
}

/// Set in the child a `--record` run starts, whose output the parent copies to a file.
const RECORDING_CHILD: &str = "OUTBOX_BENCH_RECORDING_CHILD";

/// Where `--record` writes: `bench/results/`.
fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Runs the bench again as a child and copies its output, line by line, to the terminal
/// and to `bench/results/<date>-<host>.md` (the child draws the plots).
fn record(args: &[String]) -> BResult<()> {
    use std::io::{BufRead, BufReader, Write};
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "machine".to_owned());
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "{}-{host}.md",
        chrono::Utc::now().format("%Y-%m-%d")
    ));
    let mut file = std::fs::File::create(&path)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .env(RECORDING_CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let output = child
        .stdout
        .take()
        .ok_or("the recorded run has no output")?;
    for line in BufReader::new(output).lines() {
        let line = line?;
        println!("{line}");
        writeln!(file, "{line}")?;
    }
    let status = child.wait()?;
    println!("\nRecorded in {}", path.display());
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the recorded run failed ({status}); its output so far is in {}",
            path.display()
        )
        .into())
    }
}
