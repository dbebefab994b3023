//! LISTEN/NOTIFY on PostgreSQL: one notification per committing transaction that wrote
//! outbox rows, and an idle worker woken by it long before its poll interval. On SQLite a
//! listening worker polls (its own test below).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_outbox::{
    outbox_context, CellOutbox, ControlOutbox, Error, Outbox, OutboxMessage, Receivers, Worker,
    WorkerOptions,
};
use diesel_outbox_tests::{backend_db_tests, postgres_db_tests, TestConnection, TestDb};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
    }
}

fn org(shard: i64, object: i64) -> CellOutbox {
    CellOutbox::new(Category::OrganizationUpdate, shard, object)
}

/// An outbox that delivers nothing by itself (no flush) and reports each delivery.
fn reporting_outbox<C: TestConnection>(
    notify: bool,
) -> (Outbox<C>, mpsc::Receiver<(i64, Instant)>) {
    let (sender, deliveries) = mpsc::channel();
    let sender = std::sync::Mutex::new(sender);
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            let _ = sender
                .lock()
                .expect("sender")
                .send((message.object_identifier, Instant::now()));
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::builder(receivers)
        .flush_on_commit(false)
        .notify_on_commit(notify)
        .build();
    (outbox, deliveries)
}

#[derive(QueryableByName)]
struct Schema {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// A connection listening on the outbox's channel, and this test's schema (the payload
/// of the notifications meant for it).
struct Listener<C> {
    conn: C,
    schema: String,
    markers: usize,
}

#[cfg(feature = "postgres")]
impl Listener<PgConnection> {
    fn new<D: TestDb<Conn = PgConnection>>(db: &D) -> Self {
        let mut conn = db.conn();
        diesel::sql_query("LISTEN diesel_outbox")
            .execute(&mut conn)
            .expect("listens");
        let schema = diesel::sql_query("SELECT current_schema() AS name")
            .get_result::<Schema>(&mut conn)
            .expect("reads the schema")
            .name;
        Listener {
            conn,
            schema,
            markers: 0,
        }
    }

    /// How many notifications for this schema arrived before a marker sent now from
    /// `writer` (PostgreSQL delivers notifications in commit order).
    fn count_since_last(&mut self, writer: &mut PgConnection) -> usize {
        self.markers += 1;
        let marker = format!("{}/marker {}", self.schema, self.markers);
        diesel::sql_query(format!("NOTIFY diesel_outbox, '{marker}'"))
            .execute(writer)
            .expect("sends the marker");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut count = 0;
        loop {
            let received: Vec<String> = self
                .conn
                .notifications_iter()
                .map(|notification| notification.expect("reads").payload)
                .collect();
            for payload in received {
                if payload == marker {
                    return count;
                }
                if payload == self.schema {
                    count += 1;
                }
            }
            assert!(Instant::now() < deadline, "the marker never arrived");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(feature = "postgres")]
fn one_notify_per_committing_transaction_that_wrote_rows<D: TestDb<Conn = PgConnection>>(db: &D) {
    let mut listener = Listener::new(db);
    let mut conn = db.conn();
    let (outbox, _deliveries) = reporting_outbox::<PgConnection>(true);

    // 100 cell rows and 3 control rows, nested contexts: one transaction, one notification.
    outbox
        .context(&mut conn, |ctx| {
            for object in 0..100 {
                ctx.write(org(object % 7, object))?;
            }
            outbox_context(ctx, |inner| {
                for cell in ["eu", "us", "ap"] {
                    inner.write(ControlOutbox::new(Category::OrganizationUpdate, 1, 1, cell))?;
                }
                Ok::<_, Error>(())
            })
        })
        .expect("commits");
    assert_eq!(listener.count_since_last(&mut conn), 1);

    // Two transactions, two notifications; the free `outbox_context` notifies too.
    for object in 0..2 {
        outbox_context(&mut conn, |ctx| ctx.write(org(1, object))).expect("commits");
    }
    assert_eq!(listener.count_since_last(&mut conn), 2);

    // Nothing written, rolled back, or turned off: none.
    outbox
        .context(&mut conn, |_ctx| Ok::<_, Error>(()))
        .expect("commits");
    let failed: Result<(), Error> = outbox.context(&mut conn, |ctx| {
        ctx.write(org(1, 1))?;
        Err(Error::NoSiloDirectory)
    });
    assert!(failed.is_err());
    let (quiet, _) = reporting_outbox::<PgConnection>(false);
    quiet
        .context(&mut conn, |ctx| ctx.write(org(1, 1)))
        .expect("commits");
    outbox_context(&mut conn, |ctx| {
        ctx.set_notify(false);
        ctx.write(org(1, 2))
    })
    .expect("commits");
    assert_eq!(listener.count_since_last(&mut conn), 0);

    // Rows this process flushes right after the commit need no worker: nothing is sent,
    // unless a row opts out of the flush.
    let flushing = Outbox::new(Receivers::new().cell(
        Category::OrganizationUpdate,
        |_conn: &mut PgConnection, _message: &OutboxMessage| Ok::<_, Error>(()),
    ));
    flushing
        .context(&mut conn, |ctx| ctx.write(org(3, 3)))
        .expect("commits and flushes");
    assert_eq!(listener.count_since_last(&mut conn), 0);
    flushing
        .context(&mut conn, |ctx| {
            ctx.write(org(3, 4))?;
            ctx.write(org(4, 4).flush(false))
        })
        .expect("commits");
    assert_eq!(listener.count_since_last(&mut conn), 1);

    // Inside an enclosing transaction: sent when (and only if) that one commits.
    conn.transaction(|conn| outbox.context(conn, |ctx| ctx.write(org(2, 2))))
        .expect("commits");
    let rolled_back: Result<(), Error> = conn.transaction(|conn| {
        outbox.context(conn, |ctx| ctx.write(org(2, 3)))?;
        Err(Error::NoSiloDirectory)
    });
    assert!(rolled_back.is_err());
    assert_eq!(listener.count_since_last(&mut conn), 1);
}

/// An idle worker wakes when a transaction commits rows, long before its 60 s poll; a
/// commit that does not notify waits for the poll.
#[cfg(feature = "postgres")]
fn an_idle_worker_wakes_on_notify<D: TestDb<Conn = PgConnection>>(db: &D) {
    let (outbox, deliveries) = reporting_outbox::<PgConnection>(true);
    let worker = Worker::spawn(
        db.pool(2),
        outbox.clone(),
        WorkerOptions {
            poll_interval: Duration::from_secs(60),
            report_every: None,
            ..WorkerOptions::default()
        },
    )
    .expect("worker starts");
    // Let its first round find nothing, so that it sleeps.
    std::thread::sleep(Duration::from_millis(300));
    let mut conn = db.conn();
    for object in 1..=3 {
        let committed = Instant::now();
        outbox
            .context(&mut conn, |ctx| ctx.write(org(1, object)))
            .expect("commits");
        let (delivered, at) = deliveries
            .recv_timeout(Duration::from_secs(10))
            .expect("delivered long before the poll interval");
        assert_eq!(delivered, object);
        assert!(at - committed < Duration::from_secs(5));
    }

    // A round that delivered is followed at once by another: let that one find nothing.
    std::thread::sleep(Duration::from_millis(300));
    let (quiet, _) = reporting_outbox::<PgConnection>(false);
    quiet
        .context(&mut conn, |ctx| ctx.write(org(1, 4)))
        .expect("commits");
    assert!(
        deliveries.recv_timeout(Duration::from_secs(1)).is_err(),
        "without a notification the row waits for the poll"
    );
    worker.stop();
    assert_eq!(conn.count("cell_outboxes"), 1);
}

/// SQLite has no notifications: a listening worker polls.
fn a_listening_worker_polls_where_it_cannot_listen<D: TestDb>(db: &D) {
    let (outbox, deliveries) = reporting_outbox::<D::Conn>(true);
    let worker = Worker::spawn(
        db.pool(1),
        outbox.clone(),
        WorkerOptions {
            poll_interval: Duration::from_millis(20),
            ..WorkerOptions::default()
        },
    )
    .expect("worker starts");
    let mut conn = db.conn();
    outbox
        .context(&mut conn, |ctx| ctx.write(org(1, 1)))
        .expect("commits");
    let (delivered, _) = deliveries
        .recv_timeout(Duration::from_secs(10))
        .expect("delivered by polling");
    assert_eq!(delivered, 1);
    worker.stop();
}

#[cfg(feature = "postgres")]
postgres_db_tests!(
    one_notify_per_committing_transaction_that_wrote_rows,
    an_idle_worker_wakes_on_notify,
);
backend_db_tests!(a_listening_worker_polls_where_it_cannot_listen);
