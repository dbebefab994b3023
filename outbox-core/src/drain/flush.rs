//! Flush after commit: a bounded drain of the shards a transaction touched.

use std::collections::BTreeMap;

use super::batch;
use super::report::DrainReport;
use super::Drainer;
use crate::backend::guard;
use crate::backend::OutboxConnection;
use crate::key::error::Error;
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;

/// Flushes `shards` for a committed context. Never fails: whatever is not delivered stays
/// for the periodic drain, and the writer's call has already succeeded.
pub(crate) fn flush_after_commit<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    shards: &[ShardKey],
) {
    let _span = tracing::debug_span!("outbox.flush", shards = shards.len()).entered();
    match flush(drainer, conn, shards) {
        Ok(report) if !report.failures.is_empty() => {
            tracing::debug!(
                failures = report.failures.len(),
                "outbox flush: shards backed off"
            );
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "outbox flush failed; the periodic drain will deliver the rows");
        }
    }
}

/// Drains `shards`, each up to its newest row when the flush starts. A shard another
/// worker holds is left to it (its holder goes on until the shard is empty), and a
/// failing or skipped shard is left to the periodic drain: the flush never waits, and
/// never runs a failing receiver again on a writer's thread.
pub(crate) fn flush<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    shards: &[ShardKey],
) -> Result<DrainReport, Error> {
    guard::as_library(conn, |conn| flush_shards(drainer, conn, shards))
}

fn flush_shards<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    shards: &[ShardKey],
) -> Result<DrainReport, Error> {
    let mut by_table: BTreeMap<OutboxTable, Vec<ShardKey>> = BTreeMap::new();
    for shard in shards {
        by_table
            .entry(shard.table())
            .or_default()
            .push(shard.clone());
    }
    let mut report = DrainReport::default();
    for (table, shards) in by_table {
        for chunk in shards.chunks(drainer.options.batch_shards.max(1)) {
            let now = drainer.clock.now();
            let lease = drainer.options.lease_seconds();
            let claim = conn.claim_flush_shards(Token::new(), table, chunk, now, lease)?;
            batch::run(drainer, conn, claim, &mut report)?;
        }
    }
    Ok(report)
}
