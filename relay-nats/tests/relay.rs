//! The relay against a real `nats-server -js` (started by each test on a free port with
//! its own store) and real databases (SQLite, and PostgreSQL when reachable): every row
//! once and in shard order, a server killed mid-drain, a drain killed between publishing
//! and deleting, a row too large for the stream.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    assert_once_and_in_order, block_on, create_stream, payload, read_stream, stream_messages,
    write_cell_rows, write_control_rows, Category, NatsServer, Scope,
};
use diesel::connection::SimpleConnection;
use diesel_outbox::testing::{drain_until_empty, ManualClock};
use diesel_outbox::{
    outbox_context, CellOutbox, Clock, DrainReport, Error, Outbox, OutboxConnection, OutboxTable,
    Receivers, ShardKey, SiloId,
};
use diesel_outbox_nats::naming::message_id;
use diesel_outbox_nats::{NatsRelay, RelayConfig};
use diesel_outbox_tests::{TestConnection, TestDb};

fn config(url: &str, silo: SiloId, stream: &str) -> RelayConfig {
    RelayConfig::new(url, silo, Category::ALL)
        .stream(stream)
        .publish_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(1))
}

/// An outbox whose every category goes to `relay`, on both tables.
fn relayed_outbox<C: OutboxConnection>(
    relay: &NatsRelay,
    clock: &ManualClock,
    window: usize,
    batch_shards: usize,
) -> Outbox<C> {
    let receivers = relay.register(Receivers::new(), OutboxTable::Cell);
    let receivers = relay.register(receivers, OutboxTable::Control);
    Outbox::builder(receivers)
        .clock(clock.clone())
        .window(window)
        .batch_shards(batch_shards)
        .build()
}

fn rows_left<C: TestConnection>(conn: &mut C) -> i64 {
    conn.count("cell_outboxes") + conn.count("control_outboxes")
}

/// The periodic drain, with the clock moved past every backoff between calls, until the
/// tables are empty.
fn drain_to_empty<C: TestConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    clock: &ManualClock,
) -> DrainReport {
    let mut total = DrainReport::default();
    for _ in 0..20 {
        total.merge(outbox.drain_due_shards(conn).expect("the drain runs"));
        if rows_left(conn) == 0 {
            return total;
        }
        clock.advance(chrono::Duration::hours(2));
    }
    panic!(
        "rows left after 20 drains; failures: {:?}",
        total
            .failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
}

/// Message ids of every row of both tables, as the relay of `silo` names them.
fn message_ids<C: TestConnection>(conn: &mut C, silo: &SiloId) -> HashSet<String> {
    let cell = conn
        .cell_rows()
        .into_iter()
        .map(|row| message_id(silo, OutboxTable::Cell, row.id));
    let control = conn
        .control_rows()
        .into_iter()
        .map(|row| message_id(silo, OutboxTable::Control, row.id));
    cell.chain(control).collect()
}

/// One `#[test]` per backend for `fn name<D: TestDb>(new_db: &dyn Fn() -> D)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&diesel_outbox_tests::SqliteDb::new);
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $name() {
                    if diesel_outbox_tests::PgSchema::create().is_none() {
                        return;
                    }
                    super::$name(&|| {
                        diesel_outbox_tests::PgSchema::create().expect("PostgreSQL is reachable")
                    });
                }
            )*
        }
    };
}

both_backends!(
    a_commit_is_relayed_by_its_flush,
    every_row_arrives_once_in_shard_order_from_three_silos,
    server_killed_mid_drain_loses_nothing_and_stores_nothing_twice,
    a_message_too_large_for_the_stream_stops_only_its_shard,
);

/// A transaction through the outbox is relayed right after its commit, by its flush:
/// the writer's thread publishes, and the row is gone when the commit returns.
fn a_commit_is_relayed_by_its_flush<D: TestDb>(new_db: &dyn Fn() -> D) {
    let server = NatsServer::start();
    let db = new_db();
    let mut conn = db.conn();
    let relay = NatsRelay::start(config(&server.url(), SiloId::Control, "EVENTS")).expect("starts");
    let clock = ManualClock::starting_now();
    let outbox = relayed_outbox(&relay, &clock, 500, 200);
    outbox
        .context(&mut conn, |ctx| {
            let row = diesel_outbox::ControlOutbox::new(Category::UserUpdate, 7, 7, "eu");
            ctx.write(row.payload(&payload(7, 0, 0))?)
        })
        .expect("commit");
    assert_eq!(rows_left(&mut conn), 0);
    let stored = read_stream(&server.url(), "EVENTS");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].subject, "outbox.UserUpdate.eu.1.7");
    assert_eq!(stored[0].msg_id(), "control/control_outboxes/1");
    assert_eq!(stored[0].header("Outbox-Cell"), "eu");
    // The payload as stored (PostgreSQL's jsonb writes its own spacing).
    let body: serde_json::Value = serde_json::from_str(&stored[0].body).expect("JSON body");
    assert_eq!(body, payload(7, 0, 0));
}

/// Two cells whose outboxes hold the same row ids, and control, publish into one stream:
/// every row arrives once (no row of one silo is taken for a duplicate of the other's),
/// each subject in row order, with the payload as body and the row in the headers.
fn every_row_arrives_once_in_shard_order_from_three_silos<D: TestDb>(new_db: &dyn Fn() -> D) {
    let server = NatsServer::start();
    let silos = [SiloId::cell("eu"), SiloId::cell("us"), SiloId::Control];
    let dbs: Vec<D> = silos.iter().map(|_| new_db()).collect();
    let mut expected: HashMap<String, (String, String)> = HashMap::new();
    let mut total = 0;
    for (silo, db) in silos.iter().zip(&dbs) {
        let mut conn = db.conn();
        match silo {
            SiloId::Control => write_control_rows(&mut conn, 6, 20, "eu.west 1"),
            SiloId::Cell(_) => write_cell_rows(&mut conn, 12, 25, 32),
        }
        for row in conn.cell_rows() {
            let category = Category::info(row.category).expect("declared").name;
            let subject = format!(
                "outbox.{category}.{}.{}",
                row.shard_scope, row.shard_identifier
            );
            let body = row
                .payload
                .expect("rows carry payloads")
                .as_str()
                .to_owned();
            expected.insert(message_id(silo, OutboxTable::Cell, row.id), (subject, body));
        }
        for row in conn.control_rows() {
            let subject = format!(
                "outbox.UserUpdate.eu%2Ewest%201.{}.{}",
                row.shard_scope, row.shard_identifier
            );
            let body = row
                .payload
                .expect("rows carry payloads")
                .as_str()
                .to_owned();
            expected.insert(
                message_id(silo, OutboxTable::Control, row.id),
                (subject, body),
            );
        }
        total += rows_left(&mut conn);
    }
    // The same ids in both cells: only the silo tells their messages apart.
    assert_eq!(
        dbs[0]
            .conn()
            .cell_rows()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        dbs[1]
            .conn()
            .cell_rows()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    );
    assert_eq!(expected.len() as i64, total);

    for (silo, db) in silos.iter().zip(&dbs) {
        let relay = NatsRelay::start(config(&server.url(), silo.clone(), "EVENTS"))
            .expect("the relay starts");
        let clock = ManualClock::starting_now();
        // Small windows and batches: shards are cut across windows and batches.
        let outbox = relayed_outbox(&relay, &clock, 7, 5);
        let mut conn = db.conn();
        let rows = rows_left(&mut conn) as u64;
        drain_until_empty(&mut conn, &outbox, 100).expect("every row is relayed");
        assert_eq!(rows_left(&mut conn), 0);
        let stats = relay.stats();
        assert_eq!(stats.stored, rows, "{silo}: {stats:?}");
        assert_eq!(stats.duplicates, 0, "{silo}: {stats:?}");
        assert_eq!(stats.failed, 0, "{silo}: {stats:?}");
    }

    let stored = read_stream(&server.url(), "EVENTS");
    assert_eq!(stored.len() as i64, total, "nothing dropped as a duplicate");
    let ids = assert_once_and_in_order(&stored);
    assert_eq!(ids, expected.keys().cloned().collect::<HashSet<_>>());
    for message in &stored {
        let (subject, body) = &expected[message.msg_id()];
        assert_eq!(&message.subject, subject);
        assert_eq!(&message.body, body);
        let object: i64 = message.header("Outbox-Object").parse().expect("a number");
        let shard = message.header("Outbox-Shard");
        assert_eq!(
            shard,
            format!(
                "{}/{}",
                subject.rsplit('.').nth(1).unwrap_or(""),
                object / 1_000_000
            )
        );
        let is_control = message.header("Outbox-Table") == "control_outboxes";
        assert_eq!(
            message.header("Outbox-Cell"),
            if is_control { "eu.west 1" } else { "" }
        );
        assert!(subject.contains(&format!(".{}.", message.header("Outbox-Category"))));
    }
}

/// The server is killed while a batch is being published: the shards that failed back
/// off, no row is deleted that JetStream did not store, and once the server is back
/// every row is in the stream once, each subject in order.
fn server_killed_mid_drain_loses_nothing_and_stores_nothing_twice<D: TestDb>(
    new_db: &dyn Fn() -> D,
) {
    const ROWS: i64 = 40 * 50;
    let server = Arc::new(Mutex::new(NatsServer::start()));
    let url = server.lock().expect("server").url();
    let db = new_db();
    let mut conn = db.conn();
    write_cell_rows(&mut conn, 40, 50, 200);
    let silo = SiloId::cell("eu");
    let all_ids = message_ids(&mut conn, &silo);
    let relay = NatsRelay::start(config(&url, silo.clone(), "EVENTS")).expect("starts");
    let clock = ManualClock::starting_now();
    // Two batches of 20 shards x 50 rows.
    let outbox = relayed_outbox(&relay, &clock, 50, 20);

    // Kill the server once 500 messages are in the stream: mid first batch.
    let killed = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (server, killed, url) = (Arc::clone(&server), Arc::clone(&killed), url.clone());
        std::thread::spawn(move || {
            block_on(async move {
                let client = async_nats::connect(url).await.expect("watcher connects");
                let context = async_nats::jetstream::new(client);
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if let Ok(mut stream) = context.get_stream("EVENTS").await {
                        if let Ok(info) = stream.info().await {
                            if info.state.messages >= 500 {
                                server.lock().expect("server").kill();
                                killed.store(true, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                }
            })
        })
    };
    let report = outbox
        .drain_due_shards(&mut conn)
        .expect("the drain itself runs");
    watcher.join().expect("the watcher ends");
    assert!(
        killed.load(Ordering::SeqCst),
        "the server was killed mid-drain"
    );
    assert!(!report.failures.is_empty(), "the drain saw the server go");
    let left = conn.cell_rows();
    // Some rows stay (how many depends on which acknowledgements reached the relay
    // before the connection was reset: possibly none).
    assert!(!left.is_empty(), "the kill came after the whole drain");

    // Every shard with rows left backs off; a drain now finds nothing due.
    let shards: HashSet<i64> = left.iter().map(|row| row.shard_identifier).collect();
    for shard in &shards {
        let state = outbox
            .shard_state(&mut conn, &ShardKey::cell(Scope::Organization, *shard))
            .expect("read the shard's state")
            .expect("a failed shard has a state");
        assert!(state.attempts >= 1, "shard {shard}: {state:?}");
        assert!(state.scheduled_for > clock.now(), "shard {shard} backs off");
    }
    let again = outbox.drain_due_shards(&mut conn).expect("drain");
    assert_eq!((again.shards, again.rows_deleted), (0, 0));

    server.lock().expect("server").restart();
    // Nothing was deleted that the stream does not hold.
    let in_stream: HashSet<String> = read_stream(&url, "EVENTS")
        .iter()
        .map(|m| m.msg_id().to_owned())
        .collect();
    let left_ids = message_ids(&mut conn, &silo);
    for id in all_ids.difference(&left_ids) {
        assert!(
            in_stream.contains(id),
            "row {id} was deleted but is not in the stream"
        );
    }

    drain_to_empty(&mut conn, &outbox, &clock);
    let stored = read_stream(&url, "EVENTS");
    assert_eq!(stored.len() as i64, ROWS);
    assert_eq!(assert_once_and_in_order(&stored), all_ids);
    let stats = relay.stats();
    // A new connection after the kill; no message stored twice, however it was counted.
    assert!(stats.connections >= 2, "{stats:?}");
    assert!(stats.stored <= ROWS as u64, "{stats:?}");
}

/// A row larger than the stream's maximum message size fails alone: its shard stops
/// there (the rows after it are not published), other shards are delivered, and the
/// replay of the batch publishes nothing twice.
fn a_message_too_large_for_the_stream_stops_only_its_shard<D: TestDb>(new_db: &dyn Fn() -> D) {
    let server = NatsServer::start();
    create_stream(
        &server.url(),
        async_nats::jetstream::stream::Config {
            name: "SMALL".to_owned(),
            subjects: vec!["outbox.>".to_owned()],
            max_message_size: 2_048,
            duplicate_window: Duration::from_secs(2 * 60 * 60),
            ..Default::default()
        },
    );
    let db = new_db();
    let mut conn = db.conn();
    // Shard 1: small, too large, small; shard 2: three small rows.
    for (n, pad) in [(0, 10), (1, 4_000), (2, 10)] {
        outbox_context(&mut conn, |ctx| {
            for shard in [1_i64, 2] {
                let pad = if shard == 1 { pad } else { 10 };
                let row = CellOutbox::new(Category::AuditLogEvent, shard, shard * 100 + n);
                ctx.write(row.payload(&payload(shard, n, pad))?)?;
            }
            Ok::<_, Error>(())
        })
        .expect("write");
    }
    let rows = conn.cell_rows();
    let too_large = rows
        .iter()
        .find(|row| row.shard_identifier == 1 && row.object_identifier == 101)
        .expect("the large row")
        .id;
    let silo = SiloId::cell("eu");
    let relay = NatsRelay::start(
        config(&server.url(), silo.clone(), "SMALL")
            .stream_mode(diesel_outbox_nats::StreamMode::Require),
    )
    .expect("starts with the operator's stream");
    let clock = ManualClock::starting_now();
    let outbox = relayed_outbox(&relay, &clock, 500, 200);

    let report = outbox.drain_due_shards(&mut conn).expect("drain");
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert_eq!(failure.row_id, too_large);
    assert!(
        failure
            .to_string()
            .contains("stream's maximum message size"),
        "{failure}"
    );
    let left: Vec<(i64, i64)> = conn
        .cell_rows()
        .iter()
        .map(|row| (row.shard_identifier, row.object_identifier))
        .collect();
    assert_eq!(left, vec![(1, 101), (1, 102)]);
    let stored = read_stream(&server.url(), "SMALL");
    let objects: Vec<&str> = stored.iter().map(|m| m.header("Outbox-Object")).collect();
    assert_eq!(objects, vec!["100", "200", "201", "202"]);
    let stats = relay.stats();
    // In-transaction delivery (PostgreSQL's default) replayed the batch without shard 1's
    // failure: nothing was sent again, the relay remembered the 4 it had stored. Leased
    // delivery (SQLite's default; the relay writes nothing on the drain's connection)
    // replays nothing.
    let replayed = if <D::Conn as OutboxConnection>::LEASED_DELIVERY_BY_DEFAULT {
        0
    } else {
        4
    };
    assert_eq!(
        (
            stats.stored,
            stats.duplicates,
            stats.remembered,
            stats.failed
        ),
        (4, 0, replayed, 1),
        "{stats:?}"
    );
}

/// Run as a child process by `drain_that_dies_*`: drains with a receiver that kills the
/// process right after the relay published the batch, before the drain commits.
fn die_after_publishing<C: OutboxConnection>(mut conn: C) -> ! {
    struct AbortAfterPublishing(NatsRelay);
    impl<C> diesel_outbox::BatchReceiver<C> for AbortAfterPublishing {
        fn receive_batch(
            &self,
            _conn: &mut C,
            messages: &[diesel_outbox::OutboxMessage],
        ) -> Result<(), diesel_outbox::BatchError> {
            self.0.publish(messages)?;
            std::process::abort();
        }
    }
    let env = |name: &str| std::env::var(name).expect("set by the parent test");
    let relay = NatsRelay::start(config(
        &env("RELAY_CHILD_NATS"),
        SiloId::cell("eu"),
        "EVENTS",
    ))
    .expect("the child's relay starts");
    let receivers = Receivers::new().batch_for(
        OutboxTable::Cell,
        Category::ALL,
        AbortAfterPublishing(relay),
    );
    let outbox = Outbox::new(receivers);
    let _ = outbox.drain_due_shards(&mut conn);
    // Reaching this means the receiver never ran.
    std::process::exit(3)
}

/// A drain dies after publishing a batch and before committing its deletion: the rows
/// stay, the next drain publishes them again, and JetStream drops every copy.
fn drain_that_dies_after_publishing<D: TestDb>(db: &D, url: &str, test_name: &str) {
    const ROWS: i64 = 10 * 20;
    let server = NatsServer::start();
    let mut conn = db.conn();
    write_cell_rows(&mut conn, 10, 20, 64);
    let silo = SiloId::cell("eu");
    let all_ids = message_ids(&mut conn, &silo);

    let status = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("RELAY_CHILD_DB", url)
        .env("RELAY_CHILD_NATS", server.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the child runs");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "the child aborted: {status:?}");
    }
    // The child's delivery never committed: every row is still there, and in the stream.
    assert_eq!(rows_left(&mut conn), ROWS);
    assert_eq!(stream_messages(&server.url(), "EVENTS"), ROWS as u64);

    let relay = NatsRelay::start(config(&server.url(), silo, "EVENTS")).expect("starts");
    let clock = ManualClock::starting_now();
    // Past the dead worker's lease: its batch is recovered and backed off.
    clock.advance(chrono::Duration::minutes(10));
    let outbox = relayed_outbox(&relay, &clock, 500, 200);
    let report = drain_to_empty(&mut conn, &outbox, &clock);
    assert_eq!(report.abandoned_batches, 1);
    let stats = relay.stats();
    assert_eq!(
        (stats.stored, stats.duplicates),
        (0, ROWS as u64),
        "{stats:?}"
    );
    let stored = read_stream(&server.url(), "EVENTS");
    assert_eq!(stored.len() as i64, ROWS, "JetStream dropped every copy");
    assert_eq!(assert_once_and_in_order(&stored), all_ids);
}

#[test]
fn sqlite_drain_that_dies_after_publishing() {
    if let Ok(url) = std::env::var("RELAY_CHILD_DB") {
        let mut conn = <diesel::SqliteConnection as diesel::Connection>::establish(&url)
            .expect("the child opens the database");
        conn.batch_execute("PRAGMA busy_timeout = 10000;")
            .expect("pragma");
        die_after_publishing(conn);
    }
    let db = diesel_outbox_tests::SqliteDb::new();
    drain_that_dies_after_publishing(&db, &db.url(), "sqlite_drain_that_dies_after_publishing");
}

#[test]
fn postgres_drain_that_dies_after_publishing() {
    if let Ok(url) = std::env::var("RELAY_CHILD_DB") {
        let conn = <diesel::PgConnection as diesel::Connection>::establish(&url)
            .expect("the child connects");
        die_after_publishing(conn);
    }
    let Some(db) = diesel_outbox_tests::PgSchema::create() else {
        return;
    };
    drain_that_dies_after_publishing(&db, &db.url(), "postgres_drain_that_dies_after_publishing");
}
