//! The chaos program of diesel-outbox: the faults an outbox must survive, tried for real
//! against SQLite and PostgreSQL, with figures (see RELIABILITY.md).
//!
//! ```text
//! cargo run -p diesel-outbox-chaos                    # the small size (CI): seconds per scenario
//! cargo run --release -p diesel-outbox-chaos -- --full   # the figures of RELIABILITY.md
//! ```
//!
//! Options: `--small` (default) or `--full`; `--only kill,abort,bad-rows,restart`;
//! `--sqlite-only`, `--postgres-only`; `--seed N`; `--keep` (keep the run's directory of
//! logs and databases even when every check passed).
//!
//! PostgreSQL: the scenarios that do not restart the server run in schemas of their own
//! at `OUTBOX_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped
//! afterwards. The restart scenario starts a private cluster (PostgreSQL's `initdb` and
//! `pg_ctl`, from `OUTBOX_CHAOS_PG_BIN` or `/usr/lib/postgresql/*/bin`) on a free port in
//! a temp directory, and never touches that server.
//!
//! The scenarios start this same program as child processes (`child writer|worker
//! key=value ...`), which they kill.

mod backend;
mod child;
mod model;
mod pg_cluster;
mod report;
mod rng;
mod scenario;
mod size;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use diesel::{PgConnection, SqliteConnection};

use backend::{Backend, Target};
use report::Section;
use size::Size;

/// Errors end a scenario (or the program) with a message.
pub type CResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The scenarios, in the order they run.
const SCENARIOS: [&str; 4] = ["kill", "abort", "bad-rows", "restart"];

/// The command line.
struct Args {
    size: Size,
    only: Vec<String>,
    backends: Vec<Backend>,
    seed: u64,
    keep: bool,
    postgres_url: String,
}

impl Args {
    fn parse(args: &[String]) -> CResult<Args> {
        let mut parsed = Args {
            size: Size::small(),
            only: SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
            backends: vec![Backend::Sqlite, Backend::Postgres],
            seed: 20_260_101,
            keep: false,
            postgres_url: std::env::var("OUTBOX_POSTGRES_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = || rest.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--small" => parsed.size = Size::small(),
                "--full" => parsed.size = Size::full(),
                "--only" => {
                    parsed.only = value()?.split(',').map(str::to_owned).collect();
                    if let Some(unknown) = parsed
                        .only
                        .iter()
                        .find(|s| !SCENARIOS.contains(&s.as_str()))
                    {
                        return Err(
                            format!("unknown scenario {unknown:?}: one of {SCENARIOS:?}").into(),
                        );
                    }
                }
                "--sqlite-only" => parsed.backends = vec![Backend::Sqlite],
                "--postgres-only" => parsed.backends = vec![Backend::Postgres],
                "--seed" => parsed.seed = value()?.parse()?,
                "--keep" => parsed.keep = true,
                other => {
                    return Err(format!("unknown option {other:?} (see the crate's docs)").into())
                }
            }
        }
        Ok(parsed)
    }
}

/// Sends WARN and above of `tracing` (the drain's failures and recoveries) to `writer`;
/// `OUTBOX_CHAOS_LOG=debug` (or another level) says more.
pub fn init_tracing<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::filter::LevelFilter;
    let level = std::env::var("OUTBOX_CHAOS_LOG")
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return match child::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("chaos child: {error}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios; whether every check passed.
fn run(args: &[String]) -> CResult<bool> {
    let args = Args::parse(args)?;
    let dir = std::env::temp_dir().join(format!("diesel-outbox-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    init_tracing(Mutex::new(std::fs::File::create(dir.join("main.log"))?));
    quiet_expected_panics();
    let started = Instant::now();
    println!("# diesel-outbox chaos run ({} size)\n", args.size.name);
    println!(
        "Machine: {}; seed {}; logs in {}",
        machine(),
        args.seed,
        dir.display()
    );
    let mut sections = Vec::new();
    for scenario in SCENARIOS
        .iter()
        .filter(|s| args.only.iter().any(|o| o == *s))
    {
        for &backend in &args.backends {
            if *scenario == "restart" && backend == Backend::Sqlite {
                continue;
            }
            for variant in variants(scenario) {
                let sub = dir.join(format!("{scenario}{variant}-{}", backend.arg()));
                std::fs::create_dir_all(&sub)?;
                let section = match run_one(scenario, variant, backend, &args, &sub) {
                    Ok(section) => section,
                    Err(error) => {
                        let mut section =
                            Section::new(format!("{scenario} {variant}: {}", backend.name()));
                        section.check("the scenario runs to its end", false, error);
                        section
                    }
                };
                section.print();
                sections.push(section);
            }
        }
    }
    let failed: Vec<String> = sections
        .iter()
        .flat_map(|section| {
            section
                .failed()
                .map(move |check| format!("{}: {}", section.title(), check.name))
        })
        .collect();
    println!("\nTotal: {:.0} s", started.elapsed().as_secs_f64());
    if failed.is_empty() {
        println!("Every check passed.");
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    } else {
        println!("{} checks failed:", failed.len());
        for name in &failed {
            println!("- {name}");
        }
        println!("Logs and databases kept in {}", dir.display());
    }
    Ok(failed.is_empty())
}

/// The variants a scenario runs, each in a database of its own.
fn variants(scenario: &str) -> &'static [&'static str] {
    match scenario {
        "abort" => &["", "-written"],
        _ => &[""],
    }
}

/// One variant of a scenario on one backend.
fn run_one(
    scenario: &str,
    variant: &str,
    backend: Backend,
    args: &Args,
    dir: &Path,
) -> CResult<Section> {
    let size = &args.size;
    if scenario == "restart" {
        return scenario::restart::run(dir, &size.restart, args.seed);
    }
    let mut target = match backend {
        Backend::Sqlite => Target::sqlite(dir, &format!("chaos{variant}")),
        Backend::Postgres => Target::postgres(
            &args.postgres_url,
            &format!("{scenario}{variant}").replace('-', "_"),
        )?,
    };
    let section = match (scenario, backend) {
        ("kill", Backend::Sqlite) => {
            scenario::kill::run::<SqliteConnection>(&target, dir, &size.kill, args.seed)
        }
        ("kill", Backend::Postgres) => {
            scenario::kill::run::<PgConnection>(&target, dir, &size.kill, args.seed)
        }
        ("abort", Backend::Sqlite) => {
            scenario::abort::run::<SqliteConnection>(&target, dir, &size.abort, !variant.is_empty())
        }
        ("abort", Backend::Postgres) => {
            scenario::abort::run::<PgConnection>(&target, dir, &size.abort, !variant.is_empty())
        }
        ("bad-rows", Backend::Sqlite) => {
            scenario::bad_rows::run::<SqliteConnection>(&target, &size.bad_rows, args.seed)
        }
        ("bad-rows", Backend::Postgres) => {
            scenario::bad_rows::run::<PgConnection>(&target, &size.bad_rows, args.seed)
        }
        (other, _) => Err(format!("unknown scenario {other}").into()),
    };
    if section
        .as_ref()
        .map_or(true, |section| section.failed().next().is_some())
    {
        target.keep();
        println!("\n(database kept: {})", target.url);
    }
    section
}

/// The receivers of the bad-rows scenario panic on purpose: their panics are caught by
/// the drain and stored as the shard's failure, so their messages are not printed.
fn quiet_expected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if !message.starts_with("chaos: the receiver of row") {
            default(info);
        }
    }));
}

/// CPU, cores and memory of this machine.
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
    format!("{model}, {cpus} CPUs")
}
