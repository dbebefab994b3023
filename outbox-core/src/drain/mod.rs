//! The drain: finding due shards, claiming them, delivering their windows to the
//! receivers, backoff, flush after commit, the kill switch.
//!
//! In the runtime this is layer 6: it uses the layers below it, never the `Outbox` handle
//! and worker above. The public items are re-exported here; the `Outbox` methods are the
//! way in.
//!
//! * `options`: window and batch sizes, and which shards a periodic drain looks for;
//! * `round`: the periodic drain: leases left by dead workers, then batches of due
//!   shards;
//! * `flush`: the bounded drain of the shards a transaction touched;
//! * `recover`: batches that dead workers left behind;
//! * `batch`: one claimed batch, from its windows to its commit and release;
//! * `plan`: windows grouped into keys, and the order of receiver calls;
//! * `deliver`: one receiver call, its panics and failures;
//! * `backoff`: the backoff rule and what a failure stores;
//! * `exhaustion`: retry forever, or park a key whose attempts are exhausted;
//! * `unreadable`: rows whose schedule cannot be read, found by a bounded scan;
//! * `report`, `metrics`: what a drain tells its caller and the application.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::deliver::receiver::Receivers;
use crate::key::clock::Clock;
use crate::key::shard::OutboxTable;

pub(crate) mod backoff;
pub(crate) mod batch;
pub(crate) mod deliver;
pub(crate) mod exhaustion;
pub(crate) mod flush;
pub(crate) mod metrics;
pub(crate) mod options;
pub(crate) mod plan;
pub(crate) mod recover;
pub(crate) mod report;
pub(crate) mod round;
pub(crate) mod unreadable;

pub use crate::backend::state::{ShardState, MAX_ERROR_LEN};
pub use crate::key::error::{DeliveryFailure, FailureCause};
pub use backoff::MAX_BACKOFF;
pub use exhaustion::Exhaustion;
#[cfg(feature = "metrics")]
pub use metrics::MetricsFacade;
pub use metrics::{Metrics, NoMetrics};
pub use options::{Delivery, DrainOptions, DueShards, DEFAULT_LEASE};
pub use report::DrainReport;

/// What every drain of one outbox shares: receivers, clock, metrics, sizes, and where the
/// periodic drain's next scan of each table starts.
pub(crate) struct Drainer<C> {
    pub(crate) receivers: Receivers<C>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<dyn Metrics>,
    pub(crate) options: DrainOptions,
    pub(crate) exhaustion: exhaustion::Policies,
    cursors: [AtomicI64; 2],
    /// When each table was last scanned for unreadable rows (see `unreadable`).
    pub(crate) unreadable_scans: [std::sync::Mutex<Option<std::time::Instant>>; 2],
}

impl<C> Drainer<C> {
    pub(crate) fn new(
        receivers: Receivers<C>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn Metrics>,
        options: DrainOptions,
        exhaustion: exhaustion::Policies,
    ) -> Self {
        Drainer {
            receivers,
            clock,
            metrics,
            options,
            exhaustion,
            cursors: [AtomicI64::new(0), AtomicI64::new(0)],
            unreadable_scans: Default::default(),
        }
    }

    /// Where the next scan of `table` starts: past rows that were found covered (backing
    /// off, or kept by the kill switch). A hint shared by threads; reset whenever a scan
    /// reaches the table's end, so a row committed late with a lower id is found again.
    pub(crate) fn cursor(&self, table: OutboxTable) -> i64 {
        self.cursors[table as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn set_cursor(&self, table: OutboxTable, id: i64) {
        self.cursors[table as usize].store(id, Ordering::Relaxed);
    }
}
