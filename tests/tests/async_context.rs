//! The async write path (feature `async`) on every backend (SQLite through diesel-async's
//! `SyncConnectionWrapper`, PostgreSQL, MariaDB): the guarantees of the sync context's
//! suite (atomicity, coalescing, nesting, rollback on error and on panic, validation,
//! the derives' writes) through `outbox_context_async` and the `*_async` writes, and
//! cancellation: a context future dropped between BEGIN and COMMIT.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{mpsc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::SimpleAsyncConnection;
use diesel_outbox::asynchronous::AsyncModelWrites;
use diesel_outbox::category::OutboxCategory;
use diesel_outbox::guard::{Guard, OnViolation};
use diesel_outbox::worker::{Worker, WorkerOptions};
use diesel_outbox::{
    outbox_context_async, CellOutbox, Error, Outbox, OutboxMessage, Receivers, ReplicatedCell,
    ReplicatedControl,
};
use diesel_outbox_tests::asynchronous::AsyncTestDb;
use diesel_outbox_tests::{async_db_tests, protected, TestConnection, TestDb};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        ProjectUpdate = 2 { scope: Organization, silo: cell },
        UserUpdate = 3 { scope: User, silo: control },
        AuditLogEvent = 4 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        home_cell -> Text,
    }
}

#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, payload)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = User::cells)]
pub struct User {
    #[outbox(shard)]
    pub id: i64,
    pub name: String,
    pub home_cell: String,
}

impl User {
    fn cells(&self) -> Vec<String> {
        vec![self.home_cell.clone(), "mirror".to_owned()]
    }
}

fn project(id: i64, organization_id: i64, name: &str) -> Project {
    Project {
        id,
        organization_id,
        name: name.to_owned(),
    }
}

fn create_tables<D: TestDb>(db: &D) {
    diesel::connection::SimpleConnection::batch_execute(
        &mut db.conn(),
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                    name TEXT NOT NULL);
             CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL,
                                 home_cell TEXT NOT NULL);",
    )
    .expect("create model tables");
}

/// The object identifiers of the committed cell rows, in id order.
fn cell_objects<D: TestDb>(db: &D) -> Vec<i64> {
    db.conn()
        .cell_rows()
        .iter()
        .map(|row| row.object_identifier)
        .collect()
}

/// Awaits `future`, catching a panic as `catch_unwind` does.
async fn catch_panic<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = pin!(future);
    poll_fn(
        |cx| match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        },
    )
    .await
}

async fn writes_commit_the_model_and_its_rows<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    let (a, b, c) = (project(1, 42, "a"), project(2, 42, "b"), project(3, 7, "c"));
    let ada = User {
        id: 5,
        name: "ada".into(),
        home_cell: "eu".into(),
    };
    outbox_context_async(&mut conn, async |ctx| {
        a.insert_async(ctx).await?;
        Project::save_all_async(ctx, &[b.clone(), c.clone()]).await?;
        ada.save_async(ctx).await?;
        Ok::<_, Error>(())
    })
    .await
    .expect("the context commits");
    assert_eq!(db.conn().count("projects"), 3);
    assert_eq!(cell_objects(db), vec![1, 2, 3]);
    let control = db.conn().control_rows();
    assert_eq!(control.len(), 2, "one control row per cell");
    assert_eq!(
        control[0].category,
        <Category::UserUpdate as OutboxCategory>::NUMBER
    );

    // Update, delete, and the bulk forms, in a second transaction.
    let renamed = project(1, 42, "renamed");
    outbox_context_async(&mut conn, async |ctx| {
        renamed.update_async(ctx).await?;
        assert!(b.delete_async(ctx).await?);
        assert!(!Project::delete_by_id_async(ctx, 99_i64).await?);
        assert_eq!(Project::delete_by_ids_async(ctx, &[3]).await?, 1);
        Project::update_all_async(ctx, &[project(1, 42, "again")]).await?;
        Ok::<_, Error>(())
    })
    .await
    .expect("the second context commits");
    assert_eq!(db.conn().count("projects"), 1);
    assert_eq!(
        db.conn()
            .scalar("SELECT COUNT(*) AS n FROM projects WHERE id = 1 AND name = 'again'"),
        1
    );
    // Rows: the first three, then one per key written again (coalesced: project 1's
    // update and update_all are one row), the deletes with the shard the rows had.
    let rows = db.conn().cell_rows();
    let keys: Vec<(i64, i64)> = rows
        .iter()
        .map(|row| (row.shard_identifier, row.object_identifier))
        .collect();
    assert_eq!(
        keys,
        vec![(42, 1), (42, 2), (7, 3), (42, 2), (7, 3), (42, 1)]
    );

    // An update of a row that does not exist is an error, and nothing commits.
    let missing = outbox_context_async(&mut conn, async |ctx| {
        project(50, 1, "x").update_async(ctx).await
    })
    .await;
    assert!(matches!(missing, Err(Error::ModelNotFound { .. })));
    assert_eq!(db.conn().cell_rows().len(), 6);
}

async fn rows_coalesce_before_the_commit<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    let mut conn = db.connect_async().await;
    let pending = outbox_context_async(&mut conn, async |ctx| {
        for payload in ["first", "second", "third"] {
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 7).payload(payload)?)?;
        }
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 8))?;
        let id = ctx.unique_object_identifier_async().await?;
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, id))?;
        Ok::<_, Error>(ctx.pending_rows())
    })
    .await
    .expect("commits");
    assert_eq!(pending, 3);
    let rows = db.conn().cell_rows();
    assert_eq!(rows.len(), 3, "one row per key");
    assert_eq!(
        rows[0].payload_as::<String>().expect("decodes"),
        Some("third".to_owned()),
        "the newest write of a key wins"
    );
}

async fn an_error_rolls_back_model_and_rows<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    let failed = outbox_context_async(&mut conn, async |ctx| {
        project(1, 42, "a").save_async(ctx).await?;
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 7))?;
        Err::<(), _>(Error::Thread(std::io::Error::other("the handler failed")))
    })
    .await;
    assert!(failed.is_err());
    assert_eq!(db.conn().count("projects"), 0);
    assert!(db.conn().cell_rows().is_empty());
    // The connection is usable: the next context commits.
    outbox_context_async(&mut conn, async |ctx| {
        project(2, 42, "b").save_async(ctx).await
    })
    .await
    .expect("the next context commits");
    assert_eq!(cell_objects(db), vec![2]);
}

async fn a_panic_rolls_back_and_goes_on<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    let outcome = catch_panic(outbox_context_async(&mut conn, async |ctx| {
        project(1, 42, "a").save_async(ctx).await?;
        if ctx.pending_rows() == 1 {
            panic!("the handler panicked");
        }
        Ok::<_, Error>(())
    }))
    .await;
    assert!(outcome.is_err(), "the panic goes on to the caller");
    assert_eq!(db.conn().count("projects"), 0);
    outbox_context_async(&mut conn, async |ctx| {
        project(2, 42, "b").save_async(ctx).await
    })
    .await
    .expect("the next context commits (no transaction was left open)");
    assert_eq!(cell_objects(db), vec![2]);
}

async fn nested_contexts_are_savepoints<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    outbox_context_async(&mut conn, async |ctx| {
        project(1, 42, "outer").save_async(ctx).await?;
        let inner = outbox_context_async(ctx, async |inner| {
            project(2, 42, "dropped").save_async(inner).await?;
            Err::<(), _>(Error::Thread(std::io::Error::other("inner fails")))
        })
        .await;
        assert!(inner.is_err());
        outbox_context_async(ctx, async |inner| {
            project(3, 42, "kept").save_async(inner).await
        })
        .await?;
        assert_eq!(
            ctx.pending_rows(),
            2,
            "the inner rows joined the outer context"
        );
        Ok::<_, Error>(())
    })
    .await
    .expect("the outer context commits");
    assert_eq!(cell_objects(db), vec![1, 3]);
    assert_eq!(db.conn().count("projects"), 2);
}

async fn invalid_rows_are_refused<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    let refused = outbox_context_async(&mut conn, async |ctx| {
        let nul = ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 1).payload("a\u{0}b")?);
        assert!(matches!(nul, Err(Error::Payload { .. })), "{nul:?}");
        ctx.set_max_payload_bytes(16);
        let large = Project {
            id: 9,
            organization_id: 42,
            name: "a name longer than sixteen bytes".into(),
        };
        // The model's table is not written when its row cannot be stored.
        let write = large.save_async(ctx).await;
        assert!(matches!(write, Err(Error::Payload { .. })), "{write:?}");
        assert_eq!(ctx.pending_rows(), 0);
        Ok::<_, Error>(())
    })
    .await;
    refused.expect("the context itself commits");
    assert_eq!(db.conn().count("projects"), 0);
    assert!(db.conn().cell_rows().is_empty());
}

/// A context future dropped between BEGIN and COMMIT (a request timeout): its rows are
/// gone, and the next context on the same connection commits its own.
async fn a_dropped_context_is_rolled_back_by_the_next<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        outbox_context_async(&mut conn, async |ctx| {
            project(1, 42, "orphan").save_async(ctx).await?;
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 100))?;
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        }),
    )
    .await;
    assert!(
        timed_out.is_err(),
        "the context was dropped mid-transaction"
    );
    assert!(
        diesel_async::pooled_connection::PoolableConnection::is_broken(&mut conn),
        "a pool would not hand this connection out again"
    );

    outbox_context_async(&mut conn, async |ctx| {
        project(2, 42, "next").save_async(ctx).await
    })
    .await
    .expect("the next context rolls the orphan back and commits");
    assert!(!diesel_async::pooled_connection::PoolableConnection::is_broken(&mut conn));
    assert_eq!(
        cell_objects(db),
        vec![2],
        "the orphan's rows are gone, the next context's committed"
    );
    assert_eq!(db.conn().count("projects"), 1);
    assert_eq!(db.conn().scalar("SELECT MIN(id) AS n FROM projects"), 2);
    // And nothing is left open: a third context commits on its own.
    outbox_context_async(&mut conn, async |ctx| {
        project(3, 42, "third").save_async(ctx).await
    })
    .await
    .expect("commits");
    assert_eq!(cell_objects(db), vec![2, 3]);
}

/// The futures are `Send`: a context runs in a spawned task.
async fn futures_are_send_and_spawn<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let conn = db.connect_async().await;
    let task = tokio::spawn(async move {
        let mut conn = conn;
        outbox_context_async(&mut conn, async |ctx| {
            project(1, 42, "spawned").save_async(ctx).await?;
            tokio::task::yield_now().await;
            Project::insert_all_async(ctx, &[project(2, 42, "b")]).await
        })
        .await
    });
    task.await.expect("the task ran").expect("it committed");
    assert_eq!(cell_objects(db), vec![1, 2]);
}

/// The guard covers async connections: the library's statements are not read, a model
/// write outside a context is reported.
async fn the_guard_reads_async_connections<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let mut conn = db.connect_async().await;
    Guard::new(protected())
        .on_violation(OnViolation::Record)
        .install_async(&mut conn);
    outbox_context_async(&mut conn, async |ctx| {
        project(1, 42, "a").save_async(ctx).await?;
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, 7))?;
        Ok::<_, Error>(())
    })
    .await
    .expect("commits");
    assert!(Guard::take_violations_async(&mut conn).is_empty());
    conn.batch_execute("UPDATE projects SET name = 'bypass' WHERE id = 1")
        .await
        .expect("the statement runs (recorded, not refused)");
    let violations = Guard::take_violations_async(&mut conn);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].table, "projects");
    let _ = db.backend();
}

/// An outbox reporting each delivered project, with its time.
fn reporting_outbox<C: TestConnection>() -> (Outbox<C>, mpsc::Receiver<(i64, Instant)>) {
    let (sender, deliveries) = mpsc::channel();
    let sender = Mutex::new(sender);
    let receivers = Receivers::new().cell(
        Category::ProjectUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            let _ = sender
                .lock()
                .expect("sender")
                .send((message.object_identifier, Instant::now()));
            Ok::<_, Error>(())
        },
    );
    (Outbox::new(receivers), deliveries)
}

/// Flush after commit: `Outbox::context_async` hands the touched shards to the worker,
/// which delivers them long before its poll interval (it does not listen: only the
/// handoff wakes it), and returns without waiting for the receiver.
async fn the_commit_hands_its_shards_to_the_worker<D: AsyncTestDb>(db: &D)
where
    Project: AsyncModelWrites<D::Async>,
    User: AsyncModelWrites<D::Async>,
{
    create_tables(db);
    let (outbox, deliveries) = reporting_outbox::<D::Conn>();
    let mut conn = db.connect_async().await;
    // No worker yet: the commit queues nothing, the rows wait for a drain.
    outbox
        .context_async(&mut conn, async |ctx| {
            project(1, 42, "a").save_async(ctx).await
        })
        .await
        .expect("commits");
    assert!(deliveries.try_recv().is_err());
    assert!(!outbox.request_flush(&[]));
    outbox
        .drain_due_shards(&mut db.conn())
        .expect("the drain delivers");
    assert_eq!(deliveries.try_recv().map(|(id, _)| id), Ok(1));

    let worker = Worker::spawn(
        db.pool(2),
        outbox.clone(),
        WorkerOptions {
            poll_interval: Duration::from_secs(60),
            listen: false,
            report_every: None,
            ..WorkerOptions::default()
        },
    )
    .expect("the worker starts");
    // Let its first round find nothing, so that it sleeps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in 2..=4 {
        let committed = Instant::now();
        outbox
            .context_async(&mut conn, async |ctx| {
                project(id, 42, "b").save_async(ctx).await
            })
            .await
            .expect("commits");
        let (delivered, at) =
            tokio::task::block_in_place(|| deliveries.recv_timeout(Duration::from_secs(10)))
                .expect("delivered long before the 60 s poll");
        assert_eq!(delivered, id);
        assert!(at - committed < Duration::from_secs(5));
    }
    tokio::task::block_in_place(|| worker.stop());
    assert!(db.conn().cell_rows().is_empty(), "every row was delivered");
}

async_db_tests!(
    the_commit_hands_its_shards_to_the_worker,
    writes_commit_the_model_and_its_rows,
    rows_coalesce_before_the_commit,
    an_error_rolls_back_model_and_rows,
    a_panic_rolls_back_and_goes_on,
    nested_contexts_are_savepoints,
    invalid_rows_are_refused,
    a_dropped_context_is_rolled_back_by_the_next,
    futures_are_send_and_spawn,
    the_guard_reads_async_connections,
);

/// A pooled connection whose context was dropped mid-transaction is not handed out again:
/// bb8 (through diesel-async's manager) closes it as broken, and the next user gets a
/// fresh connection.
macro_rules! pool_recycle_test {
    ($name:ident, $db:ty, $create:expr) => {
        #[test]
        fn $name() {
            let Some(db): Option<$db> = $create else {
                return;
            };
            diesel_outbox_tests::asynchronous::block_on(async {
                create_tables(&db);
                let manager = diesel_async::pooled_connection::AsyncDieselConnectionManager::<
                    <$db as AsyncTestDb>::Async,
                >::new(db.url());
                let pool = diesel_async::pooled_connection::bb8::Pool::builder()
                    .max_size(1)
                    .build(manager)
                    .await
                    .expect("a bb8 pool");
                {
                    let mut conn = pool.get().await.expect("a pooled connection");
                    let timed_out = tokio::time::timeout(
                        Duration::from_millis(200),
                        outbox_context_async(&mut *conn, async |ctx| {
                            project(1, 42, "orphan").save_async(ctx).await?;
                            std::future::pending::<()>().await;
                            Ok::<_, Error>(())
                        }),
                    )
                    .await;
                    assert!(timed_out.is_err());
                }
                let mut conn = pool.get().await.expect("a pooled connection");
                assert_eq!(pool.state().statistics.connections_closed_broken, 1);
                outbox_context_async(&mut *conn, async |ctx| {
                    project(2, 42, "next").save_async(ctx).await
                })
                .await
                .expect("the fresh connection commits");
                drop(conn);
                assert_eq!(cell_objects(&db), vec![2]);
            });
        }
    };
}

pool_recycle_test!(
    sqlite_pool_discards_an_abandoned_connection,
    diesel_outbox_tests::SqliteDb,
    Some(diesel_outbox_tests::SqliteDb::new())
);
#[cfg(feature = "postgres")]
pool_recycle_test!(
    postgres_pool_discards_an_abandoned_connection,
    diesel_outbox_tests::PgSchema,
    diesel_outbox_tests::PgSchema::create()
);
#[cfg(feature = "mysql")]
pool_recycle_test!(
    mysql_pool_discards_an_abandoned_connection,
    diesel_outbox_tests::MysqlDb,
    diesel_outbox_tests::MysqlDb::create()
);
