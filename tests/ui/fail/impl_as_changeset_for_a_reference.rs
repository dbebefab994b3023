include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

// Written by hand, for `&'static` alone: any lifetime is refused, as the others are.
impl diesel::AsChangeset for &'static Project {
    type Target = projects::table;
    type Changeset = <diesel::dsl::Eq<projects::name, &'static String> as diesel::AsChangeset>::Changeset;

    fn as_changeset(self) -> Self::Changeset {
        projects::name.eq(&self.name).as_changeset()
    }
}

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let project: &'static Project =
        Box::leak(Box::new(Project { id: 1, organization_id: 1, name: "acme".into() }));
    diesel::update(projects::table.find(1)).set(project).execute(&mut conn).unwrap();
}
