//! The rows a context has written but not yet inserted, coalesced by key.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;

use crate::key::shard::{OutboxTable, ShardKey};
use crate::row::insert::{NewCellOutbox, NewControlOutbox};
use crate::row::write::{CoalescingKey, OutboxWrite};

/// Buffered rows in writing order. A row whose key is written again is replaced by the
/// newer one, which takes the newer position: the table's id order stays the order of the
/// last write of each key.
#[derive(Debug, Default)]
#[doc(hidden)]
pub struct OutboxBuffer {
    slots: Vec<Option<OutboxWrite>>,
    newest: HashMap<CoalescingKey, usize>,
}

impl OutboxBuffer {
    pub(crate) fn push(&mut self, row: OutboxWrite) {
        let position = self.slots.len();
        if let Some(older) = self.newest.insert(row.coalescing_key(), position) {
            self.slots[older] = None;
        }
        self.slots.push(Some(row));
    }

    /// Moves a committed nested context's rows into this (its parent's) buffer.
    pub(crate) fn append(&mut self, child: OutboxBuffer) {
        for row in child.slots.into_iter().flatten() {
            self.push(row);
        }
    }

    /// Rows that will be inserted, after coalescing.
    pub(crate) fn len(&self) -> usize {
        self.newest.len()
    }

    /// Marks every row as not to be flushed (its context turned flush off).
    pub(crate) fn disable_flush(&mut self) {
        for row in self.slots.iter_mut().flatten() {
            row.disable_flush();
        }
    }

    /// Whether every row asks for a flush.
    pub(crate) fn all_flush(&self) -> bool {
        self.slots.iter().flatten().all(OutboxWrite::flushes)
    }

    /// The shards to flush after commit.
    pub(crate) fn flush_shards(&self) -> Vec<ShardKey> {
        let shards: BTreeSet<ShardKey> = self
            .slots
            .iter()
            .flatten()
            .filter_map(OutboxWrite::flush_shard)
            .collect();
        shards.into_iter().collect()
    }

    /// Rows per table and category, after coalescing.
    pub(crate) fn counts(&self) -> Vec<(OutboxTable, i32, u64)> {
        let mut counts = BTreeMap::new();
        for row in self.slots.iter().flatten() {
            *counts.entry(row.table_and_category()).or_insert(0) += 1;
        }
        counts
            .into_iter()
            .map(|((table, category), rows)| (table, category, rows))
            .collect()
    }

    /// The rows as they will be inserted, split by table.
    pub(crate) fn into_new_rows(
        self,
        now: NaiveDateTime,
    ) -> (Vec<NewCellOutbox>, Vec<NewControlOutbox>) {
        let mut cell = Vec::new();
        let mut control = Vec::new();
        for row in self.slots.into_iter().flatten() {
            match row {
                OutboxWrite::Cell(row) => cell.push(NewCellOutbox::new(row, now)),
                OutboxWrite::Control(row) => control.push(NewControlOutbox::new(row, now)),
            }
        }
        (cell, control)
    }
}
