//! What an operator reads and does: how deep the outboxes are and how late, which shards
//! are stuck and why, the parked groups and what to do with them.
//!
//! Every read here is one statement per table; the depths count rows, so they read the
//! whole table (as Sentry's `get_shard_depths_descending` does): for a status page or a
//! metrics tick, not for every request.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::Outbox;
use crate::backend::claim::LeaseInfo;
use crate::backend::guard;
use crate::backend::inspect::{CategoryDepth, OldestRow, ShardDepth};
use crate::backend::parked::{ParkedCounts, ParkedGroup, ParkedKey};
use crate::backend::state::ShardState;
use crate::backend::OutboxConnection;
use crate::key::error::Result;
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;

/// One outbox table at a glance: what `diesel-outbox status` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableStatus {
    /// The table.
    pub table: OutboxTable,
    /// Its rows, every one (coalescing not counted).
    pub rows: u64,
    /// Its rows per category, by category number.
    pub by_category: Vec<CategoryDepth>,
    /// The oldest row still to be delivered (due, not kept by a kill switch).
    pub oldest_due: Option<OldestRow>,
    /// How long that row has waited: the delivery lag. Zero when nothing is due.
    pub lag: Duration,
    /// The deepest shard.
    pub deepest_shard: Option<ShardDepth>,
    /// Shards failing now (attempts since their last success), skipped ones aside.
    pub stuck_shards: u64,
    /// Shards the kill switch skips.
    pub skipped_shards: u64,
    /// Parked groups and rows.
    pub parked: ParkedCounts,
    /// Rows whose schedule cannot be read, among the oldest the drain scans
    /// ([`DrainOptions::scan_rows`](crate::drain::DrainOptions::scan_rows)): no claim
    /// finds them due. A drain round records each as its shard's failure (see
    /// [`Outbox::stuck_shards`]); repair or discard them ([`Outbox::repair_row`],
    /// [`Outbox::discard_row`]).
    pub unreadable_rows: u64,
    /// Batches being delivered now: their leases (see [`Outbox::leases`]).
    pub leases: u64,
    /// Of them, leases whose worker is gone: the next drain recovers them.
    pub dead_leases: u64,
}

/// The (table, category) pairs whose depth was last reported, so that a category that
/// emptied is reported as zero once rather than left at its last depth.
#[derive(Debug, Default)]
pub(crate) struct ReportedDepths(Mutex<BTreeSet<(OutboxTable, i32)>>);

impl<C: OutboxConnection> Outbox<C> {
    /// Both tables at a glance: depth by category, lag, the deepest shard, stuck, skipped
    /// and parked counts.
    pub fn status(&self, conn: &mut C) -> Result<Vec<TableStatus>> {
        OutboxTable::ALL
            .into_iter()
            .map(|table| self.table_status(conn, table))
            .collect()
    }

    /// One table at a glance (see [`TableStatus`]).
    pub fn table_status(&self, conn: &mut C, table: OutboxTable) -> Result<TableStatus> {
        let by_category = self.category_depths(conn, table)?;
        let oldest_due = self.oldest_due_row(conn, table)?;
        let now = self.clock().now();
        let lag = oldest_due
            .and_then(|row| (now - row.date_added).to_std().ok())
            .unwrap_or_default();
        let states = self.shard_states(conn, table)?;
        let leases = self.leases(conn, table)?;
        Ok(TableStatus {
            table,
            rows: by_category.iter().map(|depth| depth.rows).sum(),
            by_category,
            oldest_due,
            lag,
            deepest_shard: self.shard_depths(conn, table, 1)?.into_iter().next(),
            stuck_shards: states.iter().filter(|state| is_stuck(state)).count() as u64,
            skipped_shards: states.iter().filter(|state| state.skipped).count() as u64,
            parked: guard::as_library(conn, |conn| conn.parked_counts(Token::new(), table))?,
            unreadable_rows: crate::drain::unreadable::find(self.drainer(), conn, table)?.len()
                as u64,
            leases: leases.len() as u64,
            dead_leases: leases.iter().filter(|lease| !lease.live).count() as u64,
        })
    }

    /// Makes row `id` of `table` readable and due now: those of its schedule and date
    /// added that cannot be decoded become now (its payload and keys are kept). For a row
    /// that [`TableStatus::unreadable_rows`] counts. Whether the row exists.
    pub fn repair_row(&self, conn: &mut C, table: OutboxTable, id: i64) -> Result<bool> {
        let now = self.clock().now();
        Ok(guard::as_library(conn, |conn| {
            conn.repair_row(Token::new(), table, id, now)
        })?)
    }

    /// Deletes row `id` of `table` without delivering it: an operator's decision, for a
    /// row that cannot be read or contradicts the declaration. Whether it existed.
    pub fn discard_row(&self, conn: &mut C, table: OutboxTable, id: i64) -> Result<bool> {
        Ok(guard::as_library(conn, |conn| {
            conn.discard_row(Token::new(), table, id)
        })?)
    }

    /// The leases of `table`, oldest first: the batches being delivered now, each with its
    /// shards, holder, when it was taken and when it expires, and whether its worker is
    /// alive. A dead worker's lease stays until the next drain recovers it (within one
    /// lease on SQLite, at once elsewhere).
    pub fn leases(&self, conn: &mut C, table: OutboxTable) -> Result<Vec<LeaseInfo>> {
        let now = self.clock().now();
        Ok(conn.leases(Token::new(), table, now)?)
    }

    /// The deepest shards of `table`, deepest first, at most `limit` (Sentry's
    /// `get_shard_depths_descending`).
    pub fn shard_depths(
        &self,
        conn: &mut C,
        table: OutboxTable,
        limit: usize,
    ) -> Result<Vec<ShardDepth>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let depths = guard::as_library(conn, |conn| conn.shard_depths(Token::new(), table, limit));
        Ok(depths?)
    }

    /// The rows of `table` per category, by category number.
    pub fn category_depths(&self, conn: &mut C, table: OutboxTable) -> Result<Vec<CategoryDepth>> {
        let depths = guard::as_library(conn, |conn| conn.category_depths(Token::new(), table));
        Ok(depths?)
    }

    /// The oldest row of `table` still to be delivered: due now (by the outbox's clock)
    /// and not kept by a kill switch. Rows of a shard that is backing off count: they are
    /// late.
    pub fn oldest_due_row(&self, conn: &mut C, table: OutboxTable) -> Result<Option<OldestRow>> {
        let now = self.clock().now();
        let oldest = guard::as_library(conn, |conn| conn.oldest_due_row(Token::new(), table, now));
        Ok(oldest?)
    }

    /// The shards of `table` that are failing now, most attempts first, each with its
    /// attempts, first and last failure time, last error and failing row. Skipped shards
    /// are not listed (see [`Outbox::shard_states`]).
    pub fn stuck_shards(&self, conn: &mut C, table: OutboxTable) -> Result<Vec<ShardState>> {
        let states = self.shard_states(conn, table)?;
        Ok(states.into_iter().filter(is_stuck).collect())
    }

    /// The parked groups of `table`, oldest first, at most `limit`: each key with its rows,
    /// the error and the attempts that parked it.
    pub fn parked(
        &self,
        conn: &mut C,
        table: OutboxTable,
        limit: usize,
    ) -> Result<Vec<ParkedGroup>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let parked = guard::as_library(conn, |conn| conn.load_parked(Token::new(), table, limit));
        Ok(parked?)
    }

    /// Returns a parked group's rows to the outbox, with their ids: they are due at once
    /// (unless their shard is backing off or skipped), delivered before the shard's later
    /// keys, and coalesced into a newer row of their key if one is waiting. A retried
    /// group never overwrites a newer state of its key: a drain that delivers a newer row
    /// of a parked key discards the parked group then
    /// ([`DrainReport::parked_superseded`](crate::DrainReport::parked_superseded)), so
    /// there is nothing left to retry. How many rows returned (0 when nothing of the key
    /// is parked). On PostgreSQL listening
    /// workers are woken.
    pub fn retry_parked(&self, conn: &mut C, key: &ParkedKey) -> Result<usize> {
        restore(conn, key.table(), Some(key))
    }

    /// Returns every parked row of `table` to the outbox (see
    /// [`retry_parked`](Self::retry_parked)).
    pub fn retry_all_parked(&self, conn: &mut C, table: OutboxTable) -> Result<usize> {
        restore(conn, table, None)
    }

    /// Deletes a parked group's rows without delivering them: an operator's decision, for
    /// a change that must never be delivered. How many rows were deleted.
    pub fn discard_parked(&self, conn: &mut C, key: &ParkedKey) -> Result<usize> {
        let discarded = guard::as_library(conn, |conn| {
            conn.discard_parked(Token::new(), key.table(), Some(key))
        })?;
        tracing::warn!(key = %key, rows = discarded, "parked outbox rows discarded by an operator");
        Ok(discarded)
    }

    /// Deletes every parked row of `table` without delivering it (see
    /// [`discard_parked`](Self::discard_parked)).
    pub fn discard_all_parked(&self, conn: &mut C, table: OutboxTable) -> Result<usize> {
        let discarded =
            guard::as_library(conn, |conn| conn.discard_parked(Token::new(), table, None))?;
        tracing::warn!(%table, rows = discarded, "every parked outbox row discarded by an operator");
        Ok(discarded)
    }

    /// Clears a failing shard's backoff: it is due now, and a further failure backs off
    /// from the shortest delay again. Its attempts and last error are kept until it
    /// succeeds (so an exhaustion policy still counts them). Whether the shard had a
    /// stored state; a healthy shard has none and is due anyway.
    pub fn retry_shard_now(&self, conn: &mut C, shard: &ShardKey) -> Result<bool> {
        let now = self.clock().now();
        let found = guard::as_library(conn, |conn| {
            conn.drain_transaction(Token::new(), |conn| {
                let found = conn.retry_shard_now(Token::new(), shard, now)?;
                if found {
                    conn.notify_rows_written(Token::new())?;
                }
                Ok::<_, diesel::result::Error>(found)
            })
        });
        Ok(found?)
    }

    /// Reads [`status`](Self::status) and reports it to the outbox's metrics as gauges:
    /// depth per category, the deepest shard, the delivery lag, stuck shards and parked
    /// rows. A worker does this on its own (see `WorkerOptions::report_every`).
    pub fn report_status(&self, conn: &mut C) -> Result<Vec<TableStatus>> {
        let status = self.status(conn)?;
        let metrics = &self.drainer().metrics;
        let mut reported = self
            .shared
            .reported
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut now_reported = BTreeSet::new();
        for table in &status {
            for depth in &table.by_category {
                metrics.category_depth(table.table, depth.category, depth.rows);
                now_reported.insert((table.table, depth.category));
            }
            let deepest = table.deepest_shard.as_ref().map_or(0, |shard| shard.rows);
            metrics.maximum_shard_depth(table.table, deepest);
            metrics.delivery_lag(table.table, table.lag);
            metrics.stuck_shards(table.table, table.stuck_shards);
            metrics.parked_rows(table.table, table.parked.rows);
        }
        for &(table, category) in reported.difference(&now_reported) {
            metrics.category_depth(table, category, 0);
        }
        *reported = now_reported;
        Ok(status)
    }
}

/// Whether a stored state is a failing shard (rather than only skipped).
fn is_stuck(state: &ShardState) -> bool {
    state.attempts > 0 && !state.skipped
}

/// Moves parked rows back, and wakes listening workers in the same transaction.
fn restore<C: OutboxConnection>(
    conn: &mut C,
    table: OutboxTable,
    key: Option<&ParkedKey>,
) -> Result<usize> {
    let restored = guard::as_library(conn, |conn| {
        conn.drain_transaction(Token::new(), |conn| {
            let restored = conn.restore_parked(Token::new(), table, key)?;
            if restored > 0 {
                conn.notify_rows_written(Token::new())?;
            }
            Ok::<_, diesel::result::Error>(restored)
        })
    })?;
    match key {
        Some(key) => {
            tracing::info!(key = %key, rows = restored, "parked outbox rows returned to the outbox")
        }
        None => {
            tracing::info!(%table, rows = restored, "every parked outbox row returned to the outbox")
        }
    }
    Ok(restored)
}
