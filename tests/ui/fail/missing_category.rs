include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
