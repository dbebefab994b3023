include!("../common/prelude.rs");

use diesel_outbox::OutboxConnection;

// The rows the connection's hidden methods take are plain data: an `Insertable` impl on
// them, found by inference from the method's signature, would name the private
// `cell_outboxes` table. Outbox rows are written with `ctx.write(..)`.
fn table_of<Row, Table: Default, R>(
    _method: fn(&mut SqliteConnection, diesel_outbox::__private_0_1_0::Token<'_>, &[Row]) -> R,
) -> Table
where
    Row: diesel::Insertable<Table>,
{
    Table::default()
}

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let undelivered = table_of(<SqliteConnection as OutboxConnection>::insert_cell_rows);
    diesel::delete(undelivered).execute(&mut conn).unwrap();
}
