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

use diesel::prelude::*;
use diesel_outbox::{
    BoxError, CellReplicationHooks, ControlReplicationHooks, JsonPayload, ReplicatedCell,
    ReplicatedControl, ReplicationContext, SiloId,
};

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
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, ReplicatedControl)]
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
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable, ReplicatedCell)]
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

/// The hooks are ordinary diesel code on a concrete connection type. The demo runs on
/// SQLite and PostgreSQL, so this macro writes them once for each; an application on one
/// backend writes a plain `impl` block.
macro_rules! replication_hooks {
    ($conn:ty) => {
        impl ControlReplicationHooks<$conn> for User {
            fn handle_async_replication(
                &self,
                ctx: &mut ReplicationContext<'_, $conn>,
                cell_name: &str,
                _shard_identifier: i64,
            ) -> Result<(), BoxError> {
                let replica = UserReplica {
                    id: self.id,
                    name: self.name.clone(),
                };
                ctx.require_silos()?
                    .with_cell_connection(cell_name, |cell: &mut $conn| {
                        diesel::insert_into(user_replicas::table)
                            .values(&replica)
                            .on_conflict(user_replicas::id)
                            .do_update()
                            .set(&replica)
                            .execute(cell)?;
                        Ok(())
                    })?;
                Ok(())
            }

            fn handle_async_deletion(
                ctx: &mut ReplicationContext<'_, $conn>,
                cell_name: &str,
                object_identifier: i64,
                _shard_identifier: i64,
                _payload: Option<&JsonPayload>,
            ) -> Result<(), BoxError> {
                // The cascade: the replica and every membership pointing at it.
                ctx.require_silos()?
                    .with_cell_connection(cell_name, |cell: &mut $conn| {
                        cell.transaction(|cell| {
                            diesel::delete(
                                organization_members::table
                                    .filter(organization_members::user_id.eq(object_identifier)),
                            )
                            .execute(cell)?;
                            diesel::delete(user_replicas::table.find(object_identifier))
                                .execute(cell)
                        })?;
                        Ok(())
                    })?;
                Ok(())
            }
        }

        impl CellReplicationHooks<$conn> for Organization {
            fn handle_async_replication(
                &self,
                ctx: &mut ReplicationContext<'_, $conn>,
                _shard_identifier: i64,
            ) -> Result<(), BoxError> {
                let silos = ctx.require_silos()?;
                let SiloId::Cell(cell_name) = silos.local() else {
                    return Err("organizations are replicated from a cell".into());
                };
                let mapping = OrganizationMapping {
                    organization_id: self.id,
                    name: self.name.clone(),
                    cell_name: cell_name.clone(),
                };
                silos.with_control_connection(|control: &mut $conn| {
                    diesel::insert_into(organization_mappings::table)
                        .values(&mapping)
                        .on_conflict(organization_mappings::organization_id)
                        .do_update()
                        .set(&mapping)
                        .execute(control)?;
                    Ok(())
                })?;
                Ok(())
            }

            fn handle_async_deletion(
                ctx: &mut ReplicationContext<'_, $conn>,
                object_identifier: i64,
                _shard_identifier: i64,
                _payload: Option<&JsonPayload>,
            ) -> Result<(), BoxError> {
                ctx.require_silos()?
                    .with_control_connection(|control: &mut $conn| {
                        diesel::delete(organization_mappings::table.find(object_identifier))
                            .execute(control)?;
                        Ok(())
                    })?;
                Ok(())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
replication_hooks!(diesel::sqlite::SqliteConnection);
#[cfg(feature = "postgres")]
replication_hooks!(diesel::pg::PgConnection);

/// The demo's plain reads and writes, for each backend (see [`replication_hooks!`]).
pub trait DemoSql: diesel_outbox::OutboxConnection + Sized {
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
}

macro_rules! demo_sql {
    ($conn:ty) => {
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
        }
    };
}

#[cfg(feature = "sqlite")]
demo_sql!(diesel::sqlite::SqliteConnection);
#[cfg(feature = "postgres")]
demo_sql!(diesel::pg::PgConnection);
