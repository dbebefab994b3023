//! Batches that dead workers left behind: their leases, found and turned into backoffs.

use super::backoff::shard_failure;
use super::report::DrainReport;
use super::Drainer;
use crate::backend::OutboxConnection;
use crate::key::error::Error;
use crate::key::shard::OutboxTable;
use crate::key::token::Token;

/// Backs off the shards of batches whose worker died while delivering them (a receiver
/// that aborted its process, say): each is then delivered alone until it succeeds, so a
/// receiver that kills its process stops only its own shard.
pub(crate) fn recover_abandoned<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    report: &mut DrainReport,
) -> Result<(), Error> {
    let now = drainer.clock.now();
    let leases = conn.abandoned_leases(Token::new(), table, now)?;
    if leases.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = leases.iter().map(|lease| lease.id).collect();
    let recovered = conn.drain_transaction(Token::new(), |conn| {
        let mut recovered = 0;
        for lease in &leases {
            // Deleting it tells whether it is still there: only one worker recovers it.
            if !conn.forget_lease(Token::new(), lease.id)? {
                continue;
            }
            recovered += 1;
            let Some(shards) = &lease.shards else {
                tracing::error!(
                    lease = lease.id,
                    "an abandoned lease's shard list cannot be read; its shards are not backed off"
                );
                continue;
            };
            let states = conn.load_shard_states(Token::new(), table, Some(shards))?;
            let mut failures = Vec::new();
            for shard in shards {
                let previous = states.iter().find(|state| &state.shard == shard);
                let covered_id = conn.shard_max_id(Token::new(), shard)?.unwrap_or(0);
                let message = format!(
                    "a drain worker stopped while delivering this shard's batch (lease {}): \
                     a receiver may have aborted its process; the shard is delivered alone \
                     until it succeeds",
                    lease.id
                );
                failures.push(shard_failure(
                    shard, previous, now, covered_id, true, None, &message,
                ));
            }
            conn.record_failures(Token::new(), table, &failures)?;
            tracing::warn!(
                lease = lease.id,
                shards = shards.len(),
                "recovered a batch a dead worker left behind: its shards back off"
            );
        }
        Ok::<_, diesel::result::Error>(recovered)
    });
    let released = conn.release_leases(Token::new(), &ids);
    report.abandoned_batches += recovered?;
    released?;
    Ok(())
}
