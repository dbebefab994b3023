//! A process of the SQLite multi-process test (`tests/tests/sqlite_processes.rs`): a
//! writer doing read-then-write contexts, or a drainer, on one database file for a few
//! seconds. Prints `commits=N errors=M` (writer) or `delivered=N errors=M` (drainer).
//!
//! `sqlite_load writer DB OBJECTS SECONDS SEED [bare]` / `sqlite_load drainer DB SECONDS [bare]`
//!
//! `bare`: the connection is opened with a bare `SqliteConnection::establish` (no busy
//! timeout, whatever journal the file has), as a new user would; the drainer's receiver
//! then also fails for every object `n` with `n % 7 == 3`, so that batches fail, and it
//! prints `failed=N` (receiver failures, expected) apart from `errors=M` (anything else).

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::sqlite::SqliteOptions;
use diesel_outbox::{outbox_context, CellOutbox, Error, Outbox, OutboxMessage, Receivers};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { CounterUpdate = 1 { scope: Organization, silo: cell } }
}

#[derive(QueryableByName)]
struct Mode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    v: i64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().ok_or("missing argument");
    match arg(1)?.as_str() {
        "writer" => writer(
            &arg(2)?,
            arg(3)?.parse()?,
            arg(4)?.parse()?,
            arg(5)?.parse()?,
            args.get(6).is_some_and(|mode| mode == "bare"),
        ),
        "drainer" => drainer(
            &arg(2)?,
            arg(3)?.parse()?,
            args.get(4).is_some_and(|mode| mode == "bare"),
        ),
        other => Err(format!("unknown mode {other}").into()),
    }
}

/// Read a counter, then write it back incremented, with its outbox row: a context that
/// reads before it writes, which a deferred transaction would fail with "database is
/// locked" under a concurrent writer.
fn writer(
    db: &str,
    objects: i64,
    seconds: u64,
    seed: i64,
    bare: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = open(db, bare)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut commits, mut errors, mut n) = (0u64, 0u64, seed);
    while Instant::now() < deadline {
        let started = Instant::now();
        n = (n * 31 + 7) % 1_000_003;
        let object = n % objects;
        let outcome = outbox_context(&mut conn, |ctx| {
            let v = diesel::sql_query(format!("SELECT v FROM source WHERE id = {object}"))
                .get_result::<Value>(ctx.connection())?
                .v;
            ctx.connection().batch_execute(&format!(
                "UPDATE source SET v = {} WHERE id = {object}",
                v + 1
            ))?;
            ctx.write(CellOutbox::new(Category::CounterUpdate, object % 4, object))
        });
        match outcome {
            Ok(()) => commits += 1,
            Err(error) if started.elapsed() > Duration::from_secs(1) => {
                errors += 1;
                eprintln!("writer error after {:?}: {error}", started.elapsed());
            }
            Err(error) => {
                errors += 1;
                eprintln!(
                    "writer error: {error} (commit {commits}, {:?} before the deadline)",
                    deadline.saturating_duration_since(Instant::now())
                );
            }
        }
    }
    let mode = diesel::sql_query("SELECT journal_mode AS value FROM pragma_journal_mode")
        .get_result::<Mode>(&mut conn)
        .map(|mode| mode.value)
        .unwrap_or_default();
    println!("commits={commits} errors={errors} journal={mode}");
    Ok(())
}

/// The recommended way, or the way a new user would.
fn open(db: &str, bare: bool) -> Result<SqliteConnection, Box<dyn std::error::Error>> {
    Ok(if bare {
        SqliteConnection::establish(db)?
    } else {
        SqliteOptions::new().establish(db)?
    })
}

fn drainer(db: &str, seconds: u64, bare: bool) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = open(db, bare)?;
    let receivers = Receivers::new().cell(
        Category::CounterUpdate,
        move |conn: &mut SqliteConnection, message: &OutboxMessage| {
            if bare && message.object_identifier % 7 == 3 {
                return Err(diesel::result::Error::QueryBuilderError(
                    "this object's receiver always fails".into(),
                ));
            }
            conn.batch_execute(&format!(
                "INSERT INTO replica (id, v) SELECT id, v FROM source WHERE id = {} \
                 ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                message.object_identifier
            ))
        },
    );
    let outbox = Outbox::new(receivers);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut delivered, mut errors, mut failed) = (0usize, 0u64, 0u64);
    while Instant::now() < deadline {
        match outbox.drain_due_shards(&mut conn) {
            Ok(report) => {
                delivered += report.delivered;
                for failure in &report.failures {
                    let expected = bare && failure.to_string().contains("always fails");
                    if expected {
                        failed += 1;
                    } else {
                        errors += 1;
                        eprintln!("drainer failure: {failure}");
                    }
                }
                if !report.did_work() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Err(error) => {
                errors += 1;
                eprintln!("drainer error: {error}");
            }
        }
    }
    println!("delivered={delivered} errors={errors} failed={failed}");
    Ok::<_, Error>(()).map_err(Into::into)
}
