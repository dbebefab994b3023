//! What only MySQL and MariaDB need: statements that must fit the server's
//! `max_allowed_packet`, tables that must stay InnoDB and utf8mb4, raw statements that
//! diesel must cache (its `sql_query` never is on MySQL), named locks that are
//! the server's (not the database's), a worker killed mid-batch, and MySQL's own model SQL
//! (upsert, update counts, delete without RETURNING).
#![cfg(feature = "mysql")]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::MysqlConnection;
use diesel_outbox::testing::ManualClock;
use diesel_outbox::{
    outbox_context, CellOutbox, Error, Outbox, OutboxMessage, OutboxTable, Receivers,
    ReplicatedCell, ShardKey,
};
use diesel_outbox_tests::{MysqlDb, StatementLog, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::OrganizationUpdate)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

fn database() -> Option<MysqlDb> {
    MysqlDb::create()
}

fn max_allowed_packet(conn: &mut MysqlConnection) -> usize {
    let value = conn.scalar("SELECT CAST(@@max_allowed_packet AS SIGNED) AS n");
    usize::try_from(value).expect("a positive limit")
}

/// A JSON string payload of about `bytes` bytes.
fn big_text(bytes: usize) -> String {
    "x".repeat(bytes)
}

#[test]
fn a_row_over_max_allowed_packet_fails_at_commit_and_names_the_row() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    let limit = max_allowed_packet(&mut conn);
    let text = big_text(limit + 1024);
    let result = outbox_context(&mut conn, |ctx| {
        ctx.set_max_payload_bytes(limit * 2);
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 5, 77).payload(&text)?)
    });
    match result {
        Err(Error::PacketTooLarge {
            table,
            category,
            object_identifier,
            bytes,
            max_allowed_packet,
        }) => {
            assert_eq!(table, OutboxTable::Cell);
            assert_eq!((category, object_identifier), (1, 77));
            assert!(bytes > limit, "{bytes} > {limit}");
            assert_eq!(max_allowed_packet, limit);
        }
        other => panic!("expected PacketTooLarge, got {other:?}"),
    }
    let message = outbox_context(&mut conn, |ctx| {
        ctx.set_max_payload_bytes(limit * 2);
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 5, 77).payload(&text)?)
    })
    .expect_err("too large")
    .to_string();
    assert!(message.contains("max_allowed_packet"), "{message}");
    // Nothing was sent: the connection is alive and nothing was written.
    assert_eq!(conn.count("cell_outboxes"), 0);
}

#[test]
fn rows_that_fit_one_by_one_are_split_across_statements() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    let limit = max_allowed_packet(&mut conn);
    // Three rows of 40% of the limit each: two statements at least, none refused.
    let text = big_text(limit * 2 / 5);
    let log = StatementLog::attach(&mut conn);
    outbox_context(&mut conn, |ctx| {
        ctx.set_max_payload_bytes(limit);
        for object in 0..3 {
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 5, object).payload(&text)?)?;
        }
        Ok::<_, Error>(())
    })
    .expect("commits");
    let inserts = log.matching(&["INSERT", "cell_outboxes"]).len();
    assert!((2..=3).contains(&inserts), "{inserts} INSERTs");
    assert_eq!(conn.count("cell_outboxes"), 3);
    let rows = conn.cell_rows();
    assert!(rows
        .iter()
        .all(|row| row.payload.as_ref().map(|p| p.len()) == Some(text.len() + 2)));
}

#[test]
fn run_migrations_refuses_a_table_that_is_not_innodb() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    conn.batch_execute("ALTER TABLE cell_tombstones ENGINE = MyISAM")
        .expect("alter");
    match diesel_outbox::run_migrations(&mut conn) {
        Err(Error::MysqlTableSetup {
            table,
            problem,
            fix,
        }) => {
            assert_eq!(table, "cell_tombstones");
            assert!(problem.contains("MyISAM"), "{problem}");
            assert_eq!(fix, "ALTER TABLE cell_tombstones ENGINE = InnoDB");
        }
        other => panic!("expected MysqlTableSetup, got {other:?}"),
    }
    conn.batch_execute("ALTER TABLE cell_tombstones ENGINE = InnoDB")
        .expect("alter back");
    diesel_outbox::run_migrations(&mut conn).expect("fixed");
}

#[test]
fn run_migrations_refuses_text_columns_outside_utf8mb4() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    conn.batch_execute(
        "ALTER TABLE cell_outboxes MODIFY payload LONGTEXT CHARACTER SET latin1 NULL",
    )
    .expect("alter");
    let error = diesel_outbox::run_migrations(&mut conn).expect_err("latin1 payload");
    match &error {
        Error::MysqlTableSetup { table, problem, .. } => {
            assert_eq!(table, "cell_outboxes");
            assert!(problem.contains("payload"), "{problem}");
        }
        other => panic!("expected MysqlTableSetup, got {other:?}"),
    }
    assert!(error
        .to_string()
        .contains("CONVERT TO CHARACTER SET utf8mb4"));
}

/// A receiver that tells when it is entered and waits to be released.
fn gated<C: 'static>() -> (Receivers<C>, mpsc::Receiver<i64>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel::<i64>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new((entered_tx, release_rx)));
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            let gate = gate.lock().expect("gate");
            let _ = gate.0.send(message.object_identifier);
            let _ = gate.1.recv();
            Ok::<_, Error>(())
        },
    );
    (receivers, entered_rx, release_tx)
}

fn write_one(conn: &mut MysqlConnection, shard: i64, object: i64) {
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, shard, object))
    })
    .expect("commits");
}

/// Named locks belong to the server: the lock names hold the database, so one shard in
/// two databases is two shards.
#[test]
fn the_same_shard_in_two_databases_is_claimed_by_both() {
    let (Some(first), Some(second)) = (database(), database()) else {
        return;
    };
    write_one(&mut first.connect(), 7, 1);
    write_one(&mut second.connect(), 7, 1);
    let (receivers, entered, release) = gated::<MysqlConnection>();
    let holder = Outbox::builder(receivers).flush_on_commit(false).build();
    let plain = Outbox::builder(Receivers::new().cell(
        Category::OrganizationUpdate,
        |_conn: &mut MysqlConnection, _message: &OutboxMessage| Ok::<_, Error>(()),
    ))
    .flush_on_commit(false)
    .build();
    std::thread::scope(|scope| {
        let held = scope.spawn(|| holder.drain_due_shards(&mut first.connect()));
        assert_eq!(
            entered.recv().ok(),
            Some(1),
            "the first database's shard is held"
        );
        let report = plain
            .drain_due_shards(&mut second.connect())
            .expect("drains");
        assert_eq!((report.delivered, report.shards_not_claimed), (1, 0));
        release.send(()).expect("release");
        assert_eq!(held.join().expect("holder").expect("drains").delivered, 1);
    });
}

/// A worker whose connection dies while its receiver runs (as when a receiver aborts the
/// process) leaves its lease; the next drain finds the lease's worker lock free, backs
/// the shard off and marks it to be delivered alone; after the backoff it is delivered.
#[test]
fn a_worker_killed_mid_batch_leaves_its_shard_backed_off_and_isolated() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    write_one(&mut conn, 7, 1);
    let (receivers, entered, release) = gated::<MysqlConnection>();
    let clock = ManualClock::starting_now();
    let dying = Outbox::builder(receivers)
        .clock(clock.clone())
        .flush_on_commit(false)
        .build();
    let mut worker = db.connect();
    let worker_id = worker.scalar("SELECT CAST(CONNECTION_ID() AS SIGNED) AS n");
    std::thread::scope(|scope| {
        let died = scope.spawn(move || dying.drain_due_shards(&mut worker));
        assert_eq!(entered.recv().ok(), Some(1));
        // While the worker lives, its lease is not taken for abandoned.
        let report = Outbox::new(Receivers::<MysqlConnection>::new())
            .drain_due_shards(&mut conn)
            .expect("drains");
        assert_eq!(
            (report.abandoned_batches, report.shards_not_claimed),
            (0, 1)
        );
        conn.batch_execute(&format!("KILL {worker_id}"))
            .expect("kill the worker's connection");
        release.send(()).expect("release");
        let outcome = died.join().expect("worker thread");
        assert!(
            outcome.is_err(),
            "the worker's connection is gone: {outcome:?}"
        );
    });
    assert_eq!(conn.count("outbox_drain_leases"), 1, "the lease stays");
    assert_eq!(conn.count("cell_outboxes"), 1, "the row stays");

    let delivered = Arc::new(Mutex::new(Vec::new()));
    let seen = delivered.clone();
    let next = Outbox::builder(Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut MysqlConnection, message: &OutboxMessage| {
            seen.lock().expect("seen").push(message.object_identifier);
            Ok::<_, Error>(())
        },
    ))
    .clock(clock.clone())
    .flush_on_commit(false)
    .build();
    let report = next.drain_due_shards(&mut conn).expect("drains");
    assert_eq!(report.abandoned_batches, 1);
    assert_eq!(report.delivered, 0, "backed off");
    let shard = ShardKey::cell(Scope::Organization, 7);
    let state = next
        .shard_state(&mut conn, &shard)
        .expect("reads")
        .expect("a stored state");
    assert!(state.isolated);
    assert_eq!(state.attempts, 1);
    assert_eq!(conn.count("outbox_drain_leases"), 0, "recovered once");

    clock.advance(Duration::hours(2));
    let report = next.drain_due_shards(&mut conn).expect("drains");
    assert_eq!(report.delivered, 1);
    assert_eq!(*delivered.lock().expect("seen"), vec![1]);
    assert_eq!(next.shard_state(&mut conn, &shard).expect("reads"), None);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

fn worker_lock() -> &'static str {
    "CONCAT('outbox-worker:', SHA1(CONCAT_WS('/', DATABASE(), CONNECTION_ID())))"
}

fn shard_lock(shard: i64) -> String {
    format!(
        "CONCAT('outbox-shard:', SHA1(CONCAT_WS('/', DATABASE(), 'cell_outboxes', 0, {shard})))"
    )
}

/// Whether this connection holds the named lock `name` (an SQL expression).
fn holds(conn: &mut MysqlConnection, name: &str) -> bool {
    conn.scalar(&format!(
        "SELECT CAST(COALESCE(IS_USED_LOCK({name}) = CONNECTION_ID(), 0) AS SIGNED) AS n"
    )) == 1
}

/// Named locks are the session's until released: while a receiver runs, its connection
/// holds its shard's lock and its worker lock; after each drain (a delivery, a failure, a
/// flush) it holds none.
#[test]
fn a_drain_leaves_no_named_lock_held() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    let during = Arc::new(Mutex::new(Vec::new()));
    let seen = during.clone();
    let outbox = Outbox::builder(Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut MysqlConnection, message: &OutboxMessage| {
            let shard = message.shard.identifier;
            let held = (holds(conn, &shard_lock(shard)), holds(conn, worker_lock()));
            seen.lock().expect("seen").push(held);
            if shard == 3 {
                return Err(Error::NotDrained {
                    rounds: 0,
                    remaining: 0,
                });
            }
            Ok(())
        },
    ))
    .flush_on_commit(false)
    .build();
    for shard in 0..4 {
        write_one(&mut conn, shard, 10 + shard);
        let report = outbox.drain_due_shards(&mut conn).expect("drains");
        assert_eq!(report.failures.len(), usize::from(shard == 3));
        assert!(
            !holds(&mut conn, worker_lock()),
            "the worker lock after round {shard}"
        );
        assert!(
            !holds(&mut conn, &shard_lock(shard)),
            "shard {shard}'s lock"
        );
    }
    assert_eq!(*during.lock().expect("seen"), vec![(true, true); 4]);
    write_one(&mut conn, 5, 1);
    outbox
        .flush_shards(&mut conn, &[ShardKey::cell(Scope::Organization, 5)])
        .expect("flushes");
    assert_eq!(during.lock().expect("seen").len(), 5, "the flush delivered");
    assert!(!holds(&mut conn, worker_lock()));
    assert!(!holds(&mut conn, &shard_lock(5)));
}

/// What a connection prepared for its statement cache, and every statement it started.
#[derive(Clone, Default)]
struct CacheLog(Arc<Mutex<(Vec<String>, Vec<String>)>>);

impl diesel::connection::Instrumentation for CacheLog {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent;
        let Ok(mut log) = self.0.lock() else { return };
        match event {
            InstrumentationEvent::CacheQuery { sql, .. } => log.0.push(sql.to_owned()),
            InstrumentationEvent::StartQuery { query, .. } => {
                let text = query.to_string();
                let sql = text.split(" -- binds: ").next().unwrap_or("").to_owned();
                log.1.push(sql);
            }
            _ => {}
        }
    }
}

/// The drain's statements are prepared once per connection and then reused (diesel's
/// `sql_query` is never cached on MySQL, whatever wraps it: the backend has its own
/// statement type for that, and this would catch a regression to three round trips a
/// statement).
#[test]
fn a_second_drain_prepares_no_statement() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    let log = CacheLog::default();
    diesel_outbox::guard::Guard::instrument(&mut conn, log.clone());
    let outbox = Outbox::builder(Receivers::new().cell(
        Category::OrganizationUpdate,
        |_: &mut MysqlConnection, _: &OutboxMessage| Ok::<_, Error>(()),
    ))
    .flush_on_commit(false)
    .build();
    let mut cached_by_first = Vec::new();
    for round in 0..2 {
        for shard in 0..3 {
            write_one(&mut conn, shard, 100 * round + shard);
        }
        if round == 1 {
            cached_by_first = std::mem::take(&mut log.0.lock().expect("log").0);
            log.0.lock().expect("log").1.clear();
        }
        let report = outbox.drain_due_shards(&mut conn).expect("drains");
        assert_eq!(report.rows_deleted, 3, "round {round}");
    }
    let (prepared_again, started) = log.0.lock().expect("log").clone();
    let statements: Vec<&String> = started
        .iter()
        .filter(|sql| !matches!(sql.trim(), "BEGIN" | "COMMIT" | "ROLLBACK"))
        .collect();
    assert!(
        statements.len() >= 4,
        "the drain's statements: {statements:#?}"
    );
    let uncached: Vec<&&String> = statements
        .iter()
        .filter(|sql| !cached_by_first.contains(sql))
        .collect();
    assert!(uncached.is_empty(), "never cached: {uncached:#?}");
    assert!(
        prepared_again.is_empty(),
        "the second drain prepared again: {prepared_again:#?}"
    );
}

fn create_projects(conn: &mut MysqlConnection) {
    conn.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, \
         name TEXT NOT NULL)",
    )
    .expect("create projects");
}

/// diesel connects with CLIENT_FOUND_ROWS, so an update that changes nothing counts its
/// row: it is not "not found".
#[test]
fn an_update_that_changes_nothing_is_not_a_missing_row() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    create_projects(&mut conn);
    let project = Project {
        id: 1,
        organization_id: 5,
        name: "acme".into(),
    };
    outbox_context(&mut conn, |ctx| project.insert(ctx)).expect("inserts");
    outbox_context(&mut conn, |ctx| project.update(ctx)).expect("the same values update");
    assert_eq!(conn.count("cell_outboxes"), 2);
}

/// The upsert is `ON DUPLICATE KEY UPDATE`, one statement for many models, cached for
/// one; a delete reads and locks the rows, then deletes exactly those.
#[test]
fn upserts_and_deletes_use_mysqls_own_sql() {
    let Some(db) = database() else { return };
    let mut conn = db.connect();
    create_projects(&mut conn);
    let log = StatementLog::attach(&mut conn);
    let projects: Vec<Project> = (1..=3)
        .map(|id| Project {
            id,
            organization_id: 5,
            name: format!("p{id}"),
        })
        .collect();
    outbox_context(&mut conn, |ctx| Project::save_all(ctx, &projects)).expect("saves");
    let renamed: Vec<Project> = projects
        .iter()
        .map(|project| Project {
            name: format!("{}!", project.name),
            ..project.clone()
        })
        .collect();
    outbox_context(&mut conn, |ctx| Project::save_all(ctx, &renamed)).expect("saves again");
    outbox_context(&mut conn, |ctx| renamed[0].save(ctx)).expect("saves one");
    let upserts = log.matching(&["INSERT", "projects", "ON DUPLICATE KEY UPDATE"]);
    assert_eq!(upserts.len(), 3, "{upserts:?}");
    let names: Vec<String> = projects::table
        .select(projects::name)
        .order(projects::id)
        .load(&mut conn)
        .expect("loads");
    assert_eq!(names, vec!["p1!", "p2!", "p3!"]);

    let deleted =
        outbox_context(&mut conn, |ctx| Project::delete_by_ids(ctx, &[1, 2, 99])).expect("deletes");
    assert_eq!(deleted, 2);
    assert_eq!(log.matching(&["SELECT", "projects", "FOR UPDATE"]).len(), 1);
    assert_eq!(conn.count("projects"), 1);
    // 3 + 3 saves, 1 save, 2 deletes.
    assert_eq!(conn.count("cell_outboxes"), 9);
}
