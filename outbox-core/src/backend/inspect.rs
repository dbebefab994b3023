//! What an operator reads about the outbox tables: depths, the oldest row still to be
//! delivered.

use chrono::NaiveDateTime;

use crate::key::shard::{OutboxTable, ShardKey};

/// How many rows one shard holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardDepth {
    /// The shard.
    pub shard: ShardKey,
    /// Its rows (coalescing not counted: a key written ten times is ten rows).
    pub rows: u64,
    /// Its oldest row's id.
    pub oldest_id: i64,
    /// When its oldest row was written (UTC).
    pub oldest_added: NaiveDateTime,
}

/// How many rows of one category a table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CategoryDepth {
    /// The table.
    pub table: OutboxTable,
    /// The category's number.
    pub category: i32,
    /// Its rows.
    pub rows: u64,
}

/// The oldest row a drain still has to deliver: due (its schedule has passed) and not
/// kept by a kill switch; a row of a shard backing off counts, since it is late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OldestRow {
    /// The table.
    pub table: OutboxTable,
    /// The row's id.
    pub id: i64,
    /// When it was written (UTC).
    pub date_added: NaiveDateTime,
}
