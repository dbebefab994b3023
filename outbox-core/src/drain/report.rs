//! What a drain did: delivered keys, skipped keys, failures with their cause.

use crate::key::error::{DeliveryFailure, Error, Result};

/// The outcome of a drain. Receiver failures are reported here, not as an `Err`: one
/// failing shard never stops the others. [`DrainReport::into_result`] turns failures into
/// an error when the caller wants one.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DrainReport {
    /// Shards claimed (a shard drained in several batches counts once per batch).
    pub shards: usize,
    /// Due shards another worker held: left to it.
    pub shards_not_claimed: usize,
    /// Coalesced keys delivered.
    pub delivered: usize,
    /// Rows deleted: delivered rows, the older rows coalesced into them, and the older
    /// rows the kill switch removed.
    pub rows_deleted: usize,
    /// Keys of kill-switched shards whose older rows were deleted without delivery (the
    /// newest row of each stays).
    pub skipped: usize,
    /// Batches left behind by a worker that died, whose shards were backed off.
    pub abandoned_batches: usize,
    /// Leased batches whose lease another drain took over while their receivers ran (it
    /// found the lease expired): nothing of them was deleted, and their rows are
    /// delivered again.
    pub leases_lost: usize,
    /// Rows found unreadable by the round's scan (a schedule that cannot be decoded: no
    /// claim would ever find them due) and recorded as their shards' failures (their
    /// failures are in `failures` too).
    pub unreadable_rows: usize,
    /// Keys whose attempts were exhausted and whose rows were parked (their failures are
    /// in `failures` too).
    pub parked: usize,
    /// Parked groups discarded because this drain delivered a newer row of their key: a
    /// retry would have brought back the older state (see
    /// [`Outbox::retry_parked`](crate::Outbox::retry_parked)).
    pub parked_superseded: usize,
    /// Keys that could not be delivered, one per failing shard.
    pub failures: Vec<DeliveryFailure>,
}

impl DrainReport {
    /// Adds `other`'s counts and failures to this report.
    pub fn merge(&mut self, other: DrainReport) {
        self.shards += other.shards;
        self.shards_not_claimed += other.shards_not_claimed;
        self.delivered += other.delivered;
        self.rows_deleted += other.rows_deleted;
        self.skipped += other.skipped;
        self.abandoned_batches += other.abandoned_batches;
        self.parked += other.parked;
        self.leases_lost += other.leases_lost;
        self.unreadable_rows += other.unreadable_rows;
        self.parked_superseded += other.parked_superseded;
        self.failures.extend(other.failures);
    }

    /// Whether the drain delivered, skipped or parked anything.
    pub fn did_work(&self) -> bool {
        self.delivered > 0 || self.skipped > 0 || self.parked > 0
    }

    /// `Ok(self)` without failures, otherwise [`Error::Undelivered`].
    pub fn into_result(self) -> Result<Self> {
        if self.failures.is_empty() {
            Ok(self)
        } else {
            Err(Error::Undelivered(self.failures))
        }
    }
}
