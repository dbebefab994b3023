include!("../common/prelude.rs");

// The outbox rows take the shard from the model: the table must store the same value.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    #[outbox(shard)]
    #[diesel(skip_update)]
    organization_id: i64,
    name: String,
}

fn main() {}
