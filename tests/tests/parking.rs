//! Parking beyond receiver errors: a parked group is never delivered over a newer state of
//! its key (a drain that delivers a newer row of the key discards the group, with a
//! count), and a key whose receiver kills its process is parked after N deaths.

use std::sync::{Arc, Mutex};

use diesel_outbox::drain::Exhaustion;
use diesel_outbox::inspect::ParkedKey;
use diesel_outbox::{
    outbox_context, BoxError, CellOutbox, Outbox, OutboxMessage, Receivers, ShardKey,
};
use diesel_outbox_tests::{backend_tests, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { Notify = 1 { scope: Organization, silo: cell } }
}

fn write<C: TestConnection>(conn: &mut C, object: i64, state: &str) {
    outbox_context(conn, |ctx| {
        ctx.write(CellOutbox::new(Category::Notify, 1, object).payload(&state)?)
    })
    .expect("commits");
}

fn a_retried_parked_group_never_overwrites_a_newer_state<C: TestConnection>(conn: &mut C) {
    let seen: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let log = seen.clone();
    let outbox = Outbox::builder(Receivers::new().cell(
        Category::Notify,
        move |_conn: &mut C, message: &OutboxMessage| -> Result<(), BoxError> {
            let state: String = message.payload_as()?.unwrap_or_default();
            if state == "v1" {
                return Err("v1 cannot be applied yet".into());
            }
            log.lock()
                .expect("log")
                .push((message.object_identifier, state));
            Ok(())
        },
    ))
    .flush_on_commit(false)
    .exhaustion(Category::Notify, Exhaustion::Park { max_attempts: 1 })
    .build();
    let key = |object| ParkedKey {
        shard: ShardKey::cell(Scope::Organization, 1),
        category: 1,
        object_identifier: object,
    };

    // Object 1: v1 parks, then v2 is delivered: the parked v1 is superseded, dropped.
    write(conn, 1, "v1");
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(report.parked, 1);
    write(conn, 1, "v2");
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        (report.delivered, report.parked_superseded),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        outbox.retry_parked(conn, &key(1)).expect("retries"),
        0,
        "nothing left"
    );
    outbox.drain_due_shards(conn).expect("drains");

    // Object 2: v1 parks, v2 is written and not drained yet: the retried v1 coalesces
    // into v2, the newest, which is what is delivered.
    write(conn, 2, "v1");
    outbox.drain_due_shards(conn).expect("drains: parks");
    write(conn, 2, "v2");
    assert_eq!(outbox.retry_parked(conn, &key(2)).expect("retries"), 1);
    let report = outbox.drain_due_shards(conn).expect("drains");
    assert_eq!(
        (report.delivered, report.failures.len()),
        (1, 0),
        "{report:?}"
    );

    assert_eq!(
        *seen.lock().expect("log"),
        vec![(1, "v2".to_owned()), (2, "v2".to_owned())],
        "no older state was delivered after a newer one"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(conn.count("cell_outbox_parked"), 0);
}

backend_tests!(a_retried_parked_group_never_overwrites_a_newer_state);
