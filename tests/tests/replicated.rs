//! The library's receivers for replicated models, on every backend: registered with one
//! call, they load the object and call its replication hook, or its deletion hook when the
//! object is gone; models can opt out of the flush after commit.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::testing::drain_until_empty;
use diesel_outbox::{
    BoxError, CellReplicationHooks, ControlReplicationHooks, JsonPayload, ModelWrites, Outbox,
    OutboxConnection, Receivers, ReplicatedCell, ReplicatedControl, ReplicationContext,
};
use diesel_outbox_tests::{backend_tests, TestConnection};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        TeamUpdate = 2 { scope: Organization, silo: cell },
        UserUpdate = 3 { scope: User, silo: control },
    }
}

diesel::table! {
    projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}
diesel::table! {
    teams (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}
diesel::table! {
    users (id) { id -> BigInt, name -> Text }
}

#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, payload)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

/// Not flushed after commit: delivered by the periodic drain only.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = teams)]
#[outbox(category = Category::TeamUpdate, flush = false)]
pub struct Team {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = User::cells)]
pub struct User {
    #[outbox(shard)]
    pub id: i64,
    pub name: String,
}

impl User {
    fn cells(&self) -> [&'static str; 2] {
        ["eu", "us"]
    }
}

/// The hooks write what they see into `hook_log`, through the drain's own connection.
fn log_hook<C: OutboxConnection>(
    conn: &mut C,
    hook: &str,
    object: i64,
    shard: i64,
    detail: &str,
) -> Result<(), BoxError> {
    let detail = detail.replace('\'', "''");
    conn.batch_execute(&format!(
        "INSERT INTO hook_log (hook, object, shard, detail) VALUES ('{hook}', {object}, {shard}, '{detail}')"
    ))?;
    Ok(())
}

impl<C: OutboxConnection> CellReplicationHooks<C> for Project {
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        shard_identifier: i64,
    ) -> Result<(), BoxError> {
        log_hook(
            ctx.connection(),
            "replicate",
            self.id,
            shard_identifier,
            &self.name,
        )
    }

    fn handle_async_deletion(
        ctx: &mut ReplicationContext<'_, C>,
        object_identifier: i64,
        shard_identifier: i64,
        payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        // The payload is the deleted row as it was (`#[outbox(payload)]`).
        let last: Option<Project> = payload.map(JsonPayload::decode).transpose()?;
        let name = last.map(|p| p.name).unwrap_or_default();
        log_hook(
            ctx.connection(),
            "delete",
            object_identifier,
            shard_identifier,
            &name,
        )
    }
}

impl<C: OutboxConnection> CellReplicationHooks<C> for Team {
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        shard_identifier: i64,
    ) -> Result<(), BoxError> {
        log_hook(
            ctx.connection(),
            "replicate",
            self.id,
            shard_identifier,
            &self.name,
        )
    }
}

impl<C: OutboxConnection> ControlReplicationHooks<C> for User {
    fn handle_async_replication(
        &self,
        ctx: &mut ReplicationContext<'_, C>,
        cell_name: &str,
        shard_identifier: i64,
    ) -> Result<(), BoxError> {
        log_hook(
            ctx.connection(),
            "replicate",
            self.id,
            shard_identifier,
            cell_name,
        )
    }

    fn handle_async_deletion(
        ctx: &mut ReplicationContext<'_, C>,
        cell_name: &str,
        object_identifier: i64,
        shard_identifier: i64,
        _payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        assert_eq!(ctx.cell_name(), Some(cell_name));
        log_hook(
            ctx.connection(),
            "delete",
            object_identifier,
            shard_identifier,
            cell_name,
        )
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct HookCall {
    #[diesel(sql_type = diesel::sql_types::Text)]
    hook: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    object: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    shard: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

fn call(hook: &str, object: i64, shard: i64, detail: &str) -> HookCall {
    HookCall {
        hook: hook.into(),
        object,
        shard,
        detail: detail.into(),
    }
}

trait HookLog: TestConnection {
    fn hook_calls(&mut self) -> Vec<HookCall>;
}

macro_rules! impl_hook_log {
    ($conn:ty) => {
        impl HookLog for $conn {
            fn hook_calls(&mut self) -> Vec<HookCall> {
                let calls = diesel::sql_query(
                    "SELECT hook, object, shard, detail FROM hook_log ORDER BY id",
                )
                .load(self)
                .expect("read hook_log");
                self.batch_execute("DELETE FROM hook_log")
                    .expect("clear hook_log");
                calls
            }
        }
    };
}
impl_hook_log!(SqliteConnection);
#[cfg(feature = "postgres")]
impl_hook_log!(PgConnection);
#[cfg(feature = "mysql")]
impl_hook_log!(diesel::MysqlConnection);

fn create_tables<C: TestConnection>(conn: &mut C) {
    let serial = conn.dialect().serial_primary_key();
    conn.batch_execute(&format!(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);
         CREATE TABLE teams (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);
         CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE hook_log (id {serial}, hook TEXT NOT NULL, object BIGINT NOT NULL,
                                shard BIGINT NOT NULL, detail TEXT NOT NULL);"
    ))
    .expect("create tables");
}

fn outbox<C>() -> Outbox<C>
where
    C: TestConnection,
    Project: ModelWrites<C>,
    Team: ModelWrites<C>,
    User: ModelWrites<C>,
{
    Outbox::new(
        Receivers::new()
            .replicated_cell::<Project>()
            .replicated_cell::<Team>()
            .replicated_control::<User>(),
    )
}

fn a_saved_model_is_replicated_after_commit<C: HookLog>(conn: &mut C)
where
    Project: ModelWrites<C>,
    Team: ModelWrites<C>,
    User: ModelWrites<C>,
{
    create_tables(conn);
    let outbox = outbox::<C>();
    let mut acme = Project {
        id: 1,
        organization_id: 42,
        name: "acme".into(),
    };
    outbox.context(conn, |ctx| acme.save(ctx)).expect("save");
    assert_eq!(conn.hook_calls(), vec![call("replicate", 1, 42, "acme")]);
    assert_eq!(conn.count("cell_outboxes"), 0);

    // Two writes in one transaction: one delivery, of the newest state.
    outbox
        .context(conn, |ctx| {
            acme.name = "acme inc".into();
            acme.save(ctx)?;
            acme.name = "acme corp".into();
            acme.save(ctx)
        })
        .expect("save twice");
    assert_eq!(
        conn.hook_calls(),
        vec![call("replicate", 1, 42, "acme corp")]
    );
}

fn a_deleted_model_calls_the_deletion_hook_with_its_payload<C: HookLog>(conn: &mut C)
where
    Project: ModelWrites<C>,
    Team: ModelWrites<C>,
    User: ModelWrites<C>,
{
    create_tables(conn);
    let outbox = outbox::<C>();
    let acme = Project {
        id: 1,
        organization_id: 42,
        name: "acme".into(),
    };
    outbox
        .context(conn, |ctx| acme.insert(ctx))
        .expect("insert");
    outbox
        .context(conn, |ctx| Project::delete_by_id(ctx, 1))
        .expect("delete");
    assert_eq!(
        conn.hook_calls(),
        vec![
            call("replicate", 1, 42, "acme"),
            call("delete", 1, 42, "acme")
        ]
    );
    // No silo directory: no tombstone is recorded anywhere.
    assert_eq!(conn.count("control_tombstones"), 0);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

fn a_model_can_opt_out_of_the_flush<C: HookLog>(conn: &mut C)
where
    Project: ModelWrites<C>,
    Team: ModelWrites<C>,
    User: ModelWrites<C>,
{
    create_tables(conn);
    let outbox = outbox::<C>();
    let team = Team {
        id: 5,
        organization_id: 42,
        name: "core".into(),
    };
    let acme = Project {
        id: 1,
        organization_id: 43,
        name: "acme".into(),
    };
    outbox
        .context(conn, |ctx| {
            team.insert(ctx)?;
            acme.insert(ctx)
        })
        .expect("insert");
    assert_eq!(
        conn.hook_calls(),
        vec![call("replicate", 1, 43, "acme")],
        "only the flushing model"
    );
    assert_eq!(
        conn.count("cell_outboxes"),
        1,
        "the team's row waits for a drain"
    );
    outbox.drain_due_shards(conn).expect("drain");
    assert_eq!(conn.hook_calls(), vec![call("replicate", 5, 42, "core")]);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

fn control_models_are_delivered_once_per_cell<C: HookLog>(conn: &mut C)
where
    Project: ModelWrites<C>,
    Team: ModelWrites<C>,
    User: ModelWrites<C>,
{
    create_tables(conn);
    let outbox = outbox::<C>();
    let ada = User {
        id: 7,
        name: "ada".into(),
    };
    diesel_outbox::outbox_context(conn, |ctx| ada.insert(ctx)).expect("insert, no flush");
    drain_until_empty(conn, &outbox, 3).expect("drain");
    let mut calls = conn.hook_calls();
    calls.sort_by(|a, b| a.detail.cmp(&b.detail));
    assert_eq!(
        calls,
        vec![call("replicate", 7, 7, "eu"), call("replicate", 7, 7, "us")]
    );

    diesel_outbox::outbox_context(conn, |ctx| User::delete_by_id(ctx, 7)).expect("delete");
    drain_until_empty(conn, &outbox, 3).expect("drain");
    let mut calls = conn.hook_calls();
    calls.sort_by(|a, b| a.detail.cmp(&b.detail));
    assert_eq!(
        calls,
        vec![call("delete", 7, 7, "eu"), call("delete", 7, 7, "us")]
    );
}

backend_tests!(
    a_saved_model_is_replicated_after_commit,
    a_deleted_model_calls_the_deletion_hook_with_its_payload,
    a_model_can_opt_out_of_the_flush,
    control_models_are_delivered_once_per_cell,
);
