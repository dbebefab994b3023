//! Shared helpers for the behaviour tests: a fresh database per test on every enabled
//! backend, and a few generic reads of the outbox tables.
//!
//! PostgreSQL: `OUTBOX_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test gets its own schema, dropped when the test ends. When the server cannot be
//! reached the PostgreSQL tests print a notice and pass, unless `OUTBOX_REQUIRE_POSTGRES`
//! is set (as CI does), in which case they fail.
//!
//! MySQL / MariaDB (feature `mysql`): `OUTBOX_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). Each test gets its own database, dropped when the
//! test ends; `OUTBOX_REQUIRE_MYSQL` makes an unreachable server a failure, as for
//! PostgreSQL.
//!
//! Every connection and pooled connection these helpers hand out has the runtime guard
//! installed ([`install_guard`]): a write of an outbox table outside the library, or of a
//! replicated model's table outside an outbox context, panics the test. A test that means
//! to write one (a corrupt row, a fixture) says so with `diesel_outbox::guard::allow`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, R2D2Connection};
use diesel_outbox::guard::{Guard, Protected};
use diesel_outbox::row::{CellOutboxRecord, ControlOutboxRecord};
use diesel_outbox::OutboxConnection;

pub mod asynchronous;
pub mod backfill;
/// The tables of this suite's replicated models (every `#[derive(ReplicatedCell)]` and
/// `#[derive(ReplicatedControl)]` of `tests/`, whose models live in the test files). The
/// runtime protects the library's own tables besides.
pub const MODEL_TABLES: &[&str] = &[
    "projects",
    "users",
    "teams",
    "notes",
    "notices",
    "organizations",
    "drafts",
    "tags",
    "settings",
    "tickets",
    "labels",
    "items",
];

/// What the helpers' guards protect: the library's tables and [`MODEL_TABLES`].
pub fn protected() -> Protected {
    MODEL_TABLES
        .iter()
        .fold(Protected::library(), |protected, table| {
            protected.table(table)
        })
}

/// Installs the guard the helpers' connections have (panicking on a violation).
pub fn install_guard<C: OutboxConnection>(conn: &mut C) {
    Guard::new(protected()).install(conn);
}

/// The guard on every connection a helper's pool opens.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardEveryConnection;

impl<C: OutboxConnection> CustomizeConnection<C, diesel::r2d2::Error> for GuardEveryConnection {
    fn on_acquire(&self, conn: &mut C) -> Result<(), diesel::r2d2::Error> {
        install_guard(conn);
        Ok(())
    }
}

/// SQLite's options, then the guard.
#[derive(Debug)]
struct SqliteAndGuard(diesel_outbox::sqlite::SqliteOptions);

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqliteAndGuard {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        self.0.on_acquire(conn)?;
        install_guard(conn);
        Ok(())
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A SQLite database file in the temp dir, removed when dropped.
pub struct SqliteDb {
    path: PathBuf,
}

impl SqliteDb {
    /// A fresh, migrated database.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("diesel-outbox-{}.db", unique_suffix()));
        let db = SqliteDb { path };
        let mut conn = db.connect();
        diesel_outbox::run_migrations(&mut conn).expect("migrations run on SQLite");
        db
    }

    /// The database's URL (a file path).
    pub fn url(&self) -> String {
        self.path.display().to_string()
    }

    /// A new connection in WAL mode, waiting up to 10 s for a busy database, guarded.
    pub fn connect(&self) -> SqliteConnection {
        let mut conn = sqlite_options()
            .establish(&self.url())
            .expect("SQLite opens");
        install_guard(&mut conn);
        conn
    }
}

/// WAL (readers never block the writer), a 10 s busy wait, and no fsync per commit (a
/// test database need not survive a power cut).
fn sqlite_options() -> diesel_outbox::sqlite::SqliteOptions {
    diesel_outbox::sqlite::SqliteOptions::new().busy_timeout(std::time::Duration::from_secs(10))
}

/// A test database that hands out connections and pools: tests that need several
/// connections or threads take the database instead of a connection
/// (see [`backend_db_tests!`]).
pub trait TestDb: Sync {
    /// The connection type.
    type Conn: TestConnection + R2D2Connection;
    /// A new connection.
    fn conn(&self) -> Self::Conn;
    /// A pool of up to `size` connections.
    fn pool(&self, size: u32) -> Pool<ConnectionManager<Self::Conn>>;
    /// The database's URL, as `DATABASE_URL` would hold it (e.g. for the CLI).
    fn database_url(&self) -> String;
}

impl TestDb for SqliteDb {
    type Conn = SqliteConnection;

    fn conn(&self) -> SqliteConnection {
        self.connect()
    }

    fn pool(&self, size: u32) -> Pool<ConnectionManager<SqliteConnection>> {
        Pool::builder()
            .max_size(size)
            .connection_customizer(Box::new(SqliteAndGuard(sqlite_options())))
            .build(ConnectionManager::new(self.url()))
            .expect("SQLite pool")
    }

    fn database_url(&self) -> String {
        self.url()
    }
}

impl Default for SqliteDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A PostgreSQL schema of its own, dropped when dropped.
#[cfg(feature = "postgres")]
pub struct PgSchema {
    base_url: String,
    schema: String,
}

#[cfg(feature = "postgres")]
impl PgSchema {
    /// The server's URL from `OUTBOX_POSTGRES_URL`, or the local default.
    pub fn base_url() -> String {
        std::env::var("OUTBOX_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A fresh, migrated schema; `None` (after a notice) when the server is unreachable
    /// and `OUTBOX_REQUIRE_POSTGRES` is not set.
    pub fn create() -> Option<Self> {
        let base_url = Self::base_url();
        let mut admin = match PgConnection::establish(&base_url) {
            Ok(conn) => conn,
            Err(error) if std::env::var_os("OUTBOX_REQUIRE_POSTGRES").is_none() => {
                eprintln!("skipping a PostgreSQL test: cannot connect to {base_url}: {error}");
                return None;
            }
            Err(error) => panic!(
                "OUTBOX_REQUIRE_POSTGRES is set but PostgreSQL at {base_url} is unreachable: {error}"
            ),
        };
        let schema = format!("outbox_test_{}", unique_suffix());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create a test schema");
        let db = PgSchema { base_url, schema };
        let mut conn = db.connect();
        diesel_outbox::run_migrations(&mut conn).expect("migrations run on PostgreSQL");
        Some(db)
    }

    /// A URL whose connections use this schema.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base_url, self.schema
        )
    }

    /// A new connection to this schema, guarded.
    pub fn connect(&self) -> PgConnection {
        let mut conn = PgConnection::establish(&self.url()).expect("PostgreSQL connects");
        install_guard(&mut conn);
        conn
    }
}

#[cfg(feature = "postgres")]
impl TestDb for PgSchema {
    type Conn = PgConnection;

    fn conn(&self) -> PgConnection {
        self.connect()
    }

    fn pool(&self, size: u32) -> Pool<ConnectionManager<PgConnection>> {
        Pool::builder()
            .max_size(size)
            .connection_customizer(Box::new(GuardEveryConnection))
            .build(ConnectionManager::new(self.url()))
            .expect("PostgreSQL pool")
    }

    fn database_url(&self) -> String {
        self.url()
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.base_url) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

/// A MySQL / MariaDB database of its own, dropped when dropped.
#[cfg(feature = "mysql")]
pub struct MysqlDb {
    base_url: String,
    database: String,
}

#[cfg(feature = "mysql")]
impl MysqlDb {
    /// The server's URL from `OUTBOX_MYSQL_URL`, or the local default.
    pub fn base_url() -> String {
        std::env::var("OUTBOX_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
    }

    /// A fresh, migrated database; `None` (after a notice) when the server is unreachable
    /// and `OUTBOX_REQUIRE_MYSQL` is not set.
    pub fn create() -> Option<Self> {
        let base_url = Self::base_url();
        let mut admin = match MysqlConnection::establish(&base_url) {
            Ok(conn) => conn,
            Err(error) if std::env::var_os("OUTBOX_REQUIRE_MYSQL").is_none() => {
                eprintln!("skipping a MySQL test: cannot connect to {base_url}: {error}");
                return None;
            }
            Err(error) => panic!(
                "OUTBOX_REQUIRE_MYSQL is set but MySQL at {base_url} is unreachable: {error}"
            ),
        };
        let database = format!("outbox_test_{}", unique_suffix());
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            ))
            .expect("create a test database");
        let db = MysqlDb { base_url, database };
        let mut conn = db.connect();
        diesel_outbox::run_migrations(&mut conn).expect("migrations run on MySQL");
        Some(db)
    }

    /// A URL whose connections use this database.
    pub fn url(&self) -> String {
        with_database(&self.base_url, &self.database)
    }

    /// A new connection to this database, guarded.
    pub fn connect(&self) -> MysqlConnection {
        let mut conn = MysqlConnection::establish(&self.url()).expect("MySQL connects");
        install_guard(&mut conn);
        conn
    }
}

/// `url` (`mysql://user@host:port/db?options`) with its database replaced.
#[cfg(feature = "mysql")]
pub fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let authority = head.find("://").map_or(0, |at| at + 3);
    let host_end = head[authority..]
        .find('/')
        .map_or(head.len(), |at| authority + at);
    format!("{}/{database}{query}", &head[..host_end])
}

#[cfg(feature = "mysql")]
impl TestDb for MysqlDb {
    type Conn = MysqlConnection;

    fn conn(&self) -> MysqlConnection {
        self.connect()
    }

    fn pool(&self, size: u32) -> Pool<ConnectionManager<MysqlConnection>> {
        Pool::builder()
            .max_size(size)
            .connection_customizer(Box::new(GuardEveryConnection))
            .build(ConnectionManager::new(self.url()))
            .expect("MySQL pool")
    }

    fn database_url(&self) -> String {
        self.url()
    }
}

#[cfg(feature = "mysql")]
impl Drop for MysqlDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = MysqlConnection::establish(&self.base_url) {
            let _ = admin.batch_execute(&format!("DROP DATABASE {}", self.database));
        }
    }
}

/// Reads of the outbox tables, the same on every backend.
pub trait TestConnection: OutboxConnection + SimpleConnection {
    /// Every `cell_outboxes` row in id order.
    fn cell_rows(&mut self) -> Vec<CellOutboxRecord>;
    /// Every `control_outboxes` row in id order.
    fn control_rows(&mut self) -> Vec<ControlOutboxRecord>;
    /// `SELECT COUNT(*) FROM table`.
    fn count(&mut self, table: &str) -> i64;
    /// The `BIGINT` column `n` of the one row `sql` returns.
    fn scalar(&mut self, sql: &str) -> i64;
    /// The SQL dialect, for the few statements tests write by hand.
    fn dialect(&self) -> Dialect;
}

/// The backend-specific pieces of the SQL tests write by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL / MariaDB.
    Mysql,
}

impl Dialect {
    /// An auto-incrementing `BIGINT` primary key column's type.
    pub fn serial_primary_key(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
            Dialect::Mysql => "BIGINT AUTO_INCREMENT PRIMARY KEY",
        }
    }

    /// What follows `INSERT ... VALUES (...)` to update `columns` of the row whose
    /// primary key `key` exists.
    pub fn upsert(self, key: &str, columns: &[&str]) -> String {
        match self {
            Dialect::Mysql => {
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = VALUES({c})"))
                    .collect();
                format!("ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
            Dialect::Sqlite | Dialect::Postgres => {
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                format!("ON CONFLICT ({key}) DO UPDATE SET {}", set.join(", "))
            }
        }
    }

    /// A text column type for values of several MiB (MySQL's `TEXT` holds 64 KiB).
    pub fn long_text(self) -> &'static str {
        match self {
            Dialect::Mysql => "LONGTEXT",
            Dialect::Sqlite | Dialect::Postgres => "TEXT",
        }
    }

    /// `CAST(expr AS <a 64-bit integer>)`.
    pub fn cast_bigint(self, expr: &str) -> String {
        match self {
            Dialect::Mysql => format!("CAST({expr} AS SIGNED)"),
            Dialect::Sqlite | Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

macro_rules! impl_test_connection {
    ($conn:ty, $dialect:expr) => {
        impl TestConnection for $conn {
            fn dialect(&self) -> Dialect {
                $dialect
            }

            fn cell_rows(&mut self) -> Vec<CellOutboxRecord> {
                diesel_outbox::testing::cell_records(self).expect("read cell_outboxes")
            }

            fn control_rows(&mut self) -> Vec<ControlOutboxRecord> {
                diesel_outbox::testing::control_records(self).expect("read control_outboxes")
            }

            fn count(&mut self, table: &str) -> i64 {
                diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                    .get_result::<Count>(self)
                    .expect("count rows")
                    .n
            }

            fn scalar(&mut self, sql: &str) -> i64 {
                diesel::sql_query(sql)
                    .get_result::<Count>(self)
                    .expect("scalar query")
                    .n
            }
        }
    };
}

impl_test_connection!(SqliteConnection, Dialect::Sqlite);
#[cfg(feature = "postgres")]
impl_test_connection!(PgConnection, Dialect::Postgres);
#[cfg(feature = "mysql")]
impl_test_connection!(MysqlConnection, Dialect::Mysql);

/// The SQL of every statement a connection runs, recorded through diesel's
/// instrumentation.
#[derive(Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<String>>>);

impl StatementLog {
    /// Starts recording `conn`'s statements (keeping its guard).
    pub fn attach<C: Connection>(conn: &mut C) -> Self {
        let log = StatementLog::default();
        Guard::instrument(conn, log.clone());
        log
    }

    /// The statements containing every one of `needles`.
    pub fn matching(&self, needles: &[&str]) -> Vec<String> {
        self.0
            .lock()
            .map(|log| {
                log.iter()
                    .filter(|sql| needles.iter().all(|needle| sql.contains(needle)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Instrumentation for StatementLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            if let Ok(mut log) = self.0.lock() {
                log.push(query.to_string());
            }
        }
    }
}

/// Declares one `#[test]` per backend for each generic test function
/// `fn name<C: TestConnection>(conn: &mut C)` (or `(db: &Db)` forms, see below).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let db = $crate::SqliteDb::new();
                    super::$name(&mut db.connect());
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::PgSchema::create() else { return };
                    super::$name(&mut db.connect());
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::MysqlDb::create() else { return };
                    super::$name(&mut db.connect());
                }
            )*
        }
    };
}

/// Like [`backend_tests!`], for generic test functions that take the database,
/// `fn name<D: TestDb>(db: &D)`, to open several connections or a pool.
#[macro_export]
macro_rules! backend_db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_db {
            $(
                #[test]
                fn $name() {
                    let db = $crate::SqliteDb::new();
                    super::$name(&db);
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres_db {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::PgSchema::create() else { return };
                    super::$name(&db);
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql_db {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::MysqlDb::create() else { return };
                    super::$name(&db);
                }
            )*
        }
    };
}

/// Declares one `#[test]` per enabled backend for a function
/// `fn name<D: TestDb>(first: &D, second: &D)` that needs two databases of one backend
/// (e.g. a cell's and control's).
#[macro_export]
macro_rules! two_db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_two {
            $(
                #[test]
                fn $name() {
                    let (first, second) = ($crate::SqliteDb::new(), $crate::SqliteDb::new());
                    super::$name(&first, &second);
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres_two {
            $(
                #[test]
                fn $name() {
                    let Some(first) = $crate::PgSchema::create() else { return };
                    let Some(second) = $crate::PgSchema::create() else { return };
                    super::$name(&first, &second);
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql_two {
            $(
                #[test]
                fn $name() {
                    let Some(first) = $crate::MysqlDb::create() else { return };
                    let Some(second) = $crate::MysqlDb::create() else { return };
                    super::$name(&first, &second);
                }
            )*
        }
    };
}

/// Declares one `#[test]` per enabled backend for a function
/// `fn name<D: TestDb>(first: &D, second: &D, third: &D)` that needs three databases of
/// one backend (e.g. control's and two cells').
#[macro_export]
macro_rules! three_db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_three {
            $(
                #[test]
                fn $name() {
                    let dbs = [$crate::SqliteDb::new(), $crate::SqliteDb::new(), $crate::SqliteDb::new()];
                    super::$name(&dbs[0], &dbs[1], &dbs[2]);
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres_three {
            $(
                #[test]
                fn $name() {
                    let (Some(a), Some(b), Some(c)) = ($crate::PgSchema::create(), $crate::PgSchema::create(), $crate::PgSchema::create()) else { return };
                    super::$name(&a, &b, &c);
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql_three {
            $(
                #[test]
                fn $name() {
                    let (Some(a), Some(b), Some(c)) = ($crate::MysqlDb::create(), $crate::MysqlDb::create(), $crate::MysqlDb::create()) else { return };
                    super::$name(&a, &b, &c);
                }
            )*
        }
    };
}

/// Declares one `#[test]` on PostgreSQL only, for a function `fn name<D: TestDb>(db: &D)`:
/// points that need real row locks.
#[macro_export]
macro_rules! postgres_db_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "postgres")]
        mod postgres_only {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::PgSchema::create() else { return };
                    super::$name(&db);
                }
            )*
        }
    };
}

/// Declares one `#[test]` per server backend (PostgreSQL, MySQL) for a function
/// `fn name<D: TestDb>(db: &D)`: points that need real locks between sessions.
#[macro_export]
macro_rules! locking_db_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "postgres")]
        mod postgres_locking {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::PgSchema::create() else { return };
                    super::$name(&db);
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql_locking {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::MysqlDb::create() else { return };
                    super::$name(&db);
                }
            )*
        }
    };
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub mod readme;

/// README's ```rust blocks, compiled (and, where they need no server, run) as doctests:
/// `cargo test -p diesel-outbox-tests --doc`. They use PostgreSQL's and SQLite's
/// connection types, so they are checked when both backends are on (the default).
#[cfg(all(doctest, feature = "sqlite", feature = "postgres"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The guide's (`docs/src/*.md`) ```rust blocks, compiled and run as README's are.
#[cfg(all(doctest, feature = "sqlite", feature = "postgres"))]
pub mod guide_doctests {
    #[doc = include_str!("../../docs/src/introduction.md")]
    pub struct Introduction;
    #[doc = include_str!("../../docs/src/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../../docs/src/airtight.md")]
    pub struct Airtight;
    #[doc = include_str!("../../docs/src/async.md")]
    pub struct Async;
    #[doc = include_str!("../../docs/src/draining.md")]
    pub struct Draining;
    #[doc = include_str!("../../docs/src/operating.md")]
    pub struct Operating;
    #[doc = include_str!("../../docs/src/backfill.md")]
    pub struct Backfill;
    #[doc = include_str!("../../docs/src/hybrid-cloud.md")]
    pub struct HybridCloud;
    #[doc = include_str!("../../docs/src/relay.md")]
    pub struct Relay;
    #[doc = include_str!("../../docs/src/backends.md")]
    pub struct Backends;
    #[doc = include_str!("../../docs/src/performance.md")]
    pub struct Performance;
    #[doc = include_str!("../../docs/src/reliability.md")]
    pub struct Reliability;
    #[doc = include_str!("../../docs/src/layout.md")]
    pub struct Layout;
}
