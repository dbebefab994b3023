include!("../common/prelude.rs");

// A key the database assigns is not known when the outbox row is recorded.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    #[diesel(skip_insertion)]
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
