include!("../common/prelude.rs");

// The same, when the shard field is the one the category's scope names.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    #[diesel(skip_update)]
    organization_id: i64,
    name: String,
}

fn main() {}
