//! The SQLite settings the outbox relies on: WAL, so readers never block the writer, and
//! a busy timeout, so a writer waits for the lock instead of failing at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryResult, RunQueryDsl};

use super::sql::BigIntValue;
use crate::key::error::Result;

/// How to open or prepare a SQLite connection for the outbox: WAL, a busy timeout (5 s by
/// default) and `synchronous = NORMAL` (durable at checkpoints; the WAL default).
///
/// With a busy timeout of zero, SQLite answers "database is locked" at once whenever a
/// drain or another writer holds the write lock; the outbox warns once per process when it
/// meets such a connection.
///
/// ```
/// use diesel_outbox::sqlite::SqliteOptions;
/// let mut conn = SqliteOptions::new().establish(":memory:")?;
/// diesel_outbox::run_migrations(&mut conn)?;
/// # Ok::<(), diesel_outbox::Error>(())
/// ```
///
/// With the `pool` feature it customizes every connection of an r2d2 pool:
///
/// ```
/// # #[cfg(feature = "pool")] {
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use diesel::SqliteConnection;
/// use diesel_outbox::sqlite::SqliteOptions;
///
/// let pool = Pool::builder()
///     .max_size(2)
///     .connection_customizer(Box::new(SqliteOptions::new()))
///     .build(ConnectionManager::<SqliteConnection>::new(":memory:"))
///     .expect("a pool");
/// # let _ = pool; }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    busy_timeout: Duration,
    wal: bool,
    synchronous_normal: bool,
}

impl SqliteOptions {
    /// WAL, a 5 s busy timeout, `synchronous = NORMAL`.
    pub fn new() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            wal: true,
            synchronous_normal: true,
        }
    }

    /// How long a connection waits for another's lock before "database is locked".
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Whether to switch the database to WAL (default `true`; it is a property of the
    /// file, kept across connections).
    pub fn wal(mut self, wal: bool) -> Self {
        self.wal = wal;
        self
    }

    /// Whether to set `synchronous = NORMAL` (default `true`); `false` keeps SQLite's
    /// default, `FULL`, which syncs every commit.
    pub fn synchronous_normal(mut self, normal: bool) -> Self {
        self.synchronous_normal = normal;
        self
    }

    /// Applies the settings to `conn`.
    pub fn apply(&self, conn: &mut SqliteConnection) -> Result<()> {
        let millis = u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut pragmas = format!("PRAGMA busy_timeout = {millis};");
        if self.wal {
            pragmas.push_str(" PRAGMA journal_mode = WAL;");
        }
        if self.synchronous_normal {
            pragmas.push_str(" PRAGMA synchronous = NORMAL;");
        }
        Ok(conn.batch_execute(&pragmas)?)
    }

    /// Opens `url` with the settings applied.
    pub fn establish(&self, url: &str) -> Result<SqliteConnection> {
        let mut conn = SqliteConnection::establish(url)?;
        self.apply(&mut conn)?;
        Ok(conn)
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "pool")]
impl diesel::r2d2::CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqliteOptions {
    fn on_acquire(
        &self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(|error| match error {
            crate::key::error::Error::Database(error) => diesel::r2d2::Error::QueryError(error),
            other => diesel::r2d2::Error::QueryError(diesel::result::Error::QueryBuilderError(
                other.to_string().into(),
            )),
        })
    }
}

/// Whether the first `outbox_context` of the process has checked its connection.
static CONTEXT_CHECKED: AtomicBool = AtomicBool::new(false);

/// Checks the first connection an `outbox_context` of this process runs on (one statement,
/// once: the write path pays nothing after it). See [`warn_without_busy_timeout`]. A
/// check that cannot run is logged: it never fails the write.
pub(crate) fn check_first_context(conn: &mut SqliteConnection) {
    if CONTEXT_CHECKED.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Err(error) = warn_without_busy_timeout(conn) {
        tracing::debug!(%error, "could not read the SQLite busy timeout");
    }
}

/// Warns when `conn` has no busy timeout: under a concurrent drain its writes would fail
/// with "database is locked".
pub(crate) fn warn_without_busy_timeout(conn: &mut SqliteConnection) -> QueryResult<()> {
    let timeout = diesel::sql_query("SELECT timeout AS value FROM pragma_busy_timeout")
        .get_result::<BigIntValue>(conn)?
        .value;
    if timeout == 0 {
        tracing::warn!(
            "a SQLite connection has no busy timeout: its outbox writes fail with \
             \"database is locked\" whenever a drain holds the write lock; open connections \
             with diesel_outbox::sqlite::SqliteOptions (or PRAGMA busy_timeout)"
        );
    }
    Ok(())
}
