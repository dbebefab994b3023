//! Parked rows: a key's rows moved out of the outbox after its last allowed attempt, with
//! the failure that parked them, until an operator retries or discards them.

use std::fmt;

use chrono::NaiveDateTime;

use crate::key::shard::{OutboxTable, ShardKey};

/// A parked group's coalescing key: its shard, category and object. Retry and discard
/// take every parked row of the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParkedKey {
    /// The shard the rows came from (and return to).
    pub shard: ShardKey,
    /// The category's number.
    pub category: i32,
    /// The changed object.
    pub object_identifier: i64,
}

impl ParkedKey {
    /// The outbox table the rows came from.
    pub fn table(&self) -> OutboxTable {
        self.shard.table()
    }
}

impl fmt::Display for ParkedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "category {}, object {} in {}",
            self.category, self.object_identifier, self.shard
        )
    }
}

/// The parked rows of one key, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParkedGroup {
    /// Shard, category and object.
    pub key: ParkedKey,
    /// How many rows are parked.
    pub rows: u64,
    /// The lowest parked id.
    pub first_id: i64,
    /// The highest parked id: the row a retry delivers, unless a newer row of the key
    /// waits in the outbox.
    pub last_id: i64,
    /// When the oldest parked row was written (UTC).
    pub first_added: NaiveDateTime,
    /// When the newest row was parked (UTC).
    pub parked_at: NaiveDateTime,
    /// The attempts that failed before it was parked.
    pub attempts: i32,
    /// When the first of them failed (UTC).
    pub first_failure_at: Option<NaiveDateTime>,
    /// The last failure's message (at most [`MAX_ERROR_LEN`](super::state::MAX_ERROR_LEN)
    /// characters).
    pub error: String,
}

/// Rows to park: one key's rows, by id, with the failure that parks them.
#[derive(Clone, Debug)]
pub struct ParkRequest {
    /// The rows' shard.
    pub shard: ShardKey,
    /// The rows.
    pub ids: Vec<i64>,
    /// Now.
    pub parked_at: NaiveDateTime,
    /// Failed attempts, the last one included.
    pub attempts: i32,
    /// When the first of them failed.
    pub first_failure_at: NaiveDateTime,
    /// The last failure's message, bounded.
    pub error: String,
}

/// How many groups and rows a parked table holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParkedCounts {
    /// Keys with parked rows.
    pub groups: u64,
    /// Parked rows.
    pub rows: u64,
}
