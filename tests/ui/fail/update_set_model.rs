include!("../common/prelude.rs");

// The hidden row is the model's only changeset: the model itself is none.
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
    diesel::update(projects::table.find(1)).set(&project).execute(&mut conn).unwrap();
}
