//! Tombstones: the record, in one silo, that an object of the other silo was deleted.
//!
//! `control_tombstones` lives in the control database and records objects deleted in a
//! cell; `cell_tombstones` lives in a cell database and records objects deleted in
//! control. The replicated receivers write them when they find an object gone, and the
//! deletion hooks cascade from them. Both are idempotent: one tombstone per (table name,
//! object identifier), however often the deletion is delivered.

use crate::backend::guard;
use crate::backend::OutboxConnection;
use crate::key::error::Result;
use crate::key::token::Token;
use crate::row::tombstone::{Tombstone, TombstoneTable};

/// Records that `object_identifier` of `table_name` was deleted. Returns `false` when the
/// tombstone already existed (a repeated delivery), `true` when it is new.
pub fn record_tombstone<C: OutboxConnection>(
    conn: &mut C,
    table: TombstoneTable,
    table_name: &str,
    object_identifier: i64,
) -> Result<bool> {
    Ok(record_tombstones(conn, table, table_name, &[object_identifier])? > 0)
}

/// Records that the objects `object_identifiers` of `table_name` were deleted, with one
/// statement (split only at the backend's bind limit). Returns how many tombstones are
/// new; those that existed already (repeated deliveries) are kept as they were.
pub fn record_tombstones<C: OutboxConnection>(
    conn: &mut C,
    table: TombstoneTable,
    table_name: &str,
    object_identifiers: &[i64],
) -> Result<usize> {
    if object_identifiers.is_empty() {
        return Ok(0);
    }
    let now = chrono::Utc::now().naive_utc();
    Ok(guard::as_library(conn, |conn| {
        conn.insert_tombstones(Token::new(), table, table_name, object_identifiers, now)
    })?)
}

/// The tombstones of `table`, oldest first; only those of `table_name` if given.
pub fn tombstones<C: OutboxConnection>(
    conn: &mut C,
    table: TombstoneTable,
    table_name: Option<&str>,
) -> Result<Vec<Tombstone>> {
    let loaded = guard::as_library(conn, |conn| {
        conn.load_tombstones(Token::new(), table, table_name)
    });
    Ok(loaded?)
}
