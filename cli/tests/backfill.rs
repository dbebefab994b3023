//! `diesel-outbox backfill status` and `backfill run`, run for real against the backfill
//! fixture's models (`diesel_outbox_tests::backfill`) on every backend: the status reports
//! the position the application's backfill stored, `run` asks the application's worker
//! and follows it to the end, and a declaration that cannot run is an error.

use std::process::Command;
use std::time::Duration;

use diesel_outbox::backfill::BackfillOptions;
use diesel_outbox::{Worker, WorkerOptions};
use diesel_outbox_tests::backfill::{
    create_tables, insert_projects, options, outbox_v1, outbox_v2, Project, ProjectV1, User,
};
use diesel_outbox_tests::{backend_db_tests, TestDb};
use serde_json::Value;

/// Runs the binary on `url` with `args`: its exit status, stdout and stderr.
fn run(url: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_diesel-outbox"))
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", url)
        .args(args)
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn model<'v>(json: &'v Value, name: &str) -> &'v Value {
    json["backfills"]
        .as_array()
        .and_then(|list| list.iter().find(|entry| entry["model"] == name))
        .unwrap_or_else(|| panic!("{name} in {json}"))
}

fn backfill_status_json_reports_the_position<D: TestDb>(db: &D)
where
    Project: diesel_outbox::ModelWrites<D::Conn>,
    User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = db.conn();
    create_tables(&mut conn);
    insert_projects(&mut conn, 1_000);
    let outbox = outbox_v2();
    for _ in 0..3 {
        let report = outbox
            .backfill(&mut conn, &options(None, 100))
            .expect("a step");
        assert_eq!(report.objects(), 100);
    }

    let url = db.database_url();
    let (code, stdout, stderr) = run(&url, &["backfill", "status", "--json"]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("JSON");
    let projects = model(&json, "projects");
    assert_eq!(projects["position"], 300, "{projects}");
    assert_eq!(projects["rows_done"], 300);
    assert_eq!(projects["rows_total"], 1_000);
    assert_eq!(projects["declared_version"], 2);
    assert_eq!(projects["stored_version"], 0);
    assert_eq!(projects["target_version"], 2);
    assert_eq!(projects["state"], "running");
    assert_eq!(projects["table"], "cell_outboxes");
    assert_eq!(model(&json, "users")["state"], "pending");

    let (code, stdout, _) = run(&url, &["backfill", "status"]);
    assert_eq!(code, 0);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("projects"))
        .expect("a line for projects");
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns[..7],
        [
            "projects",
            "cell_outboxes",
            "2",
            "0",
            "running",
            "300",
            "300"
        ],
        "{stdout}"
    );
    assert!(line.contains("300 of 1000"), "{line}");
}

fn backfill_run_asks_the_worker_and_follows_it_to_the_end<D: TestDb>(db: &D)
where
    Project: diesel_outbox::ModelWrites<D::Conn>,
    User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = db.conn();
    create_tables(&mut conn);
    insert_projects(&mut conn, 1_000);
    let outbox = outbox_v2();
    // A worker that backfills only what an operator asks for.
    let worker = Worker::spawn(
        db.pool(2),
        outbox.clone(),
        WorkerOptions {
            poll_interval: Duration::from_millis(100),
            backfill: Some(BackfillOptions {
                automatic: false,
                ..options(Some(100), 100)
            }),
            ..WorkerOptions::default()
        },
    )
    .expect("the worker starts");
    let url = db.database_url();
    // The worker records its models at its first step.
    let recorded = || {
        let (_, stdout, _) = run(&url, &["backfill", "status", "--json"]);
        stdout.contains("\"projects\"")
    };
    for _ in 0..100 {
        if recorded() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (code, _, stderr) = run(&url, &["backfill", "run", "--model", "nope"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("no model `nope`") && stderr.contains("projects (cell_outboxes)"),
        "{stderr}"
    );

    // At 100 objects a second the worker would take ten seconds; the run asks for 2,000.
    let (code, stdout, stderr) = run(
        &url,
        &[
            "backfill",
            "run",
            "--model",
            "projects",
            "--rate",
            "2000",
            "--timeout",
            "60",
        ],
    );
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(
        stdout.contains(
            "projects (cell_outboxes): version 2 backfilled: 1000 objects, last key 1000"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("projects: "),
        "progress lines off a terminal: {stderr}"
    );

    let (code, stdout, _) = run(&url, &["backfill", "run", "--model", "projects", "--json"]);
    assert_eq!(code, 4, "up to date: {stdout}");
    let json: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        (json["stored_version"].clone(), json["state"].clone()),
        (Value::from(2), Value::from("up to date"))
    );
    worker.stop();
}

fn a_declaration_that_cannot_run_is_an_error_at_status<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = db.conn();
    create_tables(&mut conn);
    insert_projects(&mut conn, 10);
    let v2 = outbox_v2();
    while v2
        .backfill(&mut conn, &options(None, 100))
        .expect("a step")
        .next_batch_at
        .is_some()
    {}
    // The code of version 1 runs again.
    let report = outbox_v1()
        .backfill(&mut conn, &options(None, 100))
        .expect("a step");
    assert_eq!(report.failures.len(), 1);

    let url = db.database_url();
    let (code, stdout, _) = run(&url, &["backfill", "status"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("error: the backfill of `projects` (cell_outboxes): the declared replication version 1 is below the stored version 2"),
        "{stdout}"
    );
    let (code, _, stderr) = run(&url, &["backfill", "run", "--model", "projects"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot run"), "{stderr}");
}

backend_db_tests!(
    backfill_status_json_reports_the_position,
    backfill_run_asks_the_worker_and_follows_it_to_the_end,
    a_declaration_that_cannot_run_is_an_error_at_status,
);
