//! [`Outbox`]: the handle that holds receivers, clock, metrics and kill switch, and runs
//! contexts that flush after commit and the drains.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use super::claim::{self, Claim};
use super::discovery::{self, DueShards};
use super::flush;
use super::process::{drain_shard, Mode};
use super::report::DrainReport;
use super::shard::{ShardKey, Silo};
use crate::backend::OutboxConnection;
use crate::clock::{Clock, SystemClock};
use crate::context::{self, OutboxContext};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, NoMetrics};
use crate::receivers::Receivers;

/// What an [`Outbox`]'s clones share.
pub(crate) struct Shared<C> {
    pub(crate) receivers: Receivers<C>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<dyn Metrics>,
    skipped: RwLock<HashSet<ShardKey>>,
    flush: bool,
}

impl<C> Shared<C> {
    pub(crate) fn is_skipped(&self, key: &ShardKey) -> bool {
        self.skipped
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }
}

/// The outbox of one database: its receivers, clock, metrics and kill switch. Cheap to
/// clone (an `Arc` inside); share one between writers and drain workers.
///
/// * [`Outbox::context`] is [`outbox_context`](crate::outbox_context) plus a **flush**:
///   right after the outermost commit it drains the shards the transaction touched.
/// * [`Outbox::drain_due_shards`] is the periodic drain; `Worker` (feature `pool`) runs it
///   on threads sharing a connection pool.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # fn main() -> Result<(), diesel_outbox::Error> {
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use diesel::{Connection, SqliteConnection};
/// use diesel_outbox::{run_migrations, CellOutbox, Outbox, Receivers};
///
/// let calls = Arc::new(AtomicUsize::new(0));
/// let seen = calls.clone();
/// let outbox = Outbox::new(Receivers::new().cell(
///     Category::OrganizationUpdate,
///     move |_conn: &mut SqliteConnection, _message: &diesel_outbox::OutboxMessage| {
///         seen.fetch_add(1, Ordering::SeqCst);
///         Ok::<_, diesel_outbox::Error>(())
///     },
/// ));
/// let mut conn = SqliteConnection::establish(":memory:")?;
/// run_migrations(&mut conn)?;
/// outbox.context(&mut conn, |ctx| {
///     ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))?;
///     ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))
/// })?;
/// assert_eq!(calls.load(Ordering::SeqCst), 1, "flushed after commit, coalesced");
/// # Ok(()) }
/// ```
pub struct Outbox<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Outbox<C> {
    fn clone(&self) -> Self {
        Outbox {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for Outbox<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("receivers", &self.shared.receivers)
            .field("flush", &self.shared.flush)
            .finish_non_exhaustive()
    }
}

impl<C: OutboxConnection> Outbox<C> {
    /// An outbox with `receivers`, the system clock, no metrics, no skipped shards and
    /// flush on commit.
    pub fn new(receivers: Receivers<C>) -> Self {
        Self::builder(receivers).build()
    }

    /// Starts configuring an outbox.
    pub fn builder(receivers: Receivers<C>) -> OutboxBuilder<C> {
        OutboxBuilder {
            receivers,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(NoMetrics),
            skipped: HashSet::new(),
            flush: true,
        }
    }

    /// Runs `f` like [`outbox_context`](crate::outbox_context), then, once the outermost
    /// transaction has committed, flushes: drains exactly the shards it wrote rows to, up to
    /// the newest row that existed when the flush started, waiting for a shard another
    /// worker holds. The receivers have run when this returns.
    ///
    /// * Flush is on by default; turn it off for the whole outbox
    ///   ([`OutboxBuilder::flush_on_commit`]), for one context
    ///   ([`OutboxContext::set_flush`]) or for one row (`CellOutbox::flush(false)`).
    /// * A flush failure (a receiver error, a database error) is logged and left to the
    ///   periodic drain, with the shard backed off; it never turns the committed call into
    ///   an error.
    /// * Inside an enclosing transaction (the connection was already in one, e.g. under
    ///   `begin_test_transaction`) nothing has committed yet, so nothing is flushed: the
    ///   rows wait for a drain.
    /// * The rows' `date_added` comes from the outbox's clock.
    pub fn context<R, E, F>(&self, conn: &mut C, f: F) -> Result<R, E>
    where
        F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
        E: From<Error>,
    {
        let clock = &*self.shared.clock;
        let (value, committed) =
            context::run_recorded(conn, &|| clock.now(), self.shared.flush, f)?;
        if let Some(committed) = committed {
            for &(silo, category, rows) in &committed.saved {
                self.shared.metrics.rows_saved(silo, category, rows);
            }
            if !committed.outermost {
                tracing::debug!("outbox context inside an enclosing transaction: no flush");
            } else if !committed.touched.is_empty() {
                flush::flush_after_commit(&self.shared, conn, &committed.touched);
            }
        }
        Ok(value)
    }

    /// The due shards at the clock's now (DESIGN 5.1): shards with a row whose
    /// `scheduled_for` has passed, oldest first.
    pub fn find_due_shards(&self, conn: &mut C, options: &DueShards) -> Result<Vec<ShardKey>> {
        discovery::find_due_shards(conn, options, self.shared.clock.now())
    }

    /// Splits the ids of `silo`'s table into `parts` ranges, for parallel schedulers
    /// ([`DueShards::id_range`]).
    pub fn partition_ids(
        &self,
        conn: &mut C,
        silo: Silo,
        parts: usize,
    ) -> Result<Vec<std::ops::Range<i64>>> {
        discovery::partition_ids(conn, silo, parts)
    }

    /// Claims `shard` for a drain (DESIGN 5.2): locks its lowest row without waiting and,
    /// if the shard is still due, reschedules all its rows by the backoff rule. Returns
    /// [`Claim::Busy`] at once when another worker holds the shard.
    pub fn claim_shard(&self, conn: &mut C, shard: &ShardKey) -> Result<Claim> {
        let claim = claim::claim(conn, shard, self.shared.clock.now())?;
        tracing::debug!(shard = %shard, ?claim, "claim");
        Ok(claim)
    }

    /// Drains `shard` (DESIGN 5.3): coalesced groups in id order, each receiver called with
    /// the group's newest row, until the shard is empty, another worker holds it, or a
    /// group fails. Does not claim: call [`Outbox::claim_shard`] first for the backoff.
    pub fn drain_shard(&self, conn: &mut C, shard: &ShardKey) -> Result<DrainReport> {
        drain_shard(&self.shared, conn, shard, Mode::PERIODIC)
    }

    /// Drains `shards` up to the newest row that exists now, waiting for shards other
    /// workers hold: what a flush after commit runs. Failed shards are backed off.
    pub fn flush_shards(&self, conn: &mut C, shards: &[ShardKey]) -> Result<DrainReport> {
        flush::flush(&self.shared, conn, shards)
    }

    /// One round of the periodic drain: finds due shards (up to 100 per table), claims
    /// each and drains those it claimed. Receiver failures are in the report.
    pub fn drain_due_shards(&self, conn: &mut C) -> Result<DrainReport> {
        self.drain_due_shards_with(conn, &DueShards::new())
    }

    /// [`Outbox::drain_due_shards`] with explicit discovery options.
    pub fn drain_due_shards_with(&self, conn: &mut C, options: &DueShards) -> Result<DrainReport> {
        let mut report = DrainReport::default();
        for shard in self.find_due_shards(conn, options)? {
            match self.claim_shard(conn, &shard)? {
                Claim::Claimed { .. } => {
                    report.merge(drain_shard(&self.shared, conn, &shard, Mode::CLAIMED)?)
                }
                _ => report.shards_not_claimed += 1,
            }
        }
        Ok(report)
    }

    /// Adds `shard` to the kill switch (DESIGN 5.7): from now on its coalesced rows are
    /// deleted without calling a receiver.
    pub fn skip_shard(&self, shard: ShardKey) {
        self.shared
            .skipped
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shard);
    }

    /// Removes `shard` from the kill switch.
    pub fn unskip_shard(&self, shard: &ShardKey) {
        self.shared
            .skipped
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(shard);
    }

    /// Whether the kill switch skips `shard`.
    pub fn is_skipped(&self, shard: &ShardKey) -> bool {
        self.shared.is_skipped(shard)
    }

    pub(crate) fn shared(&self) -> &Shared<C> {
        &self.shared
    }
}

/// Configures an [`Outbox`]; from [`Outbox::builder`].
pub struct OutboxBuilder<C> {
    receivers: Receivers<C>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    skipped: HashSet<ShardKey>,
    flush: bool,
}

impl<C: OutboxConnection> OutboxBuilder<C> {
    /// Reads "now" from `clock` (e.g. a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Reports counters and timings to `metrics`.
    pub fn metrics(mut self, metrics: impl Metrics) -> Self {
        self.metrics = Arc::new(metrics);
        self
    }

    /// Puts `shard` on the kill switch (see [`Outbox::skip_shard`]).
    pub fn skip_shard(mut self, shard: ShardKey) -> Self {
        self.skipped.insert(shard);
        self
    }

    /// Whether [`Outbox::context`] flushes after commit (default `true`).
    pub fn flush_on_commit(mut self, flush: bool) -> Self {
        self.flush = flush;
        self
    }

    /// The outbox.
    pub fn build(self) -> Outbox<C> {
        Outbox {
            shared: Arc::new(Shared {
                receivers: self.receivers,
                clock: self.clock,
                metrics: self.metrics,
                skipped: RwLock::new(self.skipped),
                flush: self.flush,
            }),
        }
    }
}
