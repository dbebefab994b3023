include!("../common/prelude.rs");

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let _escaped = outbox_context(&mut conn, |ctx| Ok::<_, Error>(ctx)).unwrap();
}
