include!("../common/prelude.rs");

use diesel_outbox::{OutboxConnection, OutboxTable};

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    // Deleting outbox rows is the drain's alone: only after their receiver succeeded.
    conn.delete_delivered(
        diesel_outbox::__private_0_1_0::Token::new(),
        OutboxTable::Cell,
        &[1, 2, 3],
        None,
    )
    .unwrap();
}
