//! Tombstones on every backend: recorded once per (table, object), listed per table.

use diesel_outbox::silo::{record_tombstone, tombstones, TombstoneTable};
use diesel_outbox_tests::{backend_tests, TestConnection};

fn tombstones_are_idempotent_and_listed_per_table<C: TestConnection>(conn: &mut C) {
    assert!(record_tombstone(conn, TombstoneTable::Control, "organizations", 7).expect("first"));
    assert!(
        !record_tombstone(conn, TombstoneTable::Control, "organizations", 7).expect("again"),
        "a repeated delivery records nothing new"
    );
    assert!(record_tombstone(conn, TombstoneTable::Control, "projects", 7).expect("other table"));
    assert!(record_tombstone(conn, TombstoneTable::Cell, "users", 1).expect("cell table"));

    let control = tombstones(conn, TombstoneTable::Control, None).expect("list");
    let names: Vec<(&str, i64)> = control
        .iter()
        .map(|t| (t.table_name.as_str(), t.object_identifier))
        .collect();
    assert_eq!(names, vec![("organizations", 7), ("projects", 7)]);
    let orgs = tombstones(conn, TombstoneTable::Control, Some("organizations")).expect("list");
    assert_eq!(orgs.len(), 1);
    let cell = tombstones(conn, TombstoneTable::Cell, None).expect("list");
    assert_eq!(cell.len(), 1);
    assert_eq!(cell[0].table_name, "users");
    assert_eq!(conn.count("control_tombstones"), 2);
}

backend_tests!(tombstones_are_idempotent_and_listed_per_table);
