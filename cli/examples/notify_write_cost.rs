//! What NOTIFY costs the write path on PostgreSQL: transactions of 1, 10 and 100 model
//! saves, written with plain diesel (no outbox), with the library without NOTIFY, and with
//! the library sending its NOTIFY (the default), while a worker's connection listens.
//! Interleaved rounds, the variants' order rotating; medians of µs per transaction.
//!
//! ```text
//! cargo run --release -p diesel-outbox-cli --example notify_write_cost [ROUNDS]
//! ```
//!
//! `OUTBOX_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::{run_migrations, Outbox, ReplicatedCell};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    notify_projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = notify_projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

#[derive(Insertable)]
#[diesel(table_name = notify_projects)]
struct PlainProject<'a> {
    id: i64,
    organization_id: i64,
    name: &'a str,
}

type BResult<T> = Result<T, Box<dyn StdError>>;

#[derive(Clone, Copy, Debug)]
enum Variant {
    Plain,
    /// Plain diesel plus one trivial statement: what a round trip costs.
    PlainSelect,
    /// Plain diesel plus the library's NOTIFY statement: what NOTIFY costs.
    PlainNotify,
    Quiet,
    Notify,
}

fn plain_upsert(conn: &mut PgConnection, p: &Project) -> QueryResult<usize> {
    use diesel::upsert::excluded;
    use notify_projects::dsl as np;
    diesel::insert_into(np::notify_projects)
        .values(&PlainProject {
            id: p.id,
            organization_id: p.organization_id,
            name: &p.name,
        })
        .on_conflict(np::id)
        .do_update()
        .set((
            np::organization_id.eq(excluded(np::organization_id)),
            np::name.eq(excluded(np::name)),
        ))
        .execute(conn)
}

struct Outboxes {
    quiet: Outbox<PgConnection>,
    notify: Outbox<PgConnection>,
}

fn write(
    conn: &mut PgConnection,
    outboxes: &Outboxes,
    variant: Variant,
    models: &[Project],
) -> BResult<()> {
    let save_all = |ctx: &mut diesel_outbox::OutboxContext<'_, PgConnection>| {
        for model in models {
            model.save(ctx)?;
        }
        Ok::<_, diesel_outbox::Error>(())
    };
    match variant {
        Variant::Plain | Variant::PlainSelect | Variant::PlainNotify => {
            conn.transaction(|conn| {
                for model in models {
                    plain_upsert(conn, model)?;
                }
                match variant {
                    Variant::PlainSelect => {
                        diesel::sql_query("SELECT 1").execute(conn)?;
                    }
                    Variant::PlainNotify => {
                        diesel::sql_query(
                            "SELECT pg_notify('diesel_outbox', COALESCE(current_schema(), ''))",
                        )
                        .execute(conn)?;
                    }
                    _ => {}
                }
                Ok::<_, diesel::result::Error>(())
            })?
        }
        Variant::Quiet => outboxes.quiet.context(conn, save_all)?,
        Variant::Notify => outboxes.notify.context(conn, save_all)?,
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A connection that listens as a worker does, reading its notifications.
fn listener(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let Ok(mut conn) = PgConnection::establish(&url) else {
            return 0;
        };
        if conn.batch_execute("LISTEN diesel_outbox").is_err() {
            return 0;
        }
        let mut received = 0;
        while !stop.load(Ordering::Relaxed) {
            received += conn.notifications_iter().filter(Result::is_ok).count();
            std::thread::sleep(Duration::from_millis(2));
        }
        received
    })
}

fn main() -> BResult<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(7);
    let base = std::env::var("OUTBOX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("notify_cost_{}", std::process::id());
    let mut admin = PgConnection::establish(&base)?;
    admin.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
    let outcome = run(&url, rounds);
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
    outcome
}

fn run(url: &str, rounds: usize) -> BResult<()> {
    let mut conn = PgConnection::establish(url)?;
    // NOTIFY_COST_SYNC=off: commits without waiting for the WAL flush, so that round trips,
    // not the disk, decide (the worst case for one more statement).
    let sync = std::env::var("NOTIFY_COST_SYNC").unwrap_or_else(|_| "on".to_owned());
    conn.batch_execute(&format!("SET synchronous_commit = {sync}"))?;
    run_migrations(&mut conn)?;
    conn.batch_execute(
        "CREATE TABLE notify_projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, \
         name TEXT NOT NULL)",
    )?;
    let outboxes = Outboxes {
        quiet: Outbox::builder(diesel_outbox::Receivers::new())
            .flush_on_commit(false)
            .notify_on_commit(false)
            .build(),
        notify: Outbox::builder(diesel_outbox::Receivers::new())
            .flush_on_commit(false)
            .build(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let listening = listener(url.to_owned(), stop.clone());
    let variants = [
        Variant::Plain,
        Variant::PlainSelect,
        Variant::PlainNotify,
        Variant::Quiet,
        Variant::Notify,
    ];
    println!("PostgreSQL write path, synchronous_commit = {sync}, µs per transaction, median of {rounds} interleaved rounds (a worker listening)");
    println!();
    println!("| saves/txn | plain diesel | plain + SELECT 1 | plain + NOTIFY | outbox, no NOTIFY | outbox + NOTIFY | NOTIFY's cost | outbox+NOTIFY vs plain | outbox without vs plain |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut next_id = 0i64;
    for per_txn in [1usize, 10, 100] {
        let txns = (1_000 / per_txn).max(50);
        let mut samples = vec![Vec::new(); variants.len()];
        for round in 0..=rounds {
            for k in 0..variants.len() {
                let v = (k + round) % variants.len();
                let batches: Vec<Vec<Project>> = (0..txns)
                    .map(|_| {
                        (0..per_txn)
                            .map(|_| {
                                next_id += 1;
                                Project {
                                    id: next_id,
                                    organization_id: next_id % 1_000,
                                    name: format!("project {next_id}"),
                                }
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                for batch in &batches {
                    write(&mut conn, &outboxes, variants[v], batch)?;
                }
                if round > 0 {
                    samples[v].push(start.elapsed().as_secs_f64() * 1e6 / txns as f64);
                }
            }
            conn.batch_execute("DELETE FROM cell_outboxes; DELETE FROM notify_projects")?;
        }
        let plain = median(&mut samples[0]);
        let select = median(&mut samples[1]);
        let plain_notify = median(&mut samples[2]);
        let quiet = median(&mut samples[3]);
        let notify = median(&mut samples[4]);
        println!(
            "| {per_txn} | {plain:.0} | {select:.0} | {plain_notify:.0} | {quiet:.0} | {notify:.0} | {:+.1}% | {:.2}x | {:.2}x |",
            100.0 * (notify / quiet - 1.0),
            notify / plain,
            quiet / plain,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let received = listening.join().unwrap_or(0);
    println!();
    println!("notifications the listener received: {received}");
    Ok(())
}
