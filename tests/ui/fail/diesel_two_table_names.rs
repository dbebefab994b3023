include!("../common/prelude.rs");

// diesel's `Insertable` may write several tables; a replicated model writes one.
#[derive(ReplicatedCell)]
#[diesel(table_name = projects, table_name = users)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
