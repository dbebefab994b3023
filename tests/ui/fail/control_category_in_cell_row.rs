include!("../common/prelude.rs");

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    outbox_context(&mut conn, |ctx| {
        ctx.write(diesel_outbox::CellOutbox::new(Category::UserUpdate, 1, 1))
    })
    .unwrap();
}
