//! A worker that died mid-batch (a receiver that aborted its process, say) leaves its
//! lease behind. Its shards must not go back to a receiver before they are backed off,
//! and then only alone and at their schedule, new rows or not: otherwise the receiver that
//! killed one worker kills the next, once per worker or once per new row. The chaos
//! program (`chaos/`, scenario `abort`) shows the same with real processes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel_outbox::testing::ManualClock;
use diesel_outbox::{
    outbox_context, CellOutbox, Error, Outbox, OutboxMessage, Receivers, ShardKey,
};
use diesel_outbox_tests::{backend_tests, Dialect, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
}

fn commit<C: TestConnection>(conn: &mut C, shard: i64, object: i64) {
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, shard, object))
    })
    .expect("commits");
}

/// The lease a worker that died while delivering shard 5 left behind: long expired (how
/// SQLite tells), and with no session holding its lock (how PostgreSQL tells). On MySQL a
/// worker picks its lease's id and names its connection, whose lock tells: no connection
/// 0 exists.
fn dead_lease(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Mysql => {
            "INSERT INTO outbox_drain_leases (id, outbox_table, shards, taken_at, expires_at, holder) \
             VALUES (1, 'cell_outboxes', '[[0,5]]', '2000-01-01 00:00:00', '2000-01-01 00:05:00', 0)"
        }
        Dialect::Sqlite | Dialect::Postgres => {
            "INSERT INTO outbox_drain_leases (outbox_table, shards, taken_at, expires_at) \
             VALUES ('cell_outboxes', '[[0,5]]', '2000-01-01 00:00:00', '2000-01-01 00:05:00')"
        }
    }
}

/// Writes [`dead_lease`]: the test plays the dead worker, past the guard.
fn write_dead_lease<C: TestConnection>(conn: &mut C) -> diesel::QueryResult<()> {
    let sql = dead_lease(conn.dialect());
    diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(sql))
}

/// A worker dies delivering shard 5 while this drain delivers shard 6 (its receiver
/// writes the dead worker's lease). The next claim of the same call must not hand shard
/// 5 to a receiver (on PostgreSQL it takes it, since nothing holds its lock, then gives
/// it back); it is backed off, new rows do not make it due, and at its schedule it is
/// delivered alone.
fn a_dead_workers_shard_waits_for_its_backoff_new_rows_or_not<C: TestConnection>(conn: &mut C) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut C, message: &OutboxMessage| {
            match message.shard.identifier {
                5 => {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                6 if message.object_identifier == 1 => write_dead_lease(conn)?,
                _ => {}
            }
            Ok::<_, Error>(())
        },
    ))
    .clock(clock.clone())
    .flush_on_commit(false)
    .batch_shards(1)
    .build();
    commit(conn, 6, 1);
    commit(conn, 5, 2);

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.delivered, 1, "shard 6 is delivered");
    assert_eq!(report.abandoned_batches, 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no receiver call for shard 5"
    );
    assert_eq!(conn.count("outbox_drain_leases"), 0);
    let shard = ShardKey::cell(Scope::Organization, 5);
    let state = outbox
        .shard_state(conn, &shard)
        .expect("reads")
        .expect("backed off");
    assert!(state.isolated && state.attempts == 1, "{state:?}");
    assert!(state
        .last_error
        .is_some_and(|error| error.contains("stopped while delivering")));

    commit(conn, 5, 3);
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a new row does not make it due: each attempt may cost a process"
    );

    clock.advance(chrono::Duration::seconds(3));
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "both keys, at its schedule"
    );
    // Alone, and one key per batch: a death is counted against the key it happened at.
    assert_eq!(report.shards, 2, "alone, a key at a time");
    assert!(outbox.shard_state(conn, &shard).expect("reads").is_none());
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// A writer's flush never takes a shard a dead worker's lease lists (its lock, on
/// PostgreSQL, died with the worker): the receiver that killed that worker would kill the
/// writer. The periodic drain backs it off instead.
fn a_flush_leaves_a_dead_workers_shard_alone<C: TestConnection>(conn: &mut C) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let outbox = Outbox::new(Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, _message: &OutboxMessage| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(())
        },
    ));
    write_dead_lease(conn).expect("a dead worker's lease");
    outbox
        .context(conn, |ctx| {
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 5, 1))?;
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 7, 1))
        })
        .expect("commits");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the flush delivered shard 7 and left shard 5"
    );
    assert_eq!(conn.count("cell_outboxes"), 1);
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!((report.abandoned_batches, report.delivered), (1, 0));
    assert!(outbox
        .shard_state(conn, &ShardKey::cell(Scope::Organization, 5))
        .expect("reads")
        .is_some_and(|state| state.isolated));
}

backend_tests!(
    a_dead_workers_shard_waits_for_its_backoff_new_rows_or_not,
    a_flush_leaves_a_dead_workers_shard_alone
);
