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
    use diesel_outbox::__private_0_1_0 as hidden;
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let project = Project { id: 1, organization_id: 1, name: "acme".into() };
    // Even through the path generated code uses, the token's constructor is the runtime's.
    <Project as hidden::ModelWrites<SqliteConnection>>::upsert_rows(
        &mut conn,
        &[project],
        hidden::Token::new(),
    )
    .unwrap();
}
