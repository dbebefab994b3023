include!("../common/prelude.rs");

// The replicated derive implements `HasTable` and `Identifiable` itself (reads only):
// diesel's derive of them is a second implementation. Remove it; associations work.
#[derive(Queryable, Selectable, Identifiable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    name: String,
}

fn main() {}
