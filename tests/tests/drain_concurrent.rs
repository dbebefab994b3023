//! The drain under concurrency: several connections and threads on one database.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel_outbox::testing::drain_until_empty;
use diesel_outbox::{
    outbox_context, CellOutbox, Error, Outbox, OutboxMessage, Receivers, ShardKey, Worker,
    WorkerOptions,
};
use diesel_outbox_tests::{
    backend_db_tests, locking_db_tests, postgres_db_tests, TestConnection, TestDb,
};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
    }
}

const SHARD: i64 = 7;
const KEYS: i64 = 40;

fn shard() -> ShardKey {
    ShardKey::cell(Scope::Organization, SHARD)
}

/// An outbox whose receiver counts calls per object, pausing briefly in each so that
/// concurrent drains overlap.
fn counting_outbox<C: TestConnection>() -> (Outbox<C>, Arc<Mutex<HashMap<i64, usize>>>) {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let seen = counts.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            std::thread::sleep(Duration::from_millis(1));
            *seen
                .lock()
                .expect("counts")
                .entry(message.object_identifier)
                .or_insert(0) += 1;
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::builder(receivers).flush_on_commit(false).build();
    (outbox, counts)
}

/// Three rows for each of `KEYS` objects in one shard, in interleaved order.
fn write_coalescable_rows<C: TestConnection>(conn: &mut C) {
    for _ in 0..3 {
        outbox_context(conn, |ctx| {
            for object in 0..KEYS {
                ctx.write(CellOutbox::new(Category::OrganizationUpdate, SHARD, object))?;
            }
            Ok::<_, Error>(())
        })
        .expect("commits");
    }
}

/// Drains until the table is empty, leaving the shard whenever another worker holds it.
fn drain_until_gone<C: TestConnection>(outbox: &Outbox<C>, conn: &mut C) {
    while conn.count("cell_outboxes") > 0 {
        let report = outbox.drain_due_shards(conn).expect("drains");
        assert!(report.failures.is_empty());
        std::thread::yield_now();
    }
}

fn assert_each_key_once(counts: &Mutex<HashMap<i64, usize>>) {
    let counts = counts.lock().expect("counts");
    assert_eq!(counts.len() as i64, KEYS);
    assert!(
        counts.values().all(|&calls| calls == 1),
        "every coalesced key delivered exactly once: {counts:?}"
    );
}

fn two_drains_of_one_shard_deliver_each_key_once<D: TestDb>(db: &D) {
    let (outbox, counts) = counting_outbox::<D::Conn>();
    write_coalescable_rows(&mut db.conn());
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut conn = db.conn();
                start.wait();
                drain_until_gone(&outbox, &mut conn);
            });
        }
    });
    assert_each_key_once(&counts);
    assert_eq!(db.conn().count("cell_outboxes"), 0);
}

/// Changed by the drain rewrite, as the issue asked: a flush used to wait for a shard
/// another worker held; now it leaves the shard to its holder, and never waits.
fn a_flush_and_a_drain_cooperate<D: TestDb>(db: &D) {
    let (outbox, counts) = counting_outbox::<D::Conn>();
    write_coalescable_rows(&mut db.conn());
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut conn = db.conn();
            start.wait();
            let report = outbox.flush_shards(&mut conn, &[shard()]).expect("flushes");
            assert!(report.failures.is_empty());
        });
        scope.spawn(|| {
            let mut conn = db.conn();
            start.wait();
            drain_until_gone(&outbox, &mut conn);
        });
    });
    drain_until_gone(&outbox, &mut db.conn());
    assert_each_key_once(&counts);
}

/// A receiver that tells when it is entered and waits to be released.
struct Gate {
    entered: Mutex<mpsc::Sender<i64>>,
    release: Mutex<mpsc::Receiver<()>>,
}

fn gated_outbox<C: TestConnection>() -> (Outbox<C>, mpsc::Receiver<i64>, mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = mpsc::channel::<i64>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let gate = Arc::new(Gate {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut C, message: &OutboxMessage| {
            let _ = gate
                .entered
                .lock()
                .expect("entered")
                .send(message.object_identifier);
            let _ = gate.release.lock().expect("release").recv();
            Ok::<_, Error>(())
        },
    );
    let outbox = Outbox::builder(receivers).flush_on_commit(false).build();
    (outbox, entered_rx, release_tx)
}

fn a_held_shard_is_not_claimed<D: TestDb>(db: &D) {
    let (outbox, entered, release) = gated_outbox::<D::Conn>();
    let mut conn = db.conn();
    outbox_context(&mut conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, SHARD, 1))
    })
    .expect("commits");

    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            let mut conn = db.conn();
            outbox.drain_due_shards(&mut conn).expect("drains")
        });
        entered.recv().expect("the holder is delivering");
        // Returns at once instead of waiting for the holder.
        let report = outbox.drain_due_shards(&mut conn).expect("drains");
        assert_eq!(report.delivered, 0, "left to the holder");
        assert_eq!(report.shards_not_claimed, 1);
        release.send(()).expect("release");
        let held = holder.join().expect("holder");
        assert_eq!(held.delivered, 1);
    });
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// A writer whose flush finds its shard held leaves the new row to the holder, without
/// waiting; the holder's drain goes on and delivers it before it returns.
fn a_held_shards_new_rows_are_delivered_by_its_holder<D: TestDb>(db: &D) {
    let (outbox, entered, release) = gated_outbox::<D::Conn>();
    let flushing = Outbox::new(Receivers::new().cell(
        Category::OrganizationUpdate,
        |_conn: &mut D::Conn, _message: &OutboxMessage| -> Result<(), Error> {
            panic!("the writer's flush must leave a held shard to its holder")
        },
    ));
    let mut conn = db.conn();
    outbox_context(&mut conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, SHARD, 1))
    })
    .expect("commits");
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            let mut conn = db.conn();
            outbox.drain_due_shards(&mut conn).expect("drains")
        });
        assert_eq!(
            entered.recv().ok(),
            Some(1),
            "the holder is delivering object 1"
        );
        let started = Instant::now();
        flushing
            .context(&mut conn, |ctx| {
                ctx.write(CellOutbox::new(Category::OrganizationUpdate, SHARD, 2))
            })
            .expect("commits; the flush leaves the held shard");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no wait for the holder"
        );
        release.send(()).expect("release 1");
        assert_eq!(
            entered.recv().ok(),
            Some(2),
            "the holder delivers the new row"
        );
        release.send(()).expect("release 2");
        let held = holder.join().expect("holder");
        assert_eq!(held.delivered, 2);
    });
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// The kill switch lives in the database: a second outbox on another connection (another
/// process, as far as it can tell) honours a switch the first one turned on.
fn the_kill_switch_is_seen_by_every_outbox<D: TestDb>(db: &D) {
    let (first, _) = counting_outbox::<D::Conn>();
    let (second, counts) = counting_outbox::<D::Conn>();
    first.skip_shard(&mut db.conn(), &shard()).expect("skips");
    write_coalescable_rows(&mut db.conn());
    let mut conn = db.conn();
    let report = second.drain_due_shards(&mut conn).expect("drains");
    assert_eq!((report.delivered, report.skipped), (0, KEYS as usize));
    assert!(
        counts.lock().expect("counts").is_empty(),
        "no receiver called"
    );
    assert_eq!(
        conn.count("cell_outboxes"),
        KEYS,
        "each key's newest row is kept"
    );
    assert!(second.is_skipped(&mut conn, &shard()).expect("reads"));
    first
        .unskip_shard(&mut db.conn(), &shard())
        .expect("unskips");
    second.drain_due_shards(&mut conn).expect("drains");
    assert_each_key_once(&counts);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

const WRITERS: i64 = 4;
const UPDATES: i64 = 2_000;
const OBJECTS: i64 = 100;
const SHARDS: i64 = 10;

/// 4 writers x 2,000 updates over 100 objects in 10 shards, a 3-thread worker draining
/// meanwhile (half the writers also flush), then a final drain: every replica equals its
/// source and no outbox row remains.
fn stress_writers_and_drains_converge<D: TestDb>(db: &D) {
    let started = Instant::now();
    let mut conn = db.conn();
    conn.batch_execute(
        "CREATE TABLE source (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
         CREATE TABLE replica (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);",
    )
    .expect("tables");
    let values: Vec<String> = (0..OBJECTS).map(|id| format!("({id}, 0)")).collect();
    conn.batch_execute(&format!(
        "INSERT INTO source (id, v) VALUES {}",
        values.join(", ")
    ))
    .expect("sources");

    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        |conn: &mut D::Conn, message: &OutboxMessage| {
            // Replicate the current state: the newest row of a group stands for them all.
            let upsert = conn.dialect().upsert("id", &["v"]);
            conn.batch_execute(&format!(
                "INSERT INTO replica (id, v) SELECT id, v FROM source WHERE id = {} {upsert}",
                message.object_identifier
            ))
        },
    );
    let outbox = Outbox::new(receivers);
    let worker = Worker::spawn(
        db.pool(3),
        outbox.clone(),
        WorkerOptions {
            threads: 3,
            poll_interval: Duration::from_millis(5),
            ..WorkerOptions::default()
        },
    )
    .expect("worker starts");

    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let outbox = &outbox;
            scope.spawn(move || {
                let mut conn = db.conn();
                for update in 0..UPDATES {
                    let object = (writer * 37 + update * 13) % OBJECTS;
                    let write = |ctx: &mut diesel_outbox::OutboxContext<'_, D::Conn>| {
                        // The write comes first: on SQLite it takes the write lock at once.
                        ctx.connection().batch_execute(&format!(
                            "UPDATE source SET v = v + 1 WHERE id = {object}"
                        ))?;
                        ctx.write(CellOutbox::new(
                            Category::OrganizationUpdate,
                            object % SHARDS,
                            object,
                        ))
                    };
                    if writer % 2 == 0 {
                        outbox
                            .context(&mut conn, write)
                            .expect("writes and flushes");
                    } else {
                        outbox_context(&mut conn, write).expect("writes");
                    }
                }
            });
        }
    });
    worker.stop();
    drain_until_empty(&mut conn, &outbox, 10).expect("the final drain empties the outbox");

    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(
        conn.scalar(&format!(
            "SELECT {} AS n FROM source",
            conn.dialect().cast_bigint("SUM(v)")
        )),
        WRITERS * UPDATES
    );
    assert_eq!(
        conn.scalar(
            "SELECT COUNT(*) AS n FROM source s JOIN replica r ON r.id = s.id AND r.v = s.v"
        ),
        OBJECTS,
        "every replica equals its source"
    );
    eprintln!("stress test took {:?}", started.elapsed());
}

backend_db_tests!(
    two_drains_of_one_shard_deliver_each_key_once,
    a_flush_and_a_drain_cooperate,
    the_kill_switch_is_seen_by_every_outbox,
    stress_writers_and_drains_converge,
);

/// Advisory locks are the session's until released: while a receiver runs, its connection
/// holds its shard's lock and its lease's; after each drain (a delivery, a failure, a
/// flush, an empty round) it holds none, however long the connection lives.
#[cfg(feature = "postgres")]
fn a_drain_leaves_no_advisory_lock_held<D: TestDb>(db: &D) {
    let advisory = |conn: &mut D::Conn| {
        conn.scalar(
            "SELECT COUNT(*) AS n FROM pg_locks \
             WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        )
    };
    let held_inside = Arc::new(Mutex::new(Vec::new()));
    let seen = held_inside.clone();
    let receivers = Receivers::new().cell(
        Category::OrganizationUpdate,
        move |conn: &mut D::Conn, message: &OutboxMessage| {
            seen.lock().expect("seen").push(advisory(conn));
            if message.object_identifier == 99 {
                return Err(Error::NotDrained {
                    rounds: 0,
                    remaining: 0,
                });
            }
            Ok(())
        },
    );
    let outbox = Outbox::new(receivers);
    let mut conn = db.conn();
    for object in [1, 2, 99] {
        outbox
            .context(&mut conn, |ctx| {
                ctx.write(CellOutbox::new(
                    Category::OrganizationUpdate,
                    object,
                    object,
                ))
            })
            .expect("commits; the flush delivers or backs off");
        assert_eq!(advisory(&mut conn), 0, "after the flush of object {object}");
    }
    outbox_context(&mut conn, |ctx| {
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 3, 3))
    })
    .expect("commits");
    for _ in 0..3 {
        outbox.drain_due_shards(&mut conn).expect("drains");
        assert_eq!(advisory(&mut conn), 0, "after a drain");
    }
    assert!(
        held_inside
            .lock()
            .expect("seen")
            .iter()
            .all(|&held| held >= 2),
        "while a receiver runs, its shard and its lease are held"
    );
}

locking_db_tests!(
    a_held_shard_is_not_claimed,
    a_held_shards_new_rows_are_delivered_by_its_holder
);

/// A second worker whose batch has room for one shard skips the oldest shard, which the
/// first worker holds, and takes the next ones instead of stopping at it.
fn a_second_worker_skips_the_shards_the_first_holds<D: TestDb>(db: &D) {
    let (holder_outbox, entered, release) = gated_outbox::<D::Conn>();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let log = delivered.clone();
    let second = Outbox::builder(Receivers::new().cell(
        Category::OrganizationUpdate,
        move |_conn: &mut D::Conn, message: &OutboxMessage| {
            log.lock().expect("log").push(message.shard.identifier);
            Ok::<_, Error>(())
        },
    ))
    .flush_on_commit(false)
    .batch_shards(1)
    .build();
    let mut conn = db.conn();
    for shard in [SHARD, 8, 9] {
        outbox_context(&mut conn, |ctx| {
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, shard, 1))
        })
        .expect("commits");
    }
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            let mut conn = db.conn();
            holder_outbox
                .flush_shards(&mut conn, &[shard()])
                .expect("drains")
        });
        entered
            .recv()
            .expect("the holder is delivering the oldest shard");
        let report = second.drain_due_shards(&mut conn).expect("drains");
        assert_eq!(
            *delivered.lock().expect("log"),
            vec![8, 9],
            "the second worker went past the held shard"
        );
        assert_eq!(report.delivered, 2);
        release.send(()).expect("release");
        assert_eq!(holder.join().expect("holder").delivered, 1);
    });
    assert_eq!(conn.count("cell_outboxes"), 0);
}

postgres_db_tests!(
    a_drain_leaves_no_advisory_lock_held,
    a_second_worker_skips_the_shards_the_first_holds
);
