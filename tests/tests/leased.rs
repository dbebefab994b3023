//! Leased delivery (`Delivery::Leased`, SQLite's default): the batch's lease is committed,
//! the receivers are called with no transaction open, and one short transaction that
//! first checks the lease deletes what was delivered. Writers never wait for a receiver;
//! a failing key costs the other keys of its batch no second call; a receiver that needs
//! its writes atomic with the delete still gets them; a worker whose lease was taken
//! over deletes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Duration as Span;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel_outbox::category::CellCategory;
use diesel_outbox::drain::Delivery;
use diesel_outbox::testing::{drain_until_empty, ManualClock};
use diesel_outbox::{
    outbox_context, BoxError, CellOutbox, DueShards, Error, Outbox, OutboxConnection,
    OutboxMessage, OutboxTable, Receivers,
};
use diesel_outbox_tests::{backend_db_tests, SqliteDb, TestConnection, TestDb};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category {
        Notify = 1 { scope: Organization, silo: cell },
        Audit = 2 { scope: Organization, silo: cell },
    }
}

fn commit<C: TestConnection, K: CellCategory>(conn: &mut C, category: K, shard: i64, object: i64) {
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(category, shard, object))
    })
    .expect("commits");
}

/// The depth of the transactions open on `conn` (0: none).
fn depth<C: OutboxConnection>(conn: &mut C) -> u32 {
    <AnsiTransactionManager as TransactionManager<C>>::transaction_manager_status_mut(conn)
        .transaction_depth()
        .ok()
        .flatten()
        .map_or(0, |depth| depth.get())
}

/// (shard, object) → calls.
type Calls = Arc<Mutex<HashMap<(i64, i64), usize>>>;

fn called(calls: &Calls, message: &OutboxMessage) {
    *calls
        .lock()
        .expect("calls")
        .entry((message.shard.identifier, message.object_identifier))
        .or_default() += 1;
}

/// SQLite: a receiver blocks for 12 s on the drain's connection while a writer commits
/// 100 times on another (half of them into the blocked shard). No commit waits for the
/// receiver, none fails with "database is locked", and the blocked key is delivered once.
#[test]
fn sqlite_a_blocked_receiver_never_holds_the_writers() {
    let db = SqliteDb::new();
    let calls: Calls = Arc::default();
    let blocked = Arc::new(AtomicBool::new(false));
    let (seen, block) = (calls.clone(), blocked.clone());
    let outbox = Outbox::builder(Receivers::new().cell_leased(
        Category::Notify,
        move |_conn: &mut diesel::SqliteConnection, message: &OutboxMessage| {
            called(&seen, message);
            if message.shard.identifier == 1 && !block.swap(true, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(12));
            }
            Ok::<_, Error>(())
        },
    ))
    .build();
    commit(&mut db.connect(), Category::Notify, 1, 0);

    let drain_db_url = db.url();
    let drainer_outbox = outbox.clone();
    let drainer = std::thread::spawn(move || {
        let mut conn = diesel_outbox::sqlite::SqliteOptions::new()
            .busy_timeout(Duration::from_secs(10))
            .establish(&drain_db_url)
            .expect("opens");
        drainer_outbox.drain_due_shards(&mut conn)
    });
    while !blocked.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut writer = db.connect();
    let (mut errors, mut slowest) = (0, Duration::ZERO);
    for n in 1..=100i64 {
        let started = Instant::now();
        let shard = if n % 2 == 0 { 1 } else { 2 + n % 5 };
        let outcome = outbox.context(&mut writer, |ctx| {
            ctx.write(CellOutbox::new(Category::Notify, shard, n))
        });
        slowest = slowest.max(started.elapsed());
        if let Err(error) = outcome {
            errors += 1;
            eprintln!("commit {n}: {error}");
        }
        std::thread::sleep(Duration::from_millis(80));
    }
    assert!(
        !drainer.is_finished(),
        "the receiver was still blocked while the writer committed"
    );
    eprintln!("100 commits while a receiver blocked: {errors} errors, the slowest {slowest:?}");
    assert_eq!(errors, 0, "no commit failed");
    assert!(
        slowest < Duration::from_secs(1),
        "no commit waited for the receiver: the slowest took {slowest:?}"
    );
    let report = drainer.join().expect("the drain thread").expect("drains");
    assert_eq!(report.leases_lost, 0);
    drain_until_empty(&mut writer, &outbox, 5).expect("the rest drains");
    assert_eq!(writer.count("cell_outboxes"), 0);
    let calls = calls.lock().expect("calls");
    assert_eq!(
        calls.get(&(1, 0)),
        Some(&1),
        "the blocked key was delivered once"
    );
    assert_eq!(calls.len(), 101, "every key was delivered");
}

/// A leased receiver runs with no transaction open; one that keeps its writes atomic
/// with the delete (the default) runs inside the short finishing transaction, and so do
/// the keys after it in its shard, in order.
fn atomic_receivers_keep_their_transaction<D: TestDb>(db: &D) {
    let order: Arc<Mutex<Vec<(i64, u32)>>> = Arc::default();
    let (leased, atomic) = (order.clone(), order.clone());
    let receivers = Receivers::new()
        .cell_leased(
            Category::Notify,
            move |conn: &mut D::Conn, message: &OutboxMessage| {
                let at = depth(conn);
                leased
                    .lock()
                    .expect("order")
                    .push((message.object_identifier, at));
                Ok::<_, Error>(())
            },
        )
        .cell(
            Category::Audit,
            move |conn: &mut D::Conn, message: &OutboxMessage| -> Result<(), BoxError> {
                let at = depth(conn);
                atomic
                    .lock()
                    .expect("order")
                    .push((message.object_identifier, at));
                conn.batch_execute(&format!(
                    "INSERT INTO audit_log (object) VALUES ({})",
                    message.object_identifier
                ))?;
                if message.object_identifier == 4 {
                    return Err("audit 4 fails after writing".into());
                }
                Ok(())
            },
        );
    let outbox = Outbox::builder(receivers)
        .delivery(Delivery::Leased)
        .flush_on_commit(false)
        .build();
    let mut conn = db.conn();
    conn.batch_execute("CREATE TABLE audit_log (object BIGINT NOT NULL)")
        .expect("table");
    commit(&mut conn, Category::Notify, 1, 1);
    commit(&mut conn, Category::Audit, 1, 2);
    commit(&mut conn, Category::Notify, 1, 3);
    commit(&mut conn, Category::Audit, 2, 4);
    commit(&mut conn, Category::Notify, 2, 5);

    let report = outbox.drain_due_shards(&mut conn).expect("drains");
    assert_eq!(report.delivered, 3, "{report:?}");
    assert_eq!(report.failures.len(), 1);
    let order = order.lock().expect("order").clone();
    let at = |object: i64| order.iter().find(|(o, _)| *o == object).map(|(_, d)| *d);
    assert_eq!(
        at(1),
        Some(0),
        "a leased key before any atomic one: no transaction"
    );
    assert!(
        at(2).is_some_and(|d| d > 0),
        "the atomic key runs in a transaction"
    );
    assert!(
        at(3).is_some_and(|d| d > 0),
        "a leased key after an atomic one in its shard follows it inside"
    );
    let position = |object: i64| order.iter().position(|(o, _)| *o == object);
    assert!(
        position(2) < position(3),
        "shard 1 kept its order: {order:?}"
    );
    assert_eq!(at(5), None, "shard 2 stopped at its failing key");
    assert_eq!(
        conn.scalar("SELECT COUNT(*) AS n FROM audit_log WHERE object = 4"),
        0,
        "the failing atomic key's write rolled back with it"
    );
    assert_eq!(
        conn.scalar("SELECT COUNT(*) AS n FROM audit_log WHERE object = 2"),
        1,
        "the delivered atomic key's write committed with its delete"
    );
    assert_eq!(conn.count("cell_outboxes"), 2, "keys 4 and 5 stay");
    assert_eq!(conn.count("outbox_drain_leases"), 0);
}

/// A failing key stops its shard only: under leased delivery every other key of the
/// batch is called once; in-transaction delivery replays the calls before the failure
/// (measured here: the first shard's keys twice).
fn a_failing_key_costs_its_batch_no_second_call<D: TestDb>(db: &D) {
    for delivery in [Delivery::Leased, Delivery::InTransaction] {
        let calls: Calls = Arc::default();
        let seen = calls.clone();
        let outbox = Outbox::builder(Receivers::new().cell_leased(
            Category::Notify,
            move |_conn: &mut D::Conn, message: &OutboxMessage| {
                called(&seen, message);
                if (message.shard.identifier, message.object_identifier) == (11, 1) {
                    return Err("shard 11's first key fails");
                }
                Ok(())
            },
        ))
        .delivery(delivery)
        .flush_on_commit(false)
        .build();
        let mut conn = db.conn();
        for shard in 10..14 {
            commit(&mut conn, Category::Notify, shard, 1);
            commit(&mut conn, Category::Notify, shard, 2);
        }
        let report = outbox.drain_due_shards(&mut conn).expect("drains");
        assert_eq!((report.delivered, report.failures.len()), (6, 1));
        let calls = std::mem::take(&mut *calls.lock().expect("calls"));
        assert_eq!(
            calls.get(&(11, 2)),
            None,
            "the failing shard stopped at its key"
        );
        assert_eq!(calls.get(&(11, 1)), Some(&1));
        let twice: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
        match delivery {
            Delivery::Leased => assert!(twice.is_empty(), "no key called twice: {twice:?}"),
            _ => assert_eq!(
                twice.len(),
                2,
                "in-transaction delivery replays the calls before the failure: {calls:?}"
            ),
        }
        assert_eq!(conn.count("outbox_drain_leases"), 0);
        diesel_outbox::guard::allow(&mut conn, |conn| {
            conn.batch_execute("DELETE FROM cell_outboxes; DELETE FROM cell_outbox_shards")
        })
        .expect("reset");
    }
}

/// A worker whose lease another drain took over (it found it expired) deletes nothing,
/// records nothing, and says so; the rows are delivered again.
fn a_taken_over_lease_deletes_nothing<D: TestDb>(db: &D) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let outbox = Outbox::builder(Receivers::new().cell_leased(
        Category::Notify,
        move |conn: &mut D::Conn, _message: &OutboxMessage| {
            // Another drain recovers the lease while this call runs.
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                diesel_outbox::guard::allow(conn, |conn| {
                    conn.batch_execute("DELETE FROM outbox_drain_leases")
                })?;
            }
            Ok::<_, Error>(())
        },
    ))
    .delivery(Delivery::Leased)
    .flush_on_commit(false)
    .build();
    let mut conn = db.conn();
    commit(&mut conn, Category::Notify, 1, 1);
    commit(&mut conn, Category::Notify, 2, 2);

    // One batch only (two shard claims): the round would otherwise claim them again.
    let one_batch = DueShards::new().table(OutboxTable::Cell).limit(2);
    let report = outbox
        .drain_due_shards_with(&mut conn, &one_batch)
        .expect("drains");
    assert_eq!(report.leases_lost, 1, "{report:?}");
    assert_eq!((report.delivered, report.rows_deleted), (0, 0));
    assert_eq!(conn.count("cell_outboxes"), 2, "nothing deleted");
    assert_eq!(conn.count("cell_outbox_shards"), 0, "nothing recorded");

    let report = outbox.drain_due_shards(&mut conn).expect("drains");
    assert_eq!((report.delivered, report.leases_lost), (2, 0));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "delivered again: at least once"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// A failing shard that keeps getting rows (10 a second for 10 s, on a manual clock) is
/// attempted once per backoff step, not at every new row; the healthy keys of its
/// batches are called once each; no batch leaves its lease behind.
fn a_failing_shard_under_traffic_waits_for_its_backoff<D: TestDb>(db: &D) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(Receivers::new().cell_leased(
        Category::Notify,
        move |_conn: &mut D::Conn, message: &OutboxMessage| {
            called(&seen, message);
            if message.shard.identifier == 1 {
                return Err("project 1's receiver is down");
            }
            Ok(())
        },
    ))
    .delivery(Delivery::Leased)
    .clock(clock.clone())
    .flush_on_commit(false)
    .build();
    let mut conn = db.conn();
    for n in 0..100 {
        commit(&mut conn, Category::Notify, 1, n);
        commit(&mut conn, Category::Notify, 2 + n % 3, n);
        outbox.drain_due_shards(&mut conn).expect("drains");
        clock.advance(Span::milliseconds(100));
    }
    let calls = calls.lock().expect("calls");
    let attempts: usize = calls
        .iter()
        .filter(|((shard, _), _)| *shard == 1)
        .map(|(_, n)| n)
        .sum();
    assert!(
        (2..=5).contains(&attempts),
        "the failing shard was attempted {attempts} times in 10 s"
    );
    let healthy: Vec<_> = calls.iter().filter(|((shard, _), _)| *shard != 1).collect();
    assert_eq!(healthy.len(), 100, "every healthy key was delivered");
    assert!(
        healthy.iter().all(|(_, n)| **n == 1),
        "each once: {healthy:?}"
    );
    assert_eq!(conn.count("outbox_drain_leases"), 0);
}

/// A batch whose calls together outlast its lease (3 s here) keeps it: the lease is
/// renewed between calls while another connection drains (and would recover an expired
/// lease) all along.
fn the_heartbeat_keeps_a_long_batch_its_lease<D: TestDb>(db: &D) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let outbox = Outbox::builder(Receivers::new().cell_leased(
        Category::Notify,
        move |_conn: &mut D::Conn, _message: &OutboxMessage| {
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(700));
            Ok::<_, Error>(())
        },
    ))
    .delivery(Delivery::Leased)
    .lease(Duration::from_secs(3))
    .flush_on_commit(false)
    .build();
    let mut conn = db.conn();
    for object in 0..7 {
        commit(&mut conn, Category::Notify, 1, object);
    }
    let done = Arc::new(AtomicBool::new(false));
    let other = {
        let (outbox, done, mut conn) = (outbox.clone(), done.clone(), db.conn());
        let calls = calls.clone();
        std::thread::spawn(move || {
            // From the first call on: the batch is claimed, its lease is what holds it.
            while calls.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut recovered = 0;
            while !done.load(Ordering::SeqCst) {
                let report = outbox.drain_due_shards(&mut conn).expect("drains");
                recovered += report.abandoned_batches;
                std::thread::sleep(Duration::from_millis(100));
            }
            recovered
        })
    };
    let started = Instant::now();
    let report = outbox.drain_due_shards(&mut conn).expect("drains");
    done.store(true, Ordering::SeqCst);
    let recovered = other.join().expect("the other drain");
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the batch outlasted its lease"
    );
    assert_eq!((report.delivered, report.leases_lost), (7, 0), "{report:?}");
    assert_eq!(recovered, 0, "nobody took the live lease over");
    assert_eq!(calls.load(Ordering::SeqCst), 7, "each key once");
    assert_eq!(conn.count("cell_outboxes"), 0);
}

backend_db_tests!(
    atomic_receivers_keep_their_transaction,
    a_failing_key_costs_its_batch_no_second_call,
    a_taken_over_lease_deletes_nothing,
    a_failing_shard_under_traffic_waits_for_its_backoff,
    the_heartbeat_keeps_a_long_batch_its_lease,
);
