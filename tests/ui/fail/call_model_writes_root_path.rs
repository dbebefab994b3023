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
    // The model's own SQL writes its table without an outbox row: it takes the runtime's
    // token, which application code has no way to make.
    <Project as diesel_outbox::ModelWrites<SqliteConnection>>::insert_rows(&mut conn, &[project])
        .unwrap();
}
