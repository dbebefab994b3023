//! The async write path's helpers: diesel-async connections to the same test databases,
//! guarded like the sync ones, and a runtime per test.

use std::future::Future;

use diesel_async::AsyncConnection;
use diesel_outbox::asynchronous::AsyncOutboxConnection;
use diesel_outbox::guard::Guard;

use crate::{protected, SqliteDb, TestDb};

/// A test database that also hands out diesel-async connections (see
/// [`async_db_tests!`](crate::async_db_tests)).
pub trait AsyncTestDb: TestDb {
    /// diesel-async's connection type for this backend.
    type Async: AsyncOutboxConnection + diesel_async::pooled_connection::PoolableConnection;
    /// A new async connection, guarded.
    fn connect_async(&self) -> impl Future<Output = Self::Async> + Send;
    /// The backend's name, as `AsyncOutboxConnection::BACKEND_NAME` says it.
    fn backend(&self) -> &'static str {
        <Self::Async as AsyncOutboxConnection>::BACKEND_NAME
    }
}

impl AsyncTestDb for SqliteDb {
    type Async = diesel_async::sync_connection_wrapper::SyncConnectionWrapper<
        diesel::sqlite::SqliteConnection,
    >;

    async fn connect_async(&self) -> Self::Async {
        // The wrapped connection is the sync helper's: WAL, busy timeout, guard.
        diesel_async::sync_connection_wrapper::SyncConnectionWrapper::new(self.connect())
    }
}

#[cfg(feature = "postgres")]
impl AsyncTestDb for crate::PgSchema {
    type Async = diesel_async::AsyncPgConnection;

    async fn connect_async(&self) -> Self::Async {
        let mut conn = diesel_async::AsyncPgConnection::establish(&self.url())
            .await
            .expect("PostgreSQL connects (async)");
        Guard::new(protected()).install_async(&mut conn);
        conn
    }
}

#[cfg(feature = "mysql")]
impl AsyncTestDb for crate::MysqlDb {
    type Async = diesel_async::AsyncMysqlConnection;

    async fn connect_async(&self) -> Self::Async {
        let mut conn = diesel_async::AsyncMysqlConnection::establish(&self.url())
            .await
            .expect("MySQL connects (async)");
        Guard::new(protected()).install_async(&mut conn);
        conn
    }
}

/// Runs `future` on a new multi-threaded tokio runtime (the tests' `Send` futures run
/// on it as in a service).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Declares one `#[test]` per enabled backend for each generic async test function
/// `async fn name<D: AsyncTestDb>(db: &D)`.
#[macro_export]
macro_rules! async_db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_async {
            $(
                #[test]
                fn $name() {
                    let db = $crate::SqliteDb::new();
                    $crate::asynchronous::block_on(super::$name(&db));
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres_async {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::PgSchema::create() else { return };
                    $crate::asynchronous::block_on(super::$name(&db));
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql_async {
            $(
                #[test]
                fn $name() {
                    let Some(db) = $crate::MysqlDb::create() else { return };
                    $crate::asynchronous::block_on(super::$name(&db));
                }
            )*
        }
    };
}
