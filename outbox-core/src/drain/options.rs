//! How a drain works through the tables: window and batch sizes, and which shards a
//! periodic drain looks for.

use std::ops::Range;
use std::time::Duration;

use crate::backend::OutboxConnection;
use crate::key::shard::OutboxTable;

/// The default lease: longer than any receiver call should take, short enough that a dead
/// worker's shards are free again within seconds (SQLite; see [`DrainOptions::lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The sizes a drain works with. The defaults were chosen by measurement
/// (`bench/results/2026-11-earlier-runs.md`, "The drain's sizes, chosen by measurement");
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
    /// Rows a periodic drain reads, oldest first, to find due shards: at most this many
    /// per claim, and no more than the claim may take shards (`batch_shards`), so that
    /// the rows read are the rows claimed when shards hold one row each. Discovery
    /// ([`Outbox::due_shards`](crate::Outbox::due_shards)) reads as many as shards are
    /// still wanted, up to this.
    pub scan_rows: usize,
    /// How long a batch's lease lives where liveness is told by time (SQLite): a lease
    /// not renewed for this long belongs to a worker that died, and its shards are backed
    /// off and freed. A leased delivery renews it between receiver calls (every third of
    /// it), so it must only outlast the longest single receiver call: a call that runs
    /// longer may lose the lease, and its worker then deletes nothing (the rows are
    /// delivered again). On PostgreSQL and MySQL a lease lives as long as its worker's
    /// session, whatever this says.
    pub lease: Duration,
    /// Where receivers run: inside the drain's write transaction, or under the batch's
    /// lease with no transaction open (see [`Delivery`]).
    pub delivery: Delivery,
}

/// Where a drain calls its receivers.
///
/// * [`Delivery::InTransaction`]: the receivers run inside the transaction that deletes
///   the delivered rows. Their writes on the drain's connection commit with the delete;
///   the transaction (and on SQLite the database's only write lock) is held for as long
///   as they run, and a failing key rolls the transaction back and replays the calls
///   before it.
/// * [`Delivery::Leased`]: the batch's lease is committed, the windows are read, the
///   receivers are called **with no transaction open**, then the delivered rows are
///   deleted and the lease released in one short transaction that first checks the lease
///   is still this worker's (one whose lease was taken over deletes nothing, and says so
///   in [`DrainReport::leases_lost`](crate::DrainReport::leases_lost)). Writers never wait
///   for a receiver, and a failing key costs the other keys of its batch no second call.
///   A receiver whose writes on the drain's connection must commit with the delete says
///   so ([`Receiver::atomic_with_delete`](crate::Receiver::atomic_with_delete), `true`
///   unless it says otherwise): its keys, and the keys after them in their shard, are
///   called inside that short finishing transaction instead, as in-transaction delivery
///   would. No receiver loses the atomicity it had.
/// * [`Delivery::BackendDefault`]: leased on SQLite, where a receiver inside the write
///   transaction would hold every writer; in-transaction on PostgreSQL and MySQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Leased on SQLite, in-transaction on PostgreSQL and MySQL.
    #[default]
    BackendDefault,
    /// Receivers run inside the drain's write transaction.
    InTransaction,
    /// Receivers run under the batch's lease, outside any transaction.
    Leased,
}

impl Delivery {
    /// Whether a drain on `C` delivers under leases.
    pub(crate) fn is_leased<C: OutboxConnection>(self) -> bool {
        match self {
            Delivery::BackendDefault => C::LEASED_DELIVERY_BY_DEFAULT,
            Delivery::InTransaction => false,
            Delivery::Leased => true,
        }
    }
}

impl Default for DrainOptions {
    fn default() -> Self {
        DrainOptions {
            window: 500,
            batch_shards: 400,
            max_batch_rows: 20_000,
            scan_rows: 1_000,
            lease: DEFAULT_LEASE,
            delivery: Delivery::BackendDefault,
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

    /// How often a leased delivery renews its lease: a third of it, so that two renewals
    /// can be late before it expires.
    pub(crate) fn heartbeat(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(100))
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
