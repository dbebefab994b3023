include!("../common/prelude.rs");

// Identifiable is fine to derive (associations need it); the changeset does not exist.
#[derive(Queryable, Selectable, Identifiable, ReplicatedCell)]
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
    diesel::update(&project).set(&project).execute(&mut conn).unwrap();
}
