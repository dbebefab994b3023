include!("../common/prelude.rs");

#[derive(ReplicatedCell)]
#[outbox(category = Category::ProjectUpdate)]
enum Project {
    Active { id: i64 },
}

fn main() {}
