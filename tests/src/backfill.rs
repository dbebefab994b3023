//! The backfill's fixture, shared by `tests/tests/backfill.rs`, the CLI's tests and the
//! `backfill_child` process: projects (a cell model) at replication version 1 and 2, users
//! (a control model replicated to two cells), their tables, a replica the receivers
//! fill, and a log of every delivery.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::backfill::{BackfillOptions, BackfillReport, Backfills};
use diesel_outbox::{
    BoxError, CellReplicationHooks, ControlReplicationHooks, Outbox, OutboxConnection, Receivers,
    ReplicatedCell, ReplicatedControl, ReplicationContext,
};

use crate::TestConnection;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: User, silo: control },
    }
}

diesel::table! {
    projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}
diesel::table! {
    users (id) { id -> BigInt, name -> Text }
}

/// Projects as the application declared them before the bump.
#[derive(Debug, Clone, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct ProjectV1 {
    /// The key.
    pub id: i64,
    /// The shard.
    pub organization_id: i64,
    /// What is replicated.
    pub name: String,
}

/// Projects after the bump: a new replica must catch up.
#[derive(Debug, Clone, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, replication_version = 2)]
pub struct Project {
    /// The key.
    pub id: i64,
    /// The shard.
    pub organization_id: i64,
    /// What is replicated.
    pub name: String,
}

/// A control model: one row per object and cell.
#[derive(Debug, Clone, Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = User::cells, replication_version = 2)]
pub struct User {
    /// The key, and the shard.
    pub id: i64,
    /// What is replicated.
    pub name: String,
}

impl User {
    fn cells(&self) -> [&'static str; 2] {
        ["eu", "us"]
    }
}

/// The replica and the delivery log, written by the receivers in the drain's transaction.
impl<C: OutboxConnection + SimpleConnection> CellReplicationHooks<C> for Project {
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        _shard_identifier: i64,
    ) -> Result<(), BoxError> {
        let name = self.name.replace('\'', "''");
        ctx.connection().batch_execute(&format!(
            "DELETE FROM replica_projects WHERE id = {id};
             INSERT INTO replica_projects (id, organization_id, name) VALUES ({id}, {org}, '{name}');
             INSERT INTO deliveries (model, object, cell) VALUES ('projects', {id}, '')",
            id = self.id,
            org = self.organization_id,
        ))?;
        Ok(())
    }
}

impl<C: OutboxConnection + SimpleConnection> ControlReplicationHooks<C> for User {
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        cell_name: &str,
        _shard_identifier: i64,
    ) -> Result<(), BoxError> {
        ctx.connection().batch_execute(&format!(
            "INSERT INTO deliveries (model, object, cell) VALUES ('users', {}, '{cell_name}')",
            self.id
        ))?;
        Ok(())
    }
}

/// Creates the models' tables, the replica and the delivery log.
pub fn create_tables<C: TestConnection>(conn: &mut C) {
    conn.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name VARCHAR(100) NOT NULL);
         CREATE TABLE replica_projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name VARCHAR(100) NOT NULL);
         CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL);
         CREATE TABLE deliveries (model VARCHAR(20) NOT NULL, object BIGINT NOT NULL, cell VARCHAR(10) NOT NULL);",
    )
    .expect("the fixture's tables");
}

/// `count` projects with ids 1..=count in 100 organizations, written by plain SQL: data
/// that existed before its replication did.
pub fn insert_projects<C: TestConnection>(conn: &mut C, count: i64) {
    insert_rows(conn, "projects (id, organization_id, name)", count, |id| {
        format!("({id}, {}, 'project {id}')", id % 100)
    });
}

/// `count` users with ids 1..=count.
pub fn insert_users<C: TestConnection>(conn: &mut C, count: i64) {
    insert_rows(conn, "users (id, name)", count, |id| {
        format!("({id}, 'user {id}')")
    });
}

fn insert_rows<C: TestConnection>(
    conn: &mut C,
    into: &str,
    count: i64,
    row: impl Fn(i64) -> String,
) {
    let ids: Vec<i64> = (1..=count).collect();
    for chunk in ids.chunks(1_000) {
        let values: Vec<String> = chunk.iter().map(|id| row(*id)).collect();
        // Rows that exist before the outbox does: what a backfill is for.
        let sql = format!("INSERT INTO {into} VALUES {}", values.join(", "));
        diesel_outbox::guard::allow(conn, |conn| conn.batch_execute(&sql))
            .expect("the fixture's rows");
    }
}

/// The outbox of version 1: projects only, no receivers (its rows are drained away).
pub fn outbox_v1<C>() -> Outbox<C>
where
    C: OutboxConnection,
    ProjectV1: diesel_outbox::ModelWrites<C>,
{
    Outbox::builder(Receivers::new().cell(
        Category::ProjectUpdate,
        |_conn: &mut C, _message: &diesel_outbox::OutboxMessage| Ok::<_, BoxError>(()),
    ))
    .flush_on_commit(false)
    .backfill(Backfills::new().cell::<ProjectV1>())
    .build()
}

/// The outbox of version 2: projects and users, replicated by the library's receivers.
pub fn outbox_v2<C>() -> Outbox<C>
where
    C: OutboxConnection + SimpleConnection,
    Project: diesel_outbox::ModelWrites<C>,
    User: diesel_outbox::ModelWrites<C>,
{
    Outbox::builder(
        Receivers::new()
            .replicated_cell::<Project>()
            .replicated_control::<User>(),
    )
    .flush_on_commit(false)
    .backfill(Backfills::new().cell::<Project>().control::<User>())
    .build()
}

/// Backfill options with no throttle (or `rate` objects per second) and `batch` objects
/// per batch.
pub fn options(rate: Option<u32>, batch: usize) -> BackfillOptions {
    BackfillOptions {
        rows_per_second: rate,
        batch_size: batch,
        retry_after: Duration::from_millis(100),
        ..BackfillOptions::default()
    }
}

/// Steps until no model has work (sleeping as the throttle says); the objects this
/// process wrote, and the steps' reports' failures as text.
pub fn backfill_to_end<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    options: &BackfillOptions,
) -> (usize, Vec<String>) {
    let (mut objects, mut failures) = (0, Vec::new());
    for _ in 0..1_000_000 {
        let report: BackfillReport = outbox.backfill(conn, options).expect("a backfill step");
        objects += report.objects();
        failures.extend(report.failures.iter().map(|f| f.error.to_string()));
        let Some(next) = report.next_batch_at else {
            return (objects, failures);
        };
        if !report.did_work() {
            let wait = (next - outbox.clock().now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            std::thread::sleep(wait.clamp(Duration::from_millis(1), Duration::from_millis(200)));
        }
    }
    panic!("the backfill did not finish");
}
