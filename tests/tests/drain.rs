//! The drain on every backend: coalesced delivery, backoff, schedules, flush on commit,
//! the kill switch, failures that name their row, and the test helper.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use diesel_outbox::drain::{FailureCause, Metrics};
use diesel_outbox::row::OutboxWrite;
use diesel_outbox::testing::{drain_until_empty, ManualClock};
use diesel_outbox::{
    outbox_context, BoxError, CellOutbox, Clock, ControlOutbox, DueShards, Error, Outbox,
    OutboxMessage, OutboxTable, Receiver, Receivers, ShardKey,
};
use diesel_outbox_tests::{backend_tests, TestConnection};
use serde::Deserialize;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
        ProjectUpdate = 2 { scope: Organization, silo: cell },
        UserUpdate = 3 { scope: User, silo: control },
        Unhandled = 4 { scope: Organization, silo: cell },
    }
}

/// One receiver call, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Delivered {
    category: i32,
    shard: i64,
    object: i64,
    payload: Option<String>,
    cell: Option<String>,
}

fn delivered(category: i32, shard: i64, object: i64, payload: Option<&str>) -> Delivered {
    Delivered {
        category,
        shard,
        object,
        payload: payload.map(str::to_owned),
        cell: None,
    }
}

/// Records every receiver call.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Delivered>>>);

impl Recorder {
    fn receiver<C>(
        &self,
    ) -> impl Fn(&mut C, &OutboxMessage) -> Result<(), BoxError> + Send + Sync + 'static {
        let log = self.0.clone();
        move |_conn: &mut C, message: &OutboxMessage| {
            let payload: Option<String> = message.payload_as()?;
            log.lock().expect("recorder").push(Delivered {
                category: message.category,
                shard: message.shard.identifier,
                object: message.object_identifier,
                payload,
                cell: message.cell_name.clone(),
            });
            Ok(())
        }
    }

    fn take(&self) -> Vec<Delivered> {
        std::mem::take(&mut *self.0.lock().expect("recorder"))
    }
}

/// Receivers recording every category but `Unhandled`.
fn recording<C: TestConnection>(recorder: &Recorder) -> Receivers<C> {
    Receivers::new()
        .cell(Category::OrganizationUpdate, recorder.receiver())
        .cell(Category::ProjectUpdate, recorder.receiver())
        .control(Category::OrganizationUpdate, recorder.receiver())
        .control(Category::UserUpdate, recorder.receiver())
}

/// An outbox on a manual clock, flush off: rows wait for an explicit drain.
fn manual_outbox<C: TestConnection>(receivers: Receivers<C>) -> (Outbox<C>, ManualClock) {
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(receivers)
        .clock(clock.clone())
        .flush_on_commit(false)
        .build();
    (outbox, clock)
}

/// Commits `row` in its own transaction (no flush).
fn commit<C: TestConnection>(conn: &mut C, row: impl Into<OutboxWrite>) {
    let row = row.into();
    outbox_context(conn, |ctx| ctx.write(row)).expect("commits");
}

fn org(shard: i64, object: i64, payload: &str) -> CellOutbox {
    CellOutbox::new(Category::OrganizationUpdate, shard, object)
        .payload(payload)
        .expect("serialises")
}

fn org_shard(shard: i64) -> ShardKey {
    ShardKey::cell(Scope::Organization, shard)
}

fn coalesced_groups_deliver_the_newest_row_once<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let (outbox, _clock) = manual_outbox(recording(&recorder));
    commit(conn, org(1, 1, "a1"));
    commit(
        conn,
        CellOutbox::new(Category::ProjectUpdate, 1, 10)
            .payload("p1")
            .expect("serialises"),
    );
    commit(conn, org(1, 1, "a2"));
    commit(conn, org(1, 1, "a3"));
    commit(conn, org(2, 2, "b1"));
    for payload in ["eu1", "eu2"] {
        commit(
            conn,
            ControlOutbox::new(Category::UserUpdate, 5, 5, "eu")
                .payload(payload)
                .expect("serialises"),
        );
    }
    commit(conn, ControlOutbox::new(Category::UserUpdate, 5, 5, "us"));

    let report = outbox.flush_shards(conn, &[org_shard(1)]).expect("drains");
    assert_eq!(
        recorder.take(),
        vec![
            delivered(1, 1, 1, Some("a3")),
            delivered(2, 1, 10, Some("p1"))
        ],
        "one call per coalesced key, with the newest row, in id order"
    );
    assert_eq!((report.delivered, report.rows_deleted), (2, 4));
    assert!(conn.cell_rows().iter().all(|row| row.shard_identifier == 2));

    // The other shards are untouched.
    assert_eq!(conn.control_rows().len(), 3);
    let eu = ShardKey::control(Scope::User, 5, "eu");

    // A control shard is one cell's rows: the "eu" rows coalesce, "us" is apart.
    outbox.flush_shards(conn, &[eu]).expect("drains");
    let mut eu_call = delivered(3, 5, 5, Some("eu2"));
    eu_call.cell = Some("eu".into());
    assert_eq!(recorder.take(), vec![eu_call]);
    assert_eq!(conn.control_rows().len(), 1);
}

/// Shards deeper than the window (three rows) are read a window at a time, beside a
/// shallow shard in the same batch: each key is delivered once, with its newest row even
/// when the window cut it, in order of its first row, and every row goes.
fn windows_smaller_than_a_shard_deliver_each_key_once<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let outbox = Outbox::builder(recording(&recorder))
        .flush_on_commit(false)
        .window(3)
        .build();
    for round in 1..=3 {
        for object in 1..=4 {
            commit(conn, org(1, object, &format!("{object}-{round}")));
            commit(
                conn,
                ControlOutbox::new(Category::UserUpdate, 7, object, "eu")
                    .payload(&format!("{object}-{round}"))
                    .expect("serialises"),
            );
        }
    }
    commit(conn, org(2, 9, "9-1"));
    commit(conn, org(2, 9, "9-2"));

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let calls = recorder.take();
    let of = |shard: i64| -> Vec<(i64, Option<String>)> {
        calls
            .iter()
            .filter(|call| call.shard == shard)
            .map(|call| (call.object, call.payload.clone()))
            .collect()
    };
    let newest = |objects: &[i64]| -> Vec<(i64, Option<String>)> {
        objects
            .iter()
            .map(|object| (*object, Some(format!("{object}-3"))))
            .collect()
    };
    assert_eq!(of(1), newest(&[1, 2, 3, 4]), "cell shard 1");
    assert_eq!(of(7), newest(&[1, 2, 3, 4]), "control shard (eu, 7)");
    assert_eq!(of(2), vec![(9, Some("9-2".to_owned()))]);
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(conn.count("control_outboxes"), 0);
}

fn a_row_written_during_delivery_survives_for_a_later_round<C: TestConnection>(conn: &mut C) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut C, message: &OutboxMessage| {
            let payload: Option<String> = message.payload_as()?;
            let first = {
                let mut seen = seen.lock().expect("calls");
                seen.push(payload);
                seen.len() == 1
            };
            if first {
                // A writer changes the object again while its group is being delivered.
                outbox_context(conn, |ctx| ctx.write(org(1, 1, "v3")))?;
            }
            Ok::<_, Error>(())
        },
    );
    let (outbox, _clock) = manual_outbox(receivers);
    commit(conn, org(1, 1, "v1"));
    commit(conn, org(1, 1, "v2"));

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        *calls.lock().expect("calls"),
        vec![Some("v2".to_owned()), Some("v3".to_owned())],
        "the row written during delivery was not deleted with the group, and came next"
    );
    assert_eq!((report.delivered, report.rows_deleted), (2, 3));
    assert_eq!(conn.count("cell_outboxes"), 0);
}

fn a_failing_receiver_backs_off_and_converges<C: TestConnection>(conn: &mut C) {
    let failing = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let (fail, count) = (failing.clone(), calls.clone());
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, _message: &OutboxMessage| {
            count.fetch_add(1, Ordering::SeqCst);
            if fail.load(Ordering::SeqCst) {
                Err("downstream is down")
            } else {
                Ok(())
            }
        },
    );
    let (outbox, clock) = manual_outbox(receivers);
    let start = clock.now();
    commit(conn, org(1, 1, "v1"));

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(conn.cell_rows().len(), 1, "nothing deleted");
    // Schedules are kept per shard (they were on every row before the drain rewrite).
    let state = outbox
        .shard_state(conn, &org_shard(1))
        .expect("reads")
        .expect("the failing shard has a state");
    assert_eq!(state.scheduled_for, start + Duration::seconds(2));
    assert_eq!(state.scheduled_from, start);
    assert_eq!(state.attempts, 1);
    assert!(state
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("downstream is down")));

    // Not retried before its schedule.
    outbox.drain_due_shards(conn).expect("drains");
    clock.advance(Duration::milliseconds(1_999));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Retried once due; the delay doubles.
    clock.advance(Duration::milliseconds(1));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let state = outbox.shard_state(conn, &org_shard(1)).expect("reads");
    assert_eq!(
        state.map(|state| (state.scheduled_for, state.attempts)),
        Some((start + Duration::seconds(2 + 4), 2))
    );

    // A new row does not make a failing shard due sooner: it waits for the backoff step.
    commit(conn, org(1, 2, "other"));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no retry before the schedule"
    );
    assert_eq!(conn.count("cell_outboxes"), 2);

    // The receiver recovers: the next due round delivers everything.
    failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::seconds(8));
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert!(report.failures.is_empty());
    assert_eq!(report.delivered, 2);
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(
        outbox.shard_state(conn, &org_shard(1)).expect("reads"),
        None,
        "success forgets the failures"
    );
}

fn future_rows_wait_unless_their_shard_is_due<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let (outbox, clock) = manual_outbox(recording(&recorder));
    commit(conn, org(1, 1, "later"));
    commit(conn, org(2, 2, "later"));
    let future = clock.now() + Duration::minutes(5);
    // Formatted as diesel binds timestamps, so SQLite's text comparison agrees. Past the
    // guard: no application may reschedule rows.
    let reschedule = format!(
        "UPDATE cell_outboxes SET scheduled_for = '{}'",
        future.format("%F %T%.f")
    );
    diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(&reschedule)).expect("reschedules");

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!((report.shards, report.delivered), (0, 0));
    assert_eq!(recorder.take(), vec![]);

    // One due row in shard 1 drains its future rows too; shard 2 keeps waiting.
    commit(conn, org(1, 3, "now"));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        recorder.take(),
        vec![
            delivered(1, 1, 1, Some("later")),
            delivered(1, 1, 3, Some("now"))
        ]
    );
    assert_eq!(conn.count("cell_outboxes"), 1);
    clock.advance(Duration::minutes(5));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(recorder.take(), vec![delivered(1, 2, 2, Some("later"))]);
}

fn due_shards_are_drained_oldest_first_and_partition_by_id<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let (outbox, _clock) = manual_outbox(recording(&recorder));
    for shard in [3, 1, 2] {
        commit(conn, org(shard, shard, "x"));
    }
    let shards = |calls: Vec<Delivered>| calls.iter().map(|call| call.shard).collect::<Vec<_>>();
    let limited = outbox
        .drain_due_shards_with(conn, &DueShards::new().limit(1))
        .expect("drains");
    assert_eq!(limited.shards, 1);
    assert_eq!(shards(recorder.take()), vec![3], "the oldest shard first");
    for shard in [3, 4] {
        commit(conn, org(shard, shard, "y"));
    }
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        shards(recorder.take()),
        vec![1, 2, 3, 4],
        "in order of their oldest rows"
    );

    for shard in [5, 6, 7, 8] {
        commit(conn, org(shard, shard, "z"));
    }
    let parts = outbox
        .partition_ids(conn, OutboxTable::Cell, 2)
        .expect("partitions");
    assert_eq!(parts.len(), 2);
    let mut found = Vec::new();
    for part in parts {
        let due = DueShards::new().table(OutboxTable::Cell).id_range(part);
        let report = outbox.drain_due_shards_with(conn, &due).expect("drains");
        assert_eq!(report.shards, 2, "each partition has two of the shards");
        found.extend(shards(recorder.take()));
    }
    assert_eq!(
        found,
        vec![5, 6, 7, 8],
        "the partitions split the shards between them"
    );
}

fn flush_on_commit_delivers_only_the_touched_shards<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let outbox = Outbox::new(recording(&recorder));
    commit(conn, org(2, 2, "waiting")); // plain outbox_context: never flushes

    outbox
        .context(conn, |ctx| {
            ctx.write(org(1, 1, "a"))?;
            ctx.write(org(1, 1, "b"))?;
            ctx.write(CellOutbox::new(Category::ProjectUpdate, 1, 7))
        })
        .expect("commits");
    assert_eq!(
        recorder.take(),
        vec![delivered(1, 1, 1, Some("b")), delivered(2, 1, 7, None)],
        "flushed before context returned"
    );
    assert_eq!(conn.count("cell_outboxes"), 1, "the untouched shard waits");

    // Flush off for one context, for one row, and inside an enclosing transaction.
    outbox
        .context(conn, |ctx| {
            ctx.set_flush(false);
            ctx.write(org(3, 3, "context off"))
        })
        .expect("commits");
    outbox
        .context(conn, |ctx| ctx.write(org(4, 4, "row off").flush(false)))
        .expect("commits");
    conn.transaction(|conn| outbox.context(conn, |ctx| ctx.write(org(5, 5, "enclosed"))))
        .expect("commits");
    assert_eq!(recorder.take(), vec![]);
    assert_eq!(conn.count("cell_outboxes"), 4);

    drain_until_empty(conn, &outbox, 3).expect("drains");
    assert_eq!(recorder.take().len(), 4);
}

fn a_failed_flush_leaves_the_rows_for_the_periodic_drain<C: TestConnection>(conn: &mut C) {
    let failing = Arc::new(AtomicBool::new(true));
    let fail = failing.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, _message: &OutboxMessage| {
            if fail.load(Ordering::SeqCst) {
                Err("down")
            } else {
                Ok(())
            }
        },
    );
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(receivers).clock(clock.clone()).build();
    let value = outbox
        .context(conn, |ctx| {
            ctx.write(org(1, 1, "v"))?;
            Ok::<_, Error>(42)
        })
        .expect("the writer's call succeeds although the flush failed");
    assert_eq!(value, 42);
    assert_eq!(conn.cell_rows().len(), 1);
    let state = outbox.shard_state(conn, &org_shard(1)).expect("reads");
    assert_eq!(
        state.map(|state| state.scheduled_for),
        Some(clock.now() + Duration::seconds(2)),
        "backed off"
    );

    failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::seconds(2));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// Changed by the drain rewrite, as the issue asked: the kill switch used to delete every
/// row of a skipped shard; now it keeps each key's newest row (Sentry's behaviour), so
/// that lifting the switch delivers the latest state.
fn the_kill_switch_keeps_each_keys_newest_row<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let (outbox, _clock) = manual_outbox(recording(&recorder));
    let eu = ShardKey::control(Scope::User, 9, "eu");
    outbox.skip_shard(conn, &org_shard(1)).expect("skips");
    outbox.skip_shard(conn, &eu).expect("skips");
    commit(conn, org(1, 1, "a"));
    commit(conn, org(1, 1, "b"));
    commit(conn, org(1, 2, "c"));
    commit(conn, ControlOutbox::new(Category::UserUpdate, 9, 9, "eu"));
    commit(conn, ControlOutbox::new(Category::UserUpdate, 9, 9, "us"));
    commit(conn, org(2, 2, "kept"));

    let report = outbox.drain_due_shards(conn).expect("drains");
    let mut us_call = delivered(3, 9, 9, None);
    us_call.cell = Some("us".into());
    assert_eq!(
        recorder.take(),
        vec![delivered(1, 2, 2, Some("kept")), us_call]
    );
    assert_eq!((report.skipped, report.delivered), (3, 2));
    let payloads: Vec<Option<String>> = conn
        .cell_rows()
        .iter()
        .map(|row| row.payload_as().expect("decodes"))
        .collect();
    assert_eq!(
        payloads,
        vec![Some("b".to_owned()), Some("c".to_owned())],
        "each key's older rows are gone, its newest kept"
    );
    assert_eq!(conn.count("control_outboxes"), 1);
    let again = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        (again.shards, again.skipped),
        (0, 0),
        "a compacted shard is not due"
    );

    outbox.unskip_shard(conn, &org_shard(1)).expect("unskips");
    assert!(!outbox.is_skipped(conn, &org_shard(1)).expect("reads"));
    assert!(outbox.is_skipped(conn, &eu).expect("reads"));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        recorder.take(),
        vec![delivered(1, 1, 1, Some("b")), delivered(1, 1, 2, Some("c"))],
        "lifting the switch delivers the latest state"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Rename {
    name: String,
}

fn undeliverable_rows_stay_and_name_their_row<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let receivers = recording(&recorder)
        .cell(
            Category::ProjectUpdate,
            |_conn: &mut C, message: &OutboxMessage| {
                let _rename: Option<Rename> = message.payload_as()?;
                Ok::<_, Error>(())
            },
        )
        .control(
            Category::OrganizationUpdate,
            |_conn: &mut C, _message: &OutboxMessage| -> Result<(), Error> {
                panic!("receiver bug")
            },
        );
    let (outbox, _clock) = manual_outbox(receivers);
    commit(conn, CellOutbox::new(Category::Unhandled, 1, 11));
    commit(
        conn,
        CellOutbox::new(Category::ProjectUpdate, 2, 22)
            .payload(&[1, 2])
            .expect("serialises"),
    );
    commit(conn, org(3, 33, "fine"));
    commit(
        conn,
        ControlOutbox::new(Category::OrganizationUpdate, 4, 44, "eu"),
    );

    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(recorder.take(), vec![delivered(1, 3, 33, Some("fine"))]);
    assert_eq!(report.failures.len(), 3);
    let messages: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
    assert!(matches!(report.failures[0].cause, FailureCause::NoReceiver));
    assert!(
        messages[0].contains("category 4")
            && messages[0].contains("cell_outboxes shard 0/1")
            && messages[0].contains("object 11"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("ProjectUpdate (2)")
            && messages[1].contains("shard 0/2")
            && messages[1].contains("object 22")
            && messages[1].contains("decoded"),
        "{}",
        messages[1]
    );
    assert!(matches!(
        report.failures[2].cause,
        FailureCause::Panicked(ref message) if message == "receiver bug"
    ));
    assert!(
        messages[2].contains("control_outboxes shard 0/4 for cell eu")
            && messages[2].contains("object 44"),
        "{}",
        messages[2]
    );
    assert_eq!(conn.count("cell_outboxes"), 2, "failed rows stay");
    assert_eq!(conn.count("control_outboxes"), 1);

    let error = report.into_result().expect_err("failures");
    assert!(error
        .to_string()
        .contains("3 outbox groups were not delivered"));
}

fn drain_until_empty_follows_receivers_that_write<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    // An organization update triggers a project update in another shard (a shard found
    // by the next round), which is recorded.
    let receivers = Receivers::new()
        .cell(
            Category::OrganizationUpdate,
            |conn: &mut C, message: &OutboxMessage| {
                let (shard, object) = (message.shard.identifier, message.object_identifier);
                outbox_context(conn, |ctx| {
                    ctx.write(CellOutbox::new(
                        Category::ProjectUpdate,
                        shard + 100,
                        object,
                    ))
                })
            },
        )
        .cell(Category::ProjectUpdate, recorder.receiver());
    let (outbox, _clock) = manual_outbox(receivers);
    commit(conn, org(1, 1, "x"));
    commit(conn, org(2, 2, "x"));
    drain_until_empty(conn, &outbox, 3).expect("two rounds suffice");
    assert_eq!(recorder.take().len(), 2);

    commit(conn, org(1, 1, "x"));
    let error = drain_until_empty(conn, &outbox, 1).expect_err("one round is not enough");
    assert!(
        matches!(
            error,
            Error::NotDrained {
                rounds: 1,
                remaining: 1
            }
        ),
        "{error}"
    );

    commit(conn, CellOutbox::new(Category::Unhandled, 1, 1));
    let error = drain_until_empty(conn, &outbox, 5).expect_err("a failure stops it");
    assert!(matches!(error, Error::Undelivered(ref failures) if failures.len() == 1));
}

/// Counts saved and processed rows.
#[derive(Clone, Default)]
struct Counters {
    saved: Arc<AtomicUsize>,
    processed: Arc<AtomicUsize>,
    lag_reports: Arc<AtomicUsize>,
}

impl Metrics for Counters {
    fn rows_saved(&self, _table: OutboxTable, _category: i32, rows: u64) {
        self.saved.fetch_add(rows as usize, Ordering::SeqCst);
    }

    fn rows_processed(&self, _table: OutboxTable, _category: i32, rows: u64) {
        self.processed.fetch_add(rows as usize, Ordering::SeqCst);
    }

    fn processing_lag(&self, _table: OutboxTable, _category: i32, lag: std::time::Duration) {
        assert_eq!(lag, std::time::Duration::from_secs(3));
        self.lag_reports.fetch_add(1, Ordering::SeqCst);
    }
}

fn metrics_count_saved_and_processed_rows<C: TestConnection>(conn: &mut C) {
    let counters = Counters::default();
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(recording(&Recorder::default()))
        .clock(clock.clone())
        .metrics(counters.clone())
        .flush_on_commit(false)
        .build();
    for payload in ["a", "b"] {
        outbox
            .context(conn, |ctx| {
                ctx.write(org(1, 1, payload))?;
                ctx.write(org(1, 2, payload))
            })
            .expect("commits");
    }
    clock.advance(Duration::seconds(3));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(counters.saved.load(Ordering::SeqCst), 4);
    assert_eq!(counters.processed.load(Ordering::SeqCst), 4);
    assert_eq!(counters.lag_reports.load(Ordering::SeqCst), 2);
}

/// A receiver as a type: counts the rows it sees.
struct CountingReceiver(AtomicUsize);

impl<C> Receiver<C> for CountingReceiver {
    fn receive(&self, _conn: &mut C, _message: &OutboxMessage) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn receivers_can_be_trait_objects<C: TestConnection>(conn: &mut C) {
    let shared = Arc::new(CountingReceiver(AtomicUsize::new(0)));
    let as_object: Arc<dyn Receiver<C>> = shared.clone();
    let receivers = Receivers::new()
        .cell_receiver(Category::OrganizationUpdate, as_object.clone())
        .control_receiver(Category::UserUpdate, as_object);
    let (outbox, _clock) = manual_outbox(receivers);
    commit(conn, org(1, 1, "x"));
    commit(conn, ControlOutbox::new(Category::UserUpdate, 2, 2, "eu"));
    outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(shared.0.load(Ordering::SeqCst), 2);
}

fn drains_run_inside_a_test_transaction<C: TestConnection>(conn: &mut C) {
    let recorder = Recorder::default();
    let outbox = Outbox::new(recording(&recorder));
    conn.begin_test_transaction().expect("test transaction");
    outbox
        .context(conn, |ctx| ctx.write(org(1, 1, "x")))
        .expect("commits");
    assert_eq!(recorder.take(), vec![], "no real commit, so no flush");
    drain_until_empty(conn, &outbox, 2).expect("drains in savepoints");
    assert_eq!(recorder.take(), vec![delivered(1, 1, 1, Some("x"))]);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

backend_tests!(
    receivers_can_be_trait_objects,
    drains_run_inside_a_test_transaction,
    coalesced_groups_deliver_the_newest_row_once,
    windows_smaller_than_a_shard_deliver_each_key_once,
    a_row_written_during_delivery_survives_for_a_later_round,
    a_failing_receiver_backs_off_and_converges,
    future_rows_wait_unless_their_shard_is_due,
    due_shards_are_drained_oldest_first_and_partition_by_id,
    flush_on_commit_delivers_only_the_touched_shards,
    a_failed_flush_leaves_the_rows_for_the_periodic_drain,
    the_kill_switch_keeps_each_keys_newest_row,
    undeliverable_rows_stay_and_name_their_row,
    drain_until_empty_follows_receivers_that_write,
    metrics_count_saved_and_processed_rows,
);
