//! Two silos for the replication tests (`replication_batches.rs`, `monotonic.rs`): a cell
//! and control, each with its own database, models replicated between them, apply hooks
//! and direct hooks that count their calls, and control's signed HTTP server.
//!
//! The counts are kept per organization (the shard), so that tests running at the same
//! time never see each other's calls: each test uses organizations of its own.

#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::apply::{
    Appliers, ApplyBatch, ApplyContext, ApplyRequest, CellApplyHooks, Change, ControlApplyHooks,
    ModelState,
};
use diesel_outbox::{
    BoxError, CellReplicationHooks, JsonPayload, OutboxTable, ReplicatedCell, ReplicatedControl,
    ReplicationContext, SiloId,
};
use diesel_outbox_http::axum::{router, serve_in_background, Background};
use diesel_outbox_http::{HttpTransport, Server, SigningKey};
use diesel_outbox_tests::{TestConnection, TestDb};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        ItemUpdate = 3 { scope: Organization, silo: cell },
        NoticeUpdate = 2 { scope: Organization, silo: control },
    }
}

diesel::table! {
    /// The cell's projects: applied in control by the per-object hooks (the defaults of the
    /// batch hooks call them).
    projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}
diesel::table! {
    /// Control's copies of them.
    project_replicas (id) { id -> BigInt, organization_id -> BigInt, name -> Text, cell_name -> Text }
}
diesel::table! {
    /// The cell's items: applied in control by a batch hook of their own.
    items (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}
diesel::table! {
    /// Control's copies of them.
    item_replicas (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}

diesel::table! {
    /// Control's notices, each aimed at the cells its `cells` lists (comma-separated).
    notices (id) { id -> BigInt, organization_id -> BigInt, text -> Text, cells -> Text }
}
diesel::table! {
    /// A cell's copies of them.
    notice_replicas (id) { id -> BigInt, text -> Text }
}

/// Control's notices table.
pub const NOTICE_TABLES: &str = "CREATE TABLE notices (id BIGINT PRIMARY KEY,
    organization_id BIGINT NOT NULL, text TEXT NOT NULL, cells TEXT NOT NULL);";

/// A cell's table of notice replicas.
pub const NOTICE_REPLICA_TABLES: &str =
    "CREATE TABLE notice_replicas (id BIGINT PRIMARY KEY, text TEXT NOT NULL);";

/// A control model sent to several cells. Its `Serialize` counts how often each notice is
/// serialised (by id), to show that one state serves every cell.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Deserialize, ReplicatedControl)]
#[diesel(table_name = notices)]
#[outbox(category = Category::NoticeUpdate, cells = cells_of, flush = false)]
pub struct Notice {
    pub id: i64,
    pub organization_id: i64,
    pub text: String,
    pub cells: String,
}

fn cells_of(notice: &Notice) -> Vec<String> {
    notice.cells.split(',').map(str::to_owned).collect()
}

impl Serialize for Notice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        count_call("notice.serialize", self.id, 1);
        let mut state = serializer.serialize_struct("Notice", 4)?;
        state.serialize_field("id", &self.id)?;
        state.serialize_field("organization_id", &self.organization_id)?;
        state.serialize_field("text", &self.text)?;
        state.serialize_field("cells", &self.cells)?;
        state.end()
    }
}

/// The cell's tables.
pub const CELL_TABLES: &str = "
    CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);
    CREATE TABLE items (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL);";

/// Control's tables.
pub const CONTROL_TABLES: &str = "
    CREATE TABLE project_replicas (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
        name TEXT NOT NULL, cell_name TEXT NOT NULL);
    CREATE TABLE item_replicas (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
        name TEXT NOT NULL);";

/// A cell model; shards by organization. A name starting with `poison` is refused by
/// control's hooks.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, flush = false)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

impl Project {
    pub fn new(id: i64, organization_id: i64, name: &str) -> Self {
        Project {
            id,
            organization_id,
            name: name.to_owned(),
        }
    }
}

/// A cell model whose apply hook takes a whole batch with one statement.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = items)]
#[outbox(category = Category::ItemUpdate, flush = false)]
pub struct Item {
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

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = item_replicas)]
pub struct ItemReplica {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

/// An organization no other test uses (tests of every backend run in one process and
/// share the call counts).
pub fn fresh_organization() -> i64 {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Calls of each hook, by (hook, organization).
static CALLS: Mutex<BTreeMap<(&'static str, i64), usize>> = Mutex::new(BTreeMap::new());

pub fn count_call(hook: &'static str, organization: i64, by: usize) {
    let mut calls = CALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *calls.entry((hook, organization)).or_default() += by;
}

/// How often `hook` ran for `organization`.
pub fn calls(hook: &'static str, organization: i64) -> usize {
    let calls = CALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    calls.get(&(hook, organization)).copied().unwrap_or(0)
}

/// The hooks and reads, per backend. The replicas' upserts name their conflict target: a
/// column on SQLite and PostgreSQL, `DuplicatedKeys` on MySQL; `$new_name` is the name an
/// upsert would have inserted.
macro_rules! per_backend {
    ($conn:ty, key: $key:expr, item_key: $item_key:expr, notice_key: $notice_key:expr, new_name: $new_name:expr) => {
        impl CellApplyHooks<$conn> for Project {
            fn apply_replication(
                &self,
                ctx: &mut ApplyContext<'_, '_, $conn>,
            ) -> Result<(), BoxError> {
                count_call("project.apply", self.organization_id, 1);
                if self.name.starts_with("poison") {
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
                    .on_conflict($key)
                    .do_update()
                    .set(&replica)
                    .execute(ctx.connection())?;
                Ok(())
            }

            fn apply_deletion(
                ctx: &mut ApplyContext<'_, '_, $conn>,
                object_identifier: i64,
                shard_identifier: i64,
                _payload: Option<&JsonPayload>,
            ) -> Result<(), BoxError> {
                count_call("project.apply_deletion", shard_identifier, 1);
                diesel::delete(project_replicas::table.find(object_identifier))
                    .execute(ctx.connection())?;
                Ok(())
            }
        }

        impl CellApplyHooks<$conn> for Item {
            fn apply_replication(
                &self,
                ctx: &mut ApplyContext<'_, '_, $conn>,
            ) -> Result<(), BoxError> {
                count_call("item.apply_one", self.organization_id, 1);
                let _ = ctx;
                Err("items are applied a batch at a time".into())
            }

            fn apply_replications(
                batch: &mut ApplyBatch<'_, '_, $conn>,
                models: &[Self],
            ) -> Result<(), BoxError> {
                for organization in models
                    .iter()
                    .map(|m| m.organization_id)
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    count_call("item.apply_batch", organization, 1);
                }
                for model in models {
                    count_call("item.apply_models", model.organization_id, 1);
                }
                if models.iter().any(|m| m.name.starts_with("poison")) {
                    return Err("control refuses poisoned items".into());
                }
                // Tuples of `eq`: diesel batches them into one INSERT on every backend.
                let replicas: Vec<_> = models
                    .iter()
                    .map(|m| {
                        (
                            item_replicas::id.eq(m.id),
                            item_replicas::organization_id.eq(m.organization_id),
                            item_replicas::name.eq(&m.name),
                        )
                    })
                    .collect();
                diesel::insert_into(item_replicas::table)
                    .values(&replicas)
                    .on_conflict($item_key)
                    .do_update()
                    .set(item_replicas::name.eq($new_name))
                    .execute(batch.connection())?;
                Ok(())
            }
        }

        impl CellReplicationHooks<$conn> for Project {
            fn handle_async_replication(
                &self,
                ctx: &mut ReplicationContext<'_, $conn>,
                shard_identifier: i64,
            ) -> Result<(), BoxError> {
                count_call("project.direct", shard_identifier, 1);
                if self.name.starts_with("poison") {
                    return Err("the direct hook refuses poisoned projects".into());
                }
                let replica = ProjectReplica {
                    id: self.id,
                    organization_id: self.organization_id,
                    name: self.name.clone(),
                    cell_name: "eu".to_owned(),
                };
                ctx.require_silos()?
                    .with_control_connection(|control: &mut $conn| {
                        diesel::insert_into(project_replicas::table)
                            .values(&replica)
                            .on_conflict($key)
                            .do_update()
                            .set(&replica)
                            .execute(control)?;
                        Ok(())
                    })?;
                Ok(())
            }

            fn handle_async_deletion(
                ctx: &mut ReplicationContext<'_, $conn>,
                object_identifier: i64,
                shard_identifier: i64,
                _payload: Option<&JsonPayload>,
            ) -> Result<(), BoxError> {
                count_call("project.direct_deletion", shard_identifier, 1);
                ctx.require_silos()?
                    .with_control_connection(|control: &mut $conn| {
                        diesel::delete(project_replicas::table.find(object_identifier))
                            .execute(control)?;
                        Ok(())
                    })?;
                Ok(())
            }
        }

        impl ControlApplyHooks<$conn> for Notice {
            fn apply_replication(
                &self,
                ctx: &mut ApplyContext<'_, '_, $conn>,
            ) -> Result<(), BoxError> {
                count_call("notice.apply", self.organization_id, 1);
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

        impl Replicas for $conn {
            fn notice_replicas(&mut self) -> Vec<(i64, String)> {
                notice_replicas::table
                    .order(notice_replicas::id)
                    .load(self)
                    .expect("read notice_replicas")
            }

            fn project_replicas(&mut self) -> Vec<ProjectReplica> {
                project_replicas::table
                    .order(project_replicas::id)
                    .select(ProjectReplica::as_select())
                    .load(self)
                    .expect("read project_replicas")
            }

            fn item_replicas(&mut self) -> Vec<ItemReplica> {
                item_replicas::table
                    .order(item_replicas::id)
                    .select(ItemReplica::as_select())
                    .load(self)
                    .expect("read item_replicas")
            }
        }
    };
}

/// Control's copies, as the tests read them.
pub trait Replicas: TestConnection + SimpleConnection {
    fn project_replicas(&mut self) -> Vec<ProjectReplica>;
    fn item_replicas(&mut self) -> Vec<ItemReplica>;
    fn notice_replicas(&mut self) -> Vec<(i64, String)>;

    /// Control's project replicas as (id, name).
    fn project_names(&mut self) -> Vec<(i64, String)> {
        self.project_replicas()
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect()
    }
}

per_backend!(
    diesel::SqliteConnection,
    key: project_replicas::id,
    item_key: item_replicas::id,
    notice_key: notice_replicas::id,
    new_name: diesel::upsert::excluded(item_replicas::name)
);
#[cfg(feature = "postgres")]
per_backend!(
    diesel::PgConnection,
    key: project_replicas::id,
    item_key: item_replicas::id,
    notice_key: notice_replicas::id,
    new_name: diesel::upsert::excluded(item_replicas::name)
);
#[cfg(feature = "mysql")]
per_backend!(
    diesel::MysqlConnection,
    key: diesel::dsl::DuplicatedKeys,
    item_key: diesel::dsl::DuplicatedKeys,
    notice_key: diesel::dsl::DuplicatedKeys,
    new_name: diesel::dsl::sql::<diesel::sql_types::Text>("VALUES(name)")
);

/// What every test's backend offers.
pub trait Silo: TestDb<Conn: Replicas> {}

impl<D> Silo for D
where
    D: TestDb,
    D::Conn: Replicas,
{
}

/// A new random signing key.
pub fn key() -> SigningKey {
    SigningKey::generate().expect("random key")
}

/// Control's appliers: projects and items, from cell eu.
pub fn control_appliers<C>() -> Appliers<C>
where
    C: diesel_outbox::OutboxConnection,
    Project: CellApplyHooks<C>,
    Item: CellApplyHooks<C>,
{
    Appliers::new(SiloId::Control)
        .cell_from::<Project>(&["eu"])
        .cell_from::<Item>(&["eu"])
}

/// A control server on loopback, applying into `db` with the keys `keys` for cell eu.
pub fn serve_control<D: Silo>(db: &D, keys: &[SigningKey]) -> (Arc<Server<D::Conn>>, Background)
where
    Project: CellApplyHooks<D::Conn>,
    Item: CellApplyHooks<D::Conn>,
{
    let server = Server::new(control_appliers::<D::Conn>(), db.pool(4))
        .and_then(|server| server.peer_keys(SiloId::cell("eu"), keys.iter().cloned()))
        .expect("control's server");
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let running =
        serve_in_background(listener, router(Arc::clone(&server))).expect("control serves");
    (server, running)
}

/// Cell eu's client for control at `running`, signing with the first of `keys`.
pub fn eu_transport(running: &Background, keys: &[SigningKey]) -> HttpTransport {
    HttpTransport::new(SiloId::cell("eu"))
        .and_then(|client| client.peer_keys(SiloId::Control, running.url(), keys.iter().cloned()))
        .expect("client")
}

/// A cell database with its tables, and control's with its tables.
pub fn set_up<D: Silo>(cell: &D, control: &D) {
    cell.conn()
        .batch_execute(CELL_TABLES)
        .expect("the cell's tables");
    control
        .conn()
        .batch_execute(CONTROL_TABLES)
        .expect("control's tables");
}

/// A request from cell eu for project `id` of `organization` with `name`, from the source
/// row `row_id`.
pub fn project_request(id: i64, organization: i64, name: &str, row_id: i64) -> ApplyRequest {
    ApplyRequest {
        outbox: OutboxTable::Cell,
        table: "projects".into(),
        category: 1,
        object_identifier: id,
        shard_scope: 0,
        shard_identifier: organization,
        cell: "eu".into(),
        row_id,
        change: Change::Replicate {
            state: ModelState::of(&Project::new(id, organization, name)).expect("a state"),
        },
    }
}

/// The deletion of project `id` from the source row `row_id`.
pub fn project_deletion(id: i64, organization: i64, row_id: i64) -> ApplyRequest {
    ApplyRequest {
        change: Change::Delete { payload: None },
        ..project_request(id, organization, "", row_id)
    }
}
