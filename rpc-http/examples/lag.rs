//! Replication lag under load: how long a change takes from its commit in a cell to its
//! application in control, while writers commit at a fixed offered rate, and the highest
//! rate whose lag stays bounded.
//!
//!     cargo run --release -p diesel-outbox-http --example lag                (60 s a rate)
//!     cargo run --release -p diesel-outbox-http --example lag -- --seconds 20
//!     cargo run -p diesel-outbox-http --example lag -- --tiny                 (a smoke run)
//!     ... -- --sqlite-only | --postgres-only   --rates 250,500,1000   --writers 4
//!     ... -- --no-flush | --no-notify | --async-commit | --all-rates | --compression-only
//!
//! The demo's shape, in separate processes (this binary started again with `--role`):
//!
//! * **control**: its own database, the signed HTTP [`Server`] behind the axum adapter;
//!   its batch hook upserts the replicas with one statement per 1,000 and notes, in each
//!   replica, the time it applied it (`applied_at_micros`);
//! * **cell**: its own database and the library's [`Worker`] (default options: one
//!   thread, 1 s poll) sending to control over signed HTTP;
//! * **writers** (`--writers`, default 16): each commits one save per transaction at its
//!   share of the offered rate (an open loop: a save due at `start + n / rate`, late ones
//!   go at once, none skipped, none after the step's end) through [`Outbox::context`],
//!   flush on commit (the default: the writer delivers its own shard right after its
//!   commit; what it cannot, a shard another holds, is left to the worker; `--no-flush`:
//!   every row is left to the worker, woken by `NOTIFY` on PostgreSQL; with `--no-notify`
//!   too, the worker polls every second). Every save is a new object (ids apart per step
//!   and writer, 1,000 shards) whose `committed_at_micros` is the time just before its
//!   transaction commits;
//! * after the rates, the **ceiling**: the same writers committing one plain insert per
//!   transaction, no outbox, as fast as they can.
//!
//! Lag = `applied_at_micros - committed_at_micros`, wall clock, one machine. After each
//! step the program waits (up to the step's length, at least 10 s) until every change is
//! applied. A step is **bounded** when the writers achieved at least 95% of the offered
//! rate, every change was applied within that wait, and the p99 lag of the changes
//! committed in the step's last sixth (10 s of 60) is at most twice that of the first
//! half plus 100 ms. Stepping stops after the first unbounded rate.
//!
//! The plot (one SVG per backend, p99 lag per 1/60 of the step, by commit time) goes to
//! `bench/results/replication-lag-<backend>.svg` (`--tiny`: the temporary directory;
//! `--plot-dir DIR` elsewhere); the tables go to stdout as markdown, with a measure of
//! whether compressing the request body would pay.
//!
//! PostgreSQL runs when `OUTBOX_BENCH_POSTGRES_URL` (or `OUTBOX_POSTGRES_URL`) is set (two
//! schemas of its own, dropped afterwards; `--async-commit`: every session of the bench
//! with `synchronous_commit = off`, so that the writers' commits are not bound by the
//! disk's flushes); SQLite in files of a temporary directory. `--compression-only` runs
//! the compression measure alone (e.g. inside a network namespace whose loopback `tc`
//! slows down).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::sql_types::{BigInt, Text};
use diesel_outbox::apply::{Appliers, ApplyBatch, ApplyContext, CellApplyHooks, Outgoing};
use diesel_outbox::{
    run_migrations, BoxError, ModelWrites, Outbox, OutboxConnection, OutboxTable, Receivers,
    ReplicatedCell, SiloId, Worker, WorkerOptions,
};
use diesel_outbox_http::axum::{router, serve_in_background};
use diesel_outbox_http::{HttpTransport, Server, SigningKey};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Project = 0 { shard: shard_id } }
    pub categories Category { ItemUpdate = 1 { scope: Project, silo: cell } }
}

diesel::table! {
    items (id) { id -> BigInt, shard_id -> BigInt, name -> Text, committed_at_micros -> BigInt }
}

diesel::table! {
    item_replicas (id) {
        id -> BigInt,
        shard_id -> BigInt,
        name -> Text,
        committed_at_micros -> BigInt,
        applied_at_micros -> BigInt,
    }
}

const CELL_TABLES: &str = "CREATE TABLE items (id BIGINT PRIMARY KEY, shard_id BIGINT NOT NULL,
    name TEXT NOT NULL, committed_at_micros BIGINT NOT NULL);";
const CONTROL_TABLES: &str = "CREATE TABLE item_replicas (id BIGINT PRIMARY KEY,
    shard_id BIGINT NOT NULL, name TEXT NOT NULL, committed_at_micros BIGINT NOT NULL,
    applied_at_micros BIGINT NOT NULL);";

/// A cell's object; every save of the bench is a new one.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell)]
#[diesel(table_name = items)]
#[outbox(category = Category::ItemUpdate)]
struct Item {
    id: i64,
    shard_id: i64,
    name: String,
    /// The wall clock just before the saving transaction commits.
    committed_at_micros: i64,
}

/// Shards the objects spread over.
const SHARDS: i64 = 1_000;
/// Ids of one step, and of one writer within it.
const STEP_IDS: i64 = 1_000_000_000;
const WRITER_IDS: i64 = 10_000_000;
/// Rows per upsert statement of control's hook.
const CHUNK: usize = 1_000;

/// The shard of object `id`: spread by a multiplicative hash, so that writers saving
/// their n-th objects at the same moment do not all pick the same shard.
fn shard_of(id: i64) -> i64 {
    (id.wrapping_mul(2_654_435_761) >> 8).rem_euclid(SHARDS)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

/// What each backend does for the bench.
trait LagSql: OutboxConnection + R2D2Connection + SimpleConnection + Sized + 'static {
    /// The `--role` argument naming the backend.
    const KIND: &'static str;
    fn open(url: &str) -> Result<Self, BoxError>;
    fn pool(url: &str, size: u32) -> Result<Pool<ConnectionManager<Self>>, BoxError>;
    /// Upserts `items` as replicas applied at `applied_at_micros`, [`CHUNK`] a statement.
    fn upsert_replicas(&mut self, items: &[&Item], applied_at_micros: i64) -> QueryResult<()>;
    /// The replicas with ids in `from..to`: (committed, applied) micros.
    fn replicas(&mut self, from: i64, to: i64) -> QueryResult<Vec<(i64, i64)>>;
    /// How many replicas have ids in `from..to`.
    fn replica_count(&mut self, from: i64, to: i64) -> QueryResult<i64>;
    /// Inserts `item` in a transaction of its own, no outbox: the commit ceiling.
    fn insert_plain(&mut self, item: &Item) -> QueryResult<()>;
}

macro_rules! replica_reads {
    () => {
        fn insert_plain(&mut self, item: &Item) -> QueryResult<()> {
            self.transaction(|conn| {
                diesel::insert_into(items::table)
                    .values((
                        items::id.eq(item.id),
                        items::shard_id.eq(item.shard_id),
                        items::name.eq(&item.name),
                        items::committed_at_micros.eq(item.committed_at_micros),
                    ))
                    .execute(conn)
                    .map(drop)
            })
        }

        fn replicas(&mut self, from: i64, to: i64) -> QueryResult<Vec<(i64, i64)>> {
            use item_replicas::dsl as r;
            r::item_replicas
                .filter(r::id.ge(from).and(r::id.lt(to)))
                .select((r::committed_at_micros, r::applied_at_micros))
                .load(self)
        }

        fn replica_count(&mut self, from: i64, to: i64) -> QueryResult<i64> {
            use item_replicas::dsl as r;
            r::item_replicas
                .filter(r::id.ge(from).and(r::id.lt(to)))
                .count()
                .get_result(self)
        }
    };
}

/// WAL, a 10 s busy timeout, `synchronous = NORMAL` (the library's recommended set-up).
fn sqlite_options() -> diesel_outbox::sqlite::SqliteOptions {
    diesel_outbox::sqlite::SqliteOptions::new().busy_timeout(Duration::from_secs(10))
}

impl LagSql for diesel::SqliteConnection {
    const KIND: &'static str = "sqlite";

    fn open(url: &str) -> Result<Self, BoxError> {
        Ok(sqlite_options().establish(url)?)
    }

    fn pool(url: &str, size: u32) -> Result<Pool<ConnectionManager<Self>>, BoxError> {
        Ok(Pool::builder()
            .max_size(size)
            .connection_customizer(Box::new(sqlite_options()))
            .build(ConnectionManager::new(url))?)
    }

    fn upsert_replicas(&mut self, items: &[&Item], applied_at_micros: i64) -> QueryResult<()> {
        for chunk in items.chunks(CHUNK) {
            let text = format!(
                "INSERT INTO item_replicas (id, shard_id, name, committed_at_micros, \
                 applied_at_micros) VALUES {} ON CONFLICT (id) DO UPDATE SET \
                 shard_id = excluded.shard_id, name = excluded.name, \
                 committed_at_micros = excluded.committed_at_micros, \
                 applied_at_micros = excluded.applied_at_micros",
                vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut query = diesel::sql_query(text).into_boxed();
            for item in chunk {
                query = query
                    .bind::<BigInt, _>(item.id)
                    .bind::<BigInt, _>(item.shard_id)
                    .bind::<Text, _>(item.name.clone())
                    .bind::<BigInt, _>(item.committed_at_micros)
                    .bind::<BigInt, _>(applied_at_micros);
            }
            query.execute(self)?;
        }
        Ok(())
    }

    replica_reads!();
}

impl LagSql for diesel::PgConnection {
    const KIND: &'static str = "postgres";

    fn open(url: &str) -> Result<Self, BoxError> {
        Ok(diesel::PgConnection::establish(url)?)
    }

    fn pool(url: &str, size: u32) -> Result<Pool<ConnectionManager<Self>>, BoxError> {
        Ok(Pool::builder()
            .max_size(size)
            .build(ConnectionManager::new(url))?)
    }

    fn upsert_replicas(&mut self, items: &[&Item], applied_at_micros: i64) -> QueryResult<()> {
        use diesel::sql_types::Array;
        for chunk in items.chunks(CHUNK) {
            diesel::sql_query(
                "INSERT INTO item_replicas (id, shard_id, name, committed_at_micros, \
                 applied_at_micros) \
                 SELECT i, s, n, c, $5 FROM unnest($1::int8[], $2::int8[], $3::text[], \
                 $4::int8[]) AS u(i, s, n, c) \
                 ON CONFLICT (id) DO UPDATE SET shard_id = excluded.shard_id, \
                 name = excluded.name, committed_at_micros = excluded.committed_at_micros, \
                 applied_at_micros = excluded.applied_at_micros",
            )
            .bind::<Array<BigInt>, _>(chunk.iter().map(|i| i.id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(chunk.iter().map(|i| i.shard_id).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(chunk.iter().map(|i| i.name.clone()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(
                chunk
                    .iter()
                    .map(|i| i.committed_at_micros)
                    .collect::<Vec<_>>(),
            )
            .bind::<BigInt, _>(applied_at_micros)
            .execute(self)?;
        }
        Ok(())
    }

    replica_reads!();
}

/// Control applies a batch with one upsert per [`CHUNK`], noting when.
impl<C: LagSql> CellApplyHooks<C> for Item {
    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError> {
        ctx.connection().upsert_replicas(&[self], now_micros())?;
        Ok(())
    }

    fn apply_replications(
        batch: &mut ApplyBatch<'_, '_, C>,
        models: &[Self],
    ) -> Result<(), BoxError> {
        let items: Vec<&Item> = models.iter().collect();
        batch.connection().upsert_replicas(&items, now_micros())?;
        Ok(())
    }
}

/// The cell's receivers: its items to control, over signed HTTP.
fn receivers<C: LagSql>(key: &SigningKey, control_url: &str) -> Result<Receivers<C>, BoxError>
where
    Item: ModelWrites<C>,
{
    let transport =
        HttpTransport::new(SiloId::cell("eu"))?.peer(SiloId::Control, control_url, key.clone())?;
    Ok(Receivers::new().remote(Outgoing::new().cell::<Item>(), transport))
}

/// Blocks until the parent closes our stdin (or exits).
fn wait_for_parent() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn say(line: &str) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// A child process's part: `--role ROLE KIND DATABASE_URL KEY [CONTROL_URL ...]`.
fn role<C: LagSql>(args: &[String]) -> Result<(), BoxError>
where
    Item: ModelWrites<C>,
{
    let arg = |i: usize| -> Result<&str, BoxError> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("--role: argument {i} missing in {args:?}").into())
    };
    let (role, database, key) = (arg(0)?, arg(2)?, SigningKey::from_hex(arg(3)?)?);
    match role {
        "control" => {
            let server = Server::new(
                Appliers::new(SiloId::Control).cell::<Item>(),
                C::pool(database, 4)?,
            )?
            .peer(SiloId::cell("eu"), key)?;
            let running =
                serve_in_background(TcpListener::bind("127.0.0.1:0")?, router(Arc::new(server)))?;
            say(&format!("LISTENING {}", running.url()))?;
            wait_for_parent();
            running.stop();
        }
        "cell" => {
            let outbox = Outbox::new(receivers::<C>(&key, arg(4)?)?);
            let worker = Worker::spawn(C::pool(database, 2)?, outbox, WorkerOptions::default())?;
            say("READY")?;
            wait_for_parent();
            worker.stop();
        }
        "writer" => {
            let mode = arg(9)?;
            let outbox = Outbox::builder(receivers::<C>(&key, arg(4)?)?)
                .flush_on_commit(mode == "flush")
                .notify_on_commit(mode != "no-flush-no-notify")
                .build();
            let rate: f64 = arg(5)?.parse()?;
            let (start, end): (i64, i64) = (arg(6)?.parse()?, arg(7)?.parse()?);
            let first_id: i64 = arg(8)?.parse()?;
            let mut conn = C::open(database)?;
            let mut saves: i64 = 0;
            loop {
                let due = start + (saves as f64 * 1e6 / rate) as i64;
                let now = now_micros();
                if due >= end || now >= end {
                    break;
                }
                if due > now {
                    std::thread::sleep(Duration::from_micros((due - now) as u64));
                }
                let id = first_id + saves;
                let item = |committed_at_micros| Item {
                    id,
                    shard_id: shard_of(id),
                    name: format!("item {id}, saved by a writer of the lag bench"),
                    committed_at_micros,
                };
                if mode == "plain" {
                    conn.insert_plain(&item(now_micros()))?;
                } else {
                    outbox.context(&mut conn, |ctx| item(now_micros()).save(ctx))?;
                }
                saves += 1;
            }
            say(&format!("WROTE {saves}"))?;
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    Ok(())
}

/// A service started as a child process, stopped by closing its stdin.
struct Service {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Service {
    /// Starts `--role args..` and waits for its first line, which it returns.
    fn start(args: &[String]) -> Result<(Service, String), BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--role")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let service = Service { child, stdin };
        if line.is_empty() {
            return Err(format!("the {} service did not start", args[0]).into());
        }
        Ok((service, line.trim().to_owned()))
    }

    fn stop(mut self) -> Result<(), BoxError> {
        self.stdin.take();
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
struct Options {
    seconds: f64,
    rates: Vec<f64>,
    writers: usize,
    sqlite: bool,
    postgres: bool,
    all_rates: bool,
    /// Whether writers flush on commit (the default) or leave every row to the worker.
    flush: bool,
    /// Whether the writers' commits `NOTIFY` the worker (PostgreSQL; default on).
    notify: bool,
    /// PostgreSQL: every session of the bench with `synchronous_commit = off`.
    async_commit: bool,
    /// Only the compression measure.
    compression_only: bool,
    plot_dir: PathBuf,
}

/// One offered rate's outcome.
struct Step {
    offered: f64,
    saves: i64,
    /// (commit time since the step's start in s, lag in ms), by commit time.
    lags: Vec<(f64, f64)>,
    backlog_at_end: u64,
    unapplied: i64,
    drained_after: f64,
}

impl Step {
    fn achieved(&self, seconds: f64) -> f64 {
        self.saves as f64 / seconds
    }

    fn p99_between(&self, from: f64, to: f64) -> f64 {
        let lags: Vec<f64> = self
            .lags
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, lag)| *lag)
            .collect();
        percentile(lags, 0.99)
    }

    fn bounded(&self, seconds: f64) -> bool {
        self.verdict(seconds) == "yes"
    }

    /// Whether the step was bounded, or why not.
    fn verdict(&self, seconds: f64) -> String {
        let first = self.p99_between(0.0, seconds / 2.0);
        let last = self.p99_between(seconds * 5.0 / 6.0, f64::INFINITY);
        let achieved = self.achieved(seconds) / self.offered;
        if achieved < 0.95 {
            format!(
                "**no**: writers reached {:.0}% of the rate",
                achieved * 100.0
            )
        } else if self.unapplied > 0 {
            "**no**: not all applied".to_owned()
        } else if last > 2.0 * first + 100.0 {
            "**no**: lag grew".to_owned()
        } else {
            "yes".to_owned()
        }
    }
}

fn percentile(mut values: Vec<f64>, q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() as f64 - 1.0) * q).round() as usize]
}

/// Runs every step on one backend: control and cell services, then writers per rate.
fn run_backend<C: LagSql>(
    name: &str,
    cell_url: &str,
    control_url: &str,
    options: &Options,
) -> Result<(), BoxError>
where
    Item: ModelWrites<C>,
{
    let mut cell = C::open(cell_url)?;
    run_migrations(&mut cell)?;
    cell.batch_execute(CELL_TABLES)?;
    let mut control = C::open(control_url)?;
    run_migrations(&mut control)?;
    control.batch_execute(CONTROL_TABLES)?;

    let key = SigningKey::generate()?.to_hex();
    let base = |role: &str, url: &str| vec![role.to_owned(), C::KIND.to_owned(), url.to_owned()];
    let mut args = base("control", control_url);
    args.push(key.clone());
    let (control_service, line) = Service::start(&args)?;
    let endpoint = line
        .strip_prefix("LISTENING ")
        .ok_or_else(|| format!("control said {line:?}"))?
        .to_owned();
    let mut args = base("cell", cell_url);
    args.extend([key.clone(), endpoint.clone()]);
    let (cell_service, _) = Service::start(&args)?;
    // Only to read the backlog (it delivers nothing).
    let inspector = Outbox::new(Receivers::<C>::new());

    let mut steps: Vec<Step> = Vec::new();
    for (index, &offered) in options.rates.iter().enumerate() {
        let step_ids = (index as i64 + 1) * STEP_IDS;
        let mode = match (options.flush, options.notify) {
            (true, _) => "flush",
            (false, true) => "no-flush",
            (false, false) => "no-flush-no-notify",
        };
        let saves = run_writers::<C>(cell_url, &key, &endpoint, options, offered, step_ids, mode)?;
        let backlog_at_end = inspector.table_status(&mut cell, OutboxTable::Cell)?.rows;
        let ended = Instant::now();
        let wait = Duration::from_secs_f64(options.seconds.max(10.0));
        let mut applied = control.replica_count(step_ids, step_ids + STEP_IDS)?;
        while applied < saves.count && ended.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(100));
            applied = control.replica_count(step_ids, step_ids + STEP_IDS)?;
        }
        let drained_after = ended.elapsed().as_secs_f64();
        let mut lags: Vec<(f64, f64)> = control
            .replicas(step_ids, step_ids + STEP_IDS)?
            .into_iter()
            .map(|(committed, applied)| {
                (
                    (committed - saves.start) as f64 / 1e6,
                    (applied - committed) as f64 / 1e3,
                )
            })
            .collect();
        lags.sort_by(|a, b| a.0.total_cmp(&b.0));
        let step = Step {
            offered,
            saves: saves.count,
            unapplied: saves.count - lags.len() as i64,
            lags,
            backlog_at_end,
            drained_after,
        };
        let bounded = step.bounded(options.seconds);
        eprintln!(
            "{name}: {offered} /s offered, {:.0} /s achieved, p99 {:.1} ms, {}",
            step.achieved(options.seconds),
            percentile(step.lags.iter().map(|l| l.1).collect(), 0.99),
            if bounded { "bounded" } else { "NOT bounded" }
        );
        steps.push(step);
        if !bounded && !options.all_rates {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    cell_service.stop()?;
    control_service.stop()?;

    report(name, &steps, options)?;
    // The database's own ceiling: the same writers committing the same rows, one per
    // transaction, with no outbox, as fast as they can.
    let offered = 1e6;
    let ceiling = run_writers::<C>(
        cell_url,
        &key,
        &endpoint,
        options,
        offered,
        (options.rates.len() as i64 + 1) * STEP_IDS,
        "plain",
    )?;
    println!(
        "the same writers with no outbox, one insert per transaction as fast as they can: \
         {:.0} commits/s",
        ceiling.count as f64 / options.seconds
    );
    Ok(())
}

/// The saves of one step: how many, and when the step started (µs since the epoch).
struct Saves {
    count: i64,
    start: i64,
}

/// Runs `options.writers` writer processes in `mode` (`flush`, `no-flush` or `plain`)
/// offering `offered` saves/s in all for the step's length, ids from `first_id`.
fn run_writers<C: LagSql>(
    cell_url: &str,
    key: &str,
    endpoint: &str,
    options: &Options,
    offered: f64,
    first_id: i64,
    mode: &str,
) -> Result<Saves, BoxError> {
    // Writers start together, a moment from now (their start-up is not in the step).
    let start = now_micros() + 1_000_000;
    let end = start + (options.seconds * 1e6) as i64;
    let per_writer = offered / options.writers as f64;
    let writers = (0..options.writers)
        .map(|w| {
            Ok(Command::new(std::env::current_exe()?)
                .arg("--role")
                .args([
                    "writer",
                    C::KIND,
                    cell_url,
                    key,
                    endpoint,
                    &per_writer.to_string(),
                    &start.to_string(),
                    &end.to_string(),
                    &(first_id + w as i64 * WRITER_IDS).to_string(),
                    mode,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()?)
        })
        .collect::<Result<Vec<Child>, BoxError>>()?;
    let mut count = 0;
    for writer in writers {
        let output = writer.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let wrote = text
            .lines()
            .find_map(|line| line.strip_prefix("WROTE "))
            .ok_or_else(|| format!("a writer failed ({})", output.status))?;
        count += wrote.trim().parse::<i64>()?;
    }
    Ok(Saves { count, start })
}

fn report(name: &str, steps: &[Step], options: &Options) -> Result<(), BoxError> {
    let seconds = options.seconds;
    println!(
        "\n{name}: commit → applied in control, {} writer processes, {seconds} s per rate, {}",
        options.writers,
        match (options.flush, options.notify) {
            (true, _) => "flush on commit + the worker",
            (false, true) => "flush off: the worker alone, woken by NOTIFY on PostgreSQL",
            (false, false) => "flush off, NOTIFY off: the worker alone, polling every 1 s",
        }
    );
    println!(
        "| offered /s | achieved /s | changes | p50 ms | p99 ms | max ms | p99 first half ms \
         | p99 last sixth ms | backlog at end | all applied after s | bounded |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for step in steps {
        let lags: Vec<f64> = step.lags.iter().map(|l| l.1).collect();
        let unapplied = if step.unapplied > 0 {
            format!(" ({} not applied)", step.unapplied)
        } else {
            String::new()
        };
        println!(
            "| {:.0} | {:.0} | {}{unapplied} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} |",
            step.offered,
            step.achieved(seconds),
            step.saves,
            percentile(lags.clone(), 0.5),
            percentile(lags.clone(), 0.99),
            percentile(lags, 1.0),
            step.p99_between(0.0, seconds / 2.0),
            step.p99_between(seconds * 5.0 / 6.0, f64::INFINITY),
            step.backlog_at_end,
            step.drained_after,
            step.verdict(seconds),
        );
    }
    match steps
        .iter()
        .filter(|s| s.bounded(seconds))
        .map(|s| s.offered)
        .reduce(f64::max)
    {
        Some(rate) => println!("highest bounded rate: {rate:.0} saves/s"),
        None => println!("highest bounded rate: none of those offered"),
    }
    let path = options.plot_dir.join(format!(
        "replication-lag-{}{}{}{}.svg",
        name.to_lowercase().replace(' ', "-"),
        if options.flush { "" } else { "-no-flush" },
        if options.notify { "" } else { "-no-notify" },
        if options.async_commit {
            "-async-commit"
        } else {
            ""
        }
    ));
    plot(name, steps, seconds, &path).map_err(|e| format!("plotting {}: {e}", path.display()))?;
    println!("plot: {}", path.display());
    Ok(())
}

/// p99 lag per 1/60 of the step, by commit time, one line per offered rate.
fn plot(name: &str, steps: &[Step], seconds: f64, path: &Path) -> Result<(), BoxError> {
    use plotters::prelude::*;
    let bin = seconds / 60.0;
    let lines: Vec<(f64, Vec<(f64, f64)>)> = steps
        .iter()
        .map(|step| {
            let mut points = Vec::new();
            let mut from = 0;
            for b in 0..60 {
                let to_at = (b + 1) as f64 * bin;
                let to = from + step.lags[from..].partition_point(|l| l.0 < to_at);
                let lags: Vec<f64> = step.lags[from..to].iter().map(|l| l.1).collect();
                if !lags.is_empty() {
                    points.push(((b as f64 + 0.5) * bin, percentile(lags, 0.99).max(0.1)));
                }
                from = to;
            }
            (step.offered, points)
        })
        .collect();
    let top = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(10.0_f64, f64::max)
        * 2.0;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: commit → applied lag, p99 per {bin:.2} s of commit time"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds, (0.1..top).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds into the step (commit time)")
        .y_desc("lag, ms (log scale)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, (rate, points)) in lines.into_iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{rate:.0} saves/s offered"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Whether gzip of a request body pays: per body size, the time to compress and
/// decompress against the time the bytes saved take on loopback (measured) and on a
/// 100 Mbit/s link (computed).
fn compression() -> Result<(), BoxError> {
    use diesel_outbox::apply::{ApplyRequest, Change, ModelState};
    use flate2::{read::GzDecoder, write::GzEncoder, Compression};

    let loopback = loopback_bytes_per_second()?;
    println!("\nCompressing the request body (gzip, flate2's Rust backend); loopback TCP measured at {:.0} MB/s", loopback / 1e6);
    println!(
        "| requests in body | body bytes | gzip level | compressed bytes | ratio | compress + decompress µs \
         | bytes saved on loopback µs | bytes saved at 100 Mbit/s µs | pays on loopback | pays at 100 Mbit/s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for count in [1_i64, 20, 500, 5_000] {
        let requests: Vec<ApplyRequest> = (0..count)
            .map(|n| {
                let id = 3 * STEP_IDS + 2 * WRITER_IDS + n;
                let item = Item {
                    id,
                    shard_id: shard_of(id),
                    name: format!("item {id}, saved by a writer of the lag bench"),
                    committed_at_micros: 1_765_000_000_000_000 + n * 997,
                };
                Ok(ApplyRequest {
                    outbox: OutboxTable::Cell,
                    table: "items".into(),
                    category: 1,
                    object_identifier: id,
                    shard_scope: 0,
                    shard_identifier: item.shard_id,
                    cell: "eu".into(),
                    row_id: 40_000_000 + n,
                    change: Change::Replicate {
                        state: ModelState::of(&item)?,
                    },
                })
            })
            .collect::<Result<_, BoxError>>()?;
        let body = serde_json::to_vec(&serde_json::json!({ "requests": requests }))?;
        for level in [1, 6] {
            let mut compressed = Vec::new();
            let mut repeats = 0_u32;
            let started = Instant::now();
            while repeats < 3 || started.elapsed() < Duration::from_millis(200) {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::new(level));
                encoder.write_all(&body)?;
                compressed = encoder.finish()?;
                repeats += 1;
            }
            let compress = started.elapsed().as_secs_f64() / f64::from(repeats);
            let mut repeats = 0_u32;
            let started = Instant::now();
            while repeats < 3 || started.elapsed() < Duration::from_millis(200) {
                let mut plain = Vec::with_capacity(body.len());
                GzDecoder::new(compressed.as_slice()).read_to_end(&mut plain)?;
                if plain != body {
                    return Err("gzip round trip changed the body".into());
                }
                repeats += 1;
            }
            let decompress = started.elapsed().as_secs_f64() / f64::from(repeats);
            let cost = (compress + decompress) * 1e6;
            let saved = (body.len() - compressed.len()) as f64;
            let on_loopback = saved / loopback * 1e6;
            let on_link = saved * 8.0 / 100e6 * 1e6;
            println!(
                "| {count} | {} | {level} | {} | {:.2} | {cost:.0} | {on_loopback:.0} | {on_link:.0} | {} | {} |",
                body.len(),
                compressed.len(),
                body.len() as f64 / compressed.len() as f64,
                if on_loopback > cost { "yes" } else { "no" },
                if on_link > cost { "yes" } else { "no" },
            );
        }
    }
    Ok(())
}

/// Bytes per second through one TCP connection on 127.0.0.1 (64 MiB in 64 KiB writes).
fn loopback_bytes_per_second() -> Result<f64, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let total: usize = 64 << 20;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0_u8; 1 << 16];
        let mut seen = 0;
        loop {
            match stream.read(&mut buffer)? {
                0 => return Ok(seen),
                n => seen += n,
            }
        }
    });
    let mut stream = std::net::TcpStream::connect(addr)?;
    let chunk = vec![7_u8; 1 << 16];
    let started = Instant::now();
    for _ in 0..total / chunk.len() {
        stream.write_all(&chunk)?;
    }
    drop(stream);
    let seen = reader
        .join()
        .map_err(|_| "the loopback reader panicked")??;
    Ok(seen as f64 / started.elapsed().as_secs_f64())
}

fn options() -> Result<Options, BoxError> {
    let mut options = Options {
        seconds: 60.0,
        rates: vec![250.0, 500.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0],
        writers: 16,
        sqlite: true,
        postgres: true,
        all_rates: false,
        flush: true,
        async_commit: false,
        notify: true,
        compression_only: false,
        plot_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results"),
    };
    let mut plot_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<String, BoxError> {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value").into())
        };
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse()?,
            "--rates" => {
                options.rates = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--writers" => options.writers = value()?.parse::<usize>()?.clamp(1, 100),
            "--all-rates" => options.all_rates = true,
            "--no-flush" => options.flush = false,
            "--async-commit" => options.async_commit = true,
            "--no-notify" => options.notify = false,
            "--compression-only" => options.compression_only = true,
            "--plot-dir" => plot_dir = Some(PathBuf::from(value()?)),
            "--sqlite-only" => options.postgres = false,
            "--postgres-only" => options.sqlite = false,
            "--tiny" => {
                options.seconds = 2.0;
                options.rates = vec![50.0, 200.0];
                options.writers = 2;
                options.all_rates = true;
                plot_dir.get_or_insert_with(std::env::temp_dir);
            }
            other => {
                return Err(format!(
                    "unknown argument {other}: --seconds N --rates A,B,.. --writers N \
                     --all-rates --no-flush --no-notify --async-commit \
                     --compression-only --plot-dir DIR --sqlite-only --postgres-only --tiny"
                )
                .into())
            }
        }
    }
    if let Some(dir) = plot_dir {
        options.plot_dir = dir;
    }
    options.seconds = options.seconds.max(1.0);
    std::fs::create_dir_all(&options.plot_dir)?;
    options.plot_dir = options.plot_dir.canonicalize()?;
    Ok(options)
}

/// Two schemas of one PostgreSQL database, dropped afterwards.
struct Postgres {
    base: String,
    schemas: [String; 2],
}

impl Postgres {
    fn create(base: String) -> Result<Self, BoxError> {
        let suffix = std::process::id();
        let postgres = Postgres {
            schemas: [
                format!("outbox_lag_bench_cell_{suffix}"),
                format!("outbox_lag_bench_control_{suffix}"),
            ],
            base,
        };
        let mut admin = diesel::PgConnection::establish(&postgres.base)?;
        for schema in &postgres.schemas {
            admin.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))?;
        }
        Ok(postgres)
    }

    /// The schema's URL; `async_commit`: its sessions with `synchronous_commit = off`.
    fn url(&self, index: usize, async_commit: bool) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        let commit = if async_commit {
            "%20-csynchronous_commit%3Doff"
        } else {
            ""
        };
        format!(
            "{}{separator}options=-csearch_path%3D{}{commit}",
            self.base, self.schemas[index]
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut admin) = diesel::PgConnection::establish(&self.base) {
            for schema in &self.schemas {
                let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return match args.get(2).map(String::as_str) {
            Some("sqlite") => role::<diesel::SqliteConnection>(&args[1..]),
            Some("postgres") => role::<diesel::PgConnection>(&args[1..]),
            other => Err(format!("--role: unknown backend {other:?}").into()),
        };
    }
    let options = options()?;
    if options.compression_only {
        return compression();
    }
    println!(
        "Replication lag under load: {} writer processes, {} s per offered rate, flush on commit {}{}",
        options.writers,
        options.seconds,
        if options.flush { "on" } else { "off" },
        if options.async_commit {
            ", PostgreSQL sessions with synchronous_commit = off"
        } else {
            ""
        }
    );
    if options.sqlite {
        let dir =
            std::env::temp_dir().join(format!("diesel-outbox-lag-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = |name: &str| dir.join(format!("{name}.db")).display().to_string();
        let outcome = run_backend::<diesel::SqliteConnection>(
            "SQLite",
            &path("cell"),
            &path("control"),
            &options,
        );
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }
    let url = ["OUTBOX_BENCH_POSTGRES_URL", "OUTBOX_POSTGRES_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|url| !url.is_empty());
    match url {
        Some(base) if options.postgres => {
            let postgres = Postgres::create(base)?;
            run_backend::<diesel::PgConnection>(
                "PostgreSQL",
                &postgres.url(0, options.async_commit),
                &postgres.url(1, options.async_commit),
                &options,
            )?;
        }
        Some(_) => {}
        None => println!("\n(PostgreSQL skipped: set OUTBOX_BENCH_POSTGRES_URL to include it)"),
    }
    compression()?;
    Ok(())
}
