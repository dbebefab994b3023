//! The backfill, on every backend: 10,000 projects that existed before their replica,
//! and a replication version raised from 1 to 2. Every object is replicated exactly once
//! (the receivers count, the replica equals the source); a backfill killed mid-run
//! resumes without skipping an object; user writes during the backfill converge to the
//! newest state; two processes backfilling at once do the work once; the throttle holds
//! over ten seconds; a version that goes down, or a model no longer declared, is an error
//! at status.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel_outbox::backfill::{BackfillPhase, BackfillProblem, BackfillStatus, Backfills};
use diesel_outbox::testing::drain_until_empty;
use diesel_outbox::{Outbox, OutboxTable, Receivers, ReplicatedCell, Worker, WorkerOptions};
use diesel_outbox_tests::backfill::{
    backfill_to_end, create_tables, insert_projects, insert_users, options, outbox_v1, outbox_v2,
    Category, Project, ProjectV1,
};
use diesel_outbox_tests::{backend_db_tests, TestConnection, TestDb};

const OBJECTS: i64 = 10_000;

fn status_of<C: TestConnection>(conn: &mut C, outbox: &Outbox<C>, model: &str) -> BackfillStatus {
    outbox
        .backfill_status(conn)
        .expect("status")
        .into_iter()
        .find(|status| status.model == model)
        .unwrap_or_else(|| panic!("a status for {model}"))
}

/// 10,000 projects, backfilled and replicated at version 1 (the run that records the
/// version), then the replica and the delivery log emptied: a new replica, waiting for
/// version 2.
fn at_version_one<D: TestDb>(db: &D) -> D::Conn
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = db.conn();
    create_tables(&mut conn);
    insert_projects(&mut conn, OBJECTS);
    let v1 = outbox_v1();
    let (objects, failures) = backfill_to_end(&mut conn, &v1, &options(None, 1_000));
    assert_eq!((objects, failures), (OBJECTS as usize, Vec::new()));
    assert_eq!(conn.count("cell_outboxes"), OBJECTS);
    drain_until_empty(&mut conn, &v1, 10).expect("version 1's rows drain");
    let status = status_of(&mut conn, &v1, "projects");
    assert_eq!(
        (status.stored_version, status.phase, status.last_id),
        (1, BackfillPhase::UpToDate, Some(OBJECTS))
    );
    conn.batch_execute("DELETE FROM replica_projects; DELETE FROM deliveries")
        .expect("a new replica");
    conn
}

/// Each object's outbox rows: how many objects have exactly one, and how many rows.
fn rows_per_object<C: TestConnection>(conn: &mut C) -> (i64, i64) {
    let once = conn.scalar(
        "SELECT COUNT(*) AS n FROM (SELECT object_identifier FROM cell_outboxes \
         GROUP BY object_identifier HAVING COUNT(*) = 1) once",
    );
    (once, conn.count("cell_outboxes"))
}

/// After the drain: every project delivered exactly once, and the replica equal to the
/// source.
fn assert_replicated_once<C: TestConnection>(conn: &mut C) {
    let delivered_once = conn.scalar(
        "SELECT COUNT(*) AS n FROM (SELECT object FROM deliveries WHERE model = 'projects' \
         GROUP BY object HAVING COUNT(*) = 1) once",
    );
    let deliveries = conn.scalar("SELECT COUNT(*) AS n FROM deliveries WHERE model = 'projects'");
    assert_eq!((delivered_once, deliveries), (OBJECTS, OBJECTS));
    assert_replica_equals_source(conn);
}

fn assert_replica_equals_source<C: TestConnection>(conn: &mut C) {
    let equal = conn.scalar(
        "SELECT COUNT(*) AS n FROM projects p JOIN replica_projects r \
         ON r.id = p.id AND r.organization_id = p.organization_id AND r.name = p.name",
    );
    assert_eq!(equal, OBJECTS, "every replica row equals its source");
    assert_eq!(conn.count("replica_projects"), OBJECTS);
}

fn every_object_is_replicated_exactly_once_after_a_version_bump<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    diesel_outbox_tests::backfill::User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = at_version_one(db);
    insert_users(&mut conn, 500);
    let v2 = outbox_v2();
    let before = status_of(&mut conn, &v2, "projects");
    assert_eq!(
        (before.declared_version, before.stored_version, before.phase),
        (Some(2), 1, BackfillPhase::Pending)
    );

    let (objects, failures) = backfill_to_end(&mut conn, &v2, &options(None, 700));
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(objects, OBJECTS as usize + 500, "projects, then users");
    assert_eq!(
        rows_per_object(&mut conn),
        (OBJECTS, OBJECTS),
        "one row per project"
    );
    let user_rows = conn.scalar(
        "SELECT COUNT(*) AS n FROM (SELECT object_identifier, cell_name FROM control_outboxes \
         GROUP BY object_identifier, cell_name HAVING COUNT(*) = 1) once",
    );
    assert_eq!(
        (user_rows, conn.count("control_outboxes")),
        (1_000, 1_000),
        "one row per user and cell"
    );
    for model in ["projects", "users"] {
        let status = status_of(&mut conn, &v2, model);
        assert_eq!(
            (status.stored_version, status.phase, status.problem),
            (2, BackfillPhase::UpToDate, None)
        );
    }
    let projects = status_of(&mut conn, &v2, "projects");
    assert_eq!(
        (projects.rows_done, projects.rows_total, projects.last_id),
        (OBJECTS, Some(OBJECTS), Some(OBJECTS))
    );

    drain_until_empty(&mut conn, &v2, 10).expect("the backfill's rows drain");
    assert_replicated_once(&mut conn);
    let user_deliveries =
        conn.scalar("SELECT COUNT(DISTINCT object) AS n FROM deliveries WHERE model = 'users'");
    assert_eq!(user_deliveries, 500);

    // Done: another step finds nothing to do and writes nothing.
    let report = v2.backfill(&mut conn, &options(None, 700)).expect("a step");
    assert!(
        !report.did_work() && report.next_batch_at.is_none(),
        "{report:?}"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
}

/// The child process that backfills version 2 to its end.
fn spawn_child(url: &str, rate: u32, batch: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_backfill_child"))
        .args([url, &rate.to_string(), &batch.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child starts")
}

/// `objects=N` of a child's output.
fn objects_of(output: &Output) -> usize {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("failures=0"),
        "{output:?}"
    );
    text.split_whitespace()
        .find_map(|part| part.strip_prefix("objects="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no objects= in {text:?}"))
}

fn a_killed_backfill_resumes_without_skipping<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    diesel_outbox_tests::backfill::User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = at_version_one(db);
    let v2 = outbox_v2();
    // 2,000 objects a second in batches of 100: five seconds for the whole table.
    let mut child = spawn_child(&db.database_url(), 2_000, 100);
    let deadline = Instant::now() + Duration::from_secs(60);
    // (A finished run keeps its figures: version 1's says 10,000 until version 2 starts.)
    while !matches!(
        status_of(&mut conn, &v2, "projects"),
        BackfillStatus {
            phase: BackfillPhase::Running,
            rows_done: 3_000..,
            ..
        }
    ) {
        assert!(Instant::now() < deadline, "the child made no progress");
        assert!(
            child.try_wait().expect("the child").is_none(),
            "the child ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("the child is gone");

    let killed = status_of(&mut conn, &v2, "projects");
    assert_eq!(killed.phase, BackfillPhase::Running);
    assert!(
        killed.rows_done >= 3_000 && killed.rows_done < OBJECTS,
        "{killed:?}"
    );
    // What committed is exactly the objects up to the stored position, once each.
    let last = killed.last_id.expect("a position");
    assert_eq!(last, killed.rows_done, "keys 1..=N are the first N objects");
    assert_eq!(rows_per_object(&mut conn), (last, last));
    assert_eq!(
        conn.scalar(&format!(
            "SELECT COUNT(*) AS n FROM cell_outboxes WHERE object_identifier > {last}"
        )),
        0
    );

    // Another process resumes from the position.
    let (objects, failures) = backfill_to_end(&mut conn, &v2, &options(None, 1_000));
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        objects as i64,
        OBJECTS - last,
        "resumed after {last}, nothing repeated"
    );
    assert_eq!(
        rows_per_object(&mut conn),
        (OBJECTS, OBJECTS),
        "no object skipped"
    );
    drain_until_empty(&mut conn, &v2, 10).expect("drains");
    assert_replicated_once(&mut conn);
}

fn two_processes_backfilling_at_once_do_the_work_once<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    diesel_outbox_tests::backfill::User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = at_version_one(db);
    let url = db.database_url();
    let children = [spawn_child(&url, 4_000, 100), spawn_child(&url, 4_000, 100)];
    let done: Vec<usize> = children
        .into_iter()
        .map(|child| objects_of(&child.wait_with_output().expect("the child runs")))
        .collect();
    assert_eq!(
        done.iter().sum::<usize>(),
        OBJECTS as usize,
        "each object once: {done:?}"
    );
    assert_eq!(rows_per_object(&mut conn), (OBJECTS, OBJECTS));
    let v2 = outbox_v2();
    assert_eq!(status_of(&mut conn, &v2, "projects").stored_version, 2);
    drain_until_empty(&mut conn, &v2, 10).expect("drains");
    assert_replicated_once(&mut conn);
}

fn user_writes_during_the_backfill_converge_to_the_newest_state<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    diesel_outbox_tests::backfill::User: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = at_version_one(db);
    let v2 = outbox_v2();
    let writer_outbox = v2.clone();
    std::thread::scope(|scope| {
        let backfill = scope.spawn(|| {
            let mut conn = db.conn();
            backfill_to_end(&mut conn, &v2, &options(Some(5_000), 200))
        });
        // Renames through the models' own writes, meanwhile, in the backfill's way and
        // behind it: the last name of each object must win.
        let mut writer = db.conn();
        let mut written = 0;
        while !backfill.is_finished() || written < 200 {
            let id = (written * 7_919) % OBJECTS + 1;
            let project = Project {
                id,
                organization_id: id % 100,
                name: format!("renamed {written}"),
            };
            writer_outbox
                .context(&mut writer, |ctx| project.save(ctx))
                .expect("a user's write");
            written += 1;
        }
        let (_, failures) = backfill.join().expect("the backfill thread");
        assert!(failures.is_empty(), "{failures:?}");
        assert!(written >= 200);
    });
    drain_until_empty(&mut conn, &v2, 10).expect("drains");
    assert_replica_equals_source(&mut conn);
    let renamed =
        conn.scalar("SELECT COUNT(*) AS n FROM replica_projects WHERE name LIKE 'renamed %'");
    assert!(renamed > 0, "the writes reached the replica");
}

fn the_throttle_holds_over_ten_seconds<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    diesel_outbox_tests::backfill::User: diesel_outbox::ModelWrites<D::Conn>,
{
    const RATE: u32 = 400;
    let mut conn = at_version_one(db);
    let v2 = outbox_v2();
    let started = Instant::now();
    let worker = Worker::spawn(
        db.pool(3),
        v2.clone(),
        WorkerOptions {
            poll_interval: Duration::from_millis(100),
            backfill: Some(options(Some(RATE), 100)),
            ..WorkerOptions::default()
        },
    )
    .expect("the worker starts");
    // The backfill's own figures: objects done between its start and its last batch.
    std::thread::sleep(Duration::from_secs(10));
    let status = status_of(&mut conn, &v2, "projects");
    let elapsed = started.elapsed().as_secs_f64();
    worker.stop();
    let rate = status.rows_done as f64 / elapsed;
    let measured = status.rate.expect("a running backfill has a rate");
    eprintln!("throttle: {rate:.1} objects/s over {elapsed:.2} s (status: {measured:.1}/s) against {RATE}");
    assert!(
        (rate - f64::from(RATE)).abs() <= 0.2 * f64::from(RATE),
        "{rate:.0} objects/s over {elapsed:.1} s against {RATE} (status says {measured:.0}/s)"
    );
    assert!(
        (measured - f64::from(RATE)).abs() <= 0.2 * f64::from(RATE),
        "{measured:.0}/s"
    );
    assert_eq!(
        status.phase,
        BackfillPhase::Running,
        "4,000 of 10,000 in ten seconds"
    );
}

fn a_version_that_goes_down_or_a_model_no_longer_declared_is_an_error_at_status<D: TestDb>(db: &D)
where
    ProjectV1: diesel_outbox::ModelWrites<D::Conn>,
    Project: diesel_outbox::ModelWrites<D::Conn>,
    Team: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = db.conn();
    create_tables(&mut conn);
    diesel_outbox::guard::allow(&mut conn, |conn| {
        conn.batch_execute(
            "CREATE TABLE teams (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name VARCHAR(100) NOT NULL);
             INSERT INTO teams (id, organization_id, name) VALUES (1, 1, 'a'), (2, 1, 'b')",
        )
    })
    .expect("teams");
    insert_projects(&mut conn, 50);
    let both = Outbox::builder(Receivers::new())
        .backfill(Backfills::new().cell::<Project>().cell::<Team>())
        .build();
    let (objects, _) = backfill_to_end(&mut conn, &both, &options(None, 100));
    assert_eq!(objects, 52);

    // Code of version 1 again, which knows no teams: projects' version went down, teams
    // are no longer declared.
    let v1 = outbox_v1();
    let report = v1.backfill(&mut conn, &options(None, 100)).expect("a step");
    assert!(!report.did_work());
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let error = report.failures[0].error.to_string();
    assert!(
        error.contains("projects") && error.contains("below the stored version 2"),
        "{error}"
    );
    let expected = |statuses: &[BackfillStatus]| {
        let projects = statuses
            .iter()
            .find(|s| s.model == "projects")
            .expect("projects");
        assert_eq!(
            (projects.declared_version, projects.problem.clone()),
            (
                Some(1),
                Some(BackfillProblem::VersionWentDown {
                    declared: 1,
                    stored: 2
                })
            )
        );
        let teams = statuses.iter().find(|s| s.model == "teams").expect("teams");
        assert_eq!(
            (teams.phase, teams.problem.clone()),
            (
                BackfillPhase::NotDeclared,
                Some(BackfillProblem::NotDeclared { stored: 1 })
            )
        );
    };
    expected(&v1.backfill_status(&mut conn).expect("status"));
    // An outbox without models (the command line's) reads what the application recorded.
    let bare: Outbox<D::Conn> = Outbox::new(Receivers::new());
    expected(&bare.backfill_status(&mut conn).expect("status"));
}

/// A second cell model, for the model that stops being declared.
#[derive(Debug, Clone, diesel::Queryable, diesel::Selectable, ReplicatedCell)]
#[diesel(table_name = teams)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Team {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

diesel::table! {
    teams (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}

fn a_model_waits_for_a_request_when_not_automatic<D: TestDb>(db: &D)
where
    Project: diesel_outbox::ModelWrites<D::Conn>,
{
    let mut conn = db.conn();
    create_tables(&mut conn);
    insert_projects(&mut conn, 30);
    let outbox = Outbox::builder(Receivers::new())
        .backfill(Backfills::new().cell::<Project>())
        .build();
    let manual = diesel_outbox::backfill::BackfillOptions {
        automatic: false,
        ..options(None, 10)
    };
    let report = outbox.backfill(&mut conn, &manual).expect("a step");
    assert!(!report.did_work(), "not asked for: {report:?}");
    assert!(outbox
        .request_backfill(&mut conn, OutboxTable::Cell, "projects", Some(1_000))
        .expect("asked"));
    assert!(!outbox
        .request_backfill(&mut conn, OutboxTable::Cell, "no_such_model", None)
        .expect("asked"));
    assert_eq!(
        status_of(&mut conn, &outbox, "projects").requested_rate,
        Some(1_000)
    );
    let (objects, _) = backfill_to_end(&mut conn, &outbox, &manual);
    assert_eq!(objects, 30);
    let status = status_of(&mut conn, &outbox, "projects");
    assert_eq!(
        (status.stored_version, status.requested_at),
        (2, None),
        "the request is done"
    );
}

backend_db_tests!(
    every_object_is_replicated_exactly_once_after_a_version_bump,
    a_killed_backfill_resumes_without_skipping,
    two_processes_backfilling_at_once_do_the_work_once,
    user_writes_during_the_backfill_converge_to_the_newest_state,
    the_throttle_holds_over_ten_seconds,
    a_version_that_goes_down_or_a_model_no_longer_declared_is_an_error_at_status,
    a_model_waits_for_a_request_when_not_automatic,
);
