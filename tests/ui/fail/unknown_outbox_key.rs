include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, retries = 3)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
