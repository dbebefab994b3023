//! Flush after commit (DESIGN 5.5): a bounded drain of the shards a transaction touched.

use std::collections::HashMap;

use super::claim::reschedule_after_failure;
use super::handle::Shared;
use super::process::{drain_shard, Mode};
use super::report::DrainReport;
use super::shard::{ShardKey, Silo};
use crate::backend::OutboxConnection;
use crate::error::Error;

/// Flushes `shards` for a committed context. Never fails: whatever is not delivered stays
/// for the periodic drain, and the writer's call has already succeeded.
pub(crate) fn flush_after_commit<C: OutboxConnection>(
    outbox: &Shared<C>,
    conn: &mut C,
    shards: &[ShardKey],
) {
    let _span = tracing::debug_span!("outbox.flush", shards = shards.len()).entered();
    if let Err(error) = flush(outbox, conn, shards) {
        tracing::warn!(%error, "outbox flush failed; the periodic drain will deliver the rows");
    }
}

/// Drains each of `shards` up to the newest id of its table at the start, waiting for
/// shards other workers hold. A shard whose group fails is backed off and left.
pub(crate) fn flush<C: OutboxConnection>(
    outbox: &Shared<C>,
    conn: &mut C,
    shards: &[ShardKey],
) -> Result<DrainReport, Error> {
    // Bounded: rows written after the flush started belong to later transactions.
    let mut bounds: HashMap<Silo, Option<i64>> = HashMap::new();
    let mut report = DrainReport::default();
    for shard in shards {
        let silo = shard.silo();
        let bound = match bounds.get(&silo) {
            Some(bound) => *bound,
            None => {
                let bound = conn.outbox_id_bounds(silo)?.map(|(_, hi)| hi);
                bounds.insert(silo, bound);
                bound
            }
        };
        let Some(bound) = bound else { continue };
        let shard_report = drain_shard(outbox, conn, shard, Mode::flush(bound))?;
        if !shard_report.failures.is_empty() {
            reschedule_after_failure(conn, shard, outbox.clock.now())?;
        }
        report.merge(shard_report);
    }
    Ok(report)
}
