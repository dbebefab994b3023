//! SQLite with several processes on one file: two writers doing read-then-write contexts
//! and one drainer, for a few seconds. Every context begins with `BEGIN IMMEDIATE` and
//! every connection has a busy timeout, so none fails with "database is locked", and
//! every change is delivered.

use std::process::{Command, Output, Stdio};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use diesel_outbox::testing::drain_until_empty;
use diesel_outbox::{Outbox, OutboxMessage, Receivers};
use diesel_outbox_tests::{SqliteDb, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { CounterUpdate = 1 { scope: Organization, silo: cell } }
}

const OBJECTS: i64 = 20;
const SECONDS: &str = "3";

/// The number after `name=` in a process's output.
fn figure(output: &Output, name: &str) -> u64 {
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no {name}= in {text:?} (stderr: {})",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

#[test]
fn two_writers_and_a_drainer_share_one_file_without_lock_errors() {
    let db = SqliteDb::new();
    let mut conn = db.connect();
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

    let exe = env!("CARGO_BIN_EXE_sqlite_load");
    let url = db.url();
    let objects = OBJECTS.to_string();
    let spawn = |args: &[&str]| {
        Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns")
    };
    let children = [
        spawn(&["writer", &url, &objects, SECONDS, "1"]),
        spawn(&["writer", &url, &objects, SECONDS, "2"]),
        spawn(&["drainer", &url, SECONDS]),
    ];
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("runs");
            assert!(output.status.success(), "{output:?}");
            output
        })
        .collect();
    let commits = figure(&outputs[0], "commits") + figure(&outputs[1], "commits");
    for (output, name) in outputs.iter().zip(["writer 1", "writer 2", "drainer"]) {
        assert_eq!(
            figure(output, "errors"),
            0,
            "{name} saw errors: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        figure(&outputs[2], "delivered") > 0,
        "the drainer delivered meanwhile"
    );

    let receivers = Receivers::new().cell(
        Category::CounterUpdate,
        |conn: &mut diesel::SqliteConnection, message: &OutboxMessage| {
            conn.batch_execute(&format!(
                "INSERT INTO replica (id, v) SELECT id, v FROM source WHERE id = {} \
                 ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                message.object_identifier
            ))
        },
    );
    drain_until_empty(&mut conn, &Outbox::new(receivers), 5).expect("the rest drains");
    assert_eq!(conn.count("cell_outboxes"), 0);
    let total = conn.scalar("SELECT CAST(SUM(v) AS BIGINT) AS n FROM source");
    assert_eq!(total as u64, commits, "every commit counted once");
    assert!(commits > 100, "the writers committed: {commits}");
    assert_eq!(
        conn.scalar(
            "SELECT COUNT(*) AS n FROM source s JOIN replica r ON r.id = s.id AND r.v = s.v"
        ),
        OBJECTS,
        "every replica equals its source"
    );
}

/// The same with every connection opened by a bare `SqliteConnection::establish` (no busy
/// timeout, a rollback journal: what a new user gets), for 10 s, and a receiver that
/// fails for some objects: the library sets the connections up itself (a busy timeout,
/// WAL), so no process sees "database is locked", and a failing batch releases its lease
/// at once (none is left behind).
#[test]
fn bare_connections_two_writers_and_a_failing_drainer_see_no_lock_errors() {
    let db = SqliteDb::new();
    // The file as a new user has it: SQLite's default rollback journal, migrated through
    // a bare connection (the library switches it to WAL there).
    db.connect()
        .batch_execute("PRAGMA journal_mode = DELETE")
        .expect("back to SQLite's default journal");
    let mut conn = diesel::SqliteConnection::establish(&db.url()).expect("opens");
    diesel_outbox::run_migrations(&mut conn).expect("migrates");
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
    drop(conn);

    let exe = env!("CARGO_BIN_EXE_sqlite_load");
    let url = db.url();
    let objects = OBJECTS.to_string();
    let spawn = |args: &[&str]| {
        Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawns")
    };
    let children = [
        spawn(&["writer", &url, &objects, "10", "1", "bare"]),
        spawn(&["writer", &url, &objects, "10", "2", "bare"]),
        spawn(&["drainer", &url, "10", "bare"]),
    ];
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("runs");
            assert!(output.status.success(), "{output:?}");
            output
        })
        .collect();
    for (output, name) in outputs.iter().zip(["writer 1", "writer 2", "drainer"]) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(figure(output, "errors"), 0, "{name} saw errors: {stderr}");
        assert!(!stderr.contains("locked"), "{name}: {stderr}");
    }
    let commits = figure(&outputs[0], "commits") + figure(&outputs[1], "commits");
    assert!(commits > 100, "the writers committed: {commits}");
    for writer in &outputs[..2] {
        assert!(
            String::from_utf8_lossy(&writer.stdout).contains("journal=wal"),
            "the library switched the file to WAL: {writer:?}"
        );
    }
    assert!(
        figure(&outputs[2], "delivered") > 0,
        "the drainer delivered"
    );
    assert!(
        figure(&outputs[2], "failed") > 0,
        "batches failed meanwhile"
    );
    let mut conn = db.connect();
    assert_eq!(
        conn.count("outbox_drain_leases"),
        0,
        "every batch, failed or not, released its lease"
    );
    let receivers = Receivers::new().cell(
        Category::CounterUpdate,
        |_conn: &mut diesel::SqliteConnection, _message: &OutboxMessage| {
            Ok::<_, diesel_outbox::Error>(())
        },
    );
    drain_until_empty(&mut conn, &Outbox::new(receivers), 5).expect("the rest drains");
    assert_eq!(conn.count("cell_outboxes"), 0);
}
