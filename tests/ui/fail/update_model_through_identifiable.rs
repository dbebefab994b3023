include!("../common/prelude.rs");

// The derive implements `Identifiable` for associations (reads); diesel's update of the
// model's row by its identity records no outbox row, and does not compile.
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
    diesel::update(&project).set(projects::name.eq("renamed")).execute(&mut conn).unwrap();
}
