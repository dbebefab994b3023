//! Outbox rows as inserted: every column bound (no DEFAULT), which keeps a batch one
//! statement on SQLite too.
//!
//! The rows the connection trait takes ([`NewCellOutbox`], [`NewControlOutbox`]) are plain
//! data: a type in a public signature is reachable (its impls can be found by inference
//! even where it cannot be named), and an `Insertable` impl would hand out the private
//! table's diesel type. The statements borrow them as [`CellValues`] and
//! [`ControlValues`], which no public signature mentions.

use chrono::NaiveDateTime;

use super::payload::JsonPayload;
use super::schema::{cell_outboxes, control_outboxes};
use super::write::{CellOutbox, ControlOutbox, DUE_AT_ONCE};

/// One `cell_outboxes` row as inserted. Every column is bound (no DEFAULT), which keeps a
/// batch one statement on SQLite too.
#[doc(hidden)]
#[derive(Debug)]
pub struct NewCellOutbox {
    shard_scope: i32,
    shard_identifier: i64,
    category: i32,
    object_identifier: i64,
    payload: Option<JsonPayload>,
    scheduled_from: NaiveDateTime,
    scheduled_for: NaiveDateTime,
    date_added: NaiveDateTime,
}

impl NewCellOutbox {
    /// Bind parameters per row.
    pub(crate) const BINDS: usize = 8;

    pub(crate) fn new(row: CellOutbox, now: NaiveDateTime) -> Self {
        NewCellOutbox {
            shard_scope: row.shard().scope,
            shard_identifier: row.shard().identifier,
            category: row.category(),
            object_identifier: row.object_identifier(),
            payload: row.into_payload(),
            scheduled_from: now,
            scheduled_for: DUE_AT_ONCE,
            date_added: now,
        }
    }

    /// Bytes of the row's variable-size values (its payload), for backends that bound a
    /// statement's size.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn variable_bytes(&self) -> usize {
        self.payload.as_ref().map_or(0, JsonPayload::len)
    }

    /// The row's category and object, to name it in an error.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn identity(&self) -> (i32, i64) {
        (self.category, self.object_identifier)
    }
}

/// One `control_outboxes` row as inserted.
#[doc(hidden)]
#[derive(Debug)]
pub struct NewControlOutbox {
    shard_scope: i32,
    shard_identifier: i64,
    category: i32,
    object_identifier: i64,
    payload: Option<JsonPayload>,
    scheduled_from: NaiveDateTime,
    scheduled_for: NaiveDateTime,
    date_added: NaiveDateTime,
    cell_name: String,
}

impl NewControlOutbox {
    /// Bind parameters per row.
    pub(crate) const BINDS: usize = 9;

    pub(crate) fn new(row: ControlOutbox, now: NaiveDateTime) -> Self {
        let (cell, cell_name) = row.into_parts();
        NewControlOutbox {
            shard_scope: cell.shard().scope,
            shard_identifier: cell.shard().identifier,
            category: cell.category(),
            object_identifier: cell.object_identifier(),
            payload: cell.into_payload(),
            scheduled_from: now,
            scheduled_for: DUE_AT_ONCE,
            date_added: now,
            cell_name,
        }
    }

    /// Bytes of the row's variable-size values (its payload and cell name), for backends
    /// that bound a statement's size.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn variable_bytes(&self) -> usize {
        self.payload.as_ref().map_or(0, JsonPayload::len) + self.cell_name.len()
    }

    /// The row's category and object, to name it in an error.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn identity(&self) -> (i32, i64) {
        (self.category, self.object_identifier)
    }
}

/// A [`NewCellOutbox`] as diesel inserts it.
#[derive(diesel::Insertable)]
#[diesel(table_name = cell_outboxes, treat_none_as_default_value = false)]
pub(crate) struct CellValues<'a> {
    shard_scope: &'a i32,
    shard_identifier: &'a i64,
    category: &'a i32,
    object_identifier: &'a i64,
    payload: Option<&'a JsonPayload>,
    scheduled_from: &'a NaiveDateTime,
    scheduled_for: &'a NaiveDateTime,
    date_added: &'a NaiveDateTime,
}

impl<'a> CellValues<'a> {
    pub(crate) fn of(row: &'a NewCellOutbox) -> Self {
        CellValues {
            shard_scope: &row.shard_scope,
            shard_identifier: &row.shard_identifier,
            category: &row.category,
            object_identifier: &row.object_identifier,
            payload: row.payload.as_ref(),
            scheduled_from: &row.scheduled_from,
            scheduled_for: &row.scheduled_for,
            date_added: &row.date_added,
        }
    }
}

/// A [`NewControlOutbox`] as diesel inserts it.
#[derive(diesel::Insertable)]
#[diesel(table_name = control_outboxes, treat_none_as_default_value = false)]
pub(crate) struct ControlValues<'a> {
    shard_scope: &'a i32,
    shard_identifier: &'a i64,
    category: &'a i32,
    object_identifier: &'a i64,
    payload: Option<&'a JsonPayload>,
    scheduled_from: &'a NaiveDateTime,
    scheduled_for: &'a NaiveDateTime,
    date_added: &'a NaiveDateTime,
    cell_name: &'a String,
}

impl<'a> ControlValues<'a> {
    pub(crate) fn of(row: &'a NewControlOutbox) -> Self {
        ControlValues {
            shard_scope: &row.shard_scope,
            shard_identifier: &row.shard_identifier,
            category: &row.category,
            object_identifier: &row.object_identifier,
            payload: row.payload.as_ref(),
            scheduled_from: &row.scheduled_from,
            scheduled_for: &row.scheduled_for,
            date_added: &row.date_added,
            cell_name: &row.cell_name,
        }
    }
}
