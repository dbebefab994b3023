//! Replicated rows per second over the signed HTTP transport, against the same drain with
//! a no-op batch receiver, in the same run (and, for reference, the direct-database
//! receiver that writes control's database itself).
//!
//!     cargo run --release -p diesel-outbox-http --example bench
//!     cargo run --release -p diesel-outbox-http --example bench -- --rows 20000 --shards 1000 --rounds 5
//!     cargo run -p diesel-outbox-http --example bench -- --tiny          (a smoke run)
//!     ... -- --postgres-only                                              (skip SQLite)
//!
//! PostgreSQL runs too when `OUTBOX_BENCH_POSTGRES_URL` (or `OUTBOX_POSTGRES_URL`) is set:
//! two schemas of their own (cell and control), dropped afterwards.
//!
//! Each round writes `rows` cell rows over `shards` shards (flush off), then times
//! `drain_due_shards` until the outbox is empty; the variants take turns, round after
//! round, and each figure is the median. The ratio is the variant's rows/s over the no-op
//! receiver's: the share of the bare drain's throughput that survives replication.
//! "Requests built, not sent" is the sending silo's own share (each model loaded by id
//! and serialised): the rest of the HTTP row's cost is the wire and control's work.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel_outbox::apply::{Appliers, ApplyContext, CellApplyHooks, Outgoing};
use diesel_outbox::receive::{BatchError, BatchReceiver};
use diesel_outbox::{
    outbox_context, run_migrations, BoxError, CellReplicationHooks, JsonPayload, ModelWrites,
    Outbox, OutboxConnection, OutboxMessage, OutboxTable, Receivers, ReplicatedCell,
    ReplicationContext, SiloDirectory, SiloId,
};
use diesel_outbox_http::axum::{router, serve_in_background};
use diesel_outbox_http::{HttpTransport, Server, SigningKey};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Project = 0 { shard: shard_id } }
    pub categories Category { ItemUpdate = 1 { scope: Project, silo: cell } }
}

diesel::table! { items (id) { id -> BigInt, shard_id -> BigInt, name -> Text } }
diesel::table! { item_replicas (id) { id -> BigInt, shard_id -> BigInt, name -> Text, cell_name -> Text } }

const CELL_TABLES: &str =
    "CREATE TABLE items (id BIGINT PRIMARY KEY, shard_id BIGINT NOT NULL, name TEXT NOT NULL);";
const CONTROL_TABLES: &str = "CREATE TABLE item_replicas (id BIGINT PRIMARY KEY,
    shard_id BIGINT NOT NULL, name TEXT NOT NULL, cell_name TEXT NOT NULL);";

#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell)]
#[diesel(table_name = items)]
#[outbox(category = Category::ItemUpdate, flush = false)]
struct Item {
    id: i64,
    shard_id: i64,
    name: String,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = item_replicas)]
struct ItemReplica {
    id: i64,
    shard_id: i64,
    name: String,
    cell_name: String,
}

impl ItemReplica {
    fn of(item: &Item, cell: &str) -> Self {
        ItemReplica {
            id: item.id,
            shard_id: item.shard_id,
            name: item.name.clone(),
            cell_name: cell.to_owned(),
        }
    }
}

/// The replica upsert, per backend; the same statement for every variant that writes.
trait BenchSql: OutboxConnection + R2D2Connection + SimpleConnection + Sized {
    fn upsert_replica(&mut self, replica: &ItemReplica) -> QueryResult<usize>;
    fn replicas(&mut self) -> QueryResult<i64>;
}

macro_rules! per_backend {
    ($conn:ty) => {
        impl BenchSql for $conn {
            fn upsert_replica(&mut self, replica: &ItemReplica) -> QueryResult<usize> {
                diesel::insert_into(item_replicas::table)
                    .values(replica)
                    .on_conflict(item_replicas::id)
                    .do_update()
                    .set(replica)
                    .execute(self)
            }

            fn replicas(&mut self) -> QueryResult<i64> {
                item_replicas::table.count().get_result(self)
            }
        }
    };
}

per_backend!(diesel::SqliteConnection);
per_backend!(diesel::PgConnection);

impl<C: BenchSql> CellApplyHooks<C> for Item {
    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError> {
        let replica = ItemReplica::of(self, ctx.cell_name());
        ctx.connection().upsert_replica(&replica)?;
        Ok(())
    }
}

impl<C: BenchSql> CellReplicationHooks<C> for Item {
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        _shard_identifier: i64,
    ) -> Result<(), BoxError> {
        let replica = ItemReplica::of(self, "eu");
        ctx.require_silos()?
            .with_control_connection(|control: &mut C| {
                control.upsert_replica(&replica)?;
                Ok(())
            })?;
        Ok(())
    }

    fn handle_async_deletion(
        _ctx: &mut ReplicationContext<'_, C>,
        _object_identifier: i64,
        _shard_identifier: i64,
        _payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

/// The floor: the same drain, the same batch shape, nothing done per message.
struct NoOp;

impl<C> BatchReceiver<C> for NoOp {
    fn receive_batch(&self, _conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        std::hint::black_box(messages);
        Ok(())
    }
}

/// The sending silo's share of the work: each request built (the model loaded by id and
/// serialised), nothing sent.
struct BuildOnly<C>(Outgoing<C>);

impl<C: OutboxConnection> BatchReceiver<C> for BuildOnly<C> {
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        let local = SiloId::cell("eu");
        for message in messages {
            let request = self
                .0
                .request(conn, &local, message)
                .map_err(BatchError::whole)?;
            std::hint::black_box(request);
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Sizes {
    rows: i64,
    shards: i64,
    rounds: usize,
    sqlite: bool,
}

/// Two databases: the cell's and control's, and how to open connections to each.
trait Backend {
    type Conn: BenchSql;
    fn name(&self) -> String;
    fn cell(&self) -> Result<Self::Conn, BoxError>;
    fn control_pool(&self) -> Result<Pool<ConnectionManager<Self::Conn>>, BoxError>;
    fn control(&self) -> Result<Self::Conn, BoxError>;
}

struct Sqlite {
    dir: std::path::PathBuf,
}

impl Sqlite {
    const SETUP: &'static str =
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;";

    fn path(&self, name: &str) -> String {
        self.dir.join(format!("{name}.db")).display().to_string()
    }

    fn open(&self, name: &str) -> Result<diesel::SqliteConnection, BoxError> {
        let mut conn = diesel::SqliteConnection::establish(&self.path(name))?;
        conn.batch_execute(Self::SETUP)?;
        Ok(conn)
    }
}

#[derive(Debug)]
struct Setup(&'static str);

impl<C: SimpleConnection> diesel::r2d2::CustomizeConnection<C, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut C) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(self.0)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Backend for Sqlite {
    type Conn = diesel::SqliteConnection;
    fn name(&self) -> String {
        "SQLite".into()
    }
    fn cell(&self) -> Result<Self::Conn, BoxError> {
        self.open("cell")
    }
    fn control(&self) -> Result<Self::Conn, BoxError> {
        self.open("control")
    }
    fn control_pool(&self) -> Result<Pool<ConnectionManager<Self::Conn>>, BoxError> {
        Ok(Pool::builder()
            .max_size(4)
            .connection_customizer(Box::new(Setup(Self::SETUP)))
            .build(ConnectionManager::new(self.path("control")))?)
    }
}

struct Postgres {
    base: String,
    schemas: [String; 2],
}

impl Postgres {
    fn url(&self, index: usize) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.schemas[index]
        )
    }
}

impl Backend for Postgres {
    type Conn = diesel::PgConnection;
    fn name(&self) -> String {
        "PostgreSQL".into()
    }
    fn cell(&self) -> Result<Self::Conn, BoxError> {
        Ok(diesel::PgConnection::establish(&self.url(0))?)
    }
    fn control(&self) -> Result<Self::Conn, BoxError> {
        Ok(diesel::PgConnection::establish(&self.url(1))?)
    }
    fn control_pool(&self) -> Result<Pool<ConnectionManager<Self::Conn>>, BoxError> {
        Ok(Pool::builder()
            .max_size(4)
            .build(ConnectionManager::new(self.url(1)))?)
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

/// One way of delivering the cell's rows.
struct Variant<C> {
    name: &'static str,
    /// Whether it replicates into control (the others only measure the sending side).
    writes_control: bool,
    outbox: Outbox<C>,
    samples: Vec<f64>,
}

fn run<B: Backend>(backend: &B, sizes: Sizes) -> Result<(), BoxError>
where
    Item: ModelWrites<B::Conn>,
{
    let mut cell = backend.cell()?;
    run_migrations(&mut cell)?;
    cell.batch_execute(CELL_TABLES)?;
    let mut control = backend.control()?;
    run_migrations(&mut control)?;
    control.batch_execute(CONTROL_TABLES)?;

    // Control's server on loopback, applying into control's database through a pool.
    let key = SigningKey::generate()?;
    let appliers = Appliers::new(SiloId::Control).cell::<Item>();
    let server =
        Server::new(appliers, backend.control_pool()?)?.peer(SiloId::cell("eu"), key.clone())?;
    let running = serve_in_background(TcpListener::bind("127.0.0.1:0")?, router(Arc::new(server)))?;
    let transport =
        HttpTransport::new(SiloId::cell("eu"))?.peer(SiloId::Control, running.url(), key)?;

    let direct = SiloDirectory::new(SiloId::cell("eu")).with_control(backend.control_pool()?);
    let mut variants = vec![
        Variant {
            name: "no-op batch receiver (floor)",
            writes_control: false,
            outbox: Outbox::new(Receivers::new().batch_for(OutboxTable::Cell, Category::ALL, NoOp)),
            samples: Vec::new(),
        },
        Variant {
            name: "requests built, not sent",
            writes_control: false,
            outbox: Outbox::new(Receivers::new().batch_for(
                OutboxTable::Cell,
                Category::ALL,
                BuildOnly(Outgoing::new().cell::<Item>()),
            )),
            samples: Vec::new(),
        },
        Variant {
            name: "signed HTTP to control",
            writes_control: true,
            outbox: Outbox::new(Receivers::new().remote(Outgoing::new().cell::<Item>(), transport)),
            samples: Vec::new(),
        },
        Variant {
            name: "direct connection to control",
            writes_control: true,
            outbox: Outbox::new(Receivers::for_silos(direct).replicated_cell::<Item>()),
            samples: Vec::new(),
        },
    ];

    for round in 0..sizes.rounds {
        // Rotate the order, so that no variant always runs first or last.
        let count = variants.len();
        for turn in 0..count {
            let variant = &mut variants[(round + turn) % count];
            write_rows(&mut cell, sizes, round)?;
            control.batch_execute("DELETE FROM item_replicas")?;
            let started = Instant::now();
            let mut delivered = 0;
            for _ in 0..10_000 {
                let report = variant.outbox.drain_due_shards(&mut cell)?;
                if !report.failures.is_empty() {
                    return Err(format!("{}: {}", variant.name, report.failures[0]).into());
                }
                delivered += report.rows_deleted;
                if report.rows_deleted == 0 {
                    break;
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            if delivered as i64 != sizes.rows {
                return Err(format!(
                    "{}: {delivered} of {} rows delivered",
                    variant.name, sizes.rows
                )
                .into());
            }
            let expected = if variant.writes_control {
                sizes.rows
            } else {
                0
            };
            let replicas = control.replicas()?;
            if replicas != expected {
                return Err(
                    format!("{}: {replicas} replicas, expected {expected}", variant.name).into(),
                );
            }
            variant.samples.push(sizes.rows as f64 / seconds);
        }
    }
    drop(running);

    let floor = median(&variants[0].samples);
    println!(
        "\n{}: {} rows over {} shards, median of {} rounds",
        backend.name(),
        sizes.rows,
        sizes.shards,
        sizes.rounds
    );
    println!("| receiver | rows/s | ratio to the no-op floor |");
    println!("| --- | ---: | ---: |");
    for variant in &variants {
        let rate = median(&variant.samples);
        println!("| {} | {:.0} | {:.3} |", variant.name, rate, rate / floor);
    }
    Ok(())
}

/// Replaces the cell's items and outbox with `sizes.rows` fresh rows (flush off).
fn write_rows<C: BenchSql>(conn: &mut C, sizes: Sizes, round: usize) -> Result<(), BoxError>
where
    Item: ModelWrites<C>,
{
    conn.batch_execute("DELETE FROM items")?;
    let items: Vec<Item> = (0..sizes.rows)
        .map(|id| Item {
            id,
            shard_id: id % sizes.shards,
            name: format!("item {id} of round {round}"),
        })
        .collect();
    for chunk in items.chunks(1_000) {
        outbox_context(conn, |ctx| Item::insert_all(ctx, chunk))?;
    }
    Ok(())
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn sizes() -> Result<Sizes, BoxError> {
    let mut sizes = Sizes {
        rows: 20_000,
        shards: 1_000,
        rounds: 3,
        sqlite: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<i64, BoxError> {
            Ok(args.next().ok_or(format!("{arg} needs a value"))?.parse()?)
        };
        match arg.as_str() {
            "--rows" => sizes.rows = value()?,
            "--shards" => sizes.shards = value()?,
            "--rounds" => sizes.rounds = usize::try_from(value()?)?,
            "--postgres-only" => sizes.sqlite = false,
            "--tiny" => {
                (sizes.rows, sizes.shards, sizes.rounds) = (200, 20, 1);
            }
            other => {
                return Err(format!(
                "unknown argument {other}: --rows N --shards N --rounds N --postgres-only --tiny"
            )
                .into())
            }
        }
    }
    sizes.shards = sizes.shards.clamp(1, sizes.rows.max(1));
    Ok(sizes)
}

fn main() -> Result<(), BoxError> {
    let sizes = sizes()?;
    let dir = std::env::temp_dir().join(format!("diesel-outbox-http-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if sizes.sqlite {
        let sqlite = Sqlite { dir: dir.clone() };
        let outcome = run(&sqlite, sizes);
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }

    let url = std::env::var("OUTBOX_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("OUTBOX_POSTGRES_URL"));
    if let Ok(base) = url {
        let suffix = std::process::id();
        let postgres = Postgres {
            schemas: [
                format!("outbox_http_bench_cell_{suffix}"),
                format!("outbox_http_bench_control_{suffix}"),
            ],
            base,
        };
        let mut admin = diesel::PgConnection::establish(&postgres.base)?;
        for schema in &postgres.schemas {
            admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
        }
        run(&postgres, sizes)?;
    } else {
        println!("\n(PostgreSQL skipped: set OUTBOX_BENCH_POSTGRES_URL to include it)");
    }
    Ok(())
}
