//! Operating the outbox on every backend: failures stored per shard, the exhaustion
//! policy that parks a key, parked groups listed, retried and discarded, the inspection
//! API (depths, lag, stuck shards) and an operator's "retry now".

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::inspect::ParkedKey;
use diesel_outbox::testing::ManualClock;
use diesel_outbox::{
    CellOutbox, Clock, ControlOutbox, DueShards, Error, Outbox, OutboxMessage, OutboxTable,
    Receivers, ShardKey,
};
use diesel_outbox_tests::{backend_tests, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
        ProjectUpdate = 2 { scope: Organization, silo: cell },
        UserUpdate = 3 { scope: User, silo: control },
    }
}

/// One receiver call: category, shard, object, payload.
type Call = (i32, i64, i64, Option<String>);

/// A receiver for every category that records its calls and fails for the objects in
/// `failing`.
#[derive(Clone, Default)]
struct Downstream {
    calls: Arc<Mutex<Vec<Call>>>,
    failing: Arc<Mutex<HashSet<i64>>>,
}

impl Downstream {
    fn receivers<C: TestConnection>(&self) -> Receivers<C> {
        Receivers::new()
            .cell(Category::OrganizationUpdate, self.receiver())
            .cell(Category::ProjectUpdate, self.receiver())
            .control(Category::OrganizationUpdate, self.receiver())
            .control(Category::UserUpdate, self.receiver())
    }

    fn receiver<C>(
        &self,
    ) -> impl Fn(&mut C, &OutboxMessage) -> Result<(), Error> + Send + Sync + 'static {
        let (calls, failing) = (self.calls.clone(), self.failing.clone());
        move |_conn: &mut C, message: &OutboxMessage| {
            let object = message.object_identifier;
            if failing.lock().expect("failing").contains(&object) {
                return Err(Error::InvalidCellName {
                    name: format!("object {object}"),
                    reason: "downstream refused it",
                });
            }
            calls.lock().expect("calls").push((
                message.category,
                message.shard.identifier,
                object,
                message.payload_as()?,
            ));
            Ok(())
        }
    }

    fn fail(&self, object: i64, failing: bool) {
        let mut set = self.failing.lock().expect("failing");
        if failing {
            set.insert(object);
        } else {
            set.remove(&object);
        }
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }

    /// The calls, each once: a key delivered before another key of its batch failed is
    /// delivered again in the replay (at least once, as documented).
    fn take_distinct(&self) -> Vec<Call> {
        let mut calls = self.take();
        calls.dedup();
        calls
    }
}

/// An outbox on a manual clock without flush, whose rows get their `date_added` from it.
fn outbox<C: TestConnection>(
    downstream: &Downstream,
    park_after: Option<u32>,
) -> (Outbox<C>, ManualClock) {
    let clock = ManualClock::starting_now();
    let mut builder = Outbox::builder(downstream.receivers())
        .clock(clock.clone())
        .flush_on_commit(false);
    if let Some(max_attempts) = park_after {
        builder = builder.exhaustion(
            Category::OrganizationUpdate,
            Exhaustion::Park { max_attempts },
        );
    }
    (builder.build(), clock)
}

fn org(shard: i64, object: i64, payload: &str) -> CellOutbox {
    CellOutbox::new(Category::OrganizationUpdate, shard, object)
        .payload(payload)
        .expect("serialises")
}

fn project(shard: i64, object: i64) -> CellOutbox {
    CellOutbox::new(Category::ProjectUpdate, shard, object)
}

fn write<C: TestConnection>(outbox: &Outbox<C>, conn: &mut C, rows: Vec<CellOutbox>) {
    outbox
        .context(conn, |ctx| {
            for row in rows {
                ctx.write(row)?;
            }
            Ok::<_, Error>(())
        })
        .expect("commits");
}

fn org_shard(shard: i64) -> ShardKey {
    ShardKey::cell(Scope::Organization, shard)
}

fn call(category: i32, shard: i64, object: i64, payload: Option<&str>) -> Call {
    (category, shard, object, payload.map(str::to_owned))
}

/// Point 1: attempts count the same failing key; another key failing starts them over
/// (the one before it got through); a success clears everything.
fn failures_are_stored_per_shard_and_count_the_failing_key<C: TestConnection>(conn: &mut C) {
    let downstream = Downstream::default();
    let (outbox, clock) = outbox(&downstream, None);
    downstream.fail(1, true);
    downstream.fail(2, true);
    write(&outbox, conn, vec![org(7, 1, "a"), org(7, 2, "b")]);
    let first_at = clock.now();

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.failures.len(), 1);
    let state = outbox
        .shard_state(conn, &org_shard(7))
        .expect("reads")
        .expect("the failing shard has a state");
    assert_eq!(state.attempts, 1);
    assert_eq!(state.failed_category, Some(1));
    assert_eq!(state.failed_object_identifier, Some(1));
    assert_eq!(
        state.failed_row_id,
        conn.cell_rows().first().map(|row| row.id)
    );
    assert_eq!(state.first_failure_at, Some(first_at));
    assert_eq!(state.last_failure_at, Some(first_at));
    let error = state.last_error.expect("the error is stored");
    assert!(
        error.contains("downstream refused it") && error.contains("object 1"),
        "{error}"
    );

    clock.advance(Duration::seconds(2));
    outbox.drain_due_shards(conn).expect("drains");
    let state = outbox
        .shard_state(conn, &org_shard(7))
        .expect("reads")
        .expect("still failing");
    assert_eq!(state.attempts, 2, "the same key failed again");
    assert_eq!(state.first_failure_at, Some(first_at));
    assert_eq!(state.last_failure_at, Some(clock.now()));

    // Object 1 gets through; object 2 is the next failing key: its own count.
    downstream.fail(1, false);
    clock.advance(Duration::seconds(4));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(downstream.take_distinct(), vec![call(1, 7, 1, Some("a"))]);
    let state = outbox
        .shard_state(conn, &org_shard(7))
        .expect("reads")
        .expect("failing at the next key");
    assert_eq!(
        (state.attempts, state.failed_object_identifier),
        (1, Some(2))
    );
    assert_eq!(state.first_failure_at, Some(clock.now()));
    assert_eq!(
        state.scheduled_for,
        clock.now() + Duration::seconds(2),
        "the backoff starts over with the new key"
    );

    downstream.fail(2, false);
    clock.advance(Duration::seconds(2));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(downstream.take(), vec![call(1, 7, 2, Some("b"))]);
    assert_eq!(
        outbox.shard_state(conn, &org_shard(7)).expect("reads"),
        None,
        "a success clears attempts, error and schedule"
    );
}

/// Point 2: after `max_attempts` failures of the same key its rows are parked, with ids,
/// error and attempts, and the shard's later keys are delivered. Another category keeps
/// the default policy and is retried forever.
fn a_key_failing_max_attempts_times_is_parked_and_its_shard_goes_on<C: TestConnection>(
    conn: &mut C,
) {
    let downstream = Downstream::default();
    let (outbox, clock) = outbox(&downstream, Some(3));
    downstream.fail(1, true);
    downstream.fail(30, true);
    write(&outbox, conn, vec![org(7, 1, "v1")]);
    write(
        &outbox,
        conn,
        vec![org(7, 1, "v2"), org(7, 2, "b"), org(7, 3, "c")],
    );
    write(&outbox, conn, vec![project(8, 30), project(8, 31)]);
    let parked_ids: Vec<i64> = conn
        .cell_rows()
        .iter()
        .filter(|row| row.object_identifier == 1)
        .map(|row| row.id)
        .collect();
    let first_at = clock.now();

    for attempt in 1..=2 {
        let report = outbox.drain_due_shards(conn).expect("drains");
        assert_eq!((report.failures.len(), report.parked), (2, 0));
        let state = outbox.shard_state(conn, &org_shard(7)).expect("reads");
        assert_eq!(state.map(|state| state.attempts), Some(attempt));
        clock.advance(Duration::hours(2));
    }
    assert_eq!(
        downstream.take(),
        vec![],
        "the shards wait behind their keys"
    );

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.parked, 1);
    assert_eq!(
        downstream.take(),
        vec![call(1, 7, 2, Some("b")), call(1, 7, 3, Some("c"))],
        "the shard went on past the parked key in the same drain"
    );
    assert_eq!(
        outbox.shard_state(conn, &org_shard(7)).expect("reads"),
        None
    );
    let left: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|row| row.object_identifier)
        .collect();
    assert_eq!(
        left,
        vec![30, 31],
        "only the other category's shard is left"
    );

    let parked = outbox
        .parked(conn, OutboxTable::Cell, 10)
        .expect("lists parked");
    assert_eq!(parked.len(), 1);
    let group = &parked[0];
    assert_eq!(
        group.key,
        ParkedKey {
            shard: org_shard(7),
            category: 1,
            object_identifier: 1
        }
    );
    assert_eq!(group.rows, 2);
    assert_eq!(
        (group.first_id, group.last_id),
        (parked_ids[0], parked_ids[1]),
        "the rows keep their ids"
    );
    assert_eq!(group.attempts, 3);
    assert_eq!(group.first_failure_at, Some(first_at));
    assert_eq!(group.parked_at, clock.now());
    assert!(
        group.error.contains("downstream refused it"),
        "{}",
        group.error
    );
    assert!(outbox
        .parked(conn, OutboxTable::Control, 10)
        .expect("lists")
        .is_empty());

    // The default policy: retried forever, never parked.
    for _ in 0..3 {
        clock.advance(Duration::hours(2));
        let report = outbox.drain_due_shards(conn).expect("drains");
        assert_eq!(report.parked, 0);
    }
    let state = outbox
        .shard_state(conn, &ShardKey::cell(Scope::Organization, 8))
        .expect("reads")
        .expect("still failing");
    assert_eq!(state.attempts, 6);
    assert_eq!(conn.count("cell_outboxes"), 2);
    let status = outbox
        .table_status(conn, OutboxTable::Cell)
        .expect("status");
    assert_eq!((status.parked.groups, status.parked.rows), (1, 2));
    assert_eq!(status.stuck_shards, 1);
}

/// Parked groups retried return with their ids, are delivered, and coalesce into a newer
/// row of their key; discarded ones are gone without a delivery.
fn parked_groups_are_retried_or_discarded<C: TestConnection>(conn: &mut C) {
    let downstream = Downstream::default();
    let (outbox, _clock) = outbox(&downstream, Some(1));
    let key = ParkedKey {
        shard: org_shard(7),
        category: 1,
        object_identifier: 1,
    };
    downstream.fail(1, true);
    write(&outbox, conn, vec![org(7, 1, "v1")]);
    write(&outbox, conn, vec![org(7, 1, "v2")]);
    let ids: Vec<i64> = conn.cell_rows().iter().map(|row| row.id).collect();
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        report.parked, 1,
        "max_attempts = 1 parks at the first failure"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);

    // Retried: back with their ids, delivered once with the newest.
    downstream.fail(1, false);
    assert_eq!(outbox.retry_parked(conn, &key).expect("retries"), 2);
    assert_eq!(
        conn.cell_rows()
            .iter()
            .map(|row| row.id)
            .collect::<Vec<_>>(),
        ids
    );
    assert!(outbox
        .parked(conn, OutboxTable::Cell, 10)
        .expect("lists")
        .is_empty());
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(downstream.take(), vec![call(1, 7, 1, Some("v2"))]);
    assert_eq!(conn.count("cell_outboxes"), 0);

    // Parked again; meanwhile a newer row of the key arrives: the retry coalesces into it.
    downstream.fail(1, true);
    write(&outbox, conn, vec![org(7, 1, "v3")]);
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        outbox.parked(conn, OutboxTable::Cell, 10).expect("lists")[0].rows,
        1
    );
    downstream.fail(1, false);
    write(&outbox, conn, vec![org(7, 1, "v4")]);
    assert_eq!(outbox.retry_parked(conn, &key).expect("retries"), 1);
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        downstream.take(),
        vec![call(1, 7, 1, Some("v4"))],
        "one call, with the newest row: the parked row coalesced into it"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);

    // Discarded: gone, never delivered.
    downstream.fail(1, true);
    downstream.fail(2, true);
    write(&outbox, conn, vec![org(7, 1, "v5"), org(9, 2, "w")]);
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        outbox
            .parked(conn, OutboxTable::Cell, 10)
            .expect("lists")
            .len(),
        2
    );
    downstream.fail(1, false);
    downstream.fail(2, false);
    assert_eq!(outbox.discard_parked(conn, &key).expect("discards"), 1);
    assert_eq!(
        outbox.discard_parked(conn, &key).expect("discards"),
        0,
        "nothing left of the key"
    );
    assert_eq!(
        outbox
            .retry_all_parked(conn, OutboxTable::Cell)
            .expect("retries"),
        1
    );
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(downstream.take(), vec![call(1, 9, 2, Some("w"))]);
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(conn.count("cell_outbox_parked"), 0);

    // A control group parks and returns the same way.
    let eu = ShardKey::control(Scope::Organization, 4, "eu");
    downstream.fail(44, true);
    outbox
        .context(conn, |ctx| {
            ctx.write(ControlOutbox::new(
                Category::OrganizationUpdate,
                4,
                44,
                "eu",
            ))
        })
        .expect("commits");
    outbox.drain_due_shards(conn).expect("drains");
    let parked = outbox
        .parked(conn, OutboxTable::Control, 10)
        .expect("lists");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].key.shard, eu);
    assert_eq!(
        outbox
            .discard_all_parked(conn, OutboxTable::Control)
            .expect("discards"),
        1
    );
    assert_eq!(conn.count("control_outboxes"), 0);
    assert_eq!(downstream.take(), vec![]);
}

/// Point 3: depths by shard and category, the delivery lag, stuck and skipped shards; and
/// "retry now" clears a backoff.
fn inspection_reads_depths_lag_and_stuck_shards<C: TestConnection>(conn: &mut C) {
    let downstream = Downstream::default();
    let (outbox, clock) = outbox(&downstream, None);
    let start = clock.now();
    write(
        &outbox,
        conn,
        vec![org(1, 1, "a"), org(1, 2, "b"), project(1, 3)],
    );
    clock.advance(Duration::seconds(10));
    write(&outbox, conn, vec![project(2, 4)]);
    outbox
        .context(conn, |ctx| {
            ctx.write(ControlOutbox::new(Category::UserUpdate, 5, 5, "eu"))?;
            ctx.write(ControlOutbox::new(Category::UserUpdate, 5, 6, "eu"))
        })
        .expect("commits");
    clock.advance(Duration::seconds(20));

    let depths = outbox
        .shard_depths(conn, OutboxTable::Cell, 10)
        .expect("depths");
    let summary: Vec<(ShardKey, u64)> = depths.iter().map(|d| (d.shard.clone(), d.rows)).collect();
    assert_eq!(summary, vec![(org_shard(1), 3), (org_shard(2), 1)]);
    assert_eq!(depths[0].oldest_added, start);
    assert_eq!(
        outbox
            .shard_depths(conn, OutboxTable::Cell, 1)
            .expect("depths")
            .len(),
        1
    );
    let control = outbox
        .shard_depths(conn, OutboxTable::Control, 10)
        .expect("depths");
    assert_eq!(control[0].shard, ShardKey::control(Scope::User, 5, "eu"));
    let categories: Vec<(i32, u64)> = outbox
        .category_depths(conn, OutboxTable::Cell)
        .expect("depths")
        .iter()
        .map(|d| (d.category, d.rows))
        .collect();
    assert_eq!(categories, vec![(1, 2), (2, 2)]);

    let status = outbox.status(conn).expect("status");
    assert_eq!(status.len(), 2);
    let cell = &status[0];
    assert_eq!((cell.table, cell.rows), (OutboxTable::Cell, 4));
    assert_eq!(cell.lag, std::time::Duration::from_secs(30));
    assert_eq!(
        cell.oldest_due.map(|row| row.id),
        conn.cell_rows().first().map(|row| row.id)
    );
    assert_eq!(cell.deepest_shard.as_ref().map(|d| d.rows), Some(3));
    assert_eq!((cell.stuck_shards, cell.skipped_shards), (0, 0));
    assert_eq!((status[1].rows, status[1].lag.as_secs()), (2, 20));

    // Shard 1 is skipped (its rows are kept, not due), shard 2 fails.
    outbox.skip_shard(conn, &org_shard(1)).expect("skips");
    downstream.fail(4, true);
    outbox
        .drain_due_shards_with(conn, &DueShards::new().table(OutboxTable::Cell))
        .expect("drains");
    let status = outbox
        .table_status(conn, OutboxTable::Cell)
        .expect("status");
    assert_eq!((status.stuck_shards, status.skipped_shards), (1, 1));
    assert_eq!(
        status.oldest_due.map(|row| row.id),
        conn.cell_rows()
            .iter()
            .find(|row| row.shard_identifier == 2)
            .map(|row| row.id),
        "the rows the kill switch keeps are not late; the failing shard's are"
    );
    assert_eq!(status.lag, std::time::Duration::from_secs(20));
    let stuck = outbox.stuck_shards(conn, OutboxTable::Cell).expect("stuck");
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].shard, org_shard(2));
    assert!(stuck[0]
        .last_error
        .as_deref()
        .is_some_and(|error| error.contains("object 4")));

    // Retry now: due at once, the attempts kept; a healthy shard has nothing to clear.
    let due = |conn: &mut C| {
        outbox
            .due_shards(conn, &DueShards::new().table(OutboxTable::Cell))
            .expect("due")
    };
    assert_eq!(due(conn), vec![], "backing off");
    assert!(outbox
        .retry_shard_now(conn, &org_shard(2))
        .expect("retries"));
    assert_eq!(due(conn), vec![org_shard(2)]);
    assert!(!outbox
        .retry_shard_now(conn, &org_shard(3))
        .expect("retries"));
    downstream.fail(4, false);
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        downstream.take(),
        vec![
            call(2, 2, 4, None),
            call(3, 5, 5, None),
            call(3, 5, 6, None)
        ]
    );
    let status = outbox
        .table_status(conn, OutboxTable::Cell)
        .expect("status");
    assert_eq!(
        (status.rows, status.stuck_shards),
        (3, 0),
        "the skipped shard's rows stay"
    );
    assert_eq!(status.oldest_due, None);
    assert_eq!(status.lag, std::time::Duration::ZERO);
}

backend_tests!(
    failures_are_stored_per_shard_and_count_the_failing_key,
    a_key_failing_max_attempts_times_is_parked_and_its_shard_goes_on,
    parked_groups_are_retried_or_discarded,
    inspection_reads_depths_lag_and_stuck_shards,
);
