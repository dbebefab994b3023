include!("../common/prelude.rs");

// The key is the object identifier: a column, never a computed value.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    #[diesel(select_expression = projects::organization_id, select_expression_type = projects::organization_id)]
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
