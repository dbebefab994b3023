//! Draining one shard: coalesced groups in id order (DESIGN 5.3 and 5.4).
//!
//! Each group is one transaction: lock the shard's head row, find the newest row of the
//! head's coalescing key, call the receiver with it, delete the key's rows up to that id.
//! A receiver that fails rolls its transaction back (its own writes too), leaves the group
//! in place and stops the shard: rows of a shard are delivered strictly in order.

use std::panic::{self, AssertUnwindSafe};

use chrono::NaiveDateTime;

use super::claim::{lock_head, HeadLock};
use super::handle::Shared;
use super::report::{DeliveryFailure, DrainReport, FailureCause};
use super::shard::ShardKey;
use crate::backend::OutboxConnection;
use crate::error::Error;
use crate::receivers::OutboxMessage;

/// How a shard is drained.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mode {
    /// Only rows with `id <= bound`.
    bound: Option<i64>,
    /// Wait for a shard another worker holds, instead of leaving it to that worker.
    wait: bool,
}

impl Mode {
    /// Periodic: every row, and a shard held by another worker is left to it.
    pub(crate) const PERIODIC: Mode = Mode {
        bound: None,
        wait: false,
    };

    /// After this worker's own claim: every row, waiting for a momentary holder (a flush
    /// finishing a group). The claim pushed the shard's schedule out, so no other periodic
    /// worker will claim it meanwhile; giving up here instead would leave the shard idle
    /// for its whole backoff.
    pub(crate) const CLAIMED: Mode = Mode {
        bound: None,
        wait: true,
    };

    /// Until empty (the test helper): every row, waiting for held shards.
    pub(crate) const EXHAUST: Mode = Mode {
        bound: None,
        wait: true,
    };

    /// Flush after commit: rows up to `bound` only, waiting for a held shard.
    pub(crate) fn flush(bound: i64) -> Mode {
        Mode {
            bound: Some(bound),
            wait: true,
        }
    }

    fn bound(self) -> Option<i64> {
        self.bound
    }

    fn waits(self) -> bool {
        self.wait
    }
}

/// One group's outcome.
enum Step {
    /// Delivered (or skipped by the kill switch) and deleted.
    Done(Done),
    /// Another worker holds the shard.
    Busy,
    /// Nothing (left) to do.
    Empty,
}

struct Done {
    skipped: bool,
    category: i32,
    rows: usize,
    newest_added: NaiveDateTime,
    oldest_added: NaiveDateTime,
}

/// Why a group's transaction rolled back.
enum StepError {
    Failed(Box<DeliveryFailure>),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for StepError {
    fn from(error: diesel::result::Error) -> Self {
        StepError::Database(error)
    }
}

/// Drains `key` group by group until it is empty (up to the bound), held by another
/// worker, or a group fails. Database errors are returned; receiver failures are reported.
pub(crate) fn drain_shard<C: OutboxConnection>(
    outbox: &Shared<C>,
    conn: &mut C,
    key: &ShardKey,
    mode: Mode,
) -> Result<DrainReport, Error> {
    let span = tracing::debug_span!("outbox.drain_shard", shard = %key, flush = mode.waits());
    let _entered = span.enter();
    let skip = outbox.is_skipped(key);
    let mut report = DrainReport {
        shards: 1,
        ..DrainReport::default()
    };
    loop {
        match conn.outbox_write_transaction(|conn| step(outbox, conn, key, mode, skip)) {
            Ok(Step::Done(done)) => record(outbox, key, done, &mut report),
            Ok(Step::Busy) => {
                tracing::debug!(shard = %key, "another worker holds the shard; leaving it");
                break;
            }
            Ok(Step::Empty) => break,
            Err(StepError::Failed(failure)) => {
                tracing::warn!(
                    shard = %key,
                    category = failure.category,
                    object = failure.object_identifier,
                    row = failure.row_id,
                    error = %failure,
                    "outbox delivery failed; the group stays for a retry"
                );
                outbox.metrics.delivery_failed(key.silo(), failure.category);
                report.failures.push(*failure);
                break;
            }
            Err(StepError::Database(error)) => return Err(error.into()),
        }
    }
    Ok(report)
}

/// One group, inside its transaction.
fn step<C: OutboxConnection>(
    outbox: &Shared<C>,
    conn: &mut C,
    key: &ShardKey,
    mode: Mode,
    skip: bool,
) -> Result<Step, StepError> {
    let head = match lock_head(conn, key, mode.bound(), mode.waits())? {
        HeadLock::Locked(head, _) => head,
        HeadLock::Busy => return Ok(Step::Busy),
        HeadLock::Empty => return Ok(Step::Empty),
    };
    let newest =
        conn.outbox_group_newest(key, head.category, head.object_identifier, mode.bound())?;
    // The head belongs to its own group, so this only happens if it vanished under us.
    let Some(message) = newest else {
        return Ok(Step::Empty);
    };
    if !skip {
        deliver(outbox, conn, key, &message)?;
    }
    let rows = conn.outbox_delete_group(key, head.category, head.object_identifier, message.id)?;
    tracing::trace!(shard = %key, category = head.category, object = head.object_identifier, up_to = message.id, rows, "deleted the coalesced rows");
    Ok(Step::Done(Done {
        skipped: skip,
        category: head.category,
        rows,
        newest_added: message.date_added,
        oldest_added: head.date_added,
    }))
}

/// Calls the category's receiver with the group's newest row, turning an error or a panic
/// into a failure of this group.
fn deliver<C: OutboxConnection>(
    outbox: &Shared<C>,
    conn: &mut C,
    key: &ShardKey,
    message: &OutboxMessage,
) -> Result<(), StepError> {
    let registered = outbox.receivers.get(key.silo(), message.category);
    let failure = |category_name, cause| {
        StepError::Failed(Box::new(DeliveryFailure {
            shard: key.clone(),
            category: message.category,
            category_name,
            object_identifier: message.object_identifier,
            row_id: message.id,
            cause,
        }))
    };
    let Some(registered) = registered else {
        return Err(failure(None, FailureCause::NoReceiver));
    };
    let name = Some(registered.category_name);
    let _span = tracing::debug_span!(
        "outbox.deliver",
        category = registered.category_name,
        shard = %key,
        object = message.object_identifier,
        row = message.id,
    )
    .entered();
    // The receiver's state is its own; the connection is rolled back on failure, so
    // observing it after a panic is fine.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        registered.receiver.receive(conn, message)
    }));
    match outcome {
        Ok(Ok(())) => {
            tracing::debug!("delivered");
            Ok(())
        }
        Ok(Err(error)) => Err(failure(name, FailureCause::Receiver(error))),
        Err(panic) => Err(failure(
            name,
            FailureCause::Panicked(panic_message(&*panic)),
        )),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Counts a committed group in the report and the metrics.
fn record<C: OutboxConnection>(
    outbox: &Shared<C>,
    key: &ShardKey,
    done: Done,
    report: &mut DrainReport,
) {
    let silo = key.silo();
    let rows = done.rows as u64;
    if done.skipped {
        tracing::info!(shard = %key, category = done.category, rows, "kill switch: deleted without delivery");
        outbox.metrics.rows_skipped(silo, done.category, rows);
        report.skipped += 1;
        return;
    }
    let now = outbox.clock.now();
    let elapsed = |since: NaiveDateTime| (now - since).to_std().unwrap_or_default();
    outbox.metrics.rows_processed(silo, done.category, rows);
    outbox
        .metrics
        .processing_lag(silo, done.category, elapsed(done.newest_added));
    outbox
        .metrics
        .coalesced_queue_time(silo, done.category, elapsed(done.oldest_added));
    report.delivered += 1;
    report.rows_deleted += done.rows;
}
