//! Layer 7, the top: the [`Outbox`] handle that writers and workers share, the worker, and
//! the test helpers. Uses every layer below.
//!
//! * this file: [`Outbox`] and its builder;
//! * `worker`: threads draining through a connection pool (feature `pool`), and the
//!   backfill's thread;
//! * `inspect`: depths, lag, stuck shards and parked groups, and an operator's actions;
//! * `backfill`: writing every object's rows again when a model's version goes up;
//! * `handoff`: flush requests handed to this process's workers (the async context's
//!   flush);
//! * [`testing`]: "run the outboxes" in a test, and reads of the tables.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::claim::DueScan;
use crate::backend::guard;
use crate::backend::state::ShardState;
use crate::backend::OutboxConnection;
use crate::deliver::receiver::Receivers;
use crate::drain::exhaustion::{Exhaustion, Policies};
use crate::drain::metrics::Metrics;
use crate::drain::options::{DrainOptions, DueShards};
use crate::drain::report::DrainReport;
use crate::drain::round::{drain_due, Schedules};
use crate::drain::{flush, Drainer};
use crate::key::category::OutboxCategory;
use crate::key::clock::{Clock, SystemClock};
use crate::key::error::{Error, Result};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;
use crate::write::backfill::Backfills;
use crate::write::context::{
    self, OutboxContext, Settings, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_NOTIFY,
};

pub(crate) mod backfill;
pub(crate) mod handoff;
pub(crate) mod inspect;
pub(crate) mod testing;
#[cfg(feature = "pool")]
pub(crate) mod worker;

/// What an [`Outbox`]'s clones share.
struct Shared<C> {
    drainer: Drainer<C>,
    flush: bool,
    notify: bool,
    max_payload_bytes: usize,
    reported: inspect::ReportedDepths,
    backfills: Backfills<C>,
    /// Whether this outbox recorded its models' declared versions.
    backfills_declared: AtomicBool,
    /// Shards waiting for a worker's flush (see [`Outbox::request_flush`]).
    flush_requests: handoff::FlushRequests,
}

/// The outbox of one database: its receivers, clock, metrics and drain sizes. Cheap to
/// clone (an `Arc` inside); share one between writers and drain workers.
///
/// * [`Outbox::context`] is [`outbox_context`](crate::outbox_context) plus a **flush**:
///   right after the outermost commit it drains the shards the transaction touched.
/// * [`Outbox::drain_due_shards`] is the periodic drain; `Worker` (feature `pool`) runs it
///   on threads sharing a connection pool.
/// * [`Outbox::skip_shard`] is the kill switch, stored in the database so that every
///   process honours it; [`Outbox::shard_state`] tells what is stored about a shard.
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
/// let mut conn = diesel_outbox::sqlite::SqliteOptions::new().establish(":memory:")?;
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
            .field("receivers", &self.shared.drainer.receivers)
            .field("options", &self.shared.drainer.options)
            .field("flush", &self.shared.flush)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "async")]
impl<C: OutboxConnection> Outbox<C> {
    /// [`outbox_context_async`](crate::outbox_context_async) on a diesel-async connection
    /// `conn` of the database this outbox drains (feature `async`), with the outbox's
    /// settings ([`max_payload_bytes`](OutboxBuilder::max_payload_bytes), its clock for
    /// `date_added`, [`notify_on_commit`](OutboxBuilder::notify_on_commit)), then, once the
    /// outermost transaction has committed, **flush without blocking**: the shards it
    /// wrote are handed to the [`Worker`](crate::Worker)s of this outbox running in this
    /// process ([`request_flush`](Self::request_flush)), which deliver them at once on
    /// their own threads and connections. The receivers have not necessarily run when
    /// this returns. Without a worker in this process, the commit NOTIFYs listening
    /// workers (PostgreSQL) as any commit of rows no flush delivers.
    ///
    /// The drain stays on the sync connection type `C`; `conn` is diesel-async's
    /// connection to the same database (`AsyncPgConnection` for `PgConnection`, ...).
    pub async fn context_async<A, R, E, F>(&self, conn: &mut A, f: F) -> Result<R, E>
    where
        A: crate::backend::asynchronous::AsyncOutboxConnection,
        for<'c, 'tx> F: AsyncFnOnce(&'c mut OutboxContext<'tx, A>) -> Result<R, E>
            + crate::write::context_async::AsyncContextFn<
                &'c mut OutboxContext<'tx, A>,
                Result<R, E>,
                Fut: Send,
            > + Send,
        R: Send,
        E: From<Error> + Send,
    {
        let drainer = &self.shared.drainer;
        let now = || drainer.clock.now();
        let settings = Settings {
            now: &now,
            flush: self.shared.flush,
            flushes: self.shared.flush_requests.has_worker(),
            max_payload_bytes: self.shared.max_payload_bytes,
            notify: self.shared.notify,
        };
        let (value, committed) =
            crate::write::context_async::run_async(conn, None, &settings, f).await?;
        if let Some(committed) = committed {
            for &(table, category, rows) in &committed.saved {
                drainer.metrics.rows_saved(table, category, rows);
            }
            if !committed.outermost {
                tracing::debug!("outbox context inside an enclosing transaction: no flush");
            } else if !committed.touched.is_empty() && !self.request_flush(&committed.touched) {
                tracing::debug!("no worker in this process: the rows wait for a drain");
            }
        }
        Ok(value)
    }
}

impl<C: OutboxConnection> Outbox<C> {
    /// An outbox with `receivers`, the system clock, no metrics (the `metrics` crate's
    /// facade with the `metrics` feature), the default drain sizes and flush on commit.
    pub fn new(receivers: Receivers<C>) -> Self {
        Self::builder(receivers).build()
    }

    /// Starts configuring an outbox.
    pub fn builder(receivers: Receivers<C>) -> OutboxBuilder<C> {
        OutboxBuilder {
            receivers,
            clock: Arc::new(SystemClock),
            metrics: default_metrics(),
            options: DrainOptions::default(),
            exhaustion: Policies::default(),
            flush: true,
            notify: DEFAULT_NOTIFY,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            backfills: Backfills::new(),
        }
    }

    /// Runs `f` like [`outbox_context`](crate::outbox_context), then, once the outermost
    /// transaction has committed, flushes: delivers the shards it wrote rows to, each up
    /// to its newest row when the flush starts. The receivers have run when this returns.
    ///
    /// * Flush is on by default; turn it off for the whole outbox
    ///   ([`OutboxBuilder::flush_on_commit`]), for one context
    ///   ([`OutboxContext::set_flush`]) or for one row (`CellOutbox::flush(false)`).
    /// * The flush never makes the writer pay for another's trouble: a shard another
    ///   worker holds is left to that worker, a failing or skipped shard to the periodic
    ///   drain. It never waits.
    /// * A flush failure is logged and left to the periodic drain, with the shard backed
    ///   off; it never turns the committed call into an error.
    /// * Inside an enclosing transaction (e.g. under `begin_test_transaction`) nothing has
    ///   committed yet, so nothing is flushed: the rows wait for a drain.
    /// * The rows' `date_added` comes from the outbox's clock.
    pub fn context<R, E, F>(&self, conn: &mut C, f: F) -> Result<R, E>
    where
        F: for<'tx> FnOnce(&mut OutboxContext<'tx, C>) -> Result<R, E>,
        E: From<Error>,
    {
        let drainer = &self.shared.drainer;
        let now = || drainer.clock.now();
        let settings = Settings {
            now: &now,
            flush: self.shared.flush,
            flushes: true,
            max_payload_bytes: self.shared.max_payload_bytes,
            notify: self.shared.notify,
        };
        let (value, committed) = context::run_recorded(conn, &settings, f)?;
        if let Some(committed) = committed {
            for &(table, category, rows) in &committed.saved {
                drainer.metrics.rows_saved(table, category, rows);
            }
            if !committed.outermost {
                tracing::debug!("outbox context inside an enclosing transaction: no flush");
            } else if !committed.touched.is_empty() {
                flush::flush_after_commit(drainer, conn, &committed.touched);
            }
        }
        Ok(value)
    }

    /// Hands `shards` to the [`Worker`](crate::Worker)s of this outbox running in this
    /// process: they flush them in their next round, which starts at once (they are
    /// woken). Returns at once; `false` when no worker runs here (the rows then wait for a
    /// drain). What [`context_async`](Self::context_async) does after its commit; a sync
    /// caller that should not deliver on its own thread can use it too.
    pub fn request_flush(&self, shards: &[ShardKey]) -> bool {
        self.shared.flush_requests.request(shards)
    }

    #[cfg(feature = "pool")]
    pub(crate) fn flush_requests(&self) -> &handoff::FlushRequests {
        &self.shared.flush_requests
    }

    /// One call of the periodic drain, on both tables: claims due shards a batch at a time
    /// (up to [`DrainOptions::batch_shards`] per transaction) and delivers them, until
    /// nothing due is left to claim (or 10,000 claims per table). A shard another worker
    /// holds is left to it. Receiver failures are in the report; an `Err` means the round
    /// could not go on (the connection is gone, say).
    pub fn drain_due_shards(&self, conn: &mut C) -> Result<DrainReport> {
        self.drain_due_shards_with(conn, &DueShards::new())
    }

    /// [`Outbox::drain_due_shards`] with explicit tables, limit and id range.
    pub fn drain_due_shards_with(&self, conn: &mut C, due: &DueShards) -> Result<DrainReport> {
        drain_due(&self.shared.drainer, conn, due, Schedules::Honour)
    }

    /// The shards a periodic drain would claim now, per table in `due`'s order, oldest
    /// first, without claiming them: those with a row whose schedule has passed (a future
    /// row alone does not make its shard due), past their backoff or with a row newer
    /// than it, not skipped; at most `due.limit` per table. Reads the oldest rows of each
    /// table (of `due`'s id range) as many at a time as shards are still wanted, until it
    /// has them or has read [`DrainOptions::scan_rows`] rows (so the work follows the
    /// limit, not the backlog), and the due schedules; shards held by other workers are
    /// included.
    pub fn due_shards(&self, conn: &mut C, due: &DueShards) -> Result<Vec<ShardKey>> {
        let options = &self.shared.drainer.options;
        let range = due.id_range.clone().unwrap_or(0..i64::MAX);
        let scan_cap = i64::try_from(options.scan_rows.max(1)).unwrap_or(i64::MAX);
        let mut shards = Vec::new();
        for &table in &due.tables {
            let mut found: Vec<ShardKey> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let (mut from_id, mut scanned) = (range.start, 0i64);
            while found.len() < due.limit && scanned < scan_cap {
                let wanted = i64::try_from(due.limit - found.len()).unwrap_or(i64::MAX);
                let scan = DueScan {
                    from_id,
                    to_id: range.end,
                    scan_rows: wanted.min(scan_cap - scanned),
                    max_shards: wanted,
                    ignore_schedule: false,
                    lease_seconds: options.lease_seconds(),
                };
                let now = self.shared.drainer.clock.now();
                let step = guard::as_library(conn, |conn| {
                    conn.due_shards(Token::new(), table, &scan, now)
                })?;
                found.extend(
                    step.shards
                        .into_iter()
                        .filter(|shard| seen.insert(shard.clone())),
                );
                scanned += step.scanned_rows.max(1);
                match step.last_scanned_id {
                    Some(last) if step.scanned_rows >= scan.scan_rows => {
                        from_id = last.saturating_add(1);
                    }
                    // The range is read to its end.
                    _ => break,
                }
            }
            found.truncate(due.limit);
            shards.extend(found);
        }
        Ok(shards)
    }

    /// Delivers `shards` up to each one's newest row now, as a flush after commit does:
    /// shards another worker holds and failing or skipped shards are left alone.
    pub fn flush_shards(&self, conn: &mut C, shards: &[ShardKey]) -> Result<DrainReport> {
        flush::flush(&self.shared.drainer, conn, shards)
    }

    /// Splits the ids of `table` into `parts` ranges, for parallel schedulers
    /// ([`DueShards::id_range`]).
    pub fn partition_ids(
        &self,
        conn: &mut C,
        table: OutboxTable,
        parts: usize,
    ) -> Result<Vec<Range<i64>>> {
        let bounds = guard::as_library(conn, |conn| conn.outbox_id_bounds(Token::new(), table));
        let Some((lo, hi)) = bounds? else {
            return Ok(Vec::new());
        };
        Ok(split(lo..hi.saturating_add(1), parts))
    }

    /// Turns the kill switch on for `shard`, for every process that drains this database:
    /// from now on each key's older rows are deleted without delivery and its newest row
    /// is kept, so that [`unskip_shard`](Self::unskip_shard) delivers the latest state.
    pub fn skip_shard(&self, conn: &mut C, shard: &ShardKey) -> Result<()> {
        self.set_skipped(conn, shard, true)
    }

    /// Turns the kill switch off for `shard`: it is due at once.
    pub fn unskip_shard(&self, conn: &mut C, shard: &ShardKey) -> Result<()> {
        self.set_skipped(conn, shard, false)
    }

    fn set_skipped(&self, conn: &mut C, shard: &ShardKey, skipped: bool) -> Result<()> {
        let now = self.shared.drainer.clock.now();
        let set = guard::as_library(conn, |conn| {
            conn.set_skipped(Token::new(), shard, skipped, now)
        });
        Ok(set?)
    }

    /// Whether the kill switch skips `shard`.
    pub fn is_skipped(&self, conn: &mut C, shard: &ShardKey) -> Result<bool> {
        Ok(self
            .shard_state(conn, shard)?
            .is_some_and(|state| state.skipped))
    }

    /// What is stored about `shard`: its backoff, failures and kill switch; `None` for a
    /// healthy shard.
    pub fn shard_state(&self, conn: &mut C, shard: &ShardKey) -> Result<Option<ShardState>> {
        let states = guard::as_library(conn, |conn| {
            conn.load_shard_states(
                Token::new(),
                shard.table(),
                Some(std::slice::from_ref(shard)),
            )
        })?;
        Ok(states.into_iter().next())
    }

    /// Every stored shard state of `table`: failing shards first (most attempts), then
    /// skipped ones.
    pub fn shard_states(&self, conn: &mut C, table: OutboxTable) -> Result<Vec<ShardState>> {
        let states = guard::as_library(conn, |conn| {
            conn.load_shard_states(Token::new(), table, None)
        });
        Ok(states?)
    }

    /// The drain's sizes.
    pub fn options(&self) -> &DrainOptions {
        &self.shared.drainer.options
    }

    /// The clock "now" is read from.
    pub fn clock(&self) -> &dyn Clock {
        &*self.shared.drainer.clock
    }

    pub(crate) fn drainer(&self) -> &Drainer<C> {
        &self.shared.drainer
    }
}

/// Configures an [`Outbox`]; from [`Outbox::builder`].
pub struct OutboxBuilder<C> {
    receivers: Receivers<C>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn Metrics>,
    options: DrainOptions,
    exhaustion: Policies,
    flush: bool,
    notify: bool,
    max_payload_bytes: usize,
    backfills: Backfills<C>,
}

impl<C: OutboxConnection> OutboxBuilder<C> {
    /// The replicated models this outbox backfills when their declared replication
    /// version goes up ([`Outbox::backfill`]; a `Worker` with
    /// [`WorkerOptions::backfill`](crate::WorkerOptions::backfill) runs it).
    pub fn backfill(mut self, backfills: Backfills<C>) -> Self {
        self.backfills = backfills;
        self
    }

    /// What the drain does when the receiver of `category` keeps failing at a key (default
    /// [`Exhaustion::RetryForever`]): e.g. `Exhaustion::Park { max_attempts: 10 }` moves
    /// the key's rows to the parked table after its tenth failed attempt, so that the rest
    /// of its shard is delivered. Applies to the category in both tables.
    ///
    /// ```
    /// # diesel_outbox::outbox_scopes_and_categories! {
    /// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
    /// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: cell } }
    /// # }
    /// # fn main() {
    /// use diesel::SqliteConnection;
    /// use diesel_outbox::drain::Exhaustion;
    /// use diesel_outbox::{Outbox, Receivers};
    /// let outbox = Outbox::<SqliteConnection>::builder(Receivers::new())
    ///     .exhaustion(Category::AuditLogEvent, Exhaustion::Park { max_attempts: 10 })
    ///     .build();
    /// # let _ = outbox;
    /// # }
    /// ```
    pub fn exhaustion<K: OutboxCategory>(mut self, _category: K, policy: Exhaustion) -> Self {
        self.exhaustion.set(K::NUMBER, policy);
        self
    }

    /// The exhaustion policy of every category not given one with
    /// [`exhaustion`](Self::exhaustion) (default [`Exhaustion::RetryForever`]).
    pub fn default_exhaustion(mut self, policy: Exhaustion) -> Self {
        self.exhaustion.set_default(policy);
        self
    }

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

    /// Whether [`Outbox::context`] flushes after commit (default `true`).
    pub fn flush_on_commit(mut self, flush: bool) -> Self {
        self.flush = flush;
        self
    }

    /// Whether a commit of [`Outbox::context`] wakes the workers listening on PostgreSQL
    /// for the rows it wrote that no flush will deliver: rows of a context or an outbox
    /// with flush off, rows that opted out (`CellOutbox::flush(false)`), and every row
    /// written inside an enclosing transaction. A commit whose rows are all flushed by
    /// this process right after it sends nothing. Default `true`.
    ///
    /// One `NOTIFY` per transaction, sent with it (PostgreSQL folds repeats into one, and
    /// drops it if the transaction rolls back); nothing on SQLite. It costs one statement
    /// per transaction plus PostgreSQL's notification work at commit: within the noise at
    /// 100 saves per transaction, tens of percent at one save per transaction with flush
    /// off (`cli/examples/notify_write_cost`). It saves an idle worker up to its poll
    /// interval: commit → delivery took 4.8 ms (median) woken by NOTIFY against 461 ms
    /// polling every second (`cli/examples/notify_latency`).
    /// [`outbox_context`](crate::outbox_context), which never flushes, always notifies.
    pub fn notify_on_commit(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The largest payload [`Outbox::context`]'s contexts accept (default 1 MiB; see
    /// [`OutboxContext::set_max_payload_bytes`]).
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Rows of one shard read per batch (default 500; see [`DrainOptions::window`]).
    pub fn window(mut self, rows: usize) -> Self {
        self.options.window = rows.max(1);
        self
    }

    /// Shards per batch and transaction (default 400; see
    /// [`DrainOptions::batch_shards`]).
    pub fn batch_shards(mut self, shards: usize) -> Self {
        self.options.batch_shards = shards.max(1);
        self
    }

    /// Rows of windows one batch holds at most (default 20,000; see
    /// [`DrainOptions::max_batch_rows`]): what bounds a drain's memory.
    pub fn max_batch_rows(mut self, rows: usize) -> Self {
        self.options.max_batch_rows = rows.max(1);
        self
    }

    /// Rows read per scan for due shards (default 1,000).
    pub fn scan_rows(mut self, rows: usize) -> Self {
        self.options.scan_rows = rows.max(1);
        self
    }

    /// How long a batch's lease lives on SQLite without renewal (default 30 s; see
    /// [`DrainOptions::lease`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = lease;
        self
    }

    /// Where receivers run (default [`Delivery::BackendDefault`]: leased on SQLite,
    /// inside the drain's transaction on PostgreSQL and MySQL).
    ///
    /// [`Delivery::BackendDefault`]: crate::drain::Delivery::BackendDefault
    pub fn delivery(mut self, delivery: crate::drain::Delivery) -> Self {
        self.options.delivery = delivery;
        self
    }

    /// The outbox.
    pub fn build(self) -> Outbox<C> {
        Outbox {
            shared: Arc::new(Shared {
                drainer: Drainer::new(
                    self.receivers,
                    self.clock,
                    self.metrics,
                    self.options,
                    self.exhaustion,
                ),
                flush: self.flush,
                notify: self.notify,
                max_payload_bytes: self.max_payload_bytes,
                reported: inspect::ReportedDepths::default(),
                backfills: self.backfills,
                backfills_declared: AtomicBool::new(false),
                flush_requests: handoff::FlushRequests::default(),
            }),
        }
    }
}

/// The metrics an outbox reports to unless told otherwise: the `metrics` crate's facade
/// with the `metrics` feature, nothing without it.
fn default_metrics() -> Arc<dyn Metrics> {
    #[cfg(feature = "metrics")]
    return Arc::new(crate::drain::metrics::MetricsFacade::new());
    #[cfg(not(feature = "metrics"))]
    return Arc::new(crate::drain::metrics::NoMetrics);
}

/// `range` cut into `parts` contiguous ranges.
fn split(range: Range<i64>, parts: usize) -> Vec<Range<i64>> {
    let parts = i64::try_from(parts.max(1)).unwrap_or(i64::MAX);
    let width = range.end.saturating_sub(range.start);
    let step = ((width + parts - 1) / parts).max(1);
    let mut ranges = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = start.saturating_add(step).min(range.end);
        ranges.push(start..end);
        start = end;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn partitions_cover_the_range_without_overlap() {
        assert_eq!(split(1..11, 3), vec![1..5, 5..9, 9..11]);
        assert_eq!(split(7..8, 4), vec![7..8]);
        assert_eq!(split(0..4, 0), vec![0..4]);
    }
}
