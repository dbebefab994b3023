//! The backfill: when a model's declared replication version is above the one stored for
//! it, every existing object of the model gets its outbox rows written again, so that a
//! new replica, or one whose replication hook was fixed, catches up with what was written
//! before the change.
//!
//! A step ([`Outbox::backfill`]) runs at most one batch: it picks the first model with
//! work (those an operator asked for first, then the registration order: one model at a
//! time, so the rate is the database's, not the model's), holds the model's state row
//! (PostgreSQL and MySQL: a row lock taken with SKIP LOCKED, so another process skips the
//! model; SQLite: the one writer), reads the next objects after the stored key, writes
//! their rows through an outbox context (the write path of the model's own writes, so a
//! concurrent write of an object coalesces with the backfill's row at delivery, where the
//! receiver loads the current state), and stores the new key and the throttle's next time
//! in the same transaction. A crash loses at most the batch under way, which is rolled
//! back with its rows and done again. The page that comes back short finishes the run:
//! the declared version is then the stored one.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};

use super::Outbox;
use crate::backend::backfill::{BackfillRow, StoredBackfill};
use crate::backend::guard;
use crate::backend::OutboxConnection;
use crate::key::error::{BackfillProblem, Error, Result};
use crate::key::shard::OutboxTable;
use crate::key::token::Token;
use crate::write::backfill::{BackfillModel, Page};
use crate::write::context::{self, Settings};

/// How a backfill runs: its throttle and whether it starts by itself.
#[derive(Clone, Debug)]
pub struct BackfillOptions {
    /// Objects per second at most, for the database (models are backfilled one at a
    /// time, and a model by one process at a time), default 1,000; `None`: as fast as
    /// the database goes. An operator's `diesel-outbox backfill run --rate N` overrides it
    /// for that run. Choose it well below what the drain delivers, so that live rows do
    /// not queue behind the backfill's.
    pub rows_per_second: Option<u32>,
    /// Objects per batch (one transaction) at most, default 500. A batch also holds at
    /// most one second of the rate, so the rate holds over any ten seconds within a
    /// tenth.
    pub batch_size: usize,
    /// Whether a model whose declared version is above the stored one is backfilled
    /// without being asked (default `true`); with `false` it waits for an operator's
    /// `diesel-outbox backfill run --model NAME` (or [`Outbox::request_backfill`]).
    pub automatic: bool,
    /// How long a model whose batch failed waits before it is tried again (default 30 s);
    /// the other models go on meanwhile.
    pub retry_after: Duration,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            rows_per_second: Some(1_000),
            batch_size: 500,
            automatic: true,
            retry_after: Duration::from_secs(30),
        }
    }
}

impl BackfillOptions {
    /// Objects a batch may hold at `rate`.
    fn batch_limit(&self, rate: Option<u32>) -> usize {
        let size = self.batch_size.max(1);
        match rate {
            Some(rate) if rate > 0 => size.min(rate as usize),
            _ => size,
        }
    }
}

/// One batch of a model's backfill.
#[derive(Clone, Debug)]
pub struct BackfillBatch {
    /// The outbox table of the model's rows.
    pub table: OutboxTable,
    /// The model's table.
    pub model: &'static str,
    /// The version being backfilled.
    pub version: i32,
    /// Objects read.
    pub objects: usize,
    /// Outbox rows written (a control object writes one per target cell).
    pub rows: usize,
    /// The highest key done so far.
    pub last_id: Option<i64>,
    /// Whether this batch finished the run (the version is now stored).
    pub finished: bool,
    /// When the model's next batch may run (the throttle; now when it finished).
    pub next_batch_at: NaiveDateTime,
}

/// A model whose batch failed: it rolled back, and is retried after
/// [`BackfillOptions::retry_after`].
#[derive(Debug)]
pub struct BackfillFailure {
    /// The outbox table of the model's rows.
    pub table: OutboxTable,
    /// The model's table.
    pub model: &'static str,
    /// What went wrong.
    pub error: Error,
}

/// What one [`Outbox::backfill`] step did.
#[derive(Debug, Default)]
pub struct BackfillReport {
    /// The batch written, if any (a step writes at most one).
    pub batches: Vec<BackfillBatch>,
    /// Models another process was backfilling (this one skipped them).
    pub held: Vec<&'static str>,
    /// Models whose batch failed, or whose declaration cannot run.
    pub failures: Vec<BackfillFailure>,
    /// When the next batch may run: `None` when no model has work.
    pub next_batch_at: Option<NaiveDateTime>,
}

impl BackfillReport {
    /// Whether the step wrote a batch.
    pub fn did_work(&self) -> bool {
        !self.batches.is_empty()
    }

    /// Objects the step read.
    pub fn objects(&self) -> usize {
        self.batches.iter().map(|batch| batch.objects).sum()
    }
}

/// Where a model's backfill stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackfillPhase {
    /// The stored version is the declared one.
    UpToDate,
    /// The declared version is above the stored one; no batch has run yet.
    Pending,
    /// A run is under way.
    Running,
    /// The application no longer declares the model.
    NotDeclared,
}

/// One model's backfill, as [`Outbox::backfill_status`] reads it.
#[derive(Clone, Debug)]
pub struct BackfillStatus {
    /// The outbox table of the model's rows.
    pub table: OutboxTable,
    /// The model's table.
    pub model: String,
    /// The version the application declares (this outbox's [`Backfills`] when it
    /// registers the model, otherwise the last one the application recorded).
    ///
    /// [`Backfills`]: crate::backfill::Backfills
    pub declared_version: Option<i32>,
    /// The version whose backfill finished (0: never).
    pub stored_version: i32,
    /// The version being backfilled, while a run is under way.
    pub target_version: Option<i32>,
    /// Where the model stands.
    pub phase: BackfillPhase,
    /// The position: the highest key done by the run under way (or the last run).
    pub last_id: Option<i64>,
    /// Objects done by the run.
    pub rows_done: i64,
    /// The table's rows when the run started.
    pub rows_total: Option<i64>,
    /// When the run started.
    pub started_at: Option<NaiveDateTime>,
    /// When its last batch committed.
    pub updated_at: Option<NaiveDateTime>,
    /// When the last run finished.
    pub finished_at: Option<NaiveDateTime>,
    /// The throttle: no batch before this.
    pub next_batch_at: NaiveDateTime,
    /// When an operator asked for the run.
    pub requested_at: Option<NaiveDateTime>,
    /// The operator's rate for the run, if one was given.
    pub requested_rate: Option<i32>,
    /// The rate of the run so far, objects per second.
    pub rate: Option<f64>,
    /// How long the run still needs at that rate (from the count taken when it started).
    pub eta: Option<Duration>,
    /// Why the last batch failed, until one succeeds.
    pub last_error: Option<String>,
    /// Why the model's backfill cannot run as declared.
    pub problem: Option<BackfillProblem>,
}

impl BackfillStatus {
    fn new(row: BackfillRow, table: OutboxTable, declared: Option<i32>) -> Self {
        let stored = row.version;
        let highest = row.target_version.unwrap_or(stored).max(stored);
        let problem = match declared {
            Some(declared) if declared < highest => Some(BackfillProblem::VersionWentDown {
                declared,
                stored: highest,
            }),
            None if highest > 0 => Some(BackfillProblem::NotDeclared { stored: highest }),
            _ => None,
        };
        let phase = match declared {
            None => BackfillPhase::NotDeclared,
            Some(_) if row.target_version.is_some() => BackfillPhase::Running,
            Some(declared) if declared > stored => BackfillPhase::Pending,
            Some(_) => BackfillPhase::UpToDate,
        };
        let elapsed = match (row.started_at, row.updated_at) {
            (Some(start), Some(end)) if phase == BackfillPhase::Running => {
                (end - start).to_std().ok()
            }
            _ => None,
        };
        let rate = elapsed
            .filter(|elapsed| !elapsed.is_zero())
            .map(|elapsed| row.rows_done as f64 / elapsed.as_secs_f64());
        let eta = match (rate, row.rows_total) {
            (Some(rate), Some(total)) if rate > 0.0 => {
                let left = (total - row.rows_done).max(0) as f64;
                Some(Duration::from_secs_f64(left / rate))
            }
            _ => None,
        };
        BackfillStatus {
            table,
            declared_version: declared,
            stored_version: stored,
            target_version: row.target_version,
            phase,
            last_id: row.last_id,
            rows_done: row.rows_done,
            rows_total: row.rows_total,
            started_at: row.started_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
            next_batch_at: row.next_batch_at,
            requested_at: row.requested_at,
            requested_rate: row.rows_per_second,
            rate,
            eta,
            last_error: row.last_error,
            problem,
            model: row.model,
        }
    }
}

/// What one model's batch came to.
enum Outcome {
    Batch(BackfillBatch),
    /// Another process holds the model.
    Held,
    /// Nothing to do after all (another process finished it), or not before this time.
    NotYet(Option<NaiveDateTime>),
}

impl<C: OutboxConnection> Outbox<C> {
    /// One bounded step of the backfill, for a scheduler (a `Worker` with
    /// [`WorkerOptions::backfill`](crate::WorkerOptions::backfill) runs it for you): at
    /// most one batch of the first model with work, written in one transaction with its
    /// new position. Never sleeps: a model whose throttle says "not yet" is left, and
    /// [`BackfillReport::next_batch_at`] says when to call again.
    ///
    /// Models are those of [`OutboxBuilder::backfill`](crate::OutboxBuilder::backfill);
    /// the first step of an outbox records their declared versions in
    /// `outbox_backfills`, where `diesel-outbox backfill status` reads them. A model
    /// whose batch fails is retried later and the next model goes on; an `Err` means the
    /// step could not run at all (the connection is gone, say).
    pub fn backfill(&self, conn: &mut C, options: &BackfillOptions) -> Result<BackfillReport> {
        let mut report = BackfillReport::default();
        let backfills = &self.shared.backfills;
        if backfills.is_empty() {
            return Ok(report);
        }
        let now = self.clock().now();
        self.declare_backfills(conn, now)?;
        let rows = stored_rows(conn)?;
        for (model, row) in self.candidates(&rows, options, &mut report) {
            if row.next_batch_at > now {
                earliest(&mut report.next_batch_at, row.next_batch_at);
                if row.last_error.is_some() {
                    continue; // failing: the next model goes on meanwhile
                }
                break;
            }
            match self.batch(conn, model, options, now) {
                Ok(Outcome::Batch(batch)) => {
                    earliest(&mut report.next_batch_at, batch.next_batch_at);
                    report.batches.push(batch);
                    break;
                }
                Ok(Outcome::Held) => {
                    // Its holder goes on; look again soon, in case it stops.
                    earliest(
                        &mut report.next_batch_at,
                        now + TimeDelta::milliseconds(200),
                    );
                    report.held.push(model.name);
                    break;
                }
                Ok(Outcome::NotYet(at)) => {
                    if let Some(at) = at {
                        earliest(&mut report.next_batch_at, at);
                        break;
                    }
                }
                Err(error) if error.is_connection_lost() => return Err(error),
                Err(error) => {
                    let retry_at = now + delta(options.retry_after);
                    let text = error.to_string();
                    guard::as_library(conn, |conn| {
                        conn.record_backfill_failure(
                            Token::new(),
                            model.table,
                            model.name,
                            &text,
                            retry_at,
                        )
                    })?;
                    tracing::warn!(model = model.name, table = %model.table, error = %text, "outbox backfill: a batch failed");
                    earliest(&mut report.next_batch_at, retry_at);
                    report.failures.push(BackfillFailure {
                        table: model.table,
                        model: model.name,
                        error,
                    });
                }
            }
        }
        Ok(report)
    }

    /// Every model's backfill: those this outbox backfills, and those stored in
    /// `outbox_backfills` (an outbox without models, like the command line's, reports
    /// what the application recorded). A declared version below the stored one, or a
    /// stored version of a model no longer declared, is the status's
    /// [`problem`](BackfillStatus::problem).
    pub fn backfill_status(&self, conn: &mut C) -> Result<Vec<BackfillStatus>> {
        let rows = stored_rows(conn)?;
        let models = self.shared.backfills.models();
        let covered: HashSet<OutboxTable> = models.iter().map(|model| model.table).collect();
        let mut statuses = Vec::new();
        let mut seen = HashSet::new();
        for row in rows {
            let Some(table) = row.table() else { continue };
            let registered = models
                .iter()
                .find(|model| model.table == table && model.name == row.model);
            let declared = match registered {
                Some(model) => Some(model.version),
                None if covered.contains(&table) => None,
                None => row.declared_version,
            };
            seen.insert((table, row.model.clone()));
            statuses.push(BackfillStatus::new(row, table, declared));
        }
        for model in models {
            if !seen.contains(&(model.table, model.name.to_owned())) {
                let row = BackfillRow::new(model.table, model.name);
                statuses.push(BackfillStatus::new(row, model.table, Some(model.version)));
            }
        }
        Ok(statuses)
    }

    /// Asks for `model`'s backfill now (what `diesel-outbox backfill run` does): it goes
    /// before the other models, and runs even when [`BackfillOptions::automatic`] is off,
    /// at `rows_per_second` if given. Whether the model is known (the application records
    /// its models at its first backfill step).
    pub fn request_backfill(
        &self,
        conn: &mut C,
        table: OutboxTable,
        model: &str,
        rows_per_second: Option<u32>,
    ) -> Result<bool> {
        let rate = rows_per_second.map(|rate| i32::try_from(rate).unwrap_or(i32::MAX));
        let now = self.clock().now();
        let requested = guard::as_library(conn, |conn| {
            conn.request_backfill(Token::new(), table, model, rate, now)
        })?;
        Ok(requested > 0)
    }

    /// Records the declared versions, once per outbox (and again after a model's row went
    /// missing): the rows a batch locks must exist, and operators' tools read them.
    fn declare_backfills(&self, conn: &mut C, now: NaiveDateTime) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.shared.backfills_declared.load(Ordering::Acquire) {
            return Ok(());
        }
        let models = self.shared.backfills.models();
        conn.drain_transaction(Token::new(), |conn| {
            for table in OutboxTable::ALL {
                let declared: Vec<(&str, i32)> = models
                    .iter()
                    .filter(|model| model.table == table)
                    .map(|model| (model.name, model.version))
                    .collect();
                if !declared.is_empty() {
                    guard::as_library(conn, |conn| {
                        conn.declare_backfills(Token::new(), table, &declared, now)
                    })?;
                }
            }
            Ok::<_, Error>(())
        })?;
        self.shared
            .backfills_declared
            .store(true, Ordering::Release);
        for status in self.backfill_status(conn)? {
            if let Some(problem) = status.problem {
                tracing::warn!(model = %status.model, table = %status.table, %problem, "outbox backfill: the declaration cannot run");
            }
        }
        Ok(())
    }

    /// The registered models with work, with their rows: asked for first (oldest request
    /// first), then in registration order. A model whose declaration cannot run is
    /// reported, not backfilled.
    fn candidates<'o>(
        &'o self,
        rows: &[BackfillRow],
        options: &BackfillOptions,
        report: &mut BackfillReport,
    ) -> Vec<(&'o BackfillModel<C>, BackfillRow)> {
        let mut found = Vec::new();
        for model in self.shared.backfills.models() {
            let Some(row) = rows
                .iter()
                .find(|row| row.table() == Some(model.table) && row.model == model.name)
            else {
                self.forget_declarations();
                continue;
            };
            let highest = row.target_version.unwrap_or(row.version).max(row.version);
            if model.version < highest {
                report.failures.push(BackfillFailure {
                    table: model.table,
                    model: model.name,
                    error: Error::Backfill {
                        table: model.table,
                        model: model.name.to_owned(),
                        problem: BackfillProblem::VersionWentDown {
                            declared: model.version,
                            stored: highest,
                        },
                    },
                });
                continue;
            }
            let pending = model.version > row.version;
            if pending && (options.automatic || row.requested_at.is_some()) {
                found.push((model, row.clone()));
            }
        }
        // A stable sort: the requests by age, then the rest in registration order.
        found.sort_by_key(|(_, row)| (row.requested_at.is_none(), row.requested_at));
        found
    }

    fn forget_declarations(&self) {
        use std::sync::atomic::Ordering;
        self.shared
            .backfills_declared
            .store(false, Ordering::Release);
    }

    /// One batch of `model`, in one outbox context: the model's row held, the next page
    /// written, the new position and throttle stored.
    fn batch(
        &self,
        conn: &mut C,
        model: &BackfillModel<C>,
        options: &BackfillOptions,
        start: NaiveDateTime,
    ) -> Result<Outcome> {
        let clock = self.clock();
        let now = || clock.now();
        // The backfill delivers nothing itself: its rows wait for the drain (and on
        // PostgreSQL wake listening workers, as the outbox's commits do).
        let settings = Settings {
            now: &now,
            flush: false,
            flushes: false,
            max_payload_bytes: self.shared.max_payload_bytes,
            notify: self.shared.notify,
        };
        let (outcome, committed) = context::run_recorded(conn, &settings, |ctx| {
            let Some(StoredBackfill(mut row)) =
                ctx.connection()
                    .lock_backfill(Token::new(), model.table, model.name)?
            else {
                return Ok::<_, Error>(Outcome::Held);
            };
            if model.version <= row.version {
                return Ok(Outcome::NotYet(None));
            }
            if row.next_batch_at > start {
                return Ok(Outcome::NotYet(Some(row.next_batch_at)));
            }
            if row.target_version != Some(model.version) {
                // A new run (or a version raised again during one): from the first key.
                row.target_version = Some(model.version);
                row.last_id = None;
                row.rows_done = 0;
                row.rows_total = Some((model.count)(ctx.connection())?);
                row.started_at = Some(start);
                row.finished_at = None;
            }
            let rate = row
                .rows_per_second
                .and_then(|rate| u32::try_from(rate).ok())
                .or(options.rows_per_second);
            let limit = options.batch_limit(rate);
            let page: Page = model.write_page(ctx, row.last_id, limit as i64)?;
            let finished = page.objects < limit;
            row.rows_done += page.objects as i64;
            row.last_id = page.last_id.or(row.last_id);
            row.updated_at = Some(clock.now());
            row.last_error = None;
            if finished {
                row.version = model.version;
                row.target_version = None;
                row.finished_at = row.updated_at;
                row.requested_at = None;
                row.rows_per_second = None;
            } else {
                row.next_batch_at = throttle(row.next_batch_at, start, page.objects, rate);
            }
            let stored = StoredBackfill(row);
            guard::as_library(ctx.connection(), |conn| {
                conn.save_backfill(Token::new(), &stored)
            })?;
            let row = stored.0;
            Ok(Outcome::Batch(BackfillBatch {
                table: model.table,
                model: model.name,
                version: model.version,
                objects: page.objects,
                rows: page.rows,
                last_id: row.last_id,
                finished,
                next_batch_at: if finished { start } else { row.next_batch_at },
            }))
        })?;
        if let Some(committed) = committed {
            let metrics = &self.drainer().metrics;
            for &(table, category, rows) in &committed.saved {
                metrics.rows_saved(table, category, rows);
            }
        }
        if let Outcome::Batch(batch) = &outcome {
            tracing::debug!(model = batch.model, objects = batch.objects, last_id = ?batch.last_id, finished = batch.finished, "outbox backfill: a batch");
        }
        Ok(outcome)
    }
}

/// When the batch after one of `objects` objects, begun at `start`, may begin: the rate's
/// schedule goes on from `previous` when the batch was less than a second late (so that
/// waking a little late costs no rate), and from `start` otherwise (so that a pause
/// never turns into a burst).
fn throttle(
    previous: NaiveDateTime,
    start: NaiveDateTime,
    objects: usize,
    rate: Option<u32>,
) -> NaiveDateTime {
    let Some(rate) = rate.filter(|rate| *rate > 0) else {
        return start;
    };
    let from = if previous >= start - TimeDelta::seconds(1) {
        previous
    } else {
        start
    };
    from + delta(Duration::from_secs_f64(objects as f64 / f64::from(rate)))
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn earliest(slot: &mut Option<NaiveDateTime>, at: NaiveDateTime) {
    *slot = Some(slot.map_or(at, |known| known.min(at)));
}

/// Every model's stored backfill.
fn stored_rows<C: OutboxConnection>(conn: &mut C) -> Result<Vec<BackfillRow>> {
    Ok(conn
        .load_backfills(Token::new())?
        .into_iter()
        .map(|stored| stored.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> NaiveDateTime {
        crate::row::write::DUE_AT_ONCE + delta(Duration::from_secs_f64(seconds))
    }

    #[test]
    fn the_throttle_keeps_the_rate_without_bursts() {
        // The first batch: from its start.
        assert_eq!(throttle(at(0.0), at(100.0), 50, Some(100)), at(100.5));
        // A little late: the schedule goes on, so the rate holds.
        assert_eq!(throttle(at(100.5), at(100.7), 50, Some(100)), at(101.0));
        // Long after: from now, no burst to catch up.
        assert_eq!(throttle(at(101.0), at(200.0), 50, Some(100)), at(200.5));
        // No rate: at once.
        assert_eq!(throttle(at(0.0), at(7.0), 50, None), at(7.0));
    }

    #[test]
    fn a_batch_holds_at_most_a_second_of_the_rate() {
        let options = BackfillOptions {
            batch_size: 500,
            ..BackfillOptions::default()
        };
        assert_eq!(options.batch_limit(Some(100)), 100);
        assert_eq!(options.batch_limit(Some(10_000)), 500);
        assert_eq!(options.batch_limit(None), 500);
        assert_eq!(options.batch_limit(Some(0)), 500);
    }
}
