//! The periodic drain: one call of `drain_due_shards`.
//!
//! Per table: shards that must be delivered alone, then batches of due shards, each found
//! and claimed with one statement from the oldest rows and the due schedules, until
//! nothing due can be claimed or the call's limit is reached. After each claim, the
//! leases that dead workers left behind are found and their shards backed off (to be
//! delivered alone), and given back if the claim took them.

use super::batch;
use super::options::DueShards;
use super::recover::without_abandoned;
use super::report::DrainReport;
use super::Drainer;
use crate::backend::claim::DueScan;
use crate::backend::guard;
use crate::backend::OutboxConnection;
use crate::key::error::Error;
use crate::key::shard::OutboxTable;
use crate::key::token::Token;

/// Scans in a row that find nothing to claim before a call gives up for now: bounds a
/// call's work when the oldest rows all wait (backing off, or skipped). The next call
/// goes on from where this one stopped.
const EMPTY_SCANS_PER_CALL: usize = 16;

/// How a call treats schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedules {
    /// Due shards only (the periodic drain).
    Honour,
    /// Every shard with rows, up to the highest id at the start (the test helper's
    /// round): backoff and schedules are ignored, and rows written meanwhile wait for the
    /// next round.
    IgnoreUpTo(i64),
}

/// Drains the due shards of `due`'s tables: the library's statements, but for the
/// receivers'.
pub(crate) fn drain_due<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    due: &DueShards,
    schedules: Schedules,
) -> Result<DrainReport, Error> {
    guard::as_library(conn, |conn| {
        let mut report = DrainReport::default();
        for &table in &due.tables {
            drain_table(drainer, conn, table, due, schedules, &mut report)?;
        }
        Ok(report)
    })
}

fn drain_table<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    due: &DueShards,
    schedules: Schedules,
    report: &mut DrainReport,
) -> Result<(), Error> {
    let _span = tracing::debug_span!("outbox.drain", table = %table).entered();
    let mut claimed = 0;
    if schedules == Schedules::Honour {
        // Rows no claim could find (a schedule that cannot be read) fail their shards.
        if let Err(error) = super::unreadable::record(drainer, conn, table, report) {
            if error.is_connection_lost() {
                return Err(error);
            }
            tracing::warn!(%error, %table, "the scan for unreadable rows failed; the round goes on");
        }
        while claimed < due.limit {
            let now = drainer.clock.now();
            let lease = drainer.options.lease_seconds();
            let claim = conn.claim_isolated_shard(Token::new(), table, now, lease)?;
            let claim = without_abandoned(drainer, conn, claim, report)?;
            if claim.shards.is_empty() {
                report.shards_not_claimed += claim.busy;
                break;
            }
            claimed += claim.shards.len();
            batch::run(drainer, conn, claim, report)?;
        }
    }
    let range = due.id_range.clone().unwrap_or(0..i64::MAX);
    let end = match schedules {
        Schedules::Honour => range.end,
        Schedules::IgnoreUpTo(top) => range.end.min(top.saturating_add(1)),
    };
    // A partition's scan starts at its own range; the shared cursor is for whole tables.
    let shared_cursor = due.id_range.is_none() && schedules == Schedules::Honour;
    let mut cursor = if shared_cursor {
        drainer.cursor(table).max(range.start)
    } else {
        range.start
    };
    let mut empty_scans = 0;
    while claimed < due.limit && empty_scans < EMPTY_SCANS_PER_CALL {
        let max_shards = drainer.options.batch_shards.min(due.limit - claimed).max(1);
        // A claim reads no more rows than a batch may claim shards: where shards hold one
        // row each (a drain that keeps up) every row read is claimed, and reading more
        // only to leave them to the next claim costs every claim (BENCHMARKS.md).
        let scan = DueScan {
            from_id: cursor,
            to_id: end,
            scan_rows: i64::try_from(
                drainer
                    .options
                    .scan_rows
                    .min(drainer.options.batch_shards)
                    .max(1),
            )
            .unwrap_or(i64::MAX),
            max_shards: i64::try_from(max_shards).unwrap_or(i64::MAX),
            ignore_schedule: schedules != Schedules::Honour,
            lease_seconds: drainer.options.lease_seconds(),
        };
        let claim = conn.claim_due_shards(Token::new(), table, &scan, drainer.clock.now())?;
        let claim = without_abandoned(drainer, conn, claim, report)?;
        let reached_end = claim.scanned_rows < scan.scan_rows;
        if claim.shards.is_empty() {
            report.shards_not_claimed += claim.busy;
            match claim.last_scanned_id {
                // Every row read waits or belongs to a busy shard: look further on.
                Some(last) if !reached_end => {
                    cursor = last.saturating_add(1);
                    empty_scans += 1;
                    continue;
                }
                _ => {
                    cursor = range.start;
                    break;
                }
            }
        }
        claimed += claim.shards.len();
        // The claimed rows are read again next time round (they are gone once delivered).
        batch::run(drainer, conn, claim, report)?;
        // Ignoring schedules, a failed shard would be claimed again at once: the test
        // helper's round ends at its first failure instead.
        if schedules != Schedules::Honour && !report.failures.is_empty() {
            break;
        }
    }
    if shared_cursor {
        drainer.set_cursor(table, cursor);
    }
    Ok(())
}
