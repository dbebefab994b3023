//! Calling receivers: one step of a batch's plan, with panics caught and transactions a
//! receiver left open closed, turned into failures that name their row.

use std::panic::{self, AssertUnwindSafe};

use super::plan::{ShardPlan, Step};
use crate::backend::guard::{self, Scope};
use crate::backend::transaction;
use crate::backend::OutboxConnection;
use crate::deliver::receiver::{Handler, Receivers};
use crate::key::error::{BoxError, DeliveryFailure, FailureCause};
use crate::row::record::OutboxMessage;

/// A key that failed, and why.
pub(crate) struct KeyFailure {
    pub(crate) shard: usize,
    pub(crate) key: usize,
    pub(crate) failure: DeliveryFailure,
}

/// The failure of `key` of `plans[shard]`, for the report.
pub(crate) fn failure<C>(
    receivers: &Receivers<C>,
    plans: &[ShardPlan],
    shard: usize,
    key: usize,
    cause: FailureCause,
) -> KeyFailure {
    let plan = &plans[shard];
    let message = &plan.keys[key].message;
    KeyFailure {
        shard,
        key,
        failure: DeliveryFailure {
            shard: plan.key().clone(),
            category: message.category,
            category_name: receivers
                .get(message.table, message.category)
                .map(|registered| registered.category_name),
            object_identifier: message.object_identifier,
            row_id: message.id,
            cause,
        },
    }
}

/// Runs `step`'s receiver call, restricted to `members` (the step's keys still to be
/// delivered). Returns the keys that failed; none means every member was delivered.
pub(crate) fn run_step<C: OutboxConnection>(
    conn: &mut C,
    receivers: &Receivers<C>,
    plans: &[ShardPlan],
    step: &Step,
    members: &[(usize, usize)],
) -> Vec<KeyFailure> {
    let Some(&(first_shard, first_key)) = members.first() else {
        return Vec::new();
    };
    let first = &plans[first_shard].keys[first_key].message;
    let Some(registered) = receivers.get(first.table, first.category) else {
        return vec![failure(
            receivers,
            plans,
            first_shard,
            first_key,
            FailureCause::NoReceiver,
        )];
    };
    let span = tracing::debug_span!(
        "outbox.deliver",
        category = registered.category_name,
        keys = members.len(),
    );
    let _entered = span.enter();
    match (&registered.handler, step) {
        (Handler::One(receiver), Step::One { .. }) => {
            let outcome = guarded(conn, |conn| {
                receiver.receive(conn, first).map_err(Outcome::One)
            });
            match outcome {
                Ok(()) => Vec::new(),
                Err(cause) => vec![failure(
                    receivers,
                    plans,
                    first_shard,
                    first_key,
                    cause.into_cause(),
                )],
            }
        }
        (Handler::Batch(receiver), _) => {
            let messages: Vec<OutboxMessage> = members
                .iter()
                .map(|&(shard, key)| plans[shard].keys[key].message.clone())
                .collect();
            let outcome = guarded(conn, |conn| {
                receiver
                    .receive_batch(conn, &messages)
                    .map_err(|error| Outcome::Batch(error.into_parts()))
            });
            batch_failures(receivers, plans, members, outcome)
        }
        // Steps are built from the handlers, so a one-key handler never gets a batch
        // step; if it did, calling it per key would be the safe reading.
        (Handler::One(_), Step::Batch { .. }) => {
            let mut failures = Vec::new();
            for &(shard, key) in members {
                let single = Step::One { shard, key };
                failures.extend(run_step(conn, receivers, plans, &single, &[(shard, key)]));
            }
            failures
        }
    }
}

/// What a receiver call returned, before it is turned into key failures.
enum Outcome {
    One(BoxError),
    Batch((Option<BoxError>, Vec<(usize, BoxError)>)),
    Panicked(String),
    LeftTransactionOpen,
}

impl Outcome {
    fn into_cause(self) -> FailureCause {
        match self {
            Outcome::One(error) => FailureCause::Receiver(error),
            Outcome::Batch((whole, _)) => match whole {
                Some(error) => FailureCause::Receiver(error),
                None => FailureCause::Receiver("the batch receiver failed".into()),
            },
            Outcome::Panicked(message) => FailureCause::Panicked(message),
            Outcome::LeftTransactionOpen => FailureCause::Receiver(
                "the receiver returned with a transaction of its own still open".into(),
            ),
        }
    }
}

/// Runs a receiver call with its panics caught and the connection's transaction depth
/// restored: a panic inside a transaction of the receiver's own leaves it open. The
/// receiver is application code: the guard checks its statements.
fn guarded<C: OutboxConnection>(
    conn: &mut C,
    call: impl FnOnce(&mut C) -> Result<(), Outcome>,
) -> Result<(), Outcome> {
    let depth = transaction::depth(conn).unwrap_or(0);
    // The receiver's state is its own; the connection is rolled back on failure, so
    // observing it after a panic is fine.
    let application = || guard::within(&mut *conn, Scope::application, call);
    let outcome = match panic::catch_unwind(AssertUnwindSafe(application)) {
        Ok(outcome) => outcome,
        Err(panic) => Err(Outcome::Panicked(panic_message(&*panic))),
    };
    let left_open = transaction::depth(conn).map_or(true, |now| now > depth);
    if left_open {
        if let Err(error) = transaction::unwind_to(conn, depth) {
            tracing::error!(%error, "closing the transactions a receiver left open failed");
        }
        if outcome.is_ok() {
            return Err(Outcome::LeftTransactionOpen);
        }
    }
    outcome
}

/// The failed keys of a batch call: in each shard, the first failed message (and the
/// shard stops there); a whole-batch failure or a panic fails every shard's first key.
fn batch_failures<C>(
    receivers: &Receivers<C>,
    plans: &[ShardPlan],
    members: &[(usize, usize)],
    outcome: Result<(), Outcome>,
) -> Vec<KeyFailure> {
    let mut failed: Vec<KeyFailure> = Vec::new();
    let mut add = |shard: usize, key: usize, cause: FailureCause| {
        if failed.iter().all(|f| f.shard != shard) {
            failed.push(failure(receivers, plans, shard, key, cause));
        }
    };
    match outcome {
        Ok(()) => {}
        Err(Outcome::Batch((None, mut by_index))) => {
            by_index.sort_by_key(|(index, _)| *index);
            for (index, error) in by_index {
                match members.get(index) {
                    Some(&(shard, key)) => add(shard, key, FailureCause::Receiver(error)),
                    None => {
                        tracing::warn!(index, "a batch receiver named a message it was not given")
                    }
                }
            }
        }
        Err(Outcome::Panicked(message)) => {
            for &(shard, key) in members {
                add(shard, key, FailureCause::Panicked(message.clone()));
            }
        }
        Err(outcome) => {
            // The whole call failed: the first shard gets the error itself, the others
            // its text (an error is not cloneable).
            let mut cause = Some(outcome.into_cause());
            let text = match &cause {
                Some(FailureCause::Receiver(error)) => error.to_string(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            for &(shard, key) in members {
                let this = cause
                    .take()
                    .unwrap_or_else(|| FailureCause::Receiver(text.clone().into()));
                add(shard, key, this);
            }
        }
    }
    failed
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
