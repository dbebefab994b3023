include!("../common/prelude.rs");

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
    // A write method takes the outbox context, never a bare connection.
    project.insert(&mut conn).unwrap();
}
