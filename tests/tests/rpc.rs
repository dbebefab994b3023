//! The signed HTTP transport against real servers on loopback, on SQLite and PostgreSQL:
//! every refusal has its own status and applies nothing; a replayed request is refused;
//! a request applied twice changes nothing; partial success is exact, in each shard's
//! order; a batch over the body limit goes in several POSTs; refusals are logged with the
//! caller they name.
//!
//! Where the test sends requests itself, one database plays control (and a cell's
//! `projects` would not overlap its `project_replicas`); where a cell's drain sends them,
//! the cell has a database of its own: on SQLite a drain holds its file's one write lock
//! while its receivers run, so control could not write the same file meanwhile.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::apply::{
    Appliers, ApplyContext, ApplyError, ApplyOutcome, ApplyRequest, CellApplyHooks, Change,
    ControlApplyHooks, ModelState, Outgoing, Refusal, Transport,
};
use diesel_outbox::silo::{tombstones, TombstoneTable};
use diesel_outbox::{
    BoxError, JsonPayload, ModelWrites, Outbox, OutboxTable, ReplicatedCell, ReplicatedControl,
    ShardKey, SiloId,
};
use diesel_outbox_http::axum::{router, serve_in_background, Background};
use diesel_outbox_http::signature::{
    sign_request, RequestParts, CALLER_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use diesel_outbox_http::{
    ClientOptions, HttpTransport, RpcRequest, Server, ServerOptions, SigningKey,
};
use diesel_outbox_tests::{backend_db_tests, TestConnection, TestDb};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: Organization, silo: control },
    }
}

diesel::table! {
    /// The cell's projects.
    projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}
diesel::table! {
    /// Control's copies of them.
    project_replicas (id) { id -> BigInt, organization_id -> BigInt, name -> Text, cell_name -> Text }
}

diesel::table! {
    /// Control's notices, each aimed at one cell.
    notices (id) { id -> BigInt, organization_id -> BigInt, text -> Text, cell -> Text }
}
diesel::table! {
    /// A cell's copies of them.
    notice_replicas (id) { id -> BigInt, text -> Text }
}

const NOTICE_TABLES: &str = "
    CREATE TABLE notices (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
        text TEXT NOT NULL, cell TEXT NOT NULL);
    CREATE TABLE notice_replicas (id BIGINT PRIMARY KEY, text TEXT NOT NULL);";

/// A control model, aimed at the cell its `cell` field names.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedControl,
)]
#[diesel(table_name = notices)]
#[outbox(category = Category::UserUpdate, cells = cell)]
pub struct Notice {
    pub id: i64,
    pub organization_id: i64,
    pub text: String,
    pub cell: String,
}

const TABLES: &str = "
    CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);
    CREATE TABLE project_replicas (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
        name TEXT NOT NULL, cell_name TEXT NOT NULL);";

/// A cell model; shards by organization, so one shard holds several projects.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = project_replicas)]
pub struct ProjectReplica {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
    pub cell_name: String,
}

/// The apply hooks, and the reads the tests make, per backend.
trait Sql: TestConnection {
    fn replicas(&mut self) -> Vec<ProjectReplica>;
    fn notice_replicas(&mut self) -> Vec<(i64, String)>;
}

/// The hooks and reads for one connection type. The replicas' upserts name their conflict
/// target: a column on SQLite and PostgreSQL, `DuplicatedKeys` on MySQL.
macro_rules! per_backend {
    ($conn:ty, projects: $project_key:expr, notices: $notice_key:expr) => {
        impl CellApplyHooks<$conn> for Project {
            fn apply_replication(
                &self,
                ctx: &mut ApplyContext<'_, '_, $conn>,
            ) -> Result<(), BoxError> {
                if self.name == "poison" {
                    return Err("control refuses poisoned projects".into());
                }
                let replica = ProjectReplica {
                    id: self.id,
                    organization_id: self.organization_id,
                    name: self.name.clone(),
                    cell_name: ctx.cell_name().to_owned(),
                };
                diesel::insert_into(project_replicas::table)
                    .values(&replica)
                    .on_conflict($project_key)
                    .do_update()
                    .set(&replica)
                    .execute(ctx.connection())?;
                Ok(())
            }

            fn apply_deletion(
                ctx: &mut ApplyContext<'_, '_, $conn>,
                object_identifier: i64,
                _shard_identifier: i64,
                _payload: Option<&JsonPayload>,
            ) -> Result<(), BoxError> {
                diesel::delete(project_replicas::table.find(object_identifier))
                    .execute(ctx.connection())?;
                Ok(())
            }
        }

        impl ControlApplyHooks<$conn> for Notice {
            fn apply_replication(
                &self,
                ctx: &mut ApplyContext<'_, '_, $conn>,
            ) -> Result<(), BoxError> {
                diesel::insert_into(notice_replicas::table)
                    .values((
                        notice_replicas::id.eq(self.id),
                        notice_replicas::text.eq(&self.text),
                    ))
                    .on_conflict($notice_key)
                    .do_update()
                    .set(notice_replicas::text.eq(&self.text))
                    .execute(ctx.connection())?;
                Ok(())
            }
        }

        impl Sql for $conn {
            fn notice_replicas(&mut self) -> Vec<(i64, String)> {
                notice_replicas::table
                    .order(notice_replicas::id)
                    .load(self)
                    .expect("read notice_replicas")
            }

            fn replicas(&mut self) -> Vec<ProjectReplica> {
                project_replicas::table
                    .order(project_replicas::id)
                    .select(ProjectReplica::as_select())
                    .load(self)
                    .expect("read project_replicas")
            }
        }
    };
}

per_backend!(
    diesel::SqliteConnection,
    projects: project_replicas::id,
    notices: notice_replicas::id
);
#[cfg(feature = "postgres")]
per_backend!(
    diesel::PgConnection,
    projects: project_replicas::id,
    notices: notice_replicas::id
);
#[cfg(feature = "mysql")]
per_backend!(
    diesel::MysqlConnection,
    projects: diesel::dsl::DuplicatedKeys,
    notices: diesel::dsl::DuplicatedKeys
);

/// Control's server on loopback, and the keys it shares with cells eu and us.
struct Control {
    running: Background,
    eu: SigningKey,
    us: SigningKey,
}

const MAX_BODY: usize = 64 * 1024;

/// Control's server: it applies projects from cell eu only, on a pool of `db`.
fn control_server<D: TestDb>(db: &D) -> (Server<D::Conn>, SigningKey, SigningKey)
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn>,
{
    let (eu, us) = (key(), key());
    let appliers = Appliers::new(SiloId::Control).cell_from::<Project>(&["eu"]);
    let options = ServerOptions {
        max_body_bytes: MAX_BODY,
        ..ServerOptions::default()
    };
    let server = Server::new(appliers, db.pool(4))
        .and_then(|server| server.options(options))
        .and_then(|server| server.peer(SiloId::cell("eu"), eu.clone()))
        .and_then(|server| server.peer(SiloId::cell("us"), us.clone()))
        .expect("control's server");
    (server, eu, us)
}

fn start_control<D: TestDb>(db: &D) -> Control
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn>,
{
    db.conn().batch_execute(TABLES).expect("tables");
    let (server, eu, us) = control_server(db);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let running = serve_in_background(listener, router(Arc::new(server))).expect("serve");
    Control { running, eu, us }
}

fn key() -> SigningKey {
    SigningKey::generate().expect("random key")
}

fn transport(control: &Control, cell: &str, key: &SigningKey) -> HttpTransport {
    HttpTransport::new(SiloId::cell(cell))
        .and_then(|client| client.peer(SiloId::Control, control.running.url(), key.clone()))
        .expect("client")
}

/// A new source row id: each request these tests build is newer than the ones before
/// (monotonic apply answers an older or equal one without running its hooks).
fn next_row_id() -> i64 {
    static ROW_ID: AtomicI64 = AtomicI64::new(1);
    ROW_ID.fetch_add(1, Ordering::Relaxed)
}

fn state(json: serde_json::Value) -> ModelState {
    ModelState::of(&json).expect("a state")
}

fn project_request(id: i64, organization: i64, name: &str, cell: &str) -> ApplyRequest {
    ApplyRequest {
        row_id: next_row_id(),
        outbox: OutboxTable::Cell,
        table: "projects".into(),
        category: 1,
        object_identifier: id,
        shard_scope: 0,
        shard_identifier: organization,
        cell: cell.into(),
        change: Change::Replicate {
            state: state(
                serde_json::json!({"id": id, "organization_id": organization, "name": name}),
            ),
        },
    }
}

fn batch(requests: &[ApplyRequest]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "requests": requests })).expect("a batch")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// A raw POST to control's endpoint: what a client (honest or not) could send.
struct Raw {
    caller: Option<String>,
    timestamp: i64,
    nonce: String,
    /// The body the signature is computed over.
    signed_body: Vec<u8>,
    /// The body actually sent.
    body: Vec<u8>,
    key: Option<SigningKey>,
    /// Sent without `content-length` (chunked): the server sees the size only by reading.
    chunked: bool,
}

impl Raw {
    fn new(caller: &str, key: &SigningKey, body: Vec<u8>) -> Self {
        Raw {
            caller: Some(caller.to_owned()),
            timestamp: now(),
            nonce: diesel_outbox_http::signature::new_nonce().expect("nonce"),
            signed_body: body.clone(),
            body,
            key: Some(key.clone()),
            chunked: false,
        }
    }

    /// Sends it; the status and the refusal code (if any).
    fn post(&self, control: &Control) -> (u16, String) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let url = format!("{}/outbox/apply", control.running.url());
        let mut request = agent.post(&url);
        if let (Some(caller), Some(key)) = (&self.caller, &self.key) {
            let signature = sign_request(
                key,
                &RequestParts {
                    method: "POST",
                    path: "/outbox/apply",
                    timestamp: self.timestamp,
                    nonce: &self.nonce,
                    caller,
                    recipient: "control",
                    body: &self.signed_body,
                },
            );
            request = request
                .header(CALLER_HEADER, caller)
                .header(TIMESTAMP_HEADER, self.timestamp.to_string())
                .header(NONCE_HEADER, &self.nonce)
                .header(SIGNATURE_HEADER, signature);
        }
        let sent = if self.chunked {
            let mut reader = &self.body[..];
            request.send(ureq::SendBody::from_reader(&mut reader))
        } else {
            request.send(&self.body[..])
        };
        let mut response = sent.expect("control answers");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("a body");
        let code = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json["refused"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, code)
    }
}

/// What control holds: the replicas and the tombstones.
fn control_state<C: Sql>(conn: &mut C) -> (Vec<ProjectReplica>, usize) {
    let tombstones = tombstones(conn, TombstoneTable::Control, None).expect("tombstones");
    (conn.replicas(), tombstones.len())
}

fn every_refusal_has_its_own_status_and_applies_nothing<D: TestDb>(db: &D)
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn>,
{
    let control = start_control(db);
    let mut conn = db.conn();
    let good = batch(&[project_request(1, 7, "Apollo", "eu")]);

    let mut cases: Vec<(&str, Raw, u16, &str)> = Vec::new();
    let mut unsigned = Raw::new("cell:eu", &control.eu, good.clone());
    unsigned.key = None;
    cases.push(("no signature", unsigned, 401, "missing_signature"));
    cases.push((
        "a wrong key",
        Raw::new("cell:eu", &key(), good.clone()),
        403,
        "wrong_signature",
    ));
    let mut tampered = Raw::new("cell:eu", &control.eu, good.clone());
    tampered.body = batch(&[project_request(1, 7, "Hijacked", "eu")]);
    cases.push(("a tampered body", tampered, 403, "wrong_signature"));
    let mut stale = Raw::new("cell:eu", &control.eu, good.clone());
    stale.timestamp -= 3_600;
    cases.push(("a stale timestamp", stale, 412, "stale_timestamp"));
    let mut early = Raw::new("cell:eu", &control.eu, good.clone());
    early.timestamp += 3_600;
    cases.push(("a timestamp from the future", early, 412, "stale_timestamp"));
    let big_name = "x".repeat(MAX_BODY);
    cases.push((
        "an oversized body",
        Raw::new(
            "cell:eu",
            &control.eu,
            batch(&[project_request(1, 7, &big_name, "eu")]),
        ),
        413,
        "too_large",
    ));
    let mut chunked = Raw::new(
        "cell:eu",
        &control.eu,
        batch(&[project_request(1, 7, &big_name, "eu")]),
    );
    chunked.chunked = true;
    cases.push((
        "an oversized body without content-length",
        chunked,
        413,
        "too_large",
    ));
    cases.push((
        "a caller with no key",
        Raw::new("cell:ap", &key(), good.clone()),
        403,
        "unknown_caller",
    ));
    // us has a key, but control applies projects from eu only.
    cases.push((
        "a category the caller may not send",
        Raw::new(
            "cell:us",
            &control.us,
            batch(&[project_request(2, 8, "Us", "us")]),
        ),
        422,
        "not_allowed",
    ));
    let mut user = project_request(3, 9, "Ada", "eu");
    (user.outbox, user.category, user.table) = (OutboxTable::Control, 2, "users".into());
    cases.push((
        "a control category from a cell",
        Raw::new("cell:eu", &control.eu, batch(&[user])),
        422,
        "not_allowed",
    ));
    cases.push((
        "another cell's object",
        Raw::new(
            "cell:eu",
            &control.eu,
            batch(&[project_request(4, 9, "Us", "us")]),
        ),
        422,
        "not_allowed",
    ));
    // One allowed request and one that is not: the whole batch is refused.
    cases.push((
        "a batch with one request the caller may not send",
        Raw::new(
            "cell:eu",
            &control.eu,
            batch(&[
                project_request(1, 7, "Apollo", "eu"),
                project_request(5, 9, "Us", "us"),
            ]),
        ),
        422,
        "not_allowed",
    ));
    cases.push((
        "a body that is not a batch",
        Raw::new("cell:eu", &control.eu, b"{\"requests\": 7}".to_vec()),
        400,
        "malformed",
    ));

    for (what, raw, status, code) in &cases {
        assert_eq!(raw.post(&control), (*status, code.to_string()), "{what}");
        assert_eq!(
            control_state(&mut conn),
            (Vec::new(), 0),
            "{what} applied nothing"
        );
    }

    // The same request, signed as it should be, is applied: the refusals were the checks.
    assert_eq!(
        Raw::new("cell:eu", &control.eu, good).post(&control),
        (200, String::new())
    );
    let (replicas, _) = control_state(&mut conn);
    assert_eq!(replicas.len(), 1);
    assert_eq!(
        (replicas[0].name.as_str(), replicas[0].cell_name.as_str()),
        ("Apollo", "eu")
    );
}

fn a_replayed_request_is_refused_and_changes_nothing<D: TestDb>(db: &D)
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn>,
{
    let control = start_control(db);
    let mut conn = db.conn();
    let first = Raw::new(
        "cell:eu",
        &control.eu,
        batch(&[project_request(1, 7, "v1", "eu")]),
    );
    assert_eq!(first.post(&control).0, 200);
    let second = Raw::new(
        "cell:eu",
        &control.eu,
        batch(&[project_request(1, 7, "v2", "eu")]),
    );
    assert_eq!(second.post(&control).0, 200);
    // An eavesdropper sends the first request again, byte for byte, within the window.
    assert_eq!(first.post(&control), (409, "replayed_nonce".to_owned()));
    let names: Vec<String> = conn.replicas().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["v2"], "the replay did not bring v1 back");
}

fn a_request_applied_twice_changes_nothing<D: TestDb>(db: &D)
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn>,
{
    let control = start_control(db);
    let mut conn = db.conn();
    let client = transport(&control, "eu", &control.eu);
    let replicate = [
        project_request(1, 7, "Apollo", "eu"),
        project_request(2, 7, "Gemini", "eu"),
    ];
    let applied = vec![ApplyOutcome::Applied; 2];
    assert_eq!(
        client.send(&SiloId::Control, &replicate).expect("sent"),
        applied
    );
    let once = control_state(&mut conn);
    assert_eq!(
        client.send(&SiloId::Control, &replicate).expect("sent"),
        applied
    );
    assert_eq!(control_state(&mut conn), once, "replication twice");
    assert_eq!(once.0.len(), 2);

    let mut delete = project_request(1, 7, "", "eu");
    delete.change = Change::Delete { payload: None };
    // Applying it twice: the second is the same source row, so it runs no hook.
    let delete = [delete];
    assert_eq!(
        client.send(&SiloId::Control, &delete).expect("sent"),
        vec![ApplyOutcome::Applied]
    );
    let once = control_state(&mut conn);
    assert_eq!(
        client.send(&SiloId::Control, &delete).expect("sent"),
        vec![ApplyOutcome::Applied]
    );
    assert_eq!(control_state(&mut conn), once, "deletion twice");
    assert_eq!(once.1, 1, "one tombstone");
    assert_eq!(once.0.iter().map(|r| r.id).collect::<Vec<_>>(), vec![2]);

    // A client whose body limit fits two requests per POST sends five in three POSTs.
    let small = HttpTransport::with_options(
        SiloId::cell("eu"),
        ClientOptions {
            max_body_bytes: 400,
            ..ClientOptions::default()
        },
    )
    .and_then(|client| client.peer(SiloId::Control, control.running.url(), control.eu.clone()))
    .expect("client");
    let five: Vec<ApplyRequest> = (10..15)
        .map(|id| project_request(id, 8, "Mercury", "eu"))
        .collect();
    assert!(serde_json::to_vec(&five[..3]).expect("json").len() > 400);
    assert_eq!(
        small.send(&SiloId::Control, &five).expect("sent"),
        vec![ApplyOutcome::Applied; 5]
    );
    assert_eq!(conn.replicas().len(), 6);
}

fn partial_success_is_exact_in_each_shards_order<D: TestDb>(cell: &D, control_db: &D)
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn> + ModelWrites<D::Conn>,
{
    let control = start_control(control_db);
    let mut conn = cell.conn();
    conn.batch_execute(TABLES).expect("the cell's tables");
    let mut control_conn = control_db.conn();
    let receivers = diesel_outbox::Receivers::new().remote(
        Outgoing::new().cell::<Project>(),
        transport(&control, "eu", &control.eu),
    );
    let outbox = Outbox::builder(receivers).flush_on_commit(false).build();
    let projects = [
        Project {
            id: 1,
            organization_id: 1,
            name: "Apollo".into(),
        },
        Project {
            id: 2,
            organization_id: 1,
            name: "poison".into(),
        },
        Project {
            id: 3,
            organization_id: 1,
            name: "Gemini".into(),
        },
        Project {
            id: 4,
            organization_id: 2,
            name: "Mercury".into(),
        },
    ];
    outbox
        .context(&mut conn, |ctx| {
            projects.iter().try_for_each(|project| project.save(ctx))
        })
        .expect("saved");

    let report = outbox.drain_due_shards(&mut conn).expect("drain");
    assert_eq!(report.delivered, 2, "{report:#?}");
    assert_eq!(report.failures.len(), 1, "{report:#?}");
    assert_eq!(report.failures[0].object_identifier, 2);
    assert!(
        report.failures[0]
            .to_string()
            .contains("control refuses poisoned projects"),
        "{}",
        report.failures[0]
    );
    // Control holds exactly what it applied: project 3 came after the failure in its
    // shard, so it was not applied although it was sent.
    let applied: Vec<i64> = control_conn.replicas().iter().map(|r| r.id).collect();
    assert_eq!(applied, vec![1, 4]);
    let left: Vec<i64> = conn
        .cell_rows()
        .iter()
        .map(|row| row.object_identifier)
        .collect();
    assert_eq!(
        left,
        vec![2, 3],
        "the drain deleted exactly the applied rows"
    );
    let org1 = ShardKey::cell(Scope::Organization, 1);
    let state = outbox
        .shard_state(&mut conn, &org1)
        .expect("state")
        .expect("backed off");
    assert_eq!(state.attempts, 1);
    let org2 = ShardKey::cell(Scope::Organization, 2);
    assert!(outbox
        .shard_state(&mut conn, &org2)
        .expect("state")
        .is_none());

    // The cell fixes project 2 and retries the shard (a new row alone does not make a
    // failing shard due before its backoff step): both follow.
    let fixed = Project {
        id: 2,
        organization_id: 1,
        name: "Artemis".into(),
    };
    outbox
        .context(&mut conn, |ctx| fixed.save(ctx))
        .expect("saved");
    assert!(outbox.retry_shard_now(&mut conn, &org1).expect("retried"));
    let report = outbox.drain_due_shards(&mut conn).expect("drain");
    assert!(report.failures.is_empty(), "{report:#?}");
    let names: Vec<String> = control_conn
        .replicas()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["Apollo", "Artemis", "Gemini", "Mercury"]);
    assert!(conn.cell_rows().is_empty());
}

/// A `Write` into a shared buffer, for the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut log) = self.0.lock() {
            log.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn refusals_are_logged_naming_the_caller<D: TestDb>(db: &D)
where
    D::Conn: Sql,
    Project: CellApplyHooks<D::Conn>,
{
    db.conn().batch_execute(TABLES).expect("tables");
    let (server, _, _) = control_server(db);
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let reply = tracing::subscriber::with_default(subscriber, || {
        server.handle(&RpcRequest {
            method: "POST".into(),
            path: "/outbox/apply".into(),
            caller: Some("cell:eu".into()),
            body: batch(&[project_request(1, 7, "Apollo", "eu")]),
            ..RpcRequest::default()
        })
    });
    assert_eq!(reply.status, 401);
    let log =
        String::from_utf8(log.0.lock().map(|log| log.clone()).unwrap_or_default()).expect("utf-8");
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains("refused an outbox request from cell:eu"),
        "{log}"
    );
    assert!(log.contains("refused=\"missing_signature\""), "{log}");
    assert!(db.conn().replicas().is_empty());
}

fn notice_request(id: i64, cell: &str, json: serde_json::Value) -> ApplyRequest {
    ApplyRequest {
        row_id: next_row_id(),
        outbox: OutboxTable::Control,
        table: "notices".into(),
        category: 2,
        object_identifier: id,
        shard_scope: 0,
        shard_identifier: 5,
        cell: cell.into(),
        change: Change::Replicate { state: state(json) },
    }
}

/// Without a transport: a cell applies control's changes aimed at it, from control only;
/// a state that is not the object it claims to be fails that request alone; a deletion
/// records the cell's tombstone.
fn a_cell_applies_only_controls_changes_aimed_at_it<D: TestDb>(db: &D)
where
    D::Conn: Sql,
    Notice: ControlApplyHooks<D::Conn>,
{
    let mut conn = db.conn();
    conn.batch_execute(NOTICE_TABLES).expect("tables");
    let eu = SiloId::cell("eu");
    let appliers = Appliers::<D::Conn>::new(eu.clone()).control::<Notice>();
    let state = |id: i64, text: &str| serde_json::json!({"id": id, "organization_id": 5, "text": text, "cell": "eu"});
    let good = notice_request(1, "eu", state(1, "hello"));

    let refused = |outcome: Result<Vec<ApplyOutcome>, ApplyError>| match outcome {
        Err(ApplyError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let aimed_elsewhere = notice_request(1, "us", state(1, "hello"));
    assert!(matches!(
        refused(appliers.apply(&mut conn, &SiloId::Control, &[aimed_elsewhere])),
        Refusal::WrongTarget { .. }
    ));
    let from_a_cell =
        refused(appliers.apply(&mut conn, &SiloId::cell("us"), std::slice::from_ref(&good)));
    assert!(
        from_a_cell
            .to_string()
            .contains("control-outbox changes are sent by control"),
        "{from_a_cell}"
    );
    let mut cell_outbox = good.clone();
    cell_outbox.outbox = OutboxTable::Cell;
    let wrong_way = refused(appliers.apply(&mut conn, &SiloId::cell("eu"), &[cell_outbox]));
    assert!(
        wrong_way.to_string().contains("no model of this category"),
        "{wrong_way}"
    );
    assert!(
        conn.notice_replicas().is_empty(),
        "a refusal applies nothing"
    );

    // Request 2 claims to be object 2 but carries object 9: it fails alone, and its
    // shard's later request (3) is not attempted; request 4 of another shard is applied.
    let mut other_shard = notice_request(4, "eu", state(4, "other shard"));
    other_shard.shard_identifier = 6;
    let mut other_state = state(4, "other shard");
    other_state["organization_id"] = 6.into();
    other_shard.change = Change::Replicate {
        state: ModelState::of(&other_state).expect("a state"),
    };
    let batch = [
        good.clone(),
        notice_request(2, "eu", state(9, "impostor")),
        notice_request(3, "eu", state(3, "after")),
        other_shard,
    ];
    let outcomes = appliers
        .apply(&mut conn, &SiloId::Control, &batch)
        .expect("applied");
    assert!(
        outcomes[0].is_applied() && outcomes[3].is_applied(),
        "{outcomes:?}"
    );
    let error = |index: usize| match &outcomes[index] {
        ApplyOutcome::Failed { error } => error.clone(),
        ApplyOutcome::Applied => panic!("request {index} should have failed"),
    };
    assert!(error(1).contains("is object 9"), "{}", error(1));
    assert!(error(2).contains("not attempted"), "{}", error(2));
    let ids: Vec<i64> = conn.notice_replicas().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 4]);

    let mut delete = good;
    delete.row_id = next_row_id();
    delete.change = Change::Delete {
        payload: Some(serde_json::json!({"why": "expired"})),
    };
    for _ in 0..2 {
        let outcomes = appliers.apply(&mut conn, &SiloId::Control, &[delete.clone()]);
        assert_eq!(outcomes.expect("applied"), vec![ApplyOutcome::Applied]);
    }
    let cell_tombstones = tombstones(&mut conn, TombstoneTable::Cell, None).expect("tombstones");
    assert_eq!(cell_tombstones.len(), 1);
    assert_eq!(
        (
            cell_tombstones[0].table_name.as_str(),
            cell_tombstones[0].object_identifier
        ),
        ("notices", 1)
    );
}

backend_db_tests!(
    a_cell_applies_only_controls_changes_aimed_at_it,
    every_refusal_has_its_own_status_and_applies_nothing,
    a_replayed_request_is_refused_and_changes_nothing,
    a_request_applied_twice_changes_nothing,
    refusals_are_logged_naming_the_caller,
);

/// Tests that need two databases: a cell's and control's.
mod two_databases {
    #[test]
    fn partial_success_is_exact_in_each_shards_order_sqlite() {
        let (cell, control) = (
            diesel_outbox_tests::SqliteDb::new(),
            diesel_outbox_tests::SqliteDb::new(),
        );
        super::partial_success_is_exact_in_each_shards_order(&cell, &control);
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn partial_success_is_exact_in_each_shards_order_postgres() {
        let Some(cell) = diesel_outbox_tests::PgSchema::create() else {
            return;
        };
        let Some(control) = diesel_outbox_tests::PgSchema::create() else {
            return;
        };
        super::partial_success_is_exact_in_each_shards_order(&cell, &control);
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn partial_success_is_exact_in_each_shards_order_mysql() {
        let Some(cell) = diesel_outbox_tests::MysqlDb::create() else {
            return;
        };
        let Some(control) = diesel_outbox_tests::MysqlDb::create() else {
            return;
        };
        super::partial_success_is_exact_in_each_shards_order(&cell, &control);
    }
}
