include!("../common/prelude.rs");

#[derive(ReplicatedCell)]
#[diesel(table_name = projects, primary_key(id, organization_id))]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
