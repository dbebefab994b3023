//! Rows no drain could find or read: a schedule that cannot be decoded sorts after every
//! "now", so no claim finds the row due, and nothing would ever say so. A periodic round
//! (its first, then at most one every [`SCAN_INTERVAL`] per table and outbox handle: the
//! scan decodes the schedules of up to `scan_rows` rows) and each `status` scan the
//! oldest rows for them, boundedly, and turn each
//! into its shard's failure: named with table, shard and row in `stuck`, counted in
//! `status`, retried on the shard's backoff (and parked by the category's policy), until
//! an operator repairs or discards it.

use std::collections::HashSet;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::backoff::shard_failure;
use super::report::DrainReport;
use super::Drainer;
use crate::backend::claim::RowIdentity;
use crate::backend::OutboxConnection;
use crate::key::error::{DeliveryFailure, Error, FailureCause};
use crate::key::shard::OutboxTable;
use crate::key::token::Token;

/// What an operator reads about such a row.
pub(crate) const UNREADABLE_SCHEDULE: &str =
    "its schedule (scheduled_for, scheduled_from or date_added) cannot be read, so no drain \
     can find it due: repair it (`diesel-outbox repair-row`: the unreadable times become now) \
     or discard it (`diesel-outbox discard-row`)";

/// The oldest rows of `table` a scan reads for unreadable schedules (the drain's
/// `scan_rows`): a row that is never due stays among the oldest, so a bounded scan finds
/// it once the rows before it are delivered.
pub(crate) fn find<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
) -> Result<Vec<RowIdentity>, Error> {
    let scan = i64::try_from(drainer.options.scan_rows.max(1)).unwrap_or(i64::MAX);
    Ok(conn.unreadable_rows(Token::new(), table, scan)?)
}

/// How often a periodic round scans a table for unreadable rows, at most.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(10);

/// Whether this round scans `table`: its first, then one every [`SCAN_INTERVAL`].
fn scan_due<C>(drainer: &Drainer<C>, table: OutboxTable) -> bool {
    let mut last = drainer.unreadable_scans[table as usize]
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if last.is_some_and(|at| at.elapsed() < SCAN_INTERVAL) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// Records the unreadable rows of `table` (see the module docs) as their shards'
/// failures, once per row: a shard already failing at that row keeps its backoff.
pub(crate) fn record<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    report: &mut DrainReport,
) -> Result<(), Error> {
    if !scan_due(drainer, table) {
        return Ok(());
    }
    let rows = find(drainer, conn, table)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    let first_per_shard: Vec<RowIdentity> = rows
        .into_iter()
        .filter(|row| seen.insert(row.shard.clone()))
        .collect();
    let shards: Vec<_> = first_per_shard
        .iter()
        .map(|row| row.shard.clone())
        .collect();
    let now = drainer.clock.now();
    let recorded = conn.drain_transaction(Token::new(), |conn| {
        let states = conn.load_shard_states(Token::new(), table, Some(&shards))?;
        let mut records = Vec::new();
        let mut failures = Vec::new();
        for row in &first_per_shard {
            let previous = states.iter().find(|state| state.shard == row.shard);
            if previous.is_some_and(|state| state.failed_row_id == Some(row.id)) {
                continue;
            }
            let failure = DeliveryFailure {
                shard: row.shard.clone(),
                category: row.category,
                category_name: drainer
                    .receivers
                    .get(table, row.category)
                    .map(|registered| registered.category_name),
                object_identifier: row.object_identifier,
                row_id: row.id,
                cause: FailureCause::UnreadableRow(UNREADABLE_SCHEDULE.to_owned()),
            };
            let covered_id = conn
                .shard_max_id(Token::new(), &row.shard)?
                .unwrap_or(row.id);
            let isolated = previous.is_some_and(|state| state.isolated);
            let message = failure.to_string();
            records.push(shard_failure(
                &row.shard,
                previous,
                now,
                covered_id,
                isolated,
                Some(&failure),
                &message,
            ));
            failures.push(failure);
        }
        if !records.is_empty() {
            conn.record_failures(Token::new(), table, &records)?;
        }
        Ok::<_, diesel::result::Error>(failures)
    })?;
    for failure in recorded {
        tracing::warn!(
            shard = %failure.shard,
            row = failure.row_id,
            error = %failure,
            "an outbox row cannot be read: its shard fails until it is repaired or discarded"
        );
        drainer.metrics.delivery_failed(table, failure.category);
        report.unreadable_rows += 1;
        report.failures.push(failure);
    }
    Ok(())
}
