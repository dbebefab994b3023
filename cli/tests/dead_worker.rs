//! A worker process killed mid-batch by its receiver (an abort), with the default lease
//! and delivery: its lease shows in `diesel-outbox leases` while it waits to be
//! recovered, and the batch's healthy shards are delivered within two leases (on
//! PostgreSQL and MySQL at once: the dead session's locks go with it).
//!
//! The worker is this test binary run again as the child test `child_worker`, which does
//! nothing unless the parent set `OUTBOX_CHILD_BACKEND` and `OUTBOX_CHILD_URL`.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel_outbox::drain::{Exhaustion, DEFAULT_LEASE};
use diesel_outbox::{CellOutbox, Error, Outbox, OutboxConnection, OutboxMessage, Receivers};
use diesel_outbox_tests::{backend_db_tests, Dialect, TestConnection, TestDb};
use serde_json::Value;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
}

/// The shards of the batch, and the one whose receiver kills its process.
const SHARDS: std::ops::Range<i64> = 0..21;
const CULPRIT: i64 = 10;

/// The child: drains with a receiver that aborts the process at the culprit's row.
#[test]
fn child_worker() {
    let (Ok(backend), Ok(url)) = (
        std::env::var("OUTBOX_CHILD_BACKEND"),
        std::env::var("OUTBOX_CHILD_URL"),
    ) else {
        return;
    };
    match backend.as_str() {
        "sqlite" => abort_in_batch(&mut diesel::SqliteConnection::establish(&url).expect("opens")),
        #[cfg(feature = "postgres")]
        "postgres" => abort_in_batch(&mut diesel::PgConnection::establish(&url).expect("opens")),
        #[cfg(feature = "mysql")]
        "mysql" => abort_in_batch(&mut diesel::MysqlConnection::establish(&url).expect("opens")),
        other => panic!("unknown backend {other}"),
    }
}

/// Drains with a receiver that aborts the process at the culprit's object 1. Default
/// settings, unless `OUTBOX_CHILD_PARK` is set: then a 1 s lease and parking after 3
/// deaths, and a drain that finds nothing to abort on ends normally.
fn abort_in_batch<C: OutboxConnection>(conn: &mut C) {
    let receivers = Receivers::new().cell_leased(
        Category::OrganizationUpdate,
        |_conn: &mut C, message: &OutboxMessage| {
            if (message.shard.identifier, message.object_identifier) == (CULPRIT, CULPRIT) {
                std::process::abort();
            }
            Ok::<_, Error>(())
        },
    );
    if std::env::var("OUTBOX_CHILD_PARK").is_ok() {
        let outbox = Outbox::builder(receivers)
            .lease(Duration::from_secs(1))
            .exhaustion(
                Category::OrganizationUpdate,
                Exhaustion::Park { max_attempts: 3 },
            )
            .build();
        outbox.drain_due_shards(conn).expect("drains");
        return;
    }
    let _ = Outbox::new(receivers).drain_due_shards(conn);
    panic!("the receiver should have aborted this process");
}

/// A key whose receiver kills its worker is parked after N deaths (3 here), counted from
/// the recoveries of the dead workers' leases; the key after it in its shard, and the
/// other shards, are delivered.
fn a_key_that_kills_its_worker_is_parked_after_three_deaths<D: TestDb>(db: &D) {
    let mut conn = db.conn();
    let backend = backend_name(&mut conn);
    let quiet = Outbox::builder(Receivers::new())
        .flush_on_commit(false)
        .build();
    quiet
        .context(&mut conn, |ctx| {
            ctx.write(CellOutbox::new(
                Category::OrganizationUpdate,
                CULPRIT,
                CULPRIT,
            ))?;
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, CULPRIT, 99))?;
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 1, 1))
        })
        .expect("commits");
    let started = Instant::now();
    let mut deaths = 0;
    while conn.count("cell_outboxes") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "parked within a minute"
        );
        let child = Command::new(std::env::current_exe().expect("this test binary"))
            .args(["child_worker", "--exact", "--nocapture"])
            .env("OUTBOX_CHILD_BACKEND", backend)
            .env("OUTBOX_CHILD_URL", db.database_url())
            .env("OUTBOX_CHILD_PARK", "3")
            .output()
            .expect("the child runs");
        if !child.status.success() {
            deaths += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(deaths, 3, "parked at its third death");
    assert_eq!(
        conn.scalar(&format!(
            "SELECT COUNT(*) AS n FROM cell_outbox_parked \
             WHERE shard_identifier = {CULPRIT} AND object_identifier = {CULPRIT}"
        )),
        1,
        "the culprit's key is parked"
    );
    assert_eq!(conn.count("cell_outbox_parked"), 1, "and nothing else");
}

fn backend_name<C: TestConnection>(conn: &mut C) -> &'static str {
    match conn.dialect() {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgres",
        Dialect::Mysql => "mysql",
    }
}

fn a_killed_workers_healthy_shards_are_delivered_within_two_leases<D: TestDb>(db: &D) {
    let mut conn = db.conn();
    let backend = backend_name(&mut conn);
    let quiet = Outbox::builder(Receivers::new())
        .flush_on_commit(false)
        .build();
    quiet
        .context(&mut conn, |ctx| {
            for shard in SHARDS {
                ctx.write(CellOutbox::new(Category::OrganizationUpdate, shard, shard))?;
            }
            Ok::<_, Error>(())
        })
        .expect("commits");

    let child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["child_worker", "--exact", "--nocapture"])
        .env("OUTBOX_CHILD_BACKEND", backend)
        .env("OUTBOX_CHILD_URL", db.database_url())
        .output()
        .expect("the child runs");
    assert!(!child.status.success(), "the child aborted: {child:?}");
    let killed = Instant::now();

    // Its lease is there, with every shard of its batch.
    let output = Command::new(env!("CARGO_BIN_EXE_diesel-outbox"))
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", db.database_url())
        .env_remove("DIESEL_OUTBOX_CATEGORY_NAMES")
        .args(["leases", "--json"])
        .output()
        .expect("the binary runs");
    let leases: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let leases = leases["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {output:?}"))
        .clone();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(
        leases[0]["shards"].as_array().map(Vec::len),
        Some(SHARDS.count()),
        "{leases:?}"
    );
    if backend == "sqlite" {
        assert_eq!(leases[0]["live"], Value::Bool(true), "not expired yet");
        assert!(leases[0]["holder"].is_i64(), "{leases:?}");
    } else {
        assert_eq!(leases[0]["live"], Value::Bool(false), "its session is gone");
        assert_eq!(
            output.status.code(),
            Some(3),
            "a dead lease needs attention"
        );
    }

    // A live worker (whose receiver fails for the culprit instead of aborting) delivers
    // the healthy shards once the lease is recovered.
    let delivered = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let seen = delivered.clone();
    let outbox = Outbox::new(Receivers::new().cell_leased(
        Category::OrganizationUpdate,
        move |_conn: &mut D::Conn, message: &OutboxMessage| {
            if message.shard.identifier == CULPRIT {
                return Err("the culprit fails here instead of aborting");
            }
            seen.lock().expect("seen").insert(message.shard.identifier);
            Ok(())
        },
    ));
    let deadline = killed + 2 * DEFAULT_LEASE;
    while delivered.lock().expect("seen").len() < SHARDS.count() - 1 {
        assert!(
            Instant::now() < deadline,
            "healthy shards delivered within two leases: {:?}",
            delivered.lock().expect("seen")
        );
        outbox.drain_due_shards(&mut conn).expect("drains");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{backend}: the healthy shards were delivered {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(
        conn.count("cell_outboxes"),
        1,
        "only the culprit's row is left"
    );
    assert_eq!(conn.count("outbox_drain_leases"), 0);
}

backend_db_tests!(
    a_killed_workers_healthy_shards_are_delivered_within_two_leases,
    a_key_that_kills_its_worker_is_parked_after_three_deaths,
);
