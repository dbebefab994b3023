//! Counters and timings, through a small hook the application implements.

use std::time::Duration;

use crate::key::shard::OutboxTable;

/// Receives the outbox's counters and timings; every method has a no-op default, so an
/// implementation overrides only what it records (e.g. forwarding to the `metrics` crate
/// or Prometheus). Calls happen on the writing or draining thread: keep them cheap.
///
/// `category` is the stored category number; map it to a name with your declaration's
/// `Category::info`.
pub trait Metrics: Send + Sync + 'static {
    /// `rows` outbox rows of `category` were inserted by an [`Outbox::context`](crate::Outbox::context).
    fn rows_saved(&self, table: OutboxTable, category: i32, rows: u64) {
        let _ = (table, category, rows);
    }

    /// A receiver succeeded and `rows` coalesced rows of `category` were deleted.
    fn rows_processed(&self, table: OutboxTable, category: i32, rows: u64) {
        let _ = (table, category, rows);
    }

    /// The time from the delivered (newest) row's `date_added` to its delivery.
    fn processing_lag(&self, table: OutboxTable, category: i32, lag: Duration) {
        let _ = (table, category, lag);
    }

    /// The time from the oldest row of a coalesced group's `date_added` to the group's
    /// delivery: how long the change waited in the queue.
    fn coalesced_queue_time(&self, table: OutboxTable, category: i32, waited: Duration) {
        let _ = (table, category, waited);
    }

    /// A group of `category` could not be delivered (no receiver, receiver error or panic).
    fn delivery_failed(&self, table: OutboxTable, category: i32) {
        let _ = (table, category);
    }

    /// The kill switch deleted `rows` older rows of `category` without delivering them.
    fn rows_skipped(&self, table: OutboxTable, category: i32, rows: u64) {
        let _ = (table, category, rows);
    }
}

/// Records nothing (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {}
