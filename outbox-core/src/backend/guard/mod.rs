//! The runtime guard: what the compiler cannot refuse, reported when it runs.
//!
//! `insert_into(users::table).values(users::id.eq(1))`, `sql_query("DELETE FROM users")`
//! or an application's own `table!` for `cell_outboxes` compile whatever the derives do.
//! A [`Guard`] is a diesel [`Instrumentation`]: installed on a connection, it reads the
//! SQL of every statement the connection starts (`statement`) and reports each write of
//! a protected table (`protected`) that breaks the outbox's rules:
//!
//! * a replicated model's table written outside an outbox context;
//! * one of the outbox's own tables written by anything but the library's statements.
//!
//! The library tells the guard which statements are its own, and when a context is open,
//! through a small state the guard keeps (a [`Scope`]): it lives in the connection's
//! instrumentation, so it follows the connection (across threads too, and across the
//! await points of an async context that holds the connection), and reading it costs a
//! type check of the connection's instrumentation. Without a guard installed, that check
//! is all the library pays.

mod protected;
mod statement;

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use diesel::connection::{DebugQuery, Instrumentation, InstrumentationEvent};
use diesel::Connection;

use super::OutboxConnection;
pub use protected::{Protected, ProtectedModels, Protection};
use statement::Dialect;

/// The longest statement text a [`Violation`] keeps.
const STATEMENT_CHARS: usize = 1000;

/// What a [`Guard`] does with a write that breaks the outbox's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnViolation {
    /// Panic before the statement runs: the write does not happen, and a test fails at
    /// the line that made it. The default in builds with debug assertions (tests, debug
    /// builds).
    Panic,
    /// Log it with `tracing` at error level and let the statement run. The default in
    /// release builds.
    Log,
    /// Keep it for [`Guard::take_violations`] and let the statement run: for tests that
    /// check what the guard reports.
    Record,
}

impl Default for OnViolation {
    fn default() -> Self {
        if cfg!(debug_assertions) {
            OnViolation::Panic
        } else {
            OnViolation::Log
        }
    }
}

/// A write a [`Guard`] reported.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The table written, as the statement names it (without schema or quotes).
    pub table: String,
    /// What the table is, and so which rule the write broke.
    pub protection: Protection,
    /// The statement's SQL (the first 1,000 characters), without its bind values.
    pub statement: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Violation {
            table, statement, ..
        } = self;
        match self.protection {
            Protection::Model => write!(
                f,
                "diesel-outbox guard: `{statement}` writes `{table}`, a replicated model's \
                 table, outside an outbox context, so no outbox row records the change. Write \
                 the model with its methods inside `outbox_context` (`model.save(ctx)`, \
                 `Model::delete_by_id(ctx, id)`), or run a migration or admin script in \
                 `diesel_outbox::guard::allow(conn, |conn| ..)`"
            ),
            Protection::Library => write!(
                f,
                "diesel-outbox guard: `{statement}` writes `{table}`, one of the outbox's own \
                 tables, outside the library's statements. Outbox rows are written with \
                 `OutboxContext::write` and deleted by the drain once delivered (or by an \
                 operator through `Outbox`'s methods); run a migration or admin script in \
                 `diesel_outbox::guard::allow(conn, |conn| ..)`"
            ),
        }
    }
}

impl std::error::Error for Violation {}

/// Whose statements a connection is running now, as the library tells its guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    /// The library's own statements: nothing is checked.
    library: bool,
    /// Outbox contexts open on the connection: replicated models' tables may be written.
    contexts: u32,
    /// [`allow`] calls open: nothing is checked.
    allowed: u32,
}

impl Scope {
    /// The library's own statements.
    pub(crate) fn library(self) -> Self {
        Scope {
            library: true,
            ..self
        }
    }

    /// An outbox context's closure: application code, inside a context.
    pub(crate) fn in_context(self) -> Self {
        Scope {
            library: false,
            contexts: self.contexts.saturating_add(1),
            ..self
        }
    }

    /// Application code called by the library (a receiver): checked as any other.
    pub(crate) fn application(self) -> Self {
        Scope {
            library: false,
            ..self
        }
    }

    fn allowed(self) -> Self {
        Scope {
            allowed: self.allowed.saturating_add(1),
            ..self
        }
    }

    fn checks(self) -> bool {
        !self.library && self.allowed == 0
    }
}

/// A diesel [`Instrumentation`] that reports every write of a protected table breaking
/// the outbox's rules: a replicated model's table written outside an outbox context, or
/// one of the outbox's own tables written by anything but the library.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { projects (id) { id -> BigInt, organization_id -> BigInt } }
/// # #[derive(diesel::Queryable, diesel::Selectable, diesel_outbox::ReplicatedCell)]
/// # #[diesel(table_name = projects)]
/// # #[outbox(category = Category::ProjectUpdate)]
/// # struct Project { id: i64, organization_id: i64 }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel::connection::SimpleConnection;
/// use diesel::{Connection, SqliteConnection};
/// use diesel_outbox::guard::{self, Guard, OnViolation, Protected};
/// use diesel_outbox::{outbox_context, run_migrations};
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// Guard::new(Protected::models::<Project>())
///     .on_violation(OnViolation::Record)
///     .install(&mut conn);
/// run_migrations(&mut conn)?;
/// // A migration or an admin script says so.
/// guard::allow(&mut conn, |conn| {
///     conn.batch_execute("CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT)")
/// })?;
///
/// outbox_context(&mut conn, |ctx| Project { id: 1, organization_id: 7 }.save(ctx))?;
/// assert!(Guard::take_violations(&mut conn).is_empty());
///
/// // No outbox row records this one.
/// conn.batch_execute("UPDATE projects SET organization_id = 8")?;
/// let reported = Guard::take_violations(&mut conn);
/// assert_eq!(reported[0].table, "projects");
/// # Ok(()) }
/// ```
///
/// What it reads: every statement's SQL as diesel hands it to the instrumentation
/// (`StartQuery`), whether built by diesel's DSL, `sql_query` or `batch_execute`; the
/// writes it finds are `INSERT`, `REPLACE`, `UPDATE`, `DELETE`, `TRUNCATE`, `MERGE` and
/// the upserts, wherever they stand (after a CTE, inside one, after another statement),
/// with names bare, quoted or schema-qualified. DDL (`DROP`, `ALTER`) is not a write to
/// it. The library's own statements, and a replicated model's generated writes, are not
/// checked at all; they cost the guard nothing.
///
/// It replaces the connection's instrumentation: pass yours with
/// [`with_instrumentation`](Self::with_instrumentation), or add it later with
/// [`Guard::instrument`], and the guard forwards every event to it. Without either, it
/// keeps diesel's default instrumentation (`set_default_instrumentation`), if one is set.
///
/// Diesel's instrumentation cannot fail a statement, so a guard panics (the write does
/// not happen), logs, or records ([`OnViolation`]): panicking by default in builds with
/// debug assertions, logging in release builds.
pub struct Guard {
    protected: Protected,
    on_violation: OnViolation,
    dialect: Dialect,
    inner: Option<Box<dyn Instrumentation>>,
    scope: Scope,
    violations: Vec<Violation>,
    /// Statements whose SQL it has read.
    read: u64,
    /// Scratch space, kept between statements.
    sql: String,
    tokens: Vec<statement::Token>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("protected", &self.protected)
            .field("on_violation", &self.on_violation)
            .field("scope", &self.scope)
            .field("violations", &self.violations.len())
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard of `protected`, reporting as [`OnViolation::default`] says.
    pub fn new(protected: Protected) -> Self {
        Guard {
            protected,
            on_violation: OnViolation::default(),
            dialect: Dialect::Sqlite,
            inner: None,
            scope: Scope::default(),
            violations: Vec::new(),
            read: 0,
            sql: String::new(),
            tokens: Vec::new(),
        }
    }

    /// What the guard does with a violation.
    pub fn on_violation(mut self, on_violation: OnViolation) -> Self {
        self.on_violation = on_violation;
        self
    }

    /// An instrumentation of yours, which the guard calls with every event.
    pub fn with_instrumentation(mut self, instrumentation: impl Instrumentation) -> Self {
        self.inner = Some(Box::new(instrumentation));
        self
    }

    /// Installs the guard on `conn`, in place of its instrumentation.
    pub fn install<C: OutboxConnection>(mut self, conn: &mut C) {
        self.dialect = match C::BACKEND_NAME {
            "PostgreSQL" => Dialect::Postgres,
            "MySQL" => Dialect::Mysql,
            _ => Dialect::Sqlite,
        };
        if self.inner.is_none() {
            self.inner = diesel::connection::get_default_instrumentation();
        }
        conn.set_instrumentation(self);
    }

    /// Installs the guard on a diesel-async connection (feature `async`), in place of its
    /// instrumentation: the statements `outbox_context_async` and the derives' `*_async`
    /// writes send are the library's, the closure's are checked, as on a sync connection.
    /// (`SyncConnectionWrapper<SqliteConnection>` installs it on the connection it wraps.)
    #[cfg(feature = "async")]
    pub fn install_async<C: super::asynchronous::AsyncOutboxConnection>(mut self, conn: &mut C) {
        self.dialect = match C::BACKEND_NAME {
            "PostgreSQL" => Dialect::Postgres,
            "MySQL" => Dialect::Mysql,
            _ => Dialect::Sqlite,
        };
        if self.inner.is_none() {
            self.inner = diesel::connection::get_default_instrumentation();
        }
        conn.set_instrumentation(self);
    }

    /// [`take_violations`](Self::take_violations) on a diesel-async connection (feature
    /// `async`).
    #[cfg(feature = "async")]
    pub fn take_violations_async<C: diesel_async::AsyncConnection>(conn: &mut C) -> Vec<Violation> {
        conn.instrumentation()
            .downcast_mut::<Guard>()
            .map_or_else(Vec::new, |guard| std::mem::take(&mut guard.violations))
    }

    /// Whether a guard is installed on `conn`.
    pub fn is_installed<C: Connection>(conn: &mut C) -> bool {
        guard(conn).is_some()
    }

    /// Installs `instrumentation` on `conn`, keeping its guard if it has one (the guard
    /// then calls it with every event, in place of any it called before).
    pub fn instrument<C: Connection>(conn: &mut C, instrumentation: impl Instrumentation) {
        match guard(conn) {
            Some(guard) => guard.inner = Some(Box::new(instrumentation)),
            None => conn.set_instrumentation(instrumentation),
        }
    }

    /// The violations `conn`'s guard recorded ([`OnViolation::Record`]) since the last
    /// call, oldest first; none without a guard.
    pub fn take_violations<C: Connection>(conn: &mut C) -> Vec<Violation> {
        guard(conn).map_or_else(Vec::new, |guard| std::mem::take(&mut guard.violations))
    }

    /// How many statements `conn`'s guard has read (the application's: the library's own
    /// are never read); `None` without a guard. What the guard costs is in these.
    pub fn statements_read<C: Connection>(conn: &mut C) -> Option<u64> {
        guard(conn).map(|guard| guard.read)
    }

    /// Reads `query`'s SQL and reports the protected tables it writes against the rules.
    fn check(&mut self, query: &dyn DebugQuery) {
        self.read += 1;
        self.sql.clear();
        // Stops at diesel's " -- binds: " (an error ends the formatting): the bind values
        // are not SQL, and formatting them would cost more than the whole check.
        let _ = fmt::write(&mut SqlText(&mut self.sql), format_args!("{query}"));
        let mut written = Vec::new();
        statement::written_tables(&self.sql, self.dialect, &mut self.tokens, &mut written);
        let mut found = Vec::new();
        for table in written {
            let Some(protection) = self.protected.protection(table) else {
                continue;
            };
            if protection == Protection::Library || self.scope.contexts == 0 {
                found.push(Violation {
                    table: table.to_owned(),
                    protection,
                    statement: self.sql.trim().chars().take(STATEMENT_CHARS).collect(),
                });
            }
        }
        for violation in found {
            self.report(violation);
        }
    }

    fn report(&mut self, violation: Violation) {
        match self.on_violation {
            OnViolation::Panic => panic!("{violation}"),
            OnViolation::Log => tracing::error!(
                table = %violation.table,
                statement = %violation.statement,
                "{violation}"
            ),
            OnViolation::Record => self.violations.push(violation),
        }
    }
}

impl Instrumentation for Guard {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let query = match &event {
            InstrumentationEvent::StartQuery { query, .. } => Some(*query),
            _ => None,
        };
        if let Some(inner) = &mut self.inner {
            inner.on_connection_event(event);
        }
        if let Some(query) = query {
            if self.scope.checks() {
                self.check(query);
            }
        }
    }
}

/// Collects a statement's SQL and ends the formatting at its bind values.
struct SqlText<'s>(&'s mut String);

impl fmt::Write for SqlText<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if text == " -- binds: " {
            return Err(fmt::Error);
        }
        self.0.push_str(text);
        Ok(())
    }
}

fn guard<C: Connection>(conn: &mut C) -> Option<&mut Guard> {
    conn.instrumentation().downcast_mut::<Guard>()
}

/// [`enter`] on a connection's instrumentation, for connections that are not diesel's
/// `Connection` (diesel-async's: their `instrumentation()` is the same diesel type, so one
/// guard covers the sync and the async write path).
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) fn enter_instrumentation(
    instrumentation: &mut dyn Instrumentation,
    change: fn(Scope) -> Scope,
) -> Option<Scope> {
    let guard = instrumentation.downcast_mut::<Guard>()?;
    let saved = guard.scope;
    guard.scope = change(saved);
    Some(saved)
}

/// [`leave`] on a connection's instrumentation.
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) fn leave_instrumentation(
    instrumentation: &mut dyn Instrumentation,
    saved: Option<Scope>,
) {
    let Some(saved) = saved else {
        return;
    };
    if let Some(guard) = instrumentation.downcast_mut::<Guard>() {
        guard.scope = saved;
    }
}

/// Runs `f` with `conn`'s guard, if it has one, reporting nothing: for migrations and
/// admin scripts that must write protected tables. The escape hatch is meant to be seen
/// in code: wrap the statements that need it, nothing more.
///
/// ```
/// use diesel::connection::SimpleConnection;
/// use diesel::{Connection, SqliteConnection};
/// use diesel_outbox::guard::{self, Guard, Protected};
///
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// Guard::new(Protected::library()).install(&mut conn);
/// diesel_outbox::run_migrations(&mut conn)?;
/// // Repairing a row by hand, on purpose.
/// guard::allow(&mut conn, |conn| {
///     conn.batch_execute("DELETE FROM cell_outbox_shards WHERE shard_identifier = 42")
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn allow<C: Connection, T>(conn: &mut C, f: impl FnOnce(&mut C) -> T) -> T {
    within(conn, Scope::allowed, f)
}

/// The scope of `conn`'s guard, changed by `change`, for the length of `f` (restored if
/// `f` panics too). Without a guard, just `f`.
pub(crate) fn within<C: Connection, T>(
    conn: &mut C,
    change: fn(Scope) -> Scope,
    f: impl FnOnce(&mut C) -> T,
) -> T {
    let Some(saved) = enter(conn, change) else {
        return f(conn);
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&mut *conn)));
    leave(conn, Some(saved));
    outcome.unwrap_or_else(|panic| panic::resume_unwind(panic))
}

/// Runs `f` as the library's own statements.
pub(crate) fn as_library<C: Connection, T>(conn: &mut C, f: impl FnOnce(&mut C) -> T) -> T {
    within(conn, Scope::library, f)
}

/// Changes the scope of `conn`'s guard; the scope before, to give to [`leave`]. For
/// callers that cannot hand the connection to a closure (an outbox context keeps it).
pub(crate) fn enter<C: Connection>(conn: &mut C, change: fn(Scope) -> Scope) -> Option<Scope> {
    let guard = guard(conn)?;
    let saved = guard.scope;
    guard.scope = change(saved);
    Some(saved)
}

/// Puts back the scope [`enter`] returned.
pub(crate) fn leave<C: Connection>(conn: &mut C, saved: Option<Scope>) {
    let Some(saved) = saved else {
        return;
    };
    if let Some(guard) = guard(conn) {
        guard.scope = saved;
    }
}
