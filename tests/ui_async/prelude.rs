// Shared by the async trybuild cases: declarations, a valid replicated model, and an async
// connection (diesel-async's wrapper of SQLite: nothing to install).
#[allow(unused_imports)]
use diesel::prelude::*;
#[allow(unused_imports)]
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
#[allow(unused_imports)]
use diesel_outbox::{outbox_context_async, Error, OutboxContext, ReplicatedCell};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

#[allow(dead_code)]
fn connection() -> SyncConnectionWrapper<SqliteConnection> {
    SyncConnectionWrapper::new(SqliteConnection::establish(":memory:").unwrap())
}
