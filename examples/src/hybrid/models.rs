//! The demo's data: what lives in control, what lives in each cell, and how each
//! replicated model pushes itself to the other silo.
//!
//! - Control owns **users**. Each user lists the cells it belongs to; saving a user writes
//!   one control outbox row per cell, and control's drain copies the user into
//!   `user_replicas` of that cell.
//! - Each cell owns its **organizations**. Saving one writes a cell outbox row, and the
//!   cell's drain keeps `organization_mappings` in control up to date, with the cell's name.
//! - Deleting either records a tombstone in the other silo (the library does that), and the
//!   deletion hook removes the replica and the rows that point at it.
//!
//! Each model has two pairs of hooks, for the two ways silos can be wired:
//! - over a transport (the demo): the sending silo sends the model's state
//!   (serde), and the receiving silo applies it in its own database
//!   ([`CellApplyHooks`], [`ControlApplyHooks`]);
//! - through direct connections (single-database and test setups): the sending silo's
//!   drain writes the other silo's database itself ([`CellReplicationHooks`],
//!   [`ControlReplicationHooks`]).

use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;
use diesel_outbox::apply::{ApplyBatch, ApplyContext, CellApplyHooks, ControlApplyHooks};
use diesel_outbox::{
    BoxError, CellReplicationHooks, ControlReplicationHooks, JsonPayload, ReplicatedCell,
    ReplicatedControl, ReplicationBatch, ReplicationContext, SiloId,
};

use super::lag;
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    /// The demo's scopes: each shards by the object's own id.
    pub scopes Scope {
        Organization = 0 { shard: id },
        User = 1 { shard: id },
    }
    /// The demo's categories.
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: User, silo: control },
    }
}

/// The demo's tables.
pub mod schema {
    diesel::table! {
        /// Control: the users (source of truth).
        users (id) { id -> BigInt, name -> Text, cells -> Text }
    }
    diesel::table! {
        /// Control: where each organization lives, replicated from the cells.
        organization_mappings (organization_id) {
            organization_id -> BigInt,
            name -> Text,
            cell_name -> Text,
        }
    }
    diesel::table! {
        /// A cell: its organizations (source of truth).
        organizations (id) { id -> BigInt, name -> Text }
    }
    diesel::table! {
        /// A cell: the users it needs, replicated from control.
        user_replicas (id) { id -> BigInt, name -> Text }
    }
    diesel::table! {
        /// A cell: which user belongs to which organization.
        organization_members (organization_id, user_id) {
            organization_id -> BigInt,
            user_id -> BigInt,
        }
    }
}

use schema::{organization_mappings, organization_members, user_replicas};

/// The control database's own tables.
pub const CONTROL_TABLES: &str = "
    CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, cells TEXT NOT NULL);
    CREATE TABLE organization_mappings (
        organization_id BIGINT PRIMARY KEY, name TEXT NOT NULL, cell_name TEXT NOT NULL);";

/// A cell database's own tables.
pub const CELL_TABLES: &str = "
    CREATE TABLE organizations (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE user_replicas (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE organization_members (
        organization_id BIGINT NOT NULL, user_id BIGINT NOT NULL,
        PRIMARY KEY (organization_id, user_id));";

/// A user, owned by control and replicated to each of its cells.
#[derive(
    Clone, Debug, PartialEq, Eq, Queryable, Selectable, Serialize, Deserialize, ReplicatedControl,
)]
#[diesel(table_name = schema::users)]
#[outbox(category = Category::UserUpdate, cells = User::cell_names)]
pub struct User {
    /// Primary key, and the shard (the `User` scope shards by `id`).
    pub id: i64,
    /// Display name.
    pub name: String,
    /// The cells the user belongs to, comma-separated.
    pub cells: String,
}

impl User {
    /// A user belonging to `cells`.
    pub fn new(id: i64, name: &str, cells: &[&str]) -> Self {
        User {
            id,
            name: name.to_owned(),
            cells: cells.join(","),
        }
    }

    /// The target cells of the user's outbox rows.
    pub fn cell_names(&self) -> Vec<&str> {
        self.cells
            .split(',')
            .filter(|cell| !cell.is_empty())
            .collect()
    }
}

/// An organization, owned by one cell and mapped in control.
#[derive(
    Clone, Debug, PartialEq, Eq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = schema::organizations)]
#[outbox(category = Category::OrganizationUpdate)]
pub struct Organization {
    /// Primary key, and the shard (the `Organization` scope shards by `id`).
    pub id: i64,
    /// Display name.
    pub name: String,
}

/// A user's copy in a cell.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = user_replicas)]
pub struct UserReplica {
    /// The control user's id.
    pub id: i64,
    /// The control user's name.
    pub name: String,
}

/// An organization's entry in control.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = organization_mappings)]
pub struct OrganizationMapping {
    /// The organization's id.
    pub organization_id: i64,
    /// Its name.
    pub name: String,
    /// The cell it lives in.
    pub cell_name: String,
}

/// Over a transport (the demo's wiring): control applies what a cell sends it about
/// its organizations, in control's own transaction, a batch at a time (one read of the
/// batch's mappings, one multi-row upsert). The hook is also where control decides what a
/// cell may change: a cell may map only organizations that live in it.
impl<C: DemoSql> CellApplyHooks<C> for Organization {
    fn apply_replications(
        batch: &mut ApplyBatch<'_, '_, C>,
        organizations: &[Self],
    ) -> Result<(), BoxError> {
        let cell = batch.cell_name().to_owned();
        let ids: Vec<i64> = organizations.iter().map(|org| org.id).collect();
        let conn = batch.connection();
        for mapped in conn.organization_mappings_of(&ids)? {
            if mapped.cell_name != cell {
                return Err(format!(
                    "organization {} lives in {}, not in {cell}",
                    mapped.organization_id, mapped.cell_name
                )
                .into());
            }
        }
        let mappings: Vec<OrganizationMapping> = organizations
            .iter()
            .map(|org| OrganizationMapping {
                organization_id: org.id,
                name: org.name.clone(),
                cell_name: cell.clone(),
            })
            .collect();
        conn.upsert_organization_mappings(&mappings)?;
        lag::applied_all(lag::ORGANIZATIONS, &ids);
        Ok(())
    }

    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError> {
        Self::apply_replications(&mut ctx.as_batch(), std::slice::from_ref(self))
    }

    fn apply_deletion(
        ctx: &mut ApplyContext<'_, '_, C>,
        object_identifier: i64,
        _shard_identifier: i64,
        _payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        // The tombstone is recorded; drop the mapping, if it is the sender's.
        let cell = ctx.cell_name().to_owned();
        ctx.connection()
            .delete_organization_mapping(object_identifier, Some(&cell))?;
        lag::applied_all(lag::ORGANIZATIONS, &[object_identifier]);
        Ok(())
    }
}

/// Over a transport: a cell applies what control sends it about its users, in the cell's
/// own transaction, a batch at a time (one multi-row upsert).
impl<C: DemoSql> ControlApplyHooks<C> for User {
    fn apply_replications(
        batch: &mut ApplyBatch<'_, '_, C>,
        users: &[Self],
    ) -> Result<(), BoxError> {
        let replicas: Vec<UserReplica> = users.iter().map(User::replica).collect();
        batch.connection().upsert_user_replicas(&replicas)?;
        let ids: Vec<i64> = users.iter().map(|user| user.id).collect();
        lag::applied_all(lag::USERS, &ids);
        Ok(())
    }

    fn apply_replication(&self, ctx: &mut ApplyContext<'_, '_, C>) -> Result<(), BoxError> {
        Self::apply_replications(&mut ctx.as_batch(), std::slice::from_ref(self))
    }

    fn apply_deletion(
        ctx: &mut ApplyContext<'_, '_, C>,
        object_identifier: i64,
        _shard_identifier: i64,
        _payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        // The cascade: the replica and every membership pointing at it.
        ctx.connection().delete_user_replica(object_identifier)?;
        lag::applied_all(lag::USERS, &[object_identifier]);
        Ok(())
    }
}

impl User {
    fn replica(&self) -> UserReplica {
        UserReplica {
            id: self.id,
            name: self.name.clone(),
        }
    }
}

/// Through direct connections (the [`SiloDirectory`](diesel_outbox::SiloDirectory)
/// wiring, for single-database and test setups): control's drain writes each batch of
/// users into a cell's database itself, with one connection and one upsert.
impl<C: DemoSql> ControlReplicationHooks<C> for User {
    fn handle_async_replications(
        batch: &mut ReplicationBatch<'_, C>,
        users: &[&Self],
    ) -> Result<(), BoxError> {
        let cell_name = batch
            .cell_name()
            .ok_or("control rows name their cell")?
            .to_owned();
        let replicas: Vec<UserReplica> = users.iter().map(|user| user.replica()).collect();
        batch
            .require_silos()?
            .with_cell_connection(&cell_name, |cell: &mut C| {
                cell.upsert_user_replicas(&replicas)?;
                Ok(())
            })?;
        let ids: Vec<i64> = users.iter().map(|user| user.id).collect();
        lag::applied_all(lag::USERS, &ids);
        Ok(())
    }

    fn handle_async_deletion(
        ctx: &mut ReplicationContext<'_, C>,
        cell_name: &str,
        object_identifier: i64,
        _shard_identifier: i64,
        _payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        ctx.require_silos()?
            .with_cell_connection(cell_name, |cell: &mut C| {
                cell.transaction(|cell| cell.delete_user_replica(object_identifier))?;
                Ok(())
            })?;
        lag::applied_all(lag::USERS, &[object_identifier]);
        Ok(())
    }
}

/// Through direct connections: a cell's drain writes each batch of its organizations'
/// mappings into control's database itself.
impl<C: DemoSql> CellReplicationHooks<C> for Organization {
    fn handle_async_replications(
        batch: &mut ReplicationBatch<'_, C>,
        organizations: &[&Self],
    ) -> Result<(), BoxError> {
        let silos = batch.require_silos()?;
        let SiloId::Cell(cell_name) = silos.local() else {
            return Err("organizations are replicated from a cell".into());
        };
        let mappings: Vec<OrganizationMapping> = organizations
            .iter()
            .map(|org| OrganizationMapping {
                organization_id: org.id,
                name: org.name.clone(),
                cell_name: cell_name.clone(),
            })
            .collect();
        silos.with_control_connection(|control: &mut C| {
            control.upsert_organization_mappings(&mappings)?;
            Ok(())
        })?;
        let ids: Vec<i64> = organizations.iter().map(|org| org.id).collect();
        lag::applied_all(lag::ORGANIZATIONS, &ids);
        Ok(())
    }

    fn handle_async_deletion(
        ctx: &mut ReplicationContext<'_, C>,
        object_identifier: i64,
        _shard_identifier: i64,
        _payload: Option<&JsonPayload>,
    ) -> Result<(), BoxError> {
        ctx.require_silos()?
            .with_control_connection(|control: &mut C| {
                control.delete_organization_mapping(object_identifier, None)?;
                Ok(())
            })?;
        lag::applied_all(lag::ORGANIZATIONS, &[object_identifier]);
        Ok(())
    }
}

/// The demo's plain reads and writes, once per backend: the hooks above are written once,
/// generic over it.
pub trait DemoSql: diesel_outbox::OutboxConnection + R2D2Connection + Sized {
    /// Control: every user, by id.
    fn users(&mut self) -> QueryResult<Vec<User>>;
    /// Control: every organization mapping, by id.
    fn organization_mappings(&mut self) -> QueryResult<Vec<OrganizationMapping>>;
    /// A cell: every organization, by id.
    fn organizations(&mut self) -> QueryResult<Vec<Organization>>;
    /// A cell: every user replica, by id.
    fn user_replicas(&mut self) -> QueryResult<Vec<UserReplica>>;
    /// A cell: every (organization, user) membership.
    fn memberships(&mut self) -> QueryResult<Vec<(i64, i64)>>;
    /// A cell: adds a membership.
    fn add_membership(&mut self, organization_id: i64, user_id: i64) -> QueryResult<()>;
    /// A cell: removes an organization's memberships.
    fn remove_memberships(&mut self, organization_id: i64) -> QueryResult<()>;
    /// Rows in both outbox tables.
    fn outbox_rows(&mut self) -> Result<i64, diesel_outbox::Error>;
    /// A cell: writes users' replicas (one multi-row upsert: idempotent).
    fn upsert_user_replicas(&mut self, replicas: &[UserReplica]) -> QueryResult<()>;
    /// A cell: deletes a user's replica and every membership pointing at it.
    fn delete_user_replica(&mut self, id: i64) -> QueryResult<()>;
    /// Control: the mappings of the organizations `ids` that have one.
    fn organization_mappings_of(&mut self, ids: &[i64]) -> QueryResult<Vec<OrganizationMapping>>;
    /// Control: writes organizations' mappings (one multi-row upsert: idempotent).
    fn upsert_organization_mappings(&mut self, mappings: &[OrganizationMapping])
        -> QueryResult<()>;
    /// Control: deletes the mapping of organization `id` (only if it is `cell`'s, if given).
    fn delete_organization_mapping(&mut self, id: i64, cell: Option<&str>) -> QueryResult<()>;
}

/// `DemoSql` for one connection type. The upserts' conflict target differs: a column on
/// SQLite and PostgreSQL, `DuplicatedKeys` (`ON DUPLICATE KEY UPDATE`) on MySQL.
macro_rules! demo_sql {
    (
        $conn:ty,
        replicas: $replica_key:expr, $replica_name:expr,
        mappings: $mapping_key:expr, $mapping_name:expr, $mapping_cell:expr
    ) => {
        impl DemoSql for $conn {
            fn users(&mut self) -> QueryResult<Vec<User>> {
                schema::users::table
                    .order(schema::users::id)
                    .select(User::as_select())
                    .load(self)
            }

            fn organization_mappings(&mut self) -> QueryResult<Vec<OrganizationMapping>> {
                organization_mappings::table
                    .order(organization_mappings::organization_id)
                    .select(OrganizationMapping::as_select())
                    .load(self)
            }

            fn organizations(&mut self) -> QueryResult<Vec<Organization>> {
                schema::organizations::table
                    .order(schema::organizations::id)
                    .select(Organization::as_select())
                    .load(self)
            }

            fn user_replicas(&mut self) -> QueryResult<Vec<UserReplica>> {
                user_replicas::table
                    .order(user_replicas::id)
                    .select(UserReplica::as_select())
                    .load(self)
            }

            fn memberships(&mut self) -> QueryResult<Vec<(i64, i64)>> {
                organization_members::table
                    .order((
                        organization_members::organization_id,
                        organization_members::user_id,
                    ))
                    .load(self)
            }

            fn add_membership(&mut self, organization_id: i64, user_id: i64) -> QueryResult<()> {
                diesel::insert_into(organization_members::table)
                    .values((
                        organization_members::organization_id.eq(organization_id),
                        organization_members::user_id.eq(user_id),
                    ))
                    .execute(self)
                    .map(|_| ())
            }

            fn remove_memberships(&mut self, organization_id: i64) -> QueryResult<()> {
                diesel::delete(
                    organization_members::table
                        .filter(organization_members::organization_id.eq(organization_id)),
                )
                .execute(self)
                .map(|_| ())
            }

            fn outbox_rows(&mut self) -> Result<i64, diesel_outbox::Error> {
                let cell = diesel_outbox::testing::cell_records(self)?.len();
                let control = diesel_outbox::testing::control_records(self)?.len();
                Ok((cell + control) as i64)
            }

            fn upsert_user_replicas(&mut self, replicas: &[UserReplica]) -> QueryResult<()> {
                // Tuples of `eq`: one multi-row INSERT on every backend.
                let rows: Vec<_> = replicas
                    .iter()
                    .map(|r| (user_replicas::id.eq(r.id), user_replicas::name.eq(&r.name)))
                    .collect();
                diesel::insert_into(user_replicas::table)
                    .values(rows)
                    .on_conflict($replica_key)
                    .do_update()
                    .set(user_replicas::name.eq($replica_name))
                    .execute(self)
                    .map(|_| ())
            }

            fn delete_user_replica(&mut self, id: i64) -> QueryResult<()> {
                diesel::delete(
                    organization_members::table.filter(organization_members::user_id.eq(id)),
                )
                .execute(self)?;
                diesel::delete(user_replicas::table.find(id))
                    .execute(self)
                    .map(|_| ())
            }

            fn organization_mappings_of(
                &mut self,
                ids: &[i64],
            ) -> QueryResult<Vec<OrganizationMapping>> {
                organization_mappings::table
                    .filter(organization_mappings::organization_id.eq_any(ids))
                    .select(OrganizationMapping::as_select())
                    .load(self)
            }

            fn upsert_organization_mappings(
                &mut self,
                mappings: &[OrganizationMapping],
            ) -> QueryResult<()> {
                let rows: Vec<_> = mappings
                    .iter()
                    .map(|m| {
                        (
                            organization_mappings::organization_id.eq(m.organization_id),
                            organization_mappings::name.eq(&m.name),
                            organization_mappings::cell_name.eq(&m.cell_name),
                        )
                    })
                    .collect();
                diesel::insert_into(organization_mappings::table)
                    .values(rows)
                    .on_conflict($mapping_key)
                    .do_update()
                    .set((
                        organization_mappings::name.eq($mapping_name),
                        organization_mappings::cell_name.eq($mapping_cell),
                    ))
                    .execute(self)
                    .map(|_| ())
            }

            fn delete_organization_mapping(
                &mut self,
                id: i64,
                cell: Option<&str>,
            ) -> QueryResult<()> {
                let mapping = organization_mappings::table
                    .filter(organization_mappings::organization_id.eq(id));
                match cell {
                    Some(cell) => {
                        diesel::delete(mapping.filter(organization_mappings::cell_name.eq(cell)))
                            .execute(self)
                    }
                    None => diesel::delete(mapping).execute(self),
                }
                .map(|_| ())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
demo_sql!(
    diesel::sqlite::SqliteConnection,
    replicas: user_replicas::id, diesel::upsert::excluded(user_replicas::name),
    mappings: organization_mappings::organization_id,
        diesel::upsert::excluded(organization_mappings::name),
        diesel::upsert::excluded(organization_mappings::cell_name)
);
#[cfg(feature = "postgres")]
demo_sql!(
    diesel::pg::PgConnection,
    replicas: user_replicas::id, diesel::upsert::excluded(user_replicas::name),
    mappings: organization_mappings::organization_id,
        diesel::upsert::excluded(organization_mappings::name),
        diesel::upsert::excluded(organization_mappings::cell_name)
);
#[cfg(feature = "mysql")]
demo_sql!(
    diesel::mysql::MysqlConnection,
    replicas: diesel::dsl::DuplicatedKeys, diesel::dsl::sql::<diesel::sql_types::Text>("VALUES(name)"),
    mappings: diesel::dsl::DuplicatedKeys,
        diesel::dsl::sql::<diesel::sql_types::Text>("VALUES(name)"),
        diesel::dsl::sql::<diesel::sql_types::Text>("VALUES(cell_name)")
);
