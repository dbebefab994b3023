include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    #[outbox(shard)]
    name: String,
}

fn main() {}
