//! The benchmark's model: one replicated cell model, and a plain diesel twin that writes the
//! same table without an outbox (baseline (a) of the write benchmark).

use diesel::prelude::*;
use diesel_outbox::ReplicatedCell;

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    bench_projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

/// The table the models write, the same DDL on both backends.
pub const CREATE_PROJECTS: &str = "CREATE TABLE bench_projects (id BIGINT PRIMARY KEY NOT NULL, \
     organization_id BIGINT NOT NULL, name TEXT NOT NULL)";

/// What the receivers benchmark's writing receiver writes: one row per delivered key.
pub const CREATE_RECEIPTS: &str =
    "CREATE TABLE bench_receipts (object_identifier BIGINT PRIMARY KEY NOT NULL, row_id BIGINT NOT NULL)";

/// A replicated model: every save records a cell outbox row.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = bench_projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    /// Primary key, the object identifier.
    pub id: i64,
    /// The shard identifier.
    pub organization_id: i64,
    /// Some data.
    pub name: String,
}

/// The same row written with plain diesel, no outbox.
#[derive(Insertable)]
#[diesel(table_name = bench_projects)]
pub struct PlainProject<'a> {
    /// Primary key.
    pub id: i64,
    /// Shard.
    pub organization_id: i64,
    /// Data.
    pub name: &'a str,
}

/// Shards the write benchmark spreads its models over.
pub const WRITE_SHARDS: i64 = 1_000;

/// The model with id `id`.
pub fn project(id: i64) -> Project {
    Project {
        id,
        organization_id: id % WRITE_SHARDS,
        name: format!("project {id}"),
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use diesel_outbox::row::PayloadJson;

    /// The library's cell outbox table, declared here for the hand-written floor (the
    /// library keeps its own declaration private: its DSL would write the table without
    /// the outbox's rules).
    cell_outboxes (id) {
        id -> BigInt,
        shard_scope -> Integer,
        shard_identifier -> BigInt,
        category -> Integer,
        object_identifier -> BigInt,
        payload -> Nullable<PayloadJson>,
        scheduled_from -> Timestamp,
        scheduled_for -> Timestamp,
        date_added -> Timestamp,
    }
}
