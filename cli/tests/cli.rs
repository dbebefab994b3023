//! The `diesel-outbox` binary, run for real against real databases (SQLite files and
//! PostgreSQL schemas), on outboxes put in shape by the library: a failing shard, a
//! parked group, a skipped shard.

use std::path::Path;
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use diesel::connection::SimpleConnection;
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::inspect::ParkedKey;
use diesel_outbox::{CellOutbox, Error, Outbox, OutboxMessage, OutboxTable, Receivers, ShardKey};
use diesel_outbox_tests::{backend_db_tests, SqliteDb, TestConnection, TestDb};
use serde_json::Value;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        AuditLogEvent = 2 { scope: Organization, silo: cell },
    }
}

/// The binary, on `url`, in a directory without a `.env` file.
fn cli(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_diesel-outbox"));
    command
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", url)
        .env_remove("DIESEL_OUTBOX_CATEGORY_NAMES");
    command
}

/// Runs the binary with `args`: its exit status and output.
fn run(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = cli(url).args(args).output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(url: &str, args: &[&str]) -> (i32, Value) {
    let mut args = args.to_vec();
    args.push("--json");
    let (code, stdout, stderr) = run(url, &args);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("--json output parses ({error}): {stdout} {stderr}"));
    (code, value)
}

/// Failing receivers: organization updates of object 1 fail with a message an operator
/// must see; audit events always fail and are parked at their first failure.
fn receivers<C: TestConnection>(failing: Arc<Mutex<bool>>) -> Receivers<C> {
    Receivers::new()
        .cell(
            Category::OrganizationUpdate,
            move |_conn: &mut C, message: &OutboxMessage| {
                if message.object_identifier == 1 && *failing.lock().expect("flag") {
                    return Err("billing service answered 503 for organization 1".into());
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            },
        )
        .cell(
            Category::AuditLogEvent,
            |_conn: &mut C, _message: &OutboxMessage| Err("audit log is read-only"),
        )
}

/// A failing shard 0/7 (two rows behind its head), a parked audit event in shard 0/9,
/// and a healthy backlog in shard 0/8.
fn troubled_outbox<C: TestConnection>(conn: &mut C, failing: Arc<Mutex<bool>>) -> Outbox<C> {
    let outbox = Outbox::builder(receivers(failing))
        .flush_on_commit(false)
        .exhaustion(
            Category::AuditLogEvent,
            Exhaustion::Park { max_attempts: 1 },
        )
        .build();
    outbox
        .context(conn, |ctx| {
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 7, 1))?;
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 7, 2))?;
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 7, 3))?;
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 9, 90))
        })
        .expect("commits");
    outbox.drain_due_shards(conn).expect("drains");
    outbox
        .context(conn, |ctx| {
            for object in 10..15 {
                ctx.write(CellOutbox::new(Category::OrganizationUpdate, 8, object))?;
            }
            Ok::<_, Error>(())
        })
        .expect("commits");
    outbox
}

fn status_and_stuck_show_a_failing_shard_with_its_error<D: TestDb>(db: &D) {
    let url = db.database_url();
    let mut conn = db.conn();
    let _outbox = troubled_outbox(&mut conn, Arc::new(Mutex::new(true)));

    let (code, stdout, _) = run(&url, &["status"]);
    assert_eq!(code, 3, "stuck and parked: attention\n{stdout}");
    assert!(stdout.contains("TABLE"), "{stdout}");
    let cell = stdout
        .lines()
        .find(|line| line.starts_with("cell_outboxes"))
        .expect("a line for cell_outboxes");
    let columns: Vec<&str> = cell.split_whitespace().collect();
    assert_eq!(columns[1], "8", "rows: {cell}");
    assert!(
        cell.contains("1 (1 row)") && cell.contains("0/8 (5 rows)"),
        "{cell}"
    );

    let (code, status) = json(&url, &["status"]);
    assert_eq!(code, 3);
    let cell = &status["tables"][0];
    assert_eq!(cell["table"], "cell_outboxes");
    assert_eq!(cell["rows"], 8);
    assert_eq!(cell["stuck_shards"], 1);
    assert_eq!(
        (cell["parked_groups"].clone(), cell["parked_rows"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(cell["categories"][0]["category"]["number"], 1);
    assert_eq!(cell["categories"][0]["rows"], 8);
    assert_eq!(cell["deepest_shard"]["shard"], "0/8");
    assert!(cell["lag_seconds"].as_f64().is_some());
    assert_eq!(status["tables"][1]["rows"], 0);

    let (code, stdout, _) = run(
        &url,
        &[
            "stuck",
            "--category-names",
            "1=OrganizationUpdate,2=AuditLogEvent",
        ],
    );
    assert_eq!(code, 3);
    assert!(
        stdout.contains("cell_outboxes shard 0/7: 1 failed attempt since"),
        "{stdout}"
    );
    assert!(
        stdout.contains("category 1 OrganizationUpdate, object 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("billing service answered 503 for organization 1"),
        "the error text is shown: {stdout}"
    );
    let (_, stuck) = json(&url, &["stuck"]);
    let first = &stuck["stuck"][0];
    assert_eq!(first["shard"], "0/7");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["object_identifier"], 1);
    assert!(first["error"]
        .as_str()
        .is_some_and(|error| error.contains("answered 503")));

    let (code, shards) = json(&url, &["shards", "--top", "2"]);
    assert_eq!(code, 0);
    let listed: Vec<(&str, i64)> = shards["shards"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|shard| {
            (
                shard["shard"].as_str().unwrap_or(""),
                shard["rows"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(listed, vec![("0/8", 5), ("0/7", 3)]);
    assert_eq!(shards["shards"][1]["attempts"], 1);
    let (_, stdout, _) = run(&url, &["shards", "--top", "2"]);
    assert!(stdout.contains("failing (1 attempt)"), "{stdout}");
}

fn parked_groups_are_listed_retried_and_discarded<D: TestDb>(db: &D) {
    let url = db.database_url();
    let mut conn = db.conn();
    let outbox = troubled_outbox(&mut conn, Arc::new(Mutex::new(true)));

    let (code, stdout, _) = run(&url, &["parked", "list"]);
    assert_eq!(code, 3);
    assert!(stdout.contains("0/9:2:90 (cell_outboxes)"), "{stdout}");
    assert!(stdout.contains("audit log is read-only"), "{stdout}");
    let (_, listed) = json(&url, &["parked", "list", "--table", "cell"]);
    assert_eq!(listed["parked"][0]["group"], "0/9:2:90");
    assert_eq!(listed["parked"][0]["rows"], 1);
    assert_eq!(listed["parked"][0]["attempts"], 1);

    let (code, stdout, _) = run(&url, &["parked", "retry", "0/9:2:90"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("returned to the outbox (1 row)"),
        "{stdout}"
    );
    assert_eq!(conn.count("cell_outbox_parked"), 0);
    assert_eq!(
        outbox
            .shard_depths(&mut conn, OutboxTable::Cell, 10)
            .expect("depths")
            .iter()
            .find(|depth| depth.shard == ShardKey::cell(Scope::Organization, 9))
            .map(|depth| depth.rows),
        Some(1),
        "back in the outbox"
    );
    let (code, _, _) = run(&url, &["parked", "retry", "0/9:2:90"]);
    assert_eq!(code, 4, "nothing left to retry");

    // Parked again by the next drain, then discarded.
    outbox.drain_due_shards(&mut conn).expect("drains");
    let (code, _, stderr) = run(&url, &["parked", "discard", "--all"]);
    assert_eq!(code, 2, "--all needs --yes: {stderr}");
    let (code, actions) = json(&url, &["parked", "discard", "0/9:2:90"]);
    assert_eq!(code, 0);
    assert_eq!(actions["actions"][0]["rows"], 1);
    assert!(outbox
        .parked(&mut conn, OutboxTable::Cell, 10)
        .expect("lists")
        .is_empty());
    let key = ParkedKey {
        shard: ShardKey::cell(Scope::Organization, 9),
        category: 2,
        object_identifier: 90,
    };
    assert_eq!(outbox.retry_parked(&mut conn, &key).expect("retries"), 0);
    let (code, _, _) = run(&url, &["parked", "list"]);
    assert_eq!(code, 0, "nothing parked");
}

fn shards_are_skipped_unskipped_and_retried_now<D: TestDb>(db: &D) {
    let url = db.database_url();
    let mut conn = db.conn();
    let failing = Arc::new(Mutex::new(true));
    let outbox = troubled_outbox(&mut conn, failing.clone());
    let stuck = ShardKey::cell(Scope::Organization, 7);

    let (code, stdout, _) = run(&url, &["skip", "0/8"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("cell_outboxes shard 0/8: skipped"),
        "{stdout}"
    );
    assert!(outbox
        .is_skipped(&mut conn, &ShardKey::cell(Scope::Organization, 8))
        .expect("reads"));
    let (code, _, _) = run(&url, &["unskip", "0/8"]);
    assert_eq!(code, 0);
    assert!(!outbox
        .is_skipped(&mut conn, &ShardKey::cell(Scope::Organization, 8))
        .expect("reads"));

    // Backing off (for a long while, so that a slow machine does not make it due): not
    // due until retry-now clears it. Written by hand, past the guard.
    diesel_outbox::guard::allow(&mut conn, |conn| {
        conn.batch_execute("UPDATE cell_outbox_shards SET scheduled_for = '2100-01-01 00:00:00'")
    })
    .expect("pushes the backoff out");
    *failing.lock().expect("flag") = false;
    outbox.drain_due_shards(&mut conn).expect("drains");
    assert_eq!(conn.count("cell_outboxes"), 3, "shard 0/7 still waits");
    let (code, stdout, _) = run(&url, &["retry-now", "0/7"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("due now"), "{stdout}");
    outbox.drain_due_shards(&mut conn).expect("drains");
    assert_eq!(conn.count("cell_outboxes"), 0);
    assert_eq!(outbox.shard_state(&mut conn, &stuck).expect("reads"), None);
    let (code, _, _) = run(&url, &["retry-now", "0/7"]);
    assert_eq!(code, 4, "a healthy shard has no backoff to clear");

    let (code, _, stderr) = run(&url, &["skip", "seven"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("SCOPE/IDENTIFIER"), "{stderr}");
    let (code, stdout, _) = run(&url, &["status"]);
    assert_eq!(code, 3, "the parked group is still there: {stdout}");
}

backend_db_tests!(
    status_and_stuck_show_a_failing_shard_with_its_error,
    parked_groups_are_listed_retried_and_discarded,
    shards_are_skipped_unskipped_and_retried_now,
);

#[test]
fn migrate_creates_the_tables_and_other_commands_need_an_existing_database() {
    let dir = std::env::temp_dir().join(format!("diesel-outbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("fresh.db");
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}", path.display());

    let (code, _, stderr) = run(&url, &["status"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no SQLite database"), "{stderr}");
    assert!(
        !Path::new(&path).exists(),
        "status does not create the file"
    );

    let (code, stdout, _) = run(&url, &["migrate"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("up to date (SQLite)"), "{stdout}");
    let (code, status) = json(&url, &["status"]);
    assert_eq!(code, 0, "an empty outbox needs no attention");
    assert_eq!(status["tables"][0]["rows"], 0);
    let (code, stdout, _) = run(&url, &["status"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("cell_outboxes     0"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unmigrated_database_is_named_as_such() {
    let db = SqliteDb::new();
    let mut conn = db.connect();
    conn.batch_execute("DROP TABLE cell_outbox_parked")
        .expect("drops a table");
    let (code, _, stderr) = run(&db.url(), &["status"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("diesel-outbox migrate"), "{stderr}");
}

#[test]
fn help_says_it_cannot_run_receivers_and_urls_are_required() {
    let (code, stdout, _) = run("unused", &["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("cannot run receivers"), "{stdout}");
    assert!(stdout.contains("Exit status"), "{stdout}");
    let output = Command::new(env!("CARGO_BIN_EXE_diesel-outbox"))
        .current_dir(std::env::temp_dir())
        .env_remove("DATABASE_URL")
        .arg("status")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
    // Without the `mysql` feature a MySQL URL is a usage error; with it, one that cannot
    // be reached says so.
    #[cfg(not(feature = "mysql"))]
    {
        let (code, _, stderr) = run("mysql://localhost/test", &["status"]);
        assert_eq!(code, 2);
        assert!(stderr.contains("MySQL"), "{stderr}");
    }
    #[cfg(feature = "mysql")]
    {
        let (code, _, stderr) = run("mysql://root@127.0.0.1:1/test", &["status"]);
        assert_ne!(code, 0);
        assert!(stderr.contains("cannot connect to MySQL"), "{stderr}");
    }
}
