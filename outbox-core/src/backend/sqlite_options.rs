//! The SQLite settings the outbox relies on: WAL, so readers never block the writer, and
//! a busy timeout, so a writer waits for the lock instead of failing at once.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryResult, RunQueryDsl};

use super::sql::{Prepared, TextValue};
use crate::key::error::Result;

/// How to open or prepare a SQLite connection for the outbox: WAL, a busy timeout (10 s by
/// default) and `synchronous = NORMAL` (durable at checkpoints; the WAL default).
///
/// With a busy timeout of zero, SQLite answers "database is locked" at once whenever a
/// drain or another writer holds the write lock. A connection the outbox is handed with no
/// busy timeout (a bare `SqliteConnection::establish`) gets 10 s and, if its database is
/// still in SQLite's default rollback journal, WAL, before its first write transaction;
/// these options say what you want instead.
///
/// ```
/// use diesel_outbox::sqlite::SqliteOptions;
/// let mut conn = SqliteOptions::new().establish(":memory:")?;
/// diesel_outbox::run_migrations(&mut conn)?;
/// # Ok::<(), diesel_outbox::Error>(())
/// ```
///
/// With the `pool` feature it customizes every connection of an r2d2 pool. Give a pool a
/// database *file*: with `":memory:"` each pooled connection opens a database of its own,
/// so a worker would drain an empty one.
///
/// ```no_run
/// # #[cfg(feature = "pool")] {
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use diesel::SqliteConnection;
/// use diesel_outbox::sqlite::SqliteOptions;
///
/// let pool = Pool::builder()
///     .max_size(2)
///     .connection_customizer(Box::new(SqliteOptions::new()))
///     .build(ConnectionManager::<SqliteConnection>::new("app.db"))
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
    /// WAL, a 10 s busy timeout, `synchronous = NORMAL`.
    pub fn new() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(10),
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

/// The busy timeout a connection gets when it has none: [`SqliteOptions::new`]'s.
const DEFAULT_BUSY_TIMEOUT_MS: u64 = 10_000;

/// Makes a connection the outbox was handed safe to share, before its first write
/// transaction (the outermost `outbox_context` or drain transaction; one cached statement,
/// a few microseconds).
///
/// A connection with no busy timeout (SQLite's default, so `SqliteConnection::establish`'s)
/// has not been set up by its owner: it gets [`SqliteOptions`]' 10 s, without which every
/// write that meets a drain or another writer fails at once with "database is locked";
/// and a database still in SQLite's default rollback journal (`delete`), where a reader
/// blocks the writer, is switched to WAL (a property of the file, kept for every later
/// connection). A connection that has a busy timeout is left exactly as its owner set it,
/// journal mode included: open it with [`SqliteOptions::new().wal(false)`](SqliteOptions::wal)
/// to keep a rollback journal.
pub(crate) fn prepare(conn: &mut SqliteConnection) -> QueryResult<()> {
    match busy_timeout(conn) {
        Ok(0) => {}
        Ok(_) => return Ok(()),
        // Locked at once: only a connection with no busy timeout does not wait.
        Err(error) if is_locked(&error) => {}
        Err(error) => return Err(error),
    }
    conn.batch_execute(&format!("PRAGMA busy_timeout = {DEFAULT_BUSY_TIMEOUT_MS}"))?;
    // The journal is best effort: a connection that cannot switch it (another holds a
    // lock SQLite will not wait for) still writes, only with readers blocking it.
    let mode = match diesel::sql_query("SELECT journal_mode AS value FROM pragma_journal_mode")
        .get_result::<TextValue>(conn)
    {
        Ok(mode) => mode.value,
        Err(error) => {
            tracing::warn!(%error, "could not read a SQLite connection's journal mode");
            return Ok(());
        }
    };
    if mode.eq_ignore_ascii_case("delete") {
        match conn.batch_execute("PRAGMA journal_mode = WAL") {
            Ok(()) => tracing::info!(
                "a SQLite connection with no busy timeout and a rollback journal: given a 10 s \
                 busy timeout, and its database switched to WAL (open connections with \
                 diesel_outbox::sqlite::SqliteOptions to choose otherwise)"
            ),
            Err(error) => tracing::warn!(
                %error,
                "could not switch a SQLite database to WAL: readers will block its writers; \
                 open connections with diesel_outbox::sqlite::SqliteOptions"
            ),
        }
    } else {
        tracing::debug!(
            journal_mode = %mode,
            "a SQLite connection with no busy timeout: given a 10 s busy timeout"
        );
    }
    Ok(())
}

/// Whether `error` is SQLite's "database is locked" (SQLITE_BUSY).
fn is_locked(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info) if info.message().contains("locked"))
}

/// The connection's busy timeout in milliseconds.
fn busy_timeout(conn: &mut SqliteConnection) -> QueryResult<i64> {
    // Cached: it runs before every outermost write transaction. The PRAGMA, not the
    // `pragma_busy_timeout` table: a SELECT loads the schema first, which a fresh
    // connection with no busy timeout may find locked (another connection checkpointing).
    Ok(Prepared(diesel::sql_query("PRAGMA busy_timeout"))
        .get_result::<BusyTimeout>(conn)?
        .timeout)
}

/// `PRAGMA busy_timeout`'s one column.
#[derive(diesel::QueryableByName)]
struct BusyTimeout {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    timeout: i64,
}
