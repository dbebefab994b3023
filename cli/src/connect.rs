//! The database of `DATABASE_URL`, read as diesel_cli reads it.

use std::path::Path;

use diesel::Connection;

use crate::failure::Failure;

/// A connection to one of the backends this build supports.
pub enum Database {
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    /// A MySQL or MariaDB database.
    #[cfg(feature = "mysql")]
    Mysql(diesel::MysqlConnection),
}

/// Which backend a URL names.
#[derive(Debug, PartialEq, Eq)]
enum Backend<'u> {
    Postgres(&'u str),
    Mysql(&'u str),
    Sqlite(&'u str),
}

fn backend(url: &str) -> Backend<'_> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres(url)
    } else if url.starts_with("mysql://") {
        Backend::Mysql(url)
    } else {
        Backend::Sqlite(url.strip_prefix("sqlite://").unwrap_or(url))
    }
}

/// Connects to `url`. A SQLite file must exist unless `create` is set (`migrate`), so that
/// a mistyped path is an error rather than a new empty database.
pub fn connect(url: &str, create: bool) -> Result<Database, Failure> {
    match backend(url) {
        Backend::Postgres(url) => postgres(url),
        Backend::Mysql(url) => mysql(url),
        Backend::Sqlite(path) => sqlite(path, create),
    }
}

#[cfg(feature = "postgres")]
fn postgres(url: &str) -> Result<Database, Failure> {
    diesel::PgConnection::establish(url)
        .map(Database::Postgres)
        .map_err(|error| Failure::error(format!("cannot connect to PostgreSQL: {error}")))
}

#[cfg(not(feature = "postgres"))]
fn postgres(_url: &str) -> Result<Database, Failure> {
    Err(Failure::usage(
        "this build of diesel-outbox has no PostgreSQL support (feature `postgres`)",
    ))
}

#[cfg(feature = "mysql")]
fn mysql(url: &str) -> Result<Database, Failure> {
    diesel::MysqlConnection::establish(url)
        .map(Database::Mysql)
        .map_err(|error| Failure::error(format!("cannot connect to MySQL: {error}")))
}

#[cfg(not(feature = "mysql"))]
fn mysql(_url: &str) -> Result<Database, Failure> {
    Err(Failure::usage(
        "this build of diesel-outbox has no MySQL support (feature `mysql`, which needs the \
         MySQL or MariaDB client library)",
    ))
}

#[cfg(feature = "sqlite")]
fn sqlite(path: &str, create: bool) -> Result<Database, Failure> {
    use diesel::connection::SimpleConnection;
    let is_file = path != ":memory:" && !path.starts_with("file:");
    if is_file && !create && !Path::new(path).exists() {
        return Err(Failure::error(format!(
            "there is no SQLite database at {path}: check DATABASE_URL, or create it with \
             `diesel-outbox migrate`"
        )));
    }
    let mut conn = diesel::SqliteConnection::establish(path).map_err(|error| {
        Failure::error(format!("cannot open the SQLite database {path}: {error}"))
    })?;
    // Workers may hold the write lock: wait for it rather than fail at once.
    conn.batch_execute("PRAGMA busy_timeout = 10000;")
        .map_err(|error| Failure::error(format!("cannot configure SQLite: {error}")))?;
    Ok(Database::Sqlite(conn))
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(_path: &str, _create: bool) -> Result<Database, Failure> {
    Err(Failure::usage(
        "this build of diesel-outbox has no SQLite support (feature `sqlite`); \
         PostgreSQL URLs start with postgres://",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_as_diesel_cli_reads_them() {
        assert_eq!(
            backend("postgres://u@h/db"),
            Backend::Postgres("postgres://u@h/db")
        );
        assert_eq!(
            backend("postgresql://h/db"),
            Backend::Postgres("postgresql://h/db")
        );
        assert_eq!(backend("mysql://h/db"), Backend::Mysql("mysql://h/db"));
        assert_eq!(backend("sqlite:///tmp/a.db"), Backend::Sqlite("/tmp/a.db"));
        assert_eq!(backend("app.db"), Backend::Sqlite("app.db"));
    }
}
