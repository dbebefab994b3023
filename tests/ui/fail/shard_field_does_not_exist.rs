include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, shard = org_id)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
