include!("../common/prelude.rs");

// A misspelt key must not be skipped: the hidden row would write what the model did not say.
#[derive(ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
struct Project {
    id: i64,
    organization_id: i64,
    #[diesel(skip_updates)]
    name: String,
}

fn main() {}
