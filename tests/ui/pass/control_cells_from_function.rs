include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = cells_of_user)]
struct User {
    #[outbox(shard)]
    id: i64,
    name: String,
}

fn cells_of_user(user: &User) -> Vec<&'static str> {
    if user.id % 2 == 0 { vec!["eu", "us"] } else { vec!["us"] }
}

// Cells from a field, category carried by both silos.
#[derive(Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = projects)]
#[outbox(category = Category::OrganizationUpdate)]
struct Mirror {
    id: i64,
    organization_id: i64,
    #[outbox(cells)]
    name: String,
}

fn main() {
    let user = User { id: 2, name: "ada".into() };
    assert_eq!(user.target_cells(), vec!["eu".to_owned(), "us".to_owned()]);
    let mirror = Mirror { id: 1, organization_id: 5, name: "eu".into() };
    assert_eq!(mirror.target_cells(), vec!["eu".to_owned()]);
    assert_eq!(mirror.shard_identifier(), 5);
}
