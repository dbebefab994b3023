//! The drain's windows and batches on every backend: a failure at one key of a window,
//! keys cut by a window, a batch of many shards with one failing, the flush's bounds, and
//! rows the drain cannot read, each confined to its shard.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_outbox::drain::FailureCause;
use diesel_outbox::testing::ManualClock;
use diesel_outbox::{
    outbox_context, CellOutbox, Error, Outbox, OutboxConnection, OutboxMessage, Receivers, ShardKey,
};
use diesel_outbox_tests::{backend_tests, Dialect, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        ProjectUpdate = 2 { scope: Organization, silo: cell },
    }
}

fn shard(identifier: i64) -> ShardKey {
    ShardKey::cell(Scope::Organization, identifier)
}

fn row(shard: i64, object: i64, payload: &str) -> CellOutbox {
    CellOutbox::new(Category::OrganizationUpdate, shard, object)
        .payload(payload)
        .expect("serialises")
}

fn commit<C: TestConnection>(conn: &mut C, row: CellOutbox) {
    outbox_context(conn, |ctx| ctx.write(row)).expect("commits");
}

fn is_postgres<C: OutboxConnection>() -> bool {
    C::BACKEND_NAME == "PostgreSQL"
}

/// `receipts (object, payload)`: what receivers wrote, in their transactions.
fn create_receipts<C: TestConnection>(conn: &mut C) {
    conn.batch_execute("CREATE TABLE receipts (object BIGINT NOT NULL, payload TEXT NOT NULL)")
        .expect("receipts table");
}

fn receipts<C: TestConnection>(conn: &mut C) -> i64 {
    conn.count("receipts")
}

/// A receiver that records each delivery in `receipts` on the drain's connection, and
/// fails for the objects in `failing` after writing its receipt (so the write must roll
/// back).
fn receipt_receiver<C: TestConnection>(
    failing: Arc<Mutex<Vec<i64>>>,
    calls: Arc<AtomicUsize>,
) -> Receivers<C> {
    Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut C, message: &OutboxMessage| {
            calls.fetch_add(1, Ordering::SeqCst);
            let payload: Option<String> = message.payload_as()?;
            conn.batch_execute(&format!(
                "INSERT INTO receipts (object, payload) VALUES ({}, '{}')",
                message.object_identifier,
                payload.unwrap_or_default()
            ))?;
            if failing
                .lock()
                .expect("failing")
                .contains(&message.object_identifier)
            {
                return Err(format!("object {} is refused", message.object_identifier).into());
            }
            Ok::<_, diesel_outbox::BoxError>(())
        },
    )
}

fn manual<C: TestConnection>(receivers: Receivers<C>) -> (Outbox<C>, ManualClock) {
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(receivers)
        .clock(clock.clone())
        .flush_on_commit(false)
        .build();
    (outbox, clock)
}

/// Keys A, B, C, D in one shard's window; the receiver fails at C: A and B stay delivered
/// and their receipts committed, C's receipt rolls back, C and D stay, the shard backs off,
/// and the failure names category, shard and object.
fn a_failure_at_one_key_keeps_the_keys_before_it<C: TestConnection>(conn: &mut C) {
    create_receipts(conn);
    let failing = Arc::new(Mutex::new(vec![3]));
    let calls = Arc::new(AtomicUsize::new(0));
    let (outbox, clock) = manual(receipt_receiver(failing.clone(), calls.clone()));
    for object in 1..=4 {
        commit(conn, row(7, object, &format!("v{object}")));
    }
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.delivered, 2);
    assert_eq!(report.failures.len(), 1);
    let failure = report.failures[0].to_string();
    assert!(
        failure.contains("OrganizationUpdate (1)")
            && failure.contains("cell_outboxes shard 0/7")
            && failure.contains("object 3")
            && failure.contains("object 3 is refused"),
        "{failure}"
    );
    assert_eq!(
        receipts(conn),
        2,
        "A and B committed their writes; C's rolled back"
    );
    let left: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|r| r.object_identifier)
        .collect();
    assert_eq!(left, vec![3, 4], "C and the keys after it stay, in order");
    let state = outbox
        .shard_state(conn, &shard(7))
        .expect("reads")
        .expect("backed off");
    assert_eq!(
        (state.attempts, state.failed_object_identifier),
        (1, Some(3))
    );

    // Backing off: nothing until its schedule; then C and D go out.
    outbox.drain_due_shards(conn).expect("drains");
    let before = calls.load(Ordering::SeqCst);
    failing.lock().expect("failing").clear();
    clock.advance(chrono::Duration::seconds(2));
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.delivered, 2);
    assert_eq!(calls.load(Ordering::SeqCst), before + 2);
    assert_eq!(receipts(conn), 4);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// A window of 3 rows cuts key 1 (rows 1, 3 inside; 4 and 6 after it): the key is
/// delivered once, with its newest row in the shard, and all four of its rows go.
fn a_key_cut_by_its_window_is_delivered_once_with_its_newest_row<C: TestConnection>(conn: &mut C) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            let payload: Option<String> = message.payload_as()?;
            log.lock()
                .expect("seen")
                .push((message.object_identifier, payload.unwrap_or_default()));
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::builder(receivers)
        .flush_on_commit(false)
        .window(3)
        .build();
    for (object, payload) in [(1, "a"), (2, "b"), (1, "c"), (1, "d"), (3, "e"), (1, "f")] {
        commit(conn, row(5, object, payload));
    }
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        *seen.lock().expect("seen"),
        vec![
            (1, "f".to_owned()),
            (2, "b".to_owned()),
            (3, "e".to_owned())
        ],
        "key 1 once, with its newest row, in the order of its first row"
    );
    assert_eq!((report.delivered, report.rows_deleted), (3, 6));
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// Three one-row shards in one batch, the middle one failing: the others are delivered and
/// their writes committed in the same round; only the failing shard backs off.
fn one_failing_shard_of_a_batch_backs_off_alone<C: TestConnection>(conn: &mut C) {
    create_receipts(conn);
    let failing = Arc::new(Mutex::new(vec![20]));
    let (outbox, _clock) = manual(receipt_receiver(failing, Arc::default()));
    for shard in [1, 2, 3] {
        commit(conn, row(shard, shard * 10, "x"));
    }
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        (report.shards, report.delivered),
        (3, 2),
        "one batch of three shards"
    );
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].shard, shard(2));
    assert_eq!(receipts(conn), 2);
    let left: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|r| r.shard_identifier)
        .collect();
    assert_eq!(left, vec![2]);
    assert!(outbox
        .shard_state(conn, &shard(1))
        .expect("reads")
        .is_none());
    assert!(outbox
        .shard_state(conn, &shard(2))
        .expect("reads")
        .is_some());
    assert!(outbox
        .shard_state(conn, &shard(3))
        .expect("reads")
        .is_none());
}

/// A commit to a shard that is backing off makes no receiver call on the writer's thread
/// and does not wait: the periodic drain retries it when it is due.
fn a_commit_to_a_backed_off_shard_calls_no_receiver<C: TestConnection>(conn: &mut C) {
    create_receipts(conn);
    let failing = Arc::new(Mutex::new(vec![1]));
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(receipt_receiver(failing, calls.clone()))
        .clock(clock.clone())
        .build();
    outbox
        .context(conn, |ctx| ctx.write(row(4, 1, "first")))
        .expect("commits; its flush fails and backs the shard off");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(outbox
        .shard_state(conn, &shard(4))
        .expect("reads")
        .is_some());
    let started = Instant::now();
    for object in 2..=4 {
        outbox
            .context(conn, |ctx| ctx.write(row(4, object, "more")))
            .expect("commits");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the flushes left the failing shard to the periodic drain"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(conn.count("cell_outboxes"), 4);
}

/// A flush delivers its shards up to each one's newest row when it started: a row that
/// joins the shard meanwhile stays, even though another shard holds a higher id.
fn a_flush_is_bounded_by_its_own_shards_newest_row<C: TestConnection>(conn: &mut C) {
    let late_written = Arc::new(AtomicUsize::new(0));
    let late = late_written.clone();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let log = delivered.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut C, message: &OutboxMessage| {
            log.lock().expect("log").push(message.id);
            if late.fetch_add(1, Ordering::SeqCst) == 0 {
                // Row 50 of the same shard arrives while the flush delivers row 1 (written
                // by hand, past the guard, to choose its id).
                let late_row = format!(
                    "INSERT INTO cell_outboxes (id, shard_scope, shard_identifier, category, \
                     object_identifier, scheduled_from, scheduled_for, date_added) \
                     VALUES (50, 0, 1, 1, 2, {now}, {now}, {now})",
                    now = if is_postgres::<C>() {
                        "now()"
                    } else {
                        "CURRENT_TIMESTAMP"
                    }
                );
                diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(&late_row))?;
            }
            Ok::<_, Error>(())
        },
    );
    let (outbox, _clock) = manual(receivers);
    commit(conn, row(1, 1, "a"));
    diesel_outbox::guard::allow(conn, |conn| {
        conn.batch_execute(
            "INSERT INTO cell_outboxes (id, shard_scope, shard_identifier, category, \
             object_identifier, scheduled_from, scheduled_for, date_added) \
             VALUES (1000, 0, 2, 1, 9, '2026-01-01 00:00:00', '2016-08-01 00:00:00', \
             '2026-01-01 00:00:00')",
        )
    })
    .expect("another shard's row with a higher id");
    outbox.flush_shards(conn, &[shard(1)]).expect("flushes");
    assert_eq!(*delivered.lock().expect("log"), vec![1]);
    let left: Vec<i64> = conn.cell_rows().iter().map(|r| r.id).collect();
    assert_eq!(left, vec![50, 1000], "row 50 came after the flush started");
}

/// Runs `sql`, which writes the outbox table by hand, past the guard.
fn by_hand<C: TestConnection>(conn: &mut C, sql: &str) -> diesel::QueryResult<()> {
    diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(sql))
}

/// Rows written by SQL that the drain cannot read: each is its shard's failure, naming
/// the row, the shard backs off, and the other shards are drained in the same round.
fn an_unreadable_row_fails_only_its_shard<C: TestConnection>(conn: &mut C) {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let log = delivered.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            log.lock().expect("log").push(message.shard.identifier);
            Ok::<_, Error>(())
        },
    );
    let (outbox, _clock) = manual(receivers);
    commit(conn, row(1, 1, "healthy"));
    // Shard 2: a row whose schedule cannot be read (due, so the shard is claimed).
    // Shard 3: a readable due row, then one whose payload or date cannot be read.
    let insert = |id: i64, shard: i64, scheduled_for: &str, payload: &str| {
        format!(
            "INSERT INTO cell_outboxes (id, shard_scope, shard_identifier, category, \
             object_identifier, payload, scheduled_from, scheduled_for, date_added) \
             VALUES ({id}, 0, {shard}, 1, {id}, {payload}, '2026-01-01 00:00:00', \
             {scheduled_for}, '2026-01-01 00:00:00')"
        )
    };
    let (bad_schedule, bad_second) = match conn.dialect() {
        Dialect::Postgres => (
            insert(100, 2, "'-infinity'", "NULL"),
            insert(201, 3, "'infinity'", "NULL"),
        ),
        // MySQL stores the zero date when the session's sql_mode allows it, and no
        // NaiveDateTime reads it.
        Dialect::Mysql => (
            format!(
                "SET SESSION sql_mode = ''; {}",
                insert(100, 2, "'0000-00-00 00:00:00'", "NULL")
            ),
            insert(201, 3, "'0000-00-00 00:00:00'", "NULL"),
        ),
        Dialect::Sqlite => (
            insert(100, 2, "'not a date'", "NULL"),
            insert(201, 3, "'2016-08-01 00:00:00'", "CAST(X'FF' AS TEXT)"),
        ),
    };
    // Corrupt rows no application can write: past the guard.
    by_hand(conn, &bad_schedule).expect("bad row");
    if conn.dialect() == Dialect::Sqlite {
        // 'not a date' sorts after every date: make the shard due with a second row.
        by_hand(conn, &insert(101, 2, "'2016-08-01 00:00:00'", "NULL")).expect("due row");
    }
    by_hand(conn, &insert(200, 3, "'2016-08-01 00:00:00'", "NULL")).expect("good row");
    by_hand(conn, &bad_second).expect("bad row");
    commit(conn, row(4, 4, "healthy"));

    let report = outbox.drain_due_shards(conn).expect("the round goes on");
    let mut shards = delivered.lock().expect("log").clone();
    shards.sort_unstable();
    assert_eq!(
        shards,
        vec![1, 4],
        "the healthy shards are drained in the same round"
    );
    let mut failed: Vec<(i64, i64)> = report
        .failures
        .iter()
        .map(|f| (f.shard.shard().identifier, f.row_id))
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed,
        vec![(2, 100), (3, 201)],
        "each failure names its row"
    );
    for failure in &report.failures {
        assert!(
            matches!(failure.cause, FailureCause::UnreadableRow(_)),
            "{failure}"
        );
        assert!(failure.to_string().contains("cannot be read"), "{failure}");
    }
    for bad in [2, 3] {
        let state = outbox.shard_state(conn, &shard(bad)).expect("reads");
        assert!(
            state.is_some_and(|s| s.attempts == 1 && s.last_error.is_some()),
            "shard {bad} backs off with its error stored"
        );
    }
    // The next round does not fail on them again before their schedule.
    let again = outbox.drain_due_shards(conn).expect("drains");
    assert!(again.failures.is_empty());
}

/// A receiver whose own write violates a constraint fails its key only.
fn a_receivers_constraint_violation_fails_its_shard_only<C: TestConnection>(conn: &mut C) {
    conn.batch_execute("CREATE TABLE once (id BIGINT PRIMARY KEY)")
        .expect("table");
    conn.batch_execute("INSERT INTO once (id) VALUES (2)")
        .expect("taken id");
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        |conn: &mut C, message: &OutboxMessage| {
            conn.batch_execute(&format!(
                "INSERT INTO once (id) VALUES ({})",
                message.object_identifier
            ))
        },
    );
    let (outbox, _clock) = manual(receivers);
    for object in [1, 2, 3] {
        commit(conn, row(object, object, "x"));
    }
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.delivered, 2);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].object_identifier, 2);
    assert_eq!(conn.count("once"), 3, "ids 1 and 3 written, 2 was there");
}

/// A batch holds at most `max_batch_rows` rows of windows (its memory): the shard that
/// reaches the cap is cut short and the shards after it wait for the next batch, each
/// shard still in order, every key once.
fn a_batch_holds_at_most_its_row_cap<C: TestConnection>(conn: &mut C) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            log.lock()
                .expect("seen")
                .push((message.shard.identifier, message.object_identifier));
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::builder(receivers)
        .flush_on_commit(false)
        .max_batch_rows(5)
        .build();
    for object in 1..=3 {
        for shard in [1, 2, 3] {
            commit(conn, row(shard, object, "x"));
        }
    }
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.delivered, 9);
    let seen = seen.lock().expect("seen").clone();
    for shard in [1, 2, 3] {
        let objects: Vec<i64> = seen
            .iter()
            .filter(|(s, _)| *s == shard)
            .map(|(_, object)| *object)
            .collect();
        assert_eq!(
            objects,
            vec![1, 2, 3],
            "shard {shard} in order, each key once"
        );
    }
    assert!(
        report.shards > 3,
        "the cap spread the 9 rows over several batches: {} shard claims",
        report.shards
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
}

backend_tests!(
    a_batch_holds_at_most_its_row_cap,
    a_failure_at_one_key_keeps_the_keys_before_it,
    a_key_cut_by_its_window_is_delivered_once_with_its_newest_row,
    one_failing_shard_of_a_batch_backs_off_alone,
    a_commit_to_a_backed_off_shard_calls_no_receiver,
    a_flush_is_bounded_by_its_own_shards_newest_row,
    an_unreadable_row_fails_only_its_shard,
    a_receivers_constraint_violation_fails_its_shard_only,
);
