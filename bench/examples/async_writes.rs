//! Async writes against sync writes, in the same run (issue 19): transactions of 1, 10 and
//! 100 saves of a replicated model through `outbox_context_async` (diesel-async) and
//! `outbox_context` (diesel), and, to tell the library's cost from diesel-async's, the
//! same model upserts without an outbox (plain diesel and plain diesel-async, in a
//! transaction). The variants take turns, round after round, so that the machine's noise
//! falls on all of them; each figure is the median over rounds of the mean time per
//! transaction. Then the flush's latency, from the call to the receiver: `Outbox::context`
//! (the flush runs on the caller's thread after COMMIT) against `Outbox::context_async`
//! (the commit hands the shard to a worker's thread).
//!
//! ```text
//! cargo run --release -p diesel-outbox-bench --features mysql --example async_writes [-- --tiny]
//! ```
//!
//! SQLite always (a file, WAL; the async side through diesel-async's
//! `SyncConnectionWrapper`); PostgreSQL with `OUTBOX_BENCH_POSTGRES_URL` or
//! `OUTBOX_POSTGRES_URL` (sessions with `synchronous_commit = off`, as the main bench);
//! MariaDB with the `mysql` feature and `OUTBOX_BENCH_MYSQL_URL` or `OUTBOX_MYSQL_URL`.

use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel_outbox::asynchronous::diesel_async::{self, AsyncConnection};
use diesel_outbox::asynchronous::{AsyncModelWrites, AsyncOutboxConnection};
use diesel_outbox::worker::{Worker, WorkerOptions};
use diesel_outbox::{
    outbox_context, outbox_context_async, CellOutbox, Error, ModelWrites, Outbox, OutboxConnection,
    OutboxMessage, Receivers, ReplicatedCell,
};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        Ping = 2 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}

diesel::table! {
    plain_projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}

/// The replicated model (its rows are left to a drain: the writes alone are timed).
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, flush = false)]
pub struct Project {
    /// Primary key.
    pub id: i64,
    /// Shard.
    pub organization_id: i64,
    /// A name.
    pub name: String,
}

/// The same row in a table no outbox knows: the baseline.
#[derive(Insertable)]
#[diesel(table_name = plain_projects)]
pub struct PlainProject {
    /// Primary key.
    pub id: i64,
    /// Shard.
    pub organization_id: i64,
    /// A name.
    pub name: String,
}

const TABLES: &str = "
    CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);
    CREATE TABLE plain_projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);";

/// How much to run.
#[derive(Clone, Copy)]
struct Size {
    rounds: usize,
    /// Saves per variant per round (split into transactions of `k`).
    saves: usize,
    /// Commits timed for the flush latency.
    commits: usize,
}

/// The four variants of one backend, as closures over their connections.
struct Variants<'a> {
    sync: Box<dyn FnMut(usize, i64) -> Result<(), Error> + 'a>,
    asynchronous: Box<dyn FnMut(usize, i64) -> Result<(), Error> + 'a>,
    plain_sync: Box<dyn FnMut(usize, i64) -> Result<(), Error> + 'a>,
    plain_async: Box<dyn FnMut(usize, i64) -> Result<(), Error> + 'a>,
    /// Delivers (deletes) the outbox rows written so far, untimed: every batch starts on
    /// an empty outbox, as in a service whose worker keeps up.
    drain: Box<dyn FnMut() -> Result<(), Error> + 'a>,
}

fn projects(k: usize, first: i64) -> Vec<Project> {
    (0..k as i64)
        .map(|i| Project {
            id: (first + i) % 5_000,
            organization_id: (first + i) % 50,
            name: format!("project {}", first + i),
        })
        .collect()
}

fn plain(k: usize, first: i64) -> Vec<PlainProject> {
    projects(k, first)
        .into_iter()
        .map(|p| PlainProject {
            id: p.id,
            organization_id: p.organization_id,
            name: p.name,
        })
        .collect()
}

/// `k` saves in one sync outbox context.
fn sync_saves<C: OutboxConnection>(conn: &mut C, k: usize, first: i64) -> Result<(), Error>
where
    Project: ModelWrites<C>,
{
    let models = projects(k, first);
    outbox_context(conn, |ctx| {
        for model in &models {
            model.save(ctx)?;
        }
        Ok::<_, Error>(())
    })
}

/// `k` saves in one async outbox context.
async fn async_saves<A: AsyncOutboxConnection>(
    conn: &mut A,
    k: usize,
    first: i64,
) -> Result<(), Error>
where
    Project: AsyncModelWrites<A>,
{
    let models = projects(k, first);
    outbox_context_async(conn, async |ctx| {
        for model in &models {
            model.save_async(ctx).await?;
        }
        Ok::<_, Error>(())
    })
    .await
}

/// Delivers every row of the outbox with receivers that do nothing.
fn drain_all<C: OutboxConnection>(conn: &mut C) -> Result<(), Error> {
    let outbox = Outbox::new(
        Receivers::new()
            .cell(Category::ProjectUpdate, |_: &mut C, _: &OutboxMessage| {
                Ok::<_, Error>(())
            })
            .cell(Category::Ping, |_: &mut C, _: &OutboxMessage| {
                Ok::<_, Error>(())
            }),
    );
    diesel_outbox::testing::drain_until_empty(conn, &outbox, 10_000)?;
    Ok(())
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Times the variants, taking turns; prints µs per transaction and the ratios.
fn time_writes(backend: &str, mut variants: Variants<'_>, size: Size) -> Result<(), Error> {
    println!(
        "\n{backend}: µs per transaction (median over {} rounds)",
        size.rounds
    );
    println!(
        "| saves/txn | sync outbox | async outbox | async / sync | plain diesel | plain diesel-async | plain async / sync | async outbox / plain async |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut next_id = 0_i64;
    for k in [1_usize, 10, 100] {
        let txns = (size.saves / k).max(1);
        let mut samples = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for round in 0..=size.rounds {
            for (index, sample) in samples.iter_mut().enumerate() {
                let run = match index {
                    0 => &mut variants.sync,
                    1 => &mut variants.asynchronous,
                    2 => &mut variants.plain_sync,
                    _ => &mut variants.plain_async,
                };
                let started = Instant::now();
                for _ in 0..txns {
                    run(k, next_id)?;
                    next_id += k as i64;
                }
                let elapsed = started.elapsed();
                // Round 0 warms up (statement caches, the tables' pages).
                if round > 0 {
                    sample.push(elapsed.as_secs_f64() * 1e6 / txns as f64);
                }
                (variants.drain)()?;
            }
        }
        let [sync, asynchronous, plain_sync, plain_async] = samples.map(median);
        println!(
            "| {k} | {sync:.0} | {asynchronous:.0} | {:.2}x | {plain_sync:.0} | {plain_async:.0} | {:.2}x | {:.2}x |",
            asynchronous / sync,
            plain_async / plain_sync,
            asynchronous / plain_async,
        );
    }
    Ok(())
}

/// An outbox whose receiver reports when it ran.
fn reporting_outbox<C: OutboxConnection>() -> (Outbox<C>, mpsc::Receiver<Instant>) {
    let (sender, received) = mpsc::channel();
    let sender = Mutex::new(sender);
    let receivers = Receivers::new()
        .cell(Category::Ping, move |_: &mut C, _: &OutboxMessage| {
            let _ = sender.lock().map(|sender| sender.send(Instant::now()));
            Ok::<_, Error>(())
        })
        .cell(Category::ProjectUpdate, |_: &mut C, _: &OutboxMessage| {
            Ok::<_, Error>(())
        });
    (Outbox::new(receivers), received)
}

/// Call → receiver, `Outbox::context` (sync flush) against `Outbox::context_async` (the
/// worker's flush), p50 and p99 over `commits` commits each.
fn flush_latency<C, A>(
    backend: &str,
    runtime: &tokio::runtime::Runtime,
    sync_conn: &mut C,
    async_conn: &mut A,
    pool: Pool<ConnectionManager<C>>,
    size: Size,
) -> Result<(), Error>
where
    C: OutboxConnection + R2D2Connection,
    A: AsyncOutboxConnection,
{
    drain_all(sync_conn)?;
    let (outbox, received) = reporting_outbox::<C>();
    let mut sync = Vec::new();
    for i in 0..size.commits as i64 {
        let called = Instant::now();
        outbox.context(sync_conn, |ctx| {
            ctx.write(CellOutbox::new(Category::Ping, 100_000 + i % 50, i))
        })?;
        let at = received
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::Thread(std::io::Error::other("no delivery")))?;
        sync.push(at - called);
    }
    let worker = Worker::spawn(
        pool,
        outbox.clone(),
        WorkerOptions {
            poll_interval: Duration::from_secs(60),
            listen: false,
            report_every: None,
            ..WorkerOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let mut handed = Vec::new();
    for i in 0..size.commits as i64 {
        let called = Instant::now();
        runtime.block_on(outbox.context_async(async_conn, async |ctx| {
            ctx.write(CellOutbox::new(
                Category::Ping,
                100_000 + i % 50,
                1_000_000 + i,
            ))
        }))?;
        let at = received
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::Thread(std::io::Error::other("no delivery")))?;
        handed.push(at - called);
    }
    worker.stop();
    sync.sort();
    handed.sort();
    println!(
        "\n{backend}: call → receiver over {} commits: sync flush p50 {:?} p99 {:?}; async (worker) p50 {:?} p99 {:?}",
        size.commits,
        percentile(&sync, 0.5),
        percentile(&sync, 0.99),
        percentile(&handed, 0.5),
        percentile(&handed, 0.99),
    );
    Ok(())
}

macro_rules! plain_variants {
    ($sync:expr, $async_conn:expr, $runtime:expr, $conflict:expr) => {{
        let runtime: &tokio::runtime::Runtime = $runtime;
        let sync_conn = $sync;
        let async_conn = $async_conn;
        let plain_sync = move |k: usize, first: i64| -> Result<(), Error> {
            let rows = plain(k, first);
            sync_conn.transaction(|conn| {
                for row in &rows {
                    diesel::insert_into(plain_projects::table)
                        .values(row)
                        .on_conflict($conflict)
                        .do_update()
                        .set(plain_projects::name.eq(&row.name))
                        .execute(conn)?;
                }
                Ok::<_, diesel::result::Error>(())
            })?;
            Ok(())
        };
        let plain_async = move |k: usize, first: i64| -> Result<(), Error> {
            let rows = plain(k, first);
            runtime.block_on(async_conn.transaction(async |conn| {
                for row in &rows {
                    diesel_async::RunQueryDsl::execute(
                        diesel::insert_into(plain_projects::table)
                            .values(row)
                            .on_conflict($conflict)
                            .do_update()
                            .set(plain_projects::name.eq(&row.name)),
                        conn,
                    )
                    .await?;
                }
                Ok::<_, diesel::result::Error>(())
            }))?;
            Ok(())
        };
        (plain_sync, plain_async)
    }};
}

fn run_sqlite(
    runtime: &tokio::runtime::Runtime,
    size: Size,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::temp_dir().join(format!("diesel-outbox-async-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db").display().to_string();
    let options = diesel_outbox::sqlite::SqliteOptions::new();
    let mut sync_conn = options.establish(&path)?;
    diesel_outbox::run_migrations(&mut sync_conn)?;
    sync_conn.batch_execute(TABLES)?;
    let mut async_conn = diesel_async::sync_connection_wrapper::SyncConnectionWrapper::new(
        options.establish(&path)?,
    );
    let mut plain_sync_conn = options.establish(&path)?;
    let mut drain_conn = options.establish(&path)?;
    let mut plain_async_conn: diesel_async::sync_connection_wrapper::SyncConnectionWrapper<_> =
        diesel_async::sync_connection_wrapper::SyncConnectionWrapper::new(
            options.establish(&path)?,
        );
    {
        let (plain_sync, plain_async) = plain_variants!(
            &mut plain_sync_conn,
            &mut plain_async_conn,
            runtime,
            plain_projects::id
        );
        let sync_ref = &mut sync_conn;
        let async_ref = &mut async_conn;
        time_writes(
            "SQLite",
            Variants {
                sync: Box::new(move |k, first| sync_saves(sync_ref, k, first)),
                asynchronous: Box::new(move |k, first| {
                    runtime.block_on(async_saves(async_ref, k, first))
                }),
                plain_sync: Box::new(plain_sync),
                plain_async: Box::new(plain_async),
                drain: Box::new(|| drain_all(&mut drain_conn)),
            },
            size,
        )?;
    }
    let pool = Pool::builder()
        .max_size(2)
        .connection_customizer(Box::new(options.clone()))
        .build(ConnectionManager::<SqliteConnection>::new(&path))?;
    flush_latency(
        "SQLite",
        runtime,
        &mut sync_conn,
        &mut async_conn,
        pool,
        size,
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn first_env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| std::env::var(name).ok())
}

fn run_postgres(
    runtime: &tokio::runtime::Runtime,
    size: Size,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(base) = first_env(&["OUTBOX_BENCH_POSTGRES_URL", "OUTBOX_POSTGRES_URL"]) else {
        println!("\n(PostgreSQL skipped: set OUTBOX_BENCH_POSTGRES_URL)");
        return Ok(());
    };
    let schema = format!("outbox_async_bench_{}", std::process::id());
    let mut admin = PgConnection::establish(&base)?;
    admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
    let outcome = (|| -> Result<(), Box<dyn std::error::Error>> {
        let sync = || -> Result<PgConnection, Box<dyn std::error::Error>> {
            let mut conn = PgConnection::establish(&url)?;
            conn.batch_execute("SET synchronous_commit = off")?;
            Ok(conn)
        };
        let asynchronous =
            || -> Result<diesel_async::AsyncPgConnection, Box<dyn std::error::Error>> {
                let mut conn =
                    runtime.block_on(diesel_async::AsyncPgConnection::establish(&url))?;
                runtime.block_on(diesel_async::SimpleAsyncConnection::batch_execute(
                    &mut conn,
                    "SET synchronous_commit = off",
                ))?;
                Ok(conn)
            };
        let mut sync_conn = sync()?;
        diesel_outbox::run_migrations(&mut sync_conn)?;
        sync_conn.batch_execute(TABLES)?;
        let mut async_conn = asynchronous()?;
        let (mut plain_sync_conn, mut plain_async_conn) = (sync()?, asynchronous()?);
        let mut drain_conn = sync()?;
        {
            let (plain_sync, plain_async) = plain_variants!(
                &mut plain_sync_conn,
                &mut plain_async_conn,
                runtime,
                plain_projects::id
            );
            let sync_ref = &mut sync_conn;
            let async_ref = &mut async_conn;
            time_writes(
                "PostgreSQL",
                Variants {
                    sync: Box::new(move |k, first| sync_saves(sync_ref, k, first)),
                    asynchronous: Box::new(move |k, first| {
                        runtime.block_on(async_saves(async_ref, k, first))
                    }),
                    plain_sync: Box::new(plain_sync),
                    plain_async: Box::new(plain_async),
                    drain: Box::new(|| drain_all(&mut drain_conn)),
                },
                size,
            )?;
        }
        let pool = Pool::builder()
            .max_size(2)
            .build(ConnectionManager::<PgConnection>::new(&url))?;
        flush_latency(
            "PostgreSQL",
            runtime,
            &mut sync_conn,
            &mut async_conn,
            pool,
            size,
        )?;
        Ok(())
    })();
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
    outcome
}

#[cfg(feature = "mysql")]
fn run_mysql(
    runtime: &tokio::runtime::Runtime,
    size: Size,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(base) = first_env(&["OUTBOX_BENCH_MYSQL_URL", "OUTBOX_MYSQL_URL"]) else {
        println!("\n(MariaDB skipped: set OUTBOX_BENCH_MYSQL_URL)");
        return Ok(());
    };
    let database = format!("outbox_async_bench_{}", std::process::id());
    let mut admin = MysqlConnection::establish(&base)?;
    admin.batch_execute(&format!("CREATE DATABASE {database}"))?;
    let url = match base.rfind('/') {
        Some(at) if at > "mysql://".len() => format!("{}/{database}", &base[..at]),
        _ => format!("{base}/{database}"),
    };
    let outcome = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut sync_conn = MysqlConnection::establish(&url)?;
        diesel_outbox::run_migrations(&mut sync_conn)?;
        sync_conn.batch_execute(TABLES)?;
        let mut async_conn =
            runtime.block_on(diesel_async::AsyncMysqlConnection::establish(&url))?;
        let mut plain_sync_conn = MysqlConnection::establish(&url)?;
        let mut plain_async_conn =
            runtime.block_on(diesel_async::AsyncMysqlConnection::establish(&url))?;
        let mut drain_conn = MysqlConnection::establish(&url)?;
        {
            let (plain_sync, plain_async) = plain_variants!(
                &mut plain_sync_conn,
                &mut plain_async_conn,
                runtime,
                diesel::dsl::DuplicatedKeys
            );
            let sync_ref = &mut sync_conn;
            let async_ref = &mut async_conn;
            time_writes(
                "MariaDB",
                Variants {
                    sync: Box::new(move |k, first| sync_saves(sync_ref, k, first)),
                    asynchronous: Box::new(move |k, first| {
                        runtime.block_on(async_saves(async_ref, k, first))
                    }),
                    plain_sync: Box::new(plain_sync),
                    plain_async: Box::new(plain_async),
                    drain: Box::new(|| drain_all(&mut drain_conn)),
                },
                size,
            )?;
        }
        let pool = Pool::builder()
            .max_size(2)
            .build(ConnectionManager::<MysqlConnection>::new(&url))?;
        flush_latency(
            "MariaDB",
            runtime,
            &mut sync_conn,
            &mut async_conn,
            pool,
            size,
        )?;
        Ok(())
    })();
    admin.batch_execute(&format!("DROP DATABASE {database}"))?;
    outcome
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tiny = std::env::args().any(|arg| arg == "--tiny");
    let size = if tiny {
        Size {
            rounds: 2,
            saves: 100,
            commits: 10,
        }
    } else {
        Size {
            rounds: 5,
            saves: 500,
            commits: 100,
        }
    };
    // One runtime thread: the futures are awaited one at a time, as a request's are.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    run_sqlite(&runtime, size)?;
    run_postgres(&runtime, size)?;
    #[cfg(feature = "mysql")]
    run_mysql(&runtime, size)?;
    Ok(())
}
