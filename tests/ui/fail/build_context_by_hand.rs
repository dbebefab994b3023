include!("../common/prelude.rs");

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    // The context can only be handed out by `outbox_context`.
    let _ctx = diesel_outbox::OutboxContext { conn: &mut conn };
}
