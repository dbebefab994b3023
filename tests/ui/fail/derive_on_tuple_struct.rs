include!("../common/prelude.rs");

#[derive(ReplicatedCell)]
#[outbox(category = Category::ProjectUpdate)]
struct Project(i64, i64, String);

fn main() {}
