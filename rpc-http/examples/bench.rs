//! Replicated rows per second between two silos, against the same drain with a no-op
//! receiver and against a hand-written replication ceiling, in the same run.
//!
//!     cargo run --release -p diesel-outbox-http --example bench
//!     cargo run --release -p diesel-outbox-http --example bench -- --rows 20000 --rounds 5
//!     cargo run -p diesel-outbox-http --example bench -- --tiny          (a smoke run)
//!     ... -- --postgres-only | --sqlite-only | --mysql-only
//!
//! PostgreSQL runs when `OUTBOX_BENCH_POSTGRES_URL` (or `OUTBOX_POSTGRES_URL`) is set (two
//! schemas of its own, cell and control); MariaDB with the `mysql` feature and
//! `OUTBOX_BENCH_MYSQL_URL` (or `OUTBOX_MYSQL_URL`; two databases of its own).
//!
//! A first round, not timed, creates every object and its replica (and the ledger's rows):
//! the timed rounds replicate *changes* of existing objects, as a running silo does. Each
//! round writes `rows` cell rows (flush off) in a backlog shape (rows per object, rows per
//! shard), then times `drain_due_shards` until the outbox is empty; the variants take
//! turns, round after round, and each figure is the median:
//!
//! * **no-op batch receiver**: the bare drain (claim, read, delete), the floor;
//! * **requests built, not sent**: the sending silo's own share (the batch's objects
//!   loaded with one statement per model and serialised once);
//! * **signed HTTP to control**: the whole thing: control's server applies each batch with
//!   the model's batch hook (one multi-row upsert per 1,000) and the ledger of applied
//!   changes (monotonic apply); and the same **without the ledger** (`monotonic(false)`),
//!   to show the ledger's cost;
//! * **direct connection to control**: the library's direct receiver, whose batch hook
//!   upserts into control's database through a pooled connection;
//! * **ceiling**: the same objects loaded by id set from the cell and upserted into
//!   control by hand, 1,000 per cached statement, no outbox at all.
//!
//! Every variant that writes control's replicas uses the same cached upsert statement,
//! so the ratio to the ceiling is the cost of the outbox and the transport alone.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::sql_types::{BigInt, Text};
use diesel_outbox::apply::{Appliers, ApplyBatch, ApplyContext, CellApplyHooks, Outgoing};
use diesel_outbox::receive::{BatchError, BatchReceiver};
use diesel_outbox::{
    outbox_context, run_migrations, BoxError, CellReplicationHooks, ModelWrites, Outbox,
    OutboxConnection, OutboxMessage, OutboxTable, Receivers, ReplicatedCell, ReplicationBatch,
    ReplicationContext, SiloDirectory, SiloId,
};
use diesel_outbox_http::axum::{router, serve_in_background, Background};
use diesel_outbox_http::{HttpTransport, Server, SigningKey};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Project = 0 { shard: shard_id } }
    pub categories Category { ItemUpdate = 1 { scope: Project, silo: cell } }
}

diesel::table! { items (id) { id -> BigInt, shard_id -> BigInt, name -> Text } }

const CELL_TABLES: &str =
    "CREATE TABLE items (id BIGINT PRIMARY KEY, shard_id BIGINT NOT NULL, name TEXT NOT NULL);";
const CONTROL_TABLES: &str = "CREATE TABLE item_replicas (id BIGINT PRIMARY KEY,
    shard_id BIGINT NOT NULL, name TEXT NOT NULL, cell_name TEXT NOT NULL);";

#[derive(
    Debug, Clone, Queryable, Selectable, QueryableByName, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = items)]
#[outbox(category = Category::ItemUpdate, flush = false)]
struct Item {
    id: i64,
    shard_id: i64,
    name: String,
}

/// Rows per upsert statement (the ceiling's, and every hook's).
const CHUNK: usize = 1_000;

/// A raw statement diesel may keep as a prepared statement: its text never holds a
/// value. (MySQL's connection does not ask a statement whether it may be cached, so
/// there it is prepared each time: the same for every variant.)
struct Cached<Q>(Q);

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> RunQueryDsl<C> for Cached<Q> {}

/// The replicas' upsert and the ceiling's load, per backend.
trait BenchSql: OutboxConnection + R2D2Connection + SimpleConnection + Sized {
    /// Upserts `items` as `cell`'s replicas, [`CHUNK`] per statement.
    fn upsert_replicas(&mut self, items: &[&Item], cell: &str) -> QueryResult<()>;
    /// Loads the items of `ids`, [`CHUNK`] per statement.
    fn load_items(&mut self, ids: &[i64]) -> QueryResult<Vec<Item>>;
    /// Control's replicas whose name ends with `tag`.
    fn replicas(&mut self, tag: &str) -> QueryResult<i64>;
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

macro_rules! count_replicas {
    ($placeholder:literal) => {
        fn replicas(&mut self, tag: &str) -> QueryResult<i64> {
            let count: Count = diesel::sql_query(concat!(
                "SELECT COUNT(*) AS n FROM item_replicas WHERE name LIKE ",
                $placeholder
            ))
            .bind::<Text, _>(format!("% {tag}"))
            .get_result(self)?;
            Ok(count.n)
        }
    };
}

/// `(?, ?, ?, ?), ...` for `rows` rows.
fn values(rows: usize) -> String {
    vec!["(?, ?, ?, ?)"; rows].join(", ")
}

macro_rules! upsert_with_values {
    ($conn:ty, $tail:expr) => {
        count_replicas!("?");

        fn upsert_replicas(&mut self, items: &[&Item], cell: &str) -> QueryResult<()> {
            for chunk in items.chunks(CHUNK) {
                let text = format!(
                    "INSERT INTO item_replicas (id, shard_id, name, cell_name) VALUES {} {}",
                    values(chunk.len()),
                    $tail
                );
                let mut query = diesel::sql_query(text).into_boxed();
                for item in chunk {
                    query = query
                        .bind::<BigInt, _>(item.id)
                        .bind::<BigInt, _>(item.shard_id)
                        .bind::<Text, _>(item.name.clone())
                        .bind::<Text, _>(cell.to_owned());
                }
                Cached(query).execute(self)?;
            }
            Ok(())
        }

        fn load_items(&mut self, ids: &[i64]) -> QueryResult<Vec<Item>> {
            let mut found = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let list = vec!["?"; chunk.len()].join(", ");
                let text = format!("SELECT id, shard_id, name FROM items WHERE id IN ({list})");
                let mut query = diesel::sql_query(text).into_boxed();
                for id in chunk {
                    query = query.bind::<BigInt, _>(*id);
                }
                found.extend(Cached(query).load::<Item>(self)?);
            }
            Ok(found)
        }
    };
}

impl BenchSql for diesel::SqliteConnection {
    upsert_with_values!(
        diesel::SqliteConnection,
        "ON CONFLICT (id) DO UPDATE SET shard_id = excluded.shard_id, name = excluded.name, \
         cell_name = excluded.cell_name"
    );
}

#[cfg(feature = "mysql")]
impl BenchSql for diesel::MysqlConnection {
    upsert_with_values!(
        diesel::MysqlConnection,
        "ON DUPLICATE KEY UPDATE shard_id = VALUES(shard_id), name = VALUES(name), \
         cell_name = VALUES(cell_name)"
    );
}

impl BenchSql for diesel::PgConnection {
    count_replicas!("$1");

    fn upsert_replicas(&mut self, items: &[&Item], cell: &str) -> QueryResult<()> {
        use diesel::sql_types::Array;
        for chunk in items.chunks(CHUNK) {
            let query = diesel::sql_query(
                "INSERT INTO item_replicas (id, shard_id, name, cell_name) \
                 SELECT i, s, n, $4 FROM unnest($1::int8[], $2::int8[], $3::text[]) AS u(i, s, n) \
                 ON CONFLICT (id) DO UPDATE SET shard_id = excluded.shard_id, \
                 name = excluded.name, cell_name = excluded.cell_name",
            )
            .bind::<Array<BigInt>, _>(chunk.iter().map(|i| i.id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(chunk.iter().map(|i| i.shard_id).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(chunk.iter().map(|i| i.name.clone()).collect::<Vec<_>>())
            .bind::<Text, _>(cell.to_owned());
            Cached(query).execute(self)?;
        }
        Ok(())
    }

    fn load_items(&mut self, ids: &[i64]) -> QueryResult<Vec<Item>> {
        use diesel::sql_types::Array;
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let query =
                diesel::sql_query("SELECT id, shard_id, name FROM items WHERE id = ANY($1)")
                    .bind::<Array<BigInt>, _>(chunk.to_vec());
            found.extend(Cached(query).load::<Item>(self)?);
        }
        Ok(found)
    }
}

/// Control applies a batch of items with one upsert per [`CHUNK`].
impl<C: BenchSql> CellApplyHooks<C> for Item {
    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError> {
        let cell = ctx.cell_name().to_owned();
        ctx.connection().upsert_replicas(&[self], &cell)?;
        Ok(())
    }

    fn apply_replications(
        batch: &mut ApplyBatch<'_, '_, C>,
        models: &[Self],
    ) -> Result<(), BoxError> {
        let cell = batch.cell_name().to_owned();
        let items: Vec<&Item> = models.iter().collect();
        batch.connection().upsert_replicas(&items, &cell)?;
        Ok(())
    }
}

/// The direct receiver writes control's database itself, one connection per batch.
impl<C: BenchSql> CellReplicationHooks<C> for Item {
    fn handle_async_replications(
        batch: &mut ReplicationBatch<'_, C>,
        models: &[&Self],
    ) -> Result<(), BoxError> {
        batch
            .require_silos()?
            .with_control_connection(|control: &mut C| {
                control.upsert_replicas(models, "eu")?;
                Ok(())
            })?;
        Ok(())
    }

    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        _shard_identifier: i64,
    ) -> Result<(), BoxError> {
        ctx.require_silos()?
            .with_control_connection(|control: &mut C| {
                control.upsert_replicas(&[self], "eu")?;
                Ok(())
            })?;
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

/// The sending silo's share of the work: the batch's requests built, nothing sent.
struct BuildOnly<C>(Outgoing<C>);

impl<C: OutboxConnection> BatchReceiver<C> for BuildOnly<C> {
    fn receive_batch(&self, conn: &mut C, messages: &[OutboxMessage]) -> Result<(), BatchError> {
        let local = SiloId::cell("eu");
        for request in self.0.requests(conn, &local, messages) {
            std::hint::black_box(request.map_err(BatchError::whole)?);
        }
        Ok(())
    }
}

/// A backlog's shape: `rows` rows, each object written `per_object` times, shards of
/// `per_shard` rows.
#[derive(Clone, Copy, Debug)]
struct Shape {
    per_object: i64,
    per_shard: i64,
}

impl Shape {
    const ALL: [Shape; 3] = [
        Shape {
            per_object: 1,
            per_shard: 20,
        },
        Shape {
            per_object: 1,
            per_shard: 1,
        },
        Shape {
            per_object: 10,
            per_shard: 20,
        },
    ];
}

#[derive(Clone, Debug)]
struct Sizes {
    rows: i64,
    rounds: usize,
    shapes: Vec<Shape>,
    sqlite: bool,
    postgres: bool,
    mysql: bool,
}

/// Two databases: the cell's and control's, and how to open connections to each.
trait Silos {
    type Conn: BenchSql;
    fn name(&self) -> String;
    fn cell(&self) -> Result<Self::Conn, BoxError>;
    fn control(&self) -> Result<Self::Conn, BoxError>;
    fn control_pool(&self) -> Result<Pool<ConnectionManager<Self::Conn>>, BoxError>;
}

struct Sqlite {
    dir: std::path::PathBuf,
}

impl Sqlite {
    /// WAL, a 10 s busy timeout, `synchronous = NORMAL` (the library's recommended set-up).
    fn options() -> diesel_outbox::sqlite::SqliteOptions {
        diesel_outbox::sqlite::SqliteOptions::new().busy_timeout(std::time::Duration::from_secs(10))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(format!("{name}.db")).display().to_string()
    }

    fn open(&self, name: &str) -> Result<diesel::SqliteConnection, BoxError> {
        Ok(Self::options().establish(&self.path(name))?)
    }
}

impl Silos for Sqlite {
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
            .connection_customizer(Box::new(Self::options()))
            .build(ConnectionManager::new(self.path("control")))?)
    }
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
                format!("outbox_http_bench_cell_{suffix}"),
                format!("outbox_http_bench_control_{suffix}"),
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

    fn url(&self, index: usize) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.schemas[index]
        )
    }
}

impl Silos for Postgres {
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

/// Two databases of one MariaDB server, dropped afterwards.
#[cfg(feature = "mysql")]
struct Mysql {
    base: String,
    databases: [String; 2],
}

#[cfg(feature = "mysql")]
impl Mysql {
    fn create(base: String) -> Result<Self, BoxError> {
        let suffix = std::process::id();
        let mysql = Mysql {
            databases: [
                format!("outbox_http_bench_cell_{suffix}"),
                format!("outbox_http_bench_control_{suffix}"),
            ],
            base,
        };
        let mut admin = diesel::MysqlConnection::establish(&mysql.base)?;
        for database in &mysql.databases {
            admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {database}; \
                 CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))?;
        }
        Ok(mysql)
    }

    /// `base` (`mysql://user@host:port/db?options`) with its database replaced.
    fn url(&self, index: usize) -> String {
        let (head, query) = self
            .base
            .split_at(self.base.find('?').unwrap_or(self.base.len()));
        let authority = head.find("://").map_or(0, |at| at + 3);
        let host_end = head[authority..]
            .find('/')
            .map_or(head.len(), |at| authority + at);
        format!("{}/{}{query}", &head[..host_end], self.databases[index])
    }
}

#[cfg(feature = "mysql")]
impl Silos for Mysql {
    type Conn = diesel::MysqlConnection;
    fn name(&self) -> String {
        "MariaDB".into()
    }
    fn cell(&self) -> Result<Self::Conn, BoxError> {
        Ok(diesel::MysqlConnection::establish(&self.url(0))?)
    }
    fn control(&self) -> Result<Self::Conn, BoxError> {
        Ok(diesel::MysqlConnection::establish(&self.url(1))?)
    }
    fn control_pool(&self) -> Result<Pool<ConnectionManager<Self::Conn>>, BoxError> {
        Ok(Pool::builder()
            .max_size(4)
            .build(ConnectionManager::new(self.url(1)))?)
    }
}

#[cfg(feature = "mysql")]
impl Drop for Mysql {
    fn drop(&mut self) {
        if let Ok(mut admin) = diesel::MysqlConnection::establish(&self.base) {
            for database in &self.databases {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database}"));
            }
        }
    }
}

/// One way of delivering the cell's rows.
struct Variant<C> {
    name: &'static str,
    /// Whether it replicates into control (the others only measure the sending side).
    writes_control: bool,
    outbox: Option<Outbox<C>>,
    samples: Vec<f64>,
}

impl<C> Variant<C> {
    fn new(name: &'static str, writes_control: bool, outbox: Option<Outbox<C>>) -> Self {
        Variant {
            name,
            writes_control,
            outbox,
            samples: Vec::new(),
        }
    }
}

/// Control's server on loopback, applying with `appliers` through a pool.
fn serve<S: Silos>(
    silos: &S,
    appliers: Appliers<S::Conn>,
    key: &SigningKey,
) -> Result<(Background, HttpTransport), BoxError> {
    let server =
        Server::new(appliers, silos.control_pool()?)?.peer(SiloId::cell("eu"), key.clone())?;
    let running = serve_in_background(TcpListener::bind("127.0.0.1:0")?, router(Arc::new(server)))?;
    let transport = HttpTransport::new(SiloId::cell("eu"))?.peer(
        SiloId::Control,
        running.url(),
        key.clone(),
    )?;
    Ok((running, transport))
}

fn run<S: Silos>(silos: &S, sizes: &Sizes, shape: Shape) -> Result<(), BoxError>
where
    Item: ModelWrites<S::Conn>,
{
    let mut cell = silos.cell()?;
    let mut control = silos.control()?;

    let key = SigningKey::generate()?;
    let (monotonic, monotonic_transport) =
        serve(silos, Appliers::new(SiloId::Control).cell::<Item>(), &key)?;
    let (no_ledger, no_ledger_transport) = serve(
        silos,
        Appliers::new(SiloId::Control)
            .cell::<Item>()
            .monotonic(false),
        &key,
    )?;
    let direct = SiloDirectory::new(SiloId::cell("eu")).with_control(silos.control_pool()?);
    let built = Receivers::new().batch_for(
        OutboxTable::Cell,
        Category::ALL,
        BuildOnly(Outgoing::new().cell::<Item>()),
    );
    let mut variants = vec![
        Variant::new(
            "no-op batch receiver (floor)",
            false,
            Some(Outbox::new(Receivers::new().batch_for(
                OutboxTable::Cell,
                Category::ALL,
                NoOp,
            ))),
        ),
        Variant::new("requests built, not sent", false, Some(Outbox::new(built))),
        Variant::new(
            "signed HTTP to control",
            true,
            Some(Outbox::new(
                Receivers::new().remote(Outgoing::new().cell::<Item>(), monotonic_transport),
            )),
        ),
        Variant::new(
            "signed HTTP, no ledger (monotonic off)",
            true,
            Some(Outbox::new(
                Receivers::new().remote(Outgoing::new().cell::<Item>(), no_ledger_transport),
            )),
        ),
        Variant::new(
            "direct connection to control",
            true,
            Some(Outbox::new(
                Receivers::for_silos(direct).replicated_cell::<Item>(),
            )),
        ),
        Variant::new("ceiling: load by ids + upsert, no outbox", true, None),
    ];

    // A round nobody times: every object and its replica exist from then on, as in a
    // silo that has been running (the timed rounds replicate changes: updates).
    let objects = write_rows(&mut cell, sizes.rows, shape, "warm-up")?;
    let items = cell.load_items(&objects)?;
    control.upsert_replicas(&items.iter().collect::<Vec<_>>(), "eu")?;
    cell.batch_execute("DELETE FROM cell_outboxes")?;
    for round in 0..sizes.rounds {
        // Rotate the order, so that no variant always runs first or last.
        let count = variants.len();
        for turn in 0..count {
            let index = (round + turn) % count;
            let variant = &mut variants[index];
            let tag = format!("r{round}v{index}");
            let objects = write_rows(&mut cell, sizes.rows, shape, &tag)?;
            let started = Instant::now();
            let delivered = match &variant.outbox {
                Some(outbox) => drain(&mut cell, outbox, variant.name)?,
                None => {
                    let items = cell.load_items(&objects)?;
                    let items: Vec<&Item> = items.iter().collect();
                    control.upsert_replicas(&items, "eu")?;
                    sizes.rows as usize
                }
            };
            let seconds = started.elapsed().as_secs_f64();
            if delivered as i64 != sizes.rows {
                return Err(format!(
                    "{}: {delivered} of {} rows delivered",
                    variant.name, sizes.rows
                )
                .into());
            }
            let expected = if variant.writes_control {
                objects.len() as i64
            } else {
                0
            };
            let replicas = control.replicas(&tag)?;
            if replicas != expected {
                return Err(format!(
                    "{}: {replicas} replicas of this round, expected {expected}",
                    variant.name
                )
                .into());
            }
            if variant.outbox.is_none() {
                // The ceiling leaves the outbox rows it did not need.
                cell.batch_execute("DELETE FROM cell_outboxes")?;
            }
            variant.samples.push(sizes.rows as f64 / seconds);
        }
    }
    drop((monotonic, no_ledger));
    let applied = time_apply(&mut control, sizes, shape)?;

    let floor = median(&variants[0].samples);
    let ceiling = median(&variants[count_of(&variants) - 1].samples);
    println!(
        "\n{}: {} rows, {} per object, {} per shard ({} shards), median of {} rounds",
        silos.name(),
        sizes.rows,
        shape.per_object,
        shape.per_shard,
        sizes.rows / shape.per_shard,
        sizes.rounds
    );
    println!("| receiver | rows/s | of the no-op floor | of the ceiling |");
    println!("| --- | ---: | ---: | ---: |");
    for variant in &variants {
        let rate = median(&variant.samples);
        println!(
            "| {} | {:.0} | {:.2} | {:.2} |",
            variant.name,
            rate,
            rate / floor,
            rate / ceiling
        );
    }
    let with = median(&variants[2].samples);
    let without = median(&variants[3].samples);
    println!(
        "monotonic apply costs {:.1}% of the HTTP replication's throughput",
        (1.0 - with / without) * 100.0
    );
    // Where the time of the HTTP replication goes, per 1,000 outbox rows: the parts
    // measured on their own, the transport as what is left.
    let per_thousand = |rate: f64| 1e9 / rate; // µs per 1,000 rows
    let drain = per_thousand(floor);
    let build = per_thousand(median(&variants[1].samples)) - drain;
    let hooks = per_thousand(applied.without_ledger);
    let ledger = per_thousand(applied.with_ledger) - hooks;
    let total = per_thousand(with);
    let transport = total - drain - build - hooks - ledger;
    println!("where the HTTP replication's time goes, µs per 1,000 rows:");
    println!(
        "| drain (claim, read, delete) | build requests (load, serialise) | transport (JSON, HMAC, HTTP) | apply: hooks | apply: ledger | total |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {drain:.0} | {build:.0} | {transport:.0} | {hooks:.0} | {ledger:.0} | {total:.0} |"
    );
    Ok(())
}

fn count_of<C>(variants: &[Variant<C>]) -> usize {
    variants.len()
}

/// Rows per second of control applying the same changes with no transport, in batches
/// the size of the drain's, with and without the ledger.
struct Applied {
    with_ledger: f64,
    without_ledger: f64,
}

fn time_apply<C: BenchSql>(
    control: &mut C,
    sizes: &Sizes,
    shape: Shape,
) -> Result<Applied, BoxError>
where
    Item: CellApplyHooks<C>,
{
    use diesel_outbox::apply::{ApplyRequest, Change, ModelState};
    let shards = (sizes.rows / shape.per_shard).max(1);
    let objects = (sizes.rows / shape.per_object).max(1);
    // The drain's batch: 400 shards (at most 20,000 rows), one request per object.
    let batch = usize::try_from((400 * shape.per_shard).min(20_000) / shape.per_object)?.max(1);
    let caller = SiloId::cell("eu");
    let ledger = Appliers::new(SiloId::Control).cell::<Item>();
    let none = Appliers::new(SiloId::Control)
        .cell::<Item>()
        .monotonic(false);
    let (mut with_ledger, mut without_ledger) = (Vec::new(), Vec::new());
    for round in 0..sizes.rounds {
        for (appliers, samples) in [(&ledger, &mut with_ledger), (&none, &mut without_ledger)] {
            // Newer than every row id the drained rounds used.
            let base = (1_i64 << 40) + (round as i64) * 2 * objects;
            let requests: Vec<ApplyRequest> = (0..objects)
                .map(|id| {
                    let item = Item {
                        id,
                        shard_id: id % shards,
                        name: format!("item {id} applied in round {round}"),
                    };
                    Ok(ApplyRequest {
                        outbox: OutboxTable::Cell,
                        table: "items".into(),
                        category: 1,
                        object_identifier: id,
                        shard_scope: 0,
                        shard_identifier: item.shard_id,
                        cell: "eu".into(),
                        row_id: base + objects + id,
                        change: Change::Replicate {
                            state: ModelState::of(&item)?,
                        },
                    })
                })
                .collect::<Result<_, BoxError>>()?;
            let started = Instant::now();
            for chunk in requests.chunks(batch) {
                let outcomes = appliers.apply(control, &caller, chunk)?;
                if !outcomes.iter().all(|o| o.is_applied()) {
                    return Err("control did not apply a batch".into());
                }
            }
            samples.push(sizes.rows as f64 / started.elapsed().as_secs_f64());
        }
    }
    // Its row ids are above any a drain will send: forget them, or the next shape's
    // requests would all be answered as superseded.
    control.batch_execute("DELETE FROM outbox_applied_changes")?;
    Ok(Applied {
        with_ledger: median(&with_ledger),
        without_ledger: median(&without_ledger),
    })
}

/// Drains until the outbox is empty; the rows deleted.
fn drain<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    name: &str,
) -> Result<usize, BoxError> {
    let mut delivered = 0;
    for _ in 0..10_000 {
        let report = outbox.drain_due_shards(conn)?;
        if let Some(failure) = report.failures.first() {
            return Err(format!("{name}: {failure}").into());
        }
        delivered += report.rows_deleted;
        if report.rows_deleted == 0 {
            break;
        }
    }
    Ok(delivered)
}

/// Writes `rows` outbox rows of `shape` (flush off): each object saved `per_object`
/// times, each time in another transaction so that its rows stay apart, its last name
/// ending with `tag`. The objects' ids.
fn write_rows<C: BenchSql>(
    conn: &mut C,
    rows: i64,
    shape: Shape,
    tag: &str,
) -> Result<Vec<i64>, BoxError>
where
    Item: ModelWrites<C>,
{
    let shards = (rows / shape.per_shard).max(1);
    let objects = (rows / shape.per_object).max(1);
    for pass in 0..shape.per_object {
        let items: Vec<Item> = (0..objects)
            .map(|id| Item {
                id,
                shard_id: id % shards,
                name: format!("item {id}, pass {pass} {tag}"),
            })
            .collect();
        for chunk in items.chunks(1_000) {
            outbox_context(conn, |ctx| Item::save_all(ctx, chunk))?;
        }
    }
    Ok((0..objects).collect())
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
        rounds: 3,
        shapes: Shape::ALL.to_vec(),
        sqlite: true,
        postgres: true,
        mysql: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<i64, BoxError> {
            Ok(args.next().ok_or(format!("{arg} needs a value"))?.parse()?)
        };
        match arg.as_str() {
            "--rows" => sizes.rows = value()?,
            "--rounds" => sizes.rounds = usize::try_from(value()?)?,
            "--headline" => sizes.shapes.truncate(1),
            "--sqlite-only" => (sizes.postgres, sizes.mysql) = (false, false),
            "--postgres-only" => (sizes.sqlite, sizes.mysql) = (false, false),
            "--mysql-only" => (sizes.sqlite, sizes.postgres) = (false, false),
            "--tiny" => (sizes.rows, sizes.rounds) = (200, 1),
            other => {
                return Err(format!(
                    "unknown argument {other}: --rows N --rounds N --headline \
                     --sqlite-only --postgres-only --mysql-only --tiny"
                )
                .into())
            }
        }
    }
    sizes.rows = sizes.rows.max(20);
    Ok(sizes)
}

fn set_up<S: Silos>(silos: &S) -> Result<(), BoxError> {
    let mut cell = silos.cell()?;
    run_migrations(&mut cell)?;
    cell.batch_execute(CELL_TABLES)?;
    let mut control = silos.control()?;
    run_migrations(&mut control)?;
    control.batch_execute(CONTROL_TABLES)?;
    Ok(())
}

fn run_all<S: Silos>(silos: &S, sizes: &Sizes) -> Result<(), BoxError>
where
    Item: ModelWrites<S::Conn>,
{
    set_up(silos)?;
    for shape in &sizes.shapes {
        run(silos, sizes, *shape)?;
    }
    Ok(())
}

fn url(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|url| !url.is_empty())
}

fn main() -> Result<(), BoxError> {
    let sizes = sizes()?;
    if sizes.sqlite {
        let dir =
            std::env::temp_dir().join(format!("diesel-outbox-http-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let outcome = run_all(&Sqlite { dir: dir.clone() }, &sizes);
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }
    match url(&["OUTBOX_BENCH_POSTGRES_URL", "OUTBOX_POSTGRES_URL"]) {
        Some(base) if sizes.postgres => run_all(&Postgres::create(base)?, &sizes)?,
        Some(_) => {}
        None => println!("\n(PostgreSQL skipped: set OUTBOX_BENCH_POSTGRES_URL to include it)"),
    }
    #[cfg(feature = "mysql")]
    match url(&["OUTBOX_BENCH_MYSQL_URL", "OUTBOX_MYSQL_URL"]) {
        Some(base) if sizes.mysql => run_all(&Mysql::create(base)?, &sizes)?,
        Some(_) => {}
        None => println!("\n(MariaDB skipped: set OUTBOX_BENCH_MYSQL_URL to include it)"),
    }
    #[cfg(not(feature = "mysql"))]
    if sizes.mysql {
        println!("\n(MariaDB skipped: build with --features mysql to include it)");
    }
    Ok(())
}
