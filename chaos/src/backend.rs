//! The two backends behind one trait, and the database a scenario runs in (a SQLite file,
//! or a PostgreSQL schema of its own), removed when the scenario ends.

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::sql_types::BigInt;
use diesel::{
    Connection, PgConnection, QueryResult, QueryableByName, RunQueryDsl, SqliteConnection,
};
use diesel_outbox::sqlite::SqliteOptions;
use diesel_outbox::OutboxConnection;

use crate::CResult;

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a file in the run's directory.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The name used on the command line of child processes.
    pub fn arg(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The name printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The backend named `arg`.
    pub fn parse(arg: &str) -> CResult<Self> {
        match arg {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(format!("unknown backend {other:?} (sqlite or postgres)").into()),
        }
    }
}

/// A connection the scenarios can use on either backend.
pub trait ChaosConn:
    OutboxConnection + R2D2Connection + SimpleConnection + Send + Sized + 'static
{
    /// Which backend this is.
    const BACKEND: Backend;
    /// The column type of an id that numbers itself.
    const SERIAL: &'static str;

    /// Opens `url` (SQLite: WAL and a 10 s busy timeout).
    fn open(url: &str) -> CResult<Self>;

    /// A pool of up to `size` connections that waits `timeout` for one.
    fn pool(url: &str, size: u32, timeout: Duration) -> CResult<Pool<ConnectionManager<Self>>>;

    /// The rows of `sql`, whose columns must be named `a`, `b`, `c`, `d` (BIGINT).
    fn quads(&mut self, sql: &str) -> QueryResult<Vec<[i64; 4]>>;

    /// The BIGINT column `v` of the one row `sql` returns.
    fn scalar(&mut self, sql: &str) -> QueryResult<i64>;
}

#[derive(QueryableByName)]
struct Quad {
    #[diesel(sql_type = BigInt)]
    a: i64,
    #[diesel(sql_type = BigInt)]
    b: i64,
    #[diesel(sql_type = BigInt)]
    c: i64,
    #[diesel(sql_type = BigInt)]
    d: i64,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

/// How long a SQLite connection waits for the write lock.
const SQLITE_BUSY: Duration = Duration::from_secs(10);

macro_rules! reads {
    () => {
        fn quads(&mut self, sql: &str) -> QueryResult<Vec<[i64; 4]>> {
            Ok(diesel::sql_query(sql)
                .load::<Quad>(self)?
                .into_iter()
                .map(|q| [q.a, q.b, q.c, q.d])
                .collect())
        }

        fn scalar(&mut self, sql: &str) -> QueryResult<i64> {
            Ok(diesel::sql_query(sql).get_result::<Value>(self)?.v)
        }
    };
}

impl ChaosConn for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;
    const SERIAL: &'static str = "INTEGER PRIMARY KEY AUTOINCREMENT";

    fn open(url: &str) -> CResult<Self> {
        Ok(SqliteOptions::new()
            .busy_timeout(SQLITE_BUSY)
            .establish(url)?)
    }

    fn pool(url: &str, size: u32, timeout: Duration) -> CResult<Pool<ConnectionManager<Self>>> {
        Ok(Pool::builder()
            .max_size(size)
            .connection_timeout(timeout)
            .connection_customizer(Box::new(SqliteOptions::new().busy_timeout(SQLITE_BUSY)))
            .build(ConnectionManager::new(url))?)
    }

    reads!();
}

impl ChaosConn for PgConnection {
    const BACKEND: Backend = Backend::Postgres;
    const SERIAL: &'static str = "BIGSERIAL PRIMARY KEY";

    fn open(url: &str) -> CResult<Self> {
        Ok(PgConnection::establish(url)?)
    }

    fn pool(url: &str, size: u32, timeout: Duration) -> CResult<Pool<ConnectionManager<Self>>> {
        Ok(Pool::builder()
            .max_size(size)
            .connection_timeout(timeout)
            .build(ConnectionManager::new(url))?)
    }

    reads!();
}

/// The database of one scenario run, removed when dropped (unless kept).
pub struct Target {
    /// Its URL, for this process and the children.
    pub url: String,
    cleanup: Cleanup,
    keep: bool,
}

enum Cleanup {
    File(PathBuf),
    Schema { admin_url: String, schema: String },
}

impl Target {
    /// A SQLite file `name.db` in `dir`.
    pub fn sqlite(dir: &std::path::Path, name: &str) -> Target {
        let path = dir.join(format!("{name}.db"));
        Target {
            url: path.display().to_string(),
            cleanup: Cleanup::File(path),
            keep: false,
        }
    }

    /// A fresh schema `chaos_NAME_PID` on the server at `admin_url`.
    pub fn postgres(admin_url: &str, name: &str) -> CResult<Target> {
        let schema = format!("outbox_chaos_{name}_{}", std::process::id());
        let mut admin = PgConnection::establish(admin_url)
            .map_err(|error| format!("PostgreSQL at {admin_url}: {error}"))?;
        admin.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))?;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        Ok(Target {
            url: format!("{admin_url}{separator}options=-csearch_path%3D{schema}"),
            cleanup: Cleanup::Schema {
                admin_url: admin_url.to_owned(),
                schema,
            },
            keep: false,
        })
    }
}

impl Target {
    /// Leaves the database in place, for a look at what went wrong.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                if let Ok(mut admin) = PgConnection::establish(admin_url) {
                    let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}
