include!("../common/prelude.rs");

use diesel::sqlite::Sqlite;
use diesel_outbox::row::CellOutboxRecord;

// A `Selectable` record would hand out its selection, whose columns name the private
// `cell_outboxes` table: a `diesel::delete` of undelivered rows. Read the rows with
// `diesel_outbox::testing::cell_records`, or `Outbox`'s inspection methods.
trait FirstColumn {
    type Column: diesel::Column;
}

impl<A: diesel::Column, B, C, D, E, F, G, H, I> FirstColumn for (A, B, C, D, E, F, G, H, I) {
    type Column = A;
}

type Selection = <CellOutboxRecord as diesel::Selectable<Sqlite>>::SelectExpression;
type OutboxTable = <<Selection as FirstColumn>::Column as diesel::Column>::Table;

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    diesel::delete(OutboxTable::default()).execute(&mut conn).unwrap();
}
