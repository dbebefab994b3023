//! Rows no drain could deliver and, before, nobody saw: a schedule that cannot be read
//! ('infinity' on PostgreSQL, a text that is no date on SQLite, a zero date on MySQL)
//! sorts after every "now", so no claim finds the row due; a row whose shard scope is not
//! its category's contradicts the declaration. Each is counted by `status`, named by
//! `stuck` (table, shard, row) within one drain round, parked under its category's
//! policy, and repaired or discarded by an operator; none is delivered or skipped
//! silently.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Duration as Span;
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::testing::ManualClock;
use diesel_outbox::{
    outbox_context, CellOutbox, Error, Outbox, OutboxMessage, OutboxTable, Receivers, ShardKey,
};
use diesel_outbox_tests::{backend_tests, Dialect, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { Notify = 1 { scope: Organization, silo: cell } }
}

/// Writes a row of shard 0/`shard` whose schedule the backend cannot read; its id.
fn write_unreadable<C: TestConnection>(conn: &mut C, shard: i64, object: i64) -> i64 {
    let (setup, never) = match conn.dialect() {
        Dialect::Sqlite => ("", "'not a date'"),
        Dialect::Postgres => ("", "'infinity'"),
        Dialect::Mysql => ("SET SESSION sql_mode = '';", "'0000-00-00 00:00:00'"),
    };
    // Written by hand, as a bug or a bad migration would: the guard lets it through.
    let sql = format!(
        "{setup} INSERT INTO cell_outboxes \
         (shard_scope, shard_identifier, category, object_identifier, scheduled_for) \
         VALUES (0, {shard}, 1, {object}, {never})"
    );
    diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(&sql)).expect("an unreadable row");
    conn.scalar("SELECT MAX(id) AS n FROM cell_outboxes")
}

fn counting<C: TestConnection>(calls: &Arc<AtomicUsize>) -> Receivers<C> {
    let calls = calls.clone();
    Receivers::new().cell(
        Category::Notify,
        move |_conn: &mut C, _message: &OutboxMessage| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(())
        },
    )
}

fn a_never_due_unreadable_row_is_counted_named_repaired_and_discarded<C: TestConnection>(
    conn: &mut C,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let outbox = Outbox::builder(counting(&calls))
        .flush_on_commit(false)
        .build();
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::Notify, 1, 1))
    })
    .expect("commits");
    let id = write_unreadable(conn, 2, 7);
    let shard = ShardKey::cell(Scope::Organization, 2);

    let cell = |outbox: &Outbox<C>, conn: &mut C| {
        outbox
            .table_status(conn, OutboxTable::Cell)
            .expect("status")
    };
    assert_eq!(
        cell(&outbox, conn).unreadable_rows,
        1,
        "status counts it at once"
    );

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        (report.delivered, report.unreadable_rows),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(report.failures[0].row_id, id);
    let stuck = outbox.stuck_shards(conn, OutboxTable::Cell).expect("stuck");
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].shard, shard);
    assert_eq!(stuck[0].failed_row_id, Some(id));
    assert!(stuck[0]
        .last_error
        .as_deref()
        .is_some_and(|error| error.contains("cannot be read")));
    let status = cell(&outbox, conn);
    assert_eq!((status.unreadable_rows, status.stuck_shards), (1, 1));

    // Found again by the next round, it is not recorded twice.
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.unreadable_rows, 0);
    let state = outbox
        .shard_state(conn, &shard)
        .expect("state")
        .expect("failing");
    assert_eq!(state.attempts, 1);

    // Repaired, it reads and is delivered.
    assert!(outbox
        .repair_row(conn, OutboxTable::Cell, id)
        .expect("repairs"));
    assert!(outbox.retry_shard_now(conn, &shard).expect("retries"));
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cell(&outbox, conn).unreadable_rows, 0);

    // Or discarded without delivery.
    let id = write_unreadable(conn, 3, 8);
    assert!(!outbox
        .discard_row(conn, OutboxTable::Cell, id + 1)
        .expect("nothing"));
    assert!(outbox
        .discard_row(conn, OutboxTable::Cell, id)
        .expect("discards"));
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a discarded row is not delivered"
    );
}

/// An unreadable row is parked under its category's policy, counting the shard's
/// backoff steps; its shard goes on.
fn an_unreadable_row_is_parked_by_its_categorys_policy<C: TestConnection>(conn: &mut C) {
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(counting(&calls))
        .flush_on_commit(false)
        .clock(clock.clone())
        .exhaustion(Category::Notify, Exhaustion::Park { max_attempts: 2 })
        .build();
    let id = write_unreadable(conn, 2, 7);
    outbox
        .drain_due_shards(conn)
        .expect("drains: attempt 1, found by the scan");
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::Notify, 2, 9))
    })
    .expect("a later row of the shard");
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the shard waits behind its row"
    );

    clock.advance(Span::seconds(3));
    let report = outbox
        .drain_due_shards(conn)
        .expect("drains: attempt 2 parks it");
    assert_eq!(report.parked, 1, "{report:?}");
    assert_eq!(report.delivered, 1, "the shard goes on: {report:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let parked = outbox
        .table_status(conn, OutboxTable::Cell)
        .expect("status")
        .parked;
    assert_eq!(parked.rows, 1);
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(
        conn.scalar(&format!(
            "SELECT COUNT(*) AS n FROM cell_outbox_parked WHERE id = {id}"
        )),
        1
    );
}

/// A row whose shard scope is not its category's is not delivered to the category's
/// receiver: it fails its shard, named, and parks under the category's policy.
fn a_row_contradicting_the_declaration_is_not_delivered<C: TestConnection>(conn: &mut C) {
    let calls = Arc::new(AtomicUsize::new(0));
    let outbox = Outbox::builder(counting(&calls))
        .flush_on_commit(false)
        .exhaustion(Category::Notify, Exhaustion::Park { max_attempts: 1 })
        .build();
    diesel_outbox::guard::allow(conn, |conn| {
        conn.batch_execute(
            "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, object_identifier) \
             VALUES (5, 1, 1, 1)",
        )
    })
    .expect("a row of scope 5, whose category is declared in scope 0");
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!((report.delivered, report.parked), (0, 1), "{report:?}");
    assert!(
        report.failures[0]
            .to_string()
            .contains("contradicts the declaration"),
        "{}",
        report.failures[0]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "never delivered");
    assert_eq!(conn.count("cell_outbox_parked"), 1);
}

backend_tests!(
    a_never_due_unreadable_row_is_counted_named_repaired_and_discarded,
    an_unreadable_row_is_parked_by_its_categorys_policy,
    a_row_contradicting_the_declaration_is_not_delivered,
);
