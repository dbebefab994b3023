include!("../common/prelude.rs");

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let mut stash = None;
    outbox_context(&mut conn, |ctx| {
        stash = Some(ctx);
        Ok::<_, Error>(())
    })
    .unwrap();
}
