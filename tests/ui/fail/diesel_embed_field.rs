include!("../common/prelude.rs");

#[derive(Queryable, Selectable)]
#[diesel(table_name = projects)]
struct Naming {
    name: String,
}

// diesel's `embed` would write `Naming`'s columns through its own `Insertable`.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    #[diesel(embed)]
    naming: Naming,
}

fn main() {}
