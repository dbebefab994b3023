include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

// Written by hand, for a reference of every lifetime: the bypass `derive(Insertable)`
// would open, and refused the same way.
impl<'a> diesel::Insertable<projects::table> for &'a Project {
    type Values = <(
        diesel::dsl::Eq<projects::id, &'a i64>,
        diesel::dsl::Eq<projects::organization_id, &'a i64>,
        diesel::dsl::Eq<projects::name, &'a String>,
    ) as diesel::Insertable<projects::table>>::Values;

    fn values(self) -> Self::Values {
        (
            projects::id.eq(&self.id),
            projects::organization_id.eq(&self.organization_id),
            projects::name.eq(&self.name),
        )
            .values()
    }
}

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let project = Project { id: 1, organization_id: 1, name: "acme".into() };
    diesel::insert_into(projects::table).values(&project).execute(&mut conn).unwrap();
}
