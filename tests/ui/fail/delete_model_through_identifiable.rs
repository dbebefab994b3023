include!("../common/prelude.rs");

// Deleting the row by the model's identity would leave no outbox row, so no tombstone
// would ever reach the other silo.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let project = Project { id: 1, organization_id: 1, name: "acme".into() };
    diesel::delete(&project).execute(&mut conn).unwrap();
}
