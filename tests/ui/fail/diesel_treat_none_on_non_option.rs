include!("../common/prelude.rs");

// diesel's rule: `treat_none_as_*` on a field applies to an `Option` field only.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    #[diesel(treat_none_as_null = false)]
    name: String,
}

fn main() {}
