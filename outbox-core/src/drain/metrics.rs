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

    /// A key of `category` failed its last allowed attempt and its `rows` were parked
    /// (see [`Exhaustion::Park`](crate::drain::Exhaustion::Park)).
    fn rows_parked(&self, table: OutboxTable, category: i32, rows: u64) {
        let _ = (table, category, rows);
    }

    /// The kill switch deleted `rows` older rows of `category` without delivering them.
    fn rows_skipped(&self, table: OutboxTable, category: i32, rows: u64) {
        let _ = (table, category, rows);
    }

    /// Gauge: `table` holds `rows` rows of `category` (zero once a category empties).
    fn category_depth(&self, table: OutboxTable, category: i32, rows: u64) {
        let _ = (table, category, rows);
    }

    /// Gauge: the deepest shard of `table` holds `rows` rows.
    fn maximum_shard_depth(&self, table: OutboxTable, rows: u64) {
        let _ = (table, rows);
    }

    /// Gauge: the oldest row of `table` still to be delivered has waited `lag` (zero when
    /// nothing is due).
    fn delivery_lag(&self, table: OutboxTable, lag: Duration) {
        let _ = (table, lag);
    }

    /// Gauge: `shards` shards of `table` are failing.
    fn stuck_shards(&self, table: OutboxTable, shards: u64) {
        let _ = (table, shards);
    }

    /// Gauge: `table` has `rows` parked rows.
    fn parked_rows(&self, table: OutboxTable, rows: u64) {
        let _ = (table, rows);
    }
}

/// Records nothing (the default without the `metrics` feature).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {}

#[cfg(feature = "metrics")]
pub use facade::MetricsFacade;

#[cfg(feature = "metrics")]
mod facade {
    use std::collections::HashMap;
    use std::sync::{Arc, PoisonError, RwLock};
    use std::time::Duration;

    use metrics::{counter, gauge, histogram, SharedString};

    use super::Metrics;
    use crate::key::category::CategoryInfo;
    use crate::key::shard::OutboxTable;

    /// Reports through the [`metrics`](https://docs.rs/metrics) crate's facade, to whatever
    /// recorder the application installed (Prometheus, StatsD, ...), with the names of
    /// Sentry's outbox metrics. With the `metrics` feature it is every outbox's default.
    ///
    /// Every metric carries a `table` label (`cell_outboxes`, `control_outboxes`); those
    /// about a category carry a `category` label: the category's name when given with
    /// [`category_names`](Self::category_names), its number otherwise.
    ///
    /// | name | kind | what |
    /// |---|---|---|
    /// | `outbox.saved` | counter | rows inserted by `Outbox::context` |
    /// | `outbox.processed` | counter | rows deleted after their receiver succeeded (coalesced rows included) |
    /// | `outbox.processing_lag` | histogram, seconds | from the delivered row's `date_added` to its delivery |
    /// | `outbox.coalesced_net_queue_time` | histogram, seconds | from a coalesced group's oldest row's `date_added` to its delivery |
    /// | `outbox.delivery_failed` | counter | keys whose delivery failed |
    /// | `outbox.parked` | counter | rows parked after their key's last allowed attempt |
    /// | `outbox.skipped` | counter | older rows the kill switch deleted without delivery |
    /// | `outbox.depth` | gauge | rows per category (from `Outbox::report_status`) |
    /// | `outbox.maximum_shard_depth` | gauge | rows of the deepest shard |
    /// | `outbox.delivery_lag` | gauge, seconds | how long the oldest due row has waited |
    /// | `outbox.stuck_shards` | gauge | failing shards |
    /// | `outbox.parked_rows` | gauge | parked rows |
    ///
    /// ```
    /// # diesel_outbox::outbox_scopes_and_categories! {
    /// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
    /// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: cell } }
    /// # }
    /// # fn main() {
    /// use diesel::SqliteConnection;
    /// use diesel_outbox::drain::MetricsFacade;
    /// use diesel_outbox::{Outbox, Receivers};
    /// let outbox = Outbox::<SqliteConnection>::builder(Receivers::new())
    ///     .metrics(MetricsFacade::new().category_names(Category::ALL))
    ///     .build();
    /// # let _ = outbox;
    /// # }
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct MetricsFacade {
        /// Each category's label, made once: a shared string is cloned without copying.
        labels: Arc<RwLock<HashMap<i32, SharedString>>>,
    }

    impl MetricsFacade {
        /// Categories labelled by number.
        pub fn new() -> Self {
            Self::default()
        }

        /// Labels the categories of `categories` (e.g. `Category::ALL` of your
        /// declaration) by name.
        pub fn category_names(self, categories: &[CategoryInfo]) -> Self {
            {
                let mut labels = self.labels.write().unwrap_or_else(PoisonError::into_inner);
                for category in categories {
                    labels.insert(category.number, SharedString::const_str(category.name));
                }
            }
            self
        }

        fn category(&self, category: i32) -> SharedString {
            let known = self
                .labels
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&category)
                .cloned();
            known.unwrap_or_else(|| {
                let label = SharedString::from_shared(Arc::from(category.to_string()));
                self.labels
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(category)
                    .or_insert(label)
                    .clone()
            })
        }
    }

    impl Metrics for MetricsFacade {
        fn rows_saved(&self, table: OutboxTable, category: i32, rows: u64) {
            counter!("outbox.saved", "table" => table.name(), "category" => self.category(category))
                .increment(rows);
        }

        fn rows_processed(&self, table: OutboxTable, category: i32, rows: u64) {
            counter!("outbox.processed", "table" => table.name(), "category" => self.category(category))
                .increment(rows);
        }

        fn processing_lag(&self, table: OutboxTable, category: i32, lag: Duration) {
            histogram!("outbox.processing_lag", "table" => table.name(), "category" => self.category(category))
                .record(lag.as_secs_f64());
        }

        fn coalesced_queue_time(&self, table: OutboxTable, category: i32, waited: Duration) {
            histogram!("outbox.coalesced_net_queue_time", "table" => table.name(), "category" => self.category(category))
                .record(waited.as_secs_f64());
        }

        fn delivery_failed(&self, table: OutboxTable, category: i32) {
            counter!("outbox.delivery_failed", "table" => table.name(), "category" => self.category(category))
                .increment(1);
        }

        fn rows_parked(&self, table: OutboxTable, category: i32, rows: u64) {
            counter!("outbox.parked", "table" => table.name(), "category" => self.category(category))
                .increment(rows);
        }

        fn rows_skipped(&self, table: OutboxTable, category: i32, rows: u64) {
            counter!("outbox.skipped", "table" => table.name(), "category" => self.category(category))
                .increment(rows);
        }

        fn category_depth(&self, table: OutboxTable, category: i32, rows: u64) {
            gauge!("outbox.depth", "table" => table.name(), "category" => self.category(category))
                .set(rows as f64);
        }

        fn maximum_shard_depth(&self, table: OutboxTable, rows: u64) {
            gauge!("outbox.maximum_shard_depth", "table" => table.name()).set(rows as f64);
        }

        fn delivery_lag(&self, table: OutboxTable, lag: Duration) {
            gauge!("outbox.delivery_lag", "table" => table.name()).set(lag.as_secs_f64());
        }

        fn stuck_shards(&self, table: OutboxTable, shards: u64) {
            gauge!("outbox.stuck_shards", "table" => table.name()).set(shards as f64);
        }

        fn parked_rows(&self, table: OutboxTable, rows: u64) {
            gauge!("outbox.parked_rows", "table" => table.name()).set(rows as f64);
        }
    }
}
