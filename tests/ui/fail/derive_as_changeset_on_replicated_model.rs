include!("../common/prelude.rs");

// Deriving diesel's AsChangeset would reopen the update path that records no outbox row.
#[derive(Queryable, Selectable, AsChangeset, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
