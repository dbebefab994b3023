//! Relayed rows per second against a same-run ceiling: publishing the same messages
//! (subjects, headers, bodies) to the same server with acknowledgements, pipelined as
//! deep as the relay, with no database. Also the relay with two drain threads (one
//! publishes while the other works in the database), and the drain with a receiver that
//! does nothing, to show what the database costs.
//!
//!     cargo bench -p diesel-outbox-nats --bench relay -- [--rows N] [--shards N]
//!         [--reps N] [--payload BYTES] [--postgres]
//!
//! Starts its own `nats-server -js` (NATS_SERVER, default /usr/sbin/nats-server) on a
//! free port; `--postgres` also runs on PostgreSQL (OUTBOX_POSTGRES_URL, default
//! postgres://postgres@127.0.0.1:5432/test, in a schema of its own).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;
use common::{write_cell_rows, Category, NatsServer};
use diesel_outbox::row::CellOutboxRecord;
use diesel_outbox::testing::cell_records;
use diesel_outbox::{
    BatchError, BatchReceiver, Outbox, OutboxConnection, OutboxMessage, OutboxTable, Receivers,
    SiloId,
};
use diesel_outbox_nats::naming::{self, message_id, subject};
use diesel_outbox_nats::{NatsRelay, RelayConfig};
use diesel_outbox_tests::{PgSchema, SqliteDb, TestDb};

/// What the relay keeps in flight by default (`RelayConfig::max_in_flight`).
const IN_FLIGHT: usize = 4_096;
/// Shards per batch in every drain: a quarter of the default 200 shards, so that two
/// drain threads both have batches to work on.
const BATCH_SHARDS: usize = 50;

struct Args {
    rows: i64,
    shards: i64,
    reps: usize,
    payload: usize,
    postgres: bool,
}

impl Args {
    fn parse() -> Self {
        let mut args = Args {
            rows: 50_000,
            shards: 200,
            reps: 3,
            payload: 100,
            postgres: false,
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            let mut number = || given.next().and_then(|n| n.parse::<i64>().ok());
            match arg.as_str() {
                "--rows" => args.rows = number().unwrap_or(args.rows),
                "--shards" => args.shards = number().unwrap_or(args.shards),
                "--reps" => args.reps = number().map_or(args.reps, |n| n.max(1) as usize),
                "--payload" => args.payload = number().map_or(args.payload, |n| n as usize),
                "--postgres" => args.postgres = true,
                // `cargo bench` passes `--bench`.
                _ => {}
            }
        }
        args
    }
}

fn main() {
    let args = Args::parse();
    let server = NatsServer::start();
    let per_shard = (args.rows / args.shards).max(1);
    let rows = per_shard * args.shards;
    println!(
        "{rows} rows ({} shards x {per_shard}), payload ~{} bytes, {} reps, median rows/s",
        args.shards, args.payload, args.reps
    );
    run("SQLite", &args, &server, per_shard, SqliteDb::new);
    if args.postgres {
        if PgSchema::create().is_some() {
            run("PostgreSQL", &args, &server, per_shard, || {
                PgSchema::create().expect("PostgreSQL is reachable")
            });
        } else {
            println!("PostgreSQL: unreachable, skipped");
        }
    }
}

fn run<D: TestDb>(
    name: &str,
    args: &Args,
    server: &NatsServer,
    per_shard: i64,
    new_db: impl Fn() -> D,
) {
    let (mut ceiling, mut relay, mut noop) = (Vec::new(), Vec::new(), Vec::new());
    let mut relay_two = Vec::new();
    for rep in 0..args.reps {
        let fill = || {
            let db = new_db();
            let mut conn = db.conn();
            write_cell_rows(&mut conn, args.shards, per_shard, args.payload);
            (db, conn)
        };
        // Rotate the order, so that no variant always runs on a server that just worked.
        for variant in (0..4).map(|i| (i + rep) % 4) {
            let (db, mut conn) = fill();
            match variant {
                0 => {
                    let records = cell_records(&mut conn).expect("read the rows");
                    ceiling.push(publish_ceiling(&server.url(), rep, &records));
                }
                1 => relay.push(drain_relayed(&server.url(), rep, &mut [conn])),
                2 => {
                    let mut conns = [conn, db.conn()];
                    relay_two.push(drain_relayed(&server.url(), rep, &mut conns));
                }
                _ => noop.push(drain_noop(&mut conn)),
            }
        }
    }
    let (ceiling, relay, noop) = (median(ceiling), median(relay), median(noop));
    let relay_two = median(relay_two);
    println!("{name}:");
    println!("  ceiling: publish with acks, no database  {ceiling:>10.0}");
    println!(
        "  relay: drain + publish                   {relay:>10.0}  ({:.0}% of the ceiling)",
        100.0 * relay / ceiling
    );
    println!(
        "  relay, two drain threads                 {relay_two:>10.0}  ({:.0}% of the ceiling)",
        100.0 * relay_two / ceiling
    );
    println!(
        "  drain, receiver doing nothing            {noop:>10.0}  (the database's share: {:.0}% of the relay's time)",
        100.0 * relay / noop
    );
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Relays every row with the periodic drain, one thread per
/// connection sharing one relay; rows per second.
fn drain_relayed<C: OutboxConnection + Send>(url: &str, rep: usize, conns: &mut [C]) -> f64 {
    let (stream, prefix) = (
        format!("RELAY{rep}_{}", conns.len()),
        format!("relay{rep}_{}", conns.len()),
    );
    let relay = NatsRelay::start(
        RelayConfig::new(url, SiloId::cell("eu"), Category::ALL)
            .stream(stream.as_str())
            .subject_prefix(prefix),
    )
    .expect("the relay starts");
    let outbox = Outbox::builder(relay.register(Receivers::new(), OutboxTable::Cell))
        .batch_shards(BATCH_SHARDS)
        .build();
    let start = Instant::now();
    let rows: usize = std::thread::scope(|scope| {
        let outbox = &outbox;
        let threads: Vec<_> = conns
            .iter_mut()
            .map(|conn| scope.spawn(move || drain_rows(conn, outbox)))
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a drain thread"))
            .sum()
    });
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    assert_eq!(relay.stats().failed, 0, "{:?}", relay.stats());
    delete_stream(url, &stream);
    rate
}

/// Drains every row into a receiver that does nothing; rows per second.
fn drain_noop<C: OutboxConnection>(conn: &mut C) -> f64 {
    struct Nothing;
    impl<C> BatchReceiver<C> for Nothing {
        fn receive_batch(&self, _: &mut C, _: &[OutboxMessage]) -> Result<(), BatchError> {
            Ok(())
        }
    }
    let outbox =
        Outbox::builder(Receivers::new().batch_for(OutboxTable::Cell, Category::ALL, Nothing))
            .batch_shards(BATCH_SHARDS)
            .build();
    drain_all(conn, &outbox)
}

fn drain_all<C: OutboxConnection>(conn: &mut C, outbox: &Outbox<C>) -> f64 {
    let start = Instant::now();
    let rows = drain_rows(conn, outbox);
    rows as f64 / start.elapsed().as_secs_f64()
}

/// Periodic drains until one finds nothing; the rows deleted.
fn drain_rows<C: OutboxConnection>(conn: &mut C, outbox: &Outbox<C>) -> usize {
    let mut rows = 0;
    loop {
        let report = outbox.drain_due_shards(conn).expect("the drain runs");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        if report.rows_deleted == 0 {
            if report.shards_not_claimed == 0 {
                return rows;
            }
            // Another thread holds the rest.
            std::thread::sleep(Duration::from_millis(1));
        }
        rows += report.rows_deleted;
    }
}

/// Publishes the messages the relay would publish for `records`, pipelined with
/// `IN_FLIGHT` awaiting acknowledgement; rows per second.
fn publish_ceiling(url: &str, rep: usize, records: &[CellOutboxRecord]) -> f64 {
    let (stream, prefix) = (format!("CEIL{rep}"), format!("ceil{rep}"));
    let silo = SiloId::cell("eu");
    let messages: Vec<(String, PublishMessage)> = records
        .iter()
        .map(|record| message(&prefix, &silo, record))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let elapsed = runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let context = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(IN_FLIGHT * 4)
            .backpressure_on_inflight(true)
            .build(client);
        context
            .create_stream(jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{prefix}.>")],
                duplicate_window: Duration::from_secs(2 * 60 * 60),
                ..Default::default()
            })
            .await
            .expect("create the ceiling's stream");
        let start = Instant::now();
        let mut pending: VecDeque<<PublishAckFuture as IntoFuture>::IntoFuture> =
            VecDeque::with_capacity(IN_FLIGHT);
        for (subject, message) in messages {
            if pending.len() >= IN_FLIGHT {
                if let Some(ack) = pending.pop_front() {
                    ack.await.expect("acknowledged");
                }
            }
            let ack = context.send_publish(subject, message).await.expect("sent");
            pending.push_back(ack.into_future());
        }
        for ack in pending {
            ack.await.expect("acknowledged");
        }
        start.elapsed()
    });
    delete_stream(url, &stream);
    records.len() as f64 / elapsed.as_secs_f64()
}

/// The relay's message for a cell-outbox row (see `NatsRelay`'s docs).
fn message(prefix: &str, silo: &SiloId, record: &CellOutboxRecord) -> (String, PublishMessage) {
    let category = Category::info(record.category).expect("declared").name;
    let subject = subject(
        prefix,
        category,
        None,
        record.shard_scope,
        record.shard_identifier,
    );
    let date_added = record
        .date_added
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_id(silo, OutboxTable::Cell, record.id).as_str(),
    );
    headers.insert(naming::HEADER_CATEGORY, category);
    let shard = format!("{}/{}", record.shard_scope, record.shard_identifier);
    headers.insert(naming::HEADER_SHARD, shard.as_str());
    headers.insert(naming::HEADER_OBJECT, record.object_identifier.to_string());
    headers.insert(naming::HEADER_ROW_ID, record.id.to_string());
    headers.insert(naming::HEADER_TABLE, OutboxTable::Cell.name());
    headers.insert(naming::HEADER_SILO, naming::silo_name(silo).as_str());
    headers.insert(naming::HEADER_DATE_ADDED, date_added.as_str());
    let body = record.payload.as_ref().map_or_else(Bytes::new, |payload| {
        Bytes::from(payload.as_str().to_owned())
    });
    (
        subject,
        PublishMessage::build().payload(body).headers(headers),
    )
}

fn delete_stream(url: &str, stream: &str) {
    common::block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        jetstream::new(client)
            .delete_stream(stream)
            .await
            .expect("delete the stream");
    });
}
