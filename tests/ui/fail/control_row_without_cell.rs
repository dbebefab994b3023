include!("../common/prelude.rs");

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    outbox_context(&mut conn, |ctx| {
        // A control row needs its target cell.
        ctx.write(diesel_outbox::ControlOutbox::new(Category::UserUpdate, 1, 1))
    })
    .unwrap();
}
