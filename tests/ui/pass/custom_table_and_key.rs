include!("../common/prelude.rs");

mod schema {
    diesel::table! {
        legacy_projects (project_key) {
            project_key -> Integer,
            org -> BigInt,
            title -> Text,
        }
    }
}

// A custom table path, a non-`id` i32 key, a renamed column, the shard named on the struct.
#[derive(Debug, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = schema::legacy_projects, primary_key(project_key))]
#[outbox(category = Category::ProjectUpdate, shard = organization)]
struct LegacyProject {
    project_key: i32,
    #[diesel(column_name = org)]
    organization: i64,
    title: String,
}

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    diesel_outbox::run_migrations(&mut conn).unwrap();
    conn.batch_execute("CREATE TABLE legacy_projects (project_key INTEGER PRIMARY KEY, org BIGINT NOT NULL, title TEXT NOT NULL)").unwrap();
    let project = LegacyProject { project_key: 3, organization: 9, title: "t".into() };
    outbox_context(&mut conn, |ctx| project.save(ctx)).unwrap();
    assert_eq!(project.object_identifier(), 3);
    assert_eq!(project.shard_identifier(), 9);
    assert_eq!(<LegacyProject as ReplicatedCell>::TABLE_NAME, "legacy_projects");
}
