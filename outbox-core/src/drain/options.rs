//! How a drain works through the tables: window and batch sizes, and which shards a
//! periodic drain looks for.

use std::ops::Range;
use std::time::Duration;

use crate::key::shard::OutboxTable;

/// The sizes a drain works with. The defaults were chosen by measurement (BENCHMARKS.md);
/// set them with the [`OutboxBuilder`](crate::OutboxBuilder).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainOptions {
    /// Rows of one shard read per batch (its *window*): coalesced into keys, delivered,
    /// deleted with one statement.
    pub window: usize,
    /// Shards claimed and delivered per batch, in one transaction. On PostgreSQL each
    /// holds an advisory lock in the server's shared lock table
    /// (`max_locks_per_transaction × max_connections`, 6,400 by default): the workers'
    /// batches together must fit in it.
    pub batch_shards: usize,
    /// Rows of windows a batch holds at most: its memory. Shards are read in order until
    /// the batch has them; a shard the cap leaves out stays due for the next batch.
    pub max_batch_rows: usize,
    /// Rows a periodic drain reads, oldest first, to find due shards.
    pub scan_rows: usize,
    /// How long a batch's lease lives where liveness is told by time (SQLite): a lease
    /// older than this with its batch undelivered belongs to a worker that died, and its
    /// shards are backed off. Keep it above the longest batch.
    pub lease: Duration,
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            window: 500,
            batch_shards: 400,
            max_batch_rows: 20_000,
            scan_rows: 1_000,
            lease: Duration::from_secs(300),
        }
    }
}

impl DrainOptions {
    /// The lease's lifetime in whole seconds, at least one.
    pub(crate) fn lease_seconds(&self) -> i64 {
        i64::try_from(self.lease.as_secs())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// Which due shards a call of the periodic drain looks for: the tables, how many shards at
/// most, and an optional id range.
///
/// ```
/// use diesel_outbox::{DueShards, OutboxTable};
/// let second_half = DueShards::new().table(OutboxTable::Cell).id_range(5_000..10_000).limit(50);
/// # let _ = second_half;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueShards {
    pub(crate) tables: Vec<OutboxTable>,
    pub(crate) limit: usize,
    pub(crate) id_range: Option<Range<i64>>,
}

impl DueShards {
    /// Both tables, up to 10,000 shards each, every id.
    pub fn new() -> Self {
        DueShards {
            tables: OutboxTable::ALL.to_vec(),
            limit: 10_000,
            id_range: None,
        }
    }

    /// Only `table`.
    pub fn table(mut self, table: OutboxTable) -> Self {
        self.tables = vec![table];
        self
    }

    /// At most `limit` shard claims per table (a shard drained in several batches counts
    /// each time): one call's work is bounded even while writers keep writing.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Only shards with a due row whose id is in `range` (see
    /// [`Outbox::partition_ids`](crate::Outbox::partition_ids)). A shard with rows in two
    /// ranges is found by both schedulers; claiming keeps it to one worker at a time.
    pub fn id_range(mut self, range: Range<i64>) -> Self {
        self.id_range = Some(range);
        self
    }
}

impl Default for DueShards {
    fn default() -> Self {
        Self::new()
    }
}
