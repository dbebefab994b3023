include!("../common/prelude.rs");

#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate)]
struct User {
    #[outbox(shard)]
    id: i64,
    name: String,
}

fn main() {}
