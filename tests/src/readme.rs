//! What README's examples use without showing it, so that each of its blocks compiles as
//! a doctest (`ReadmeDoctests` in lib.rs, compiled under `cfg(doctest)`) behind a hidden
//! `# use diesel_outbox_tests::readme::*;`: README's declaration of scopes and categories
//! (kept equal to README's own block by a test), the tables its models name, connections,
//! and stand-ins for the application code it only calls (`replicate_org`, `audit_log`).

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, Pool};

pub use diesel::prelude::*;
pub use diesel_outbox::{
    BoxError, CellReplicationHooks, DatabaseUrl, JsonPayload, Outbox, OutboxTable, Receivers,
    ReplicatedCell, SiloDirectory, SiloId,
};
pub use serde::{Deserialize, Serialize};

// README, "A tour": the declaration, exactly as README shows it (checked by
// `readme_declaration_is_readmes` below).
diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },   // models shard by this field
        User = 1 { shard: user_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: User, silo: control },
        AuditLogEvent = 3 { scope: Organization, silo: both },
    }
}

diesel::table! {
    /// README's organizations (a cell's).
    organizations (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}

diesel::table! {
    /// README's users (control's).
    users (id) { id -> BigInt, name -> Text }
}

diesel::table! {
    /// Control's record of where each organization lives (README, "Hybrid cloud").
    organization_mappings (organization_id) {
        organization_id -> BigInt,
        name -> Text,
        cell_name -> Text,
    }
}

/// The tables above, for SQLite.
const TABLES: &str = "
    CREATE TABLE organizations (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
        name TEXT NOT NULL);
    CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE organization_mappings (organization_id BIGINT PRIMARY KEY,
        name TEXT NOT NULL, cell_name TEXT NOT NULL);";

/// An r2d2 pool of PostgreSQL connections, as README's `pool` and `control_pool`.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A SQLite database in memory with README's tables (not the outbox's: README's blocks
/// run `run_migrations` themselves).
pub fn sqlite() -> Result<SqliteConnection, BoxError> {
    let mut conn = SqliteConnection::establish(":memory:")?;
    conn.batch_execute(TABLES)?;
    Ok(conn)
}

/// A connection to the test server (`OUTBOX_POSTGRES_URL`); README's PostgreSQL blocks
/// are compiled, not run.
pub fn postgres() -> Result<PgConnection, BoxError> {
    Ok(PgConnection::establish(&crate::PgSchema::base_url())?)
}

/// A pool of connections to the test server.
pub fn postgres_pool() -> Result<PgPool, BoxError> {
    Ok(Pool::builder().build(ConnectionManager::new(crate::PgSchema::base_url()))?)
}

/// README's organization, for the blocks that use it without declaring it ("Direct
/// connections"). Blocks that declare their own shadow this one.
#[derive(Queryable, Selectable, Serialize, Deserialize, ReplicatedCell)]
#[diesel(table_name = organizations)]
#[outbox(category = Category::OrganizationUpdate)]
pub struct Organization {
    /// Primary key.
    pub id: i64,
    /// The shard (the `Organization` scope's field).
    pub organization_id: i64,
    /// Display name.
    pub name: String,
}

/// The hooks' defaults: README describes what an application writes in them.
impl CellReplicationHooks<PgConnection> for Organization {}

/// An audit event, the payload of README's `AuditLogEvent` rows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What happened.
    pub action: String,
}

/// Stands in for an application's audit service.
#[derive(Debug)]
pub struct AuditLog;

impl AuditLog {
    /// Sends `event` to the audit service (here: accepts it).
    pub fn send(&self, event: Option<AuditEvent>) -> Result<(), BoxError> {
        let _ = event;
        Ok(())
    }
}

/// README's audit service, named as a value the way its receiver calls it.
#[allow(non_upper_case_globals)]
pub static audit_log: AuditLog = AuditLog;

/// Stands in for an application's replication of organization `id` (README, "Draining").
pub fn replicate_org(conn: &mut PgConnection, id: i64) -> Result<(), BoxError> {
    let _ = (conn, id);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The declaration above is README's, so its blocks compile against what a reader saw.
    #[test]
    fn readme_declaration_is_readmes() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```rust\ndiesel_outbox::outbox_scopes_and_categories! {")
            .expect("README declares its scopes and categories in a rust block");
        let block = &readme[start + "```rust\n".len()..];
        let block = &block[..block.find("\n}\n").expect("the declaration ends") + 2];
        assert!(
            include_str!("readme.rs").contains(block),
            "tests/src/readme.rs must declare README's scopes and categories as README \
             does:\n{block}"
        );
    }
}
