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
//! Options: `--quick`, `--tiny`, `--sqlite-only`, `--postgres-only`, `--skip-memory`,
//! `--only SECTION` (writes, indexes, drain, scaling, discovery, flush, memory),
//! `--drain-rows N` (one drain backlog instead of the size's list).

mod model;
mod stats;
mod suite;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::Connection;

/// Errors end the program with a message.
pub type BResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How big each benchmark is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Saves per variant and round of the write benchmark.
    pub write_rows: usize,
    /// Interleaved rounds of the write benchmark.
    pub write_rounds: usize,
    /// Rounds per index set.
    pub index_rounds: usize,
    /// Standing backlog of the index benchmark.
    pub index_backlog: usize,
    /// Backlogs of the drain benchmark.
    pub drain_rows: Vec<usize>,
    /// Shards of the drain backlogs.
    pub shards: usize,
    /// Backlog of the thread-scaling benchmark.
    pub scaling_rows: usize,
    /// Backlog and shards of the discovery benchmark.
    pub discovery_rows: usize,
    /// Shards of the discovery backlog.
    pub discovery_shards: usize,
    /// Samples of the flush latency.
    pub flush_samples: usize,
    /// Backlogs drained by the memory children.
    pub memory_rows: Vec<usize>,
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            write_rows: 200,
            write_rounds: 9,
            index_rounds: 5,
            index_backlog: 100_000,
            drain_rows: vec![10_000, 200_000],
            shards: 1_000,
            scaling_rows: 10_000,
            discovery_rows: 1_000_000,
            discovery_shards: 10_000,
            flush_samples: 500,
            memory_rows: vec![100_000, 1_000_000],
        }
    }

    fn quick() -> Self {
        Sizes {
            write_rows: 100,
            write_rounds: 5,
            index_rounds: 3,
            index_backlog: 20_000,
            drain_rows: vec![10_000, 50_000],
            shards: 1_000,
            scaling_rows: 10_000,
            discovery_rows: 200_000,
            discovery_shards: 2_000,
            flush_samples: 200,
            memory_rows: vec![20_000, 100_000],
        }
    }

    fn tiny() -> Self {
        Sizes {
            write_rows: 10,
            write_rounds: 1,
            index_rounds: 1,
            index_backlog: 100,
            drain_rows: vec![200],
            shards: 20,
            scaling_rows: 200,
            discovery_rows: 2_000,
            discovery_shards: 100,
            flush_samples: 5,
            memory_rows: vec![1_000, 2_000],
        }
    }
}

suite::suite!(sqlite, diesel::SqliteConnection, pg = false);
suite::suite!(pg, diesel::PgConnection, pg = true);

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

    fn db(&self) -> sqlite::Db {
        sqlite::Db {
            url: self.dir.join("bench.db").display().to_string(),
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

fn postgres_url() -> Option<String> {
    ["OUTBOX_BENCH_POSTGRES_URL", "OUTBOX_POSTGRES_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|u| !u.is_empty())
}

macro_rules! run_suite {
    ($module:ident, $db:expr, $sizes:expr, $pg:expr, $only:expr) => {{
        let db = $db;
        let sizes = $sizes;
        let only: &Option<String> = $only;
        let want = |section: &str| only.as_deref().is_none_or(|o| o == section);
        $module::setup(&db)?;
        let name = if $pg { "PostgreSQL" } else { "SQLite" };
        println!("\n## {name} ({})", $module::version(&db)?);
        let t = Instant::now();
        if want("writes") {
            $module::writes(&db, sizes)?.print();
        }
        if want("indexes") {
            $module::index_costs(&db, sizes)?.print();
        }
        if want("drain") {
            $module::drain(&db, sizes)?.print();
        }
        if $pg && want("scaling") {
            $module::scaling(&db, sizes)?.print();
        }
        if want("discovery") {
            let (table, plans) = $module::discovery(&db, sizes)?;
            table.print();
            println!("\n```text");
            for line in plans {
                println!("{line}");
            }
            println!("```");
        }
        if want("flush") {
            $module::flush(&db, sizes)?.print();
        }
        println!("\n({name} suite: {:.0} s)", t.elapsed().as_secs_f64());
    }};
}

/// Runs the memory benchmark in child processes (peak RSS cannot be reset).
fn memory(backend: &str, sizes: &Sizes) -> BResult<()> {
    let exe = std::env::current_exe()?;
    let mut table = stats::Table::new(
        format!("{backend}: peak resident memory while draining ({} rows/object, 1,000 shards; one child process per size)", memory_rows_per_object(backend)),
        &["backlog", "peak KiB after fill", "peak KiB after drain", "growth KiB", "drain rows/s"],
    );
    for &rows in &sizes.memory_rows {
        let out = Command::new(&exe)
            .args(["--memory-child", backend, &rows.to_string()])
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
        table.row(vec![
            stats::count(rows as f64),
            stats::count(v[0]),
            stats::count(v[1]),
            stats::count(v[1] - v[0]),
            stats::count(rows as f64 / v[2]),
        ]);
    }
    table.print();
    Ok(())
}

/// Rows per object of the memory backlogs: 10 on SQLite; 100 on PostgreSQL, whose drain
/// delivers fewer groups per second, to keep the run within its time budget.
fn memory_rows_per_object(backend: &str) -> usize {
    if backend == "postgres" {
        100
    } else {
        10
    }
}

fn memory_child(backend: &str, rows: usize) -> BResult<()> {
    let per_object = memory_rows_per_object(backend);
    let shards = 1_000.min(rows / per_object).max(1);
    let (before, after, secs) = match backend {
        "postgres" => {
            let url = postgres_url().ok_or("OUTBOX_BENCH_POSTGRES_URL is not set")?;
            let schema = PgSchema::new(&url, "mem")?;
            let db = schema.db();
            pg::setup(&db)?;
            pg::memory_child(&db, rows, shards, per_object)?
        }
        _ => {
            let file = SqliteFile::new("mem")?;
            let db = file.db();
            sqlite::setup(&db)?;
            sqlite::memory_child(&db, rows, shards, per_object)?
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

fn main() -> BResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--memory-child") {
        let backend = args.get(i + 1).ok_or("--memory-child BACKEND ROWS")?;
        let rows = args
            .get(i + 2)
            .ok_or("--memory-child BACKEND ROWS")?
            .parse()?;
        return memory_child(backend, rows);
    }
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let (sizes, size_name) = if has("--tiny") {
        (Sizes::tiny(), "tiny")
    } else if has("--quick") {
        (Sizes::quick(), "quick")
    } else {
        (Sizes::full(), "full")
    };
    let mut sizes = sizes;
    if let Some(i) = args.iter().position(|a| a == "--drain-rows") {
        let rows: usize = args.get(i + 1).ok_or("--drain-rows N")?.parse()?;
        sizes.drain_rows = vec![rows];
    }
    let started = Instant::now();
    println!("# diesel-outbox benchmarks ({size_name} sizes)\n");
    println!("Machine: {}", machine());
    let pg_url = postgres_url();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let memory_wanted = !has("--skip-memory") && only.as_deref().is_none_or(|o| o == "memory");
    if !has("--postgres-only") {
        let file = SqliteFile::new("main")?;
        run_suite!(sqlite, file.db(), &sizes, false, &only);
        if memory_wanted {
            memory("sqlite", &sizes)?;
        }
    }
    match (&pg_url, has("--sqlite-only")) {
        (Some(url), false) => {
            let schema = PgSchema::new(url, "main")?;
            run_suite!(pg, schema.db(), &sizes, true, &only);
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
    println!("\nTotal: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
