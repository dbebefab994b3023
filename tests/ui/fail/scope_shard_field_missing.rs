include!("../common/prelude.rs");

// The Organization scope shards by `organization_id`, which this model lacks.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = users)]
#[outbox(category = Category::OrganizationUpdate)]
struct User {
    id: i64,
    name: String,
}

fn main() {}
