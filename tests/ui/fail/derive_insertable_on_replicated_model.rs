include!("../common/prelude.rs");

// Deriving diesel's Insertable would reopen the write path that records no outbox row.
#[derive(Queryable, Selectable, Insertable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
