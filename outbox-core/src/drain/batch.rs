//! One claimed batch: load the shards' windows, plan, deliver in as few transactions as
//! failures allow, record what happened, release.
//!
//! In-transaction delivery: the happy path is one transaction: every receiver call, one
//! DELETE of every delivered row, commit. When a receiver fails at some key, that
//! transaction rolls back and the calls before the failure are replayed and committed
//! without the failing key and the rest of its shard; delivery then goes on in a new
//! transaction. A statement that fails for the whole batch is retried shard by shard, so
//! one shard's trouble stays in that shard.
//!
//! Leased delivery: the batch's lease was committed by its claim. The receivers that need
//! no transaction are called first, with none open, each shard up to its first key whose
//! receiver wants its writes atomic with the delete; the lease is renewed between calls
//! (the heartbeat), and a renewal that finds it gone cancels the batch. A failing key stops
//! its shard and nothing is replayed. Then the finishing transaction checks the lease is
//! still this worker's (renewing it: a worker whose lease was taken over deletes nothing),
//! calls the atomic keys as in-transaction delivery would, deletes every delivered row,
//! records the outcomes and deletes the lease.
//!
//! A shard a dead worker left (isolated) is delivered one key per batch, so that a death
//! counts against the key it happened at.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

use super::backoff::{self, shard_failure};
use super::deliver::{failure, run_step, KeyFailure};
use super::plan::{
    first_atomic_keys, keys_contradicting_declaration, keys_without_receiver, steps, Limits,
    ShardPlan, Step,
};
use super::report::DrainReport;
use super::Drainer;
use crate::backend::claim::{Claim, ClaimedShard, WindowRequest};
use crate::backend::parked::{ParkRequest, ParkedKey};
use crate::backend::state::{bounded_error, ShardFailure, ShardState};
use crate::backend::OutboxConnection;
use crate::key::error::{DeliveryFailure, Error, FailureCause};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;
use crate::row::record::OutboxMessage;

/// Delivers `claim` and releases it. Only an error that ends the round (the connection
/// is gone) is returned; everything confined to a shard is in the report.
pub(crate) fn run<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    mut claim: Claim,
    report: &mut DrainReport,
) -> Result<(), Error> {
    let _span = tracing::debug_span!(
        "outbox.batch",
        table = %claim.table,
        shards = claim.shards.len(),
        lease = claim.lease,
    )
    .entered();
    report.shards += claim.shards.len();
    report.shards_not_claimed += claim.busy;
    let delivered = deliver_claim(drainer, conn, &mut claim, report);
    let released = release(conn, &claim);
    delivered?;
    released
}

/// Pauses between tries of a release: a release that fails (the database is busy) is
/// tried again at once rather than left to the lease's expiry, which would keep every
/// shard of the batch from every drain until then.
const RELEASE_PAUSES: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

/// Lets go of `claim`, retrying a failed release; only a lost connection (whose session's
/// holds the server drops) ends the round.
fn release<C: OutboxConnection>(conn: &mut C, claim: &Claim) -> Result<(), Error> {
    let mut pauses = RELEASE_PAUSES.iter();
    loop {
        match conn.release_claim(Token::new(), claim) {
            Ok(()) => return Ok(()),
            Err(error) if crate::key::error::is_connection_lost(&error) => return Err(error.into()),
            Err(error) => match pauses.next() {
                Some(pause) => {
                    tracing::debug!(%error, lease = claim.lease, "releasing a batch failed; trying again");
                    std::thread::sleep(*pause);
                }
                None => {
                    tracing::warn!(%error, lease = claim.lease, "releasing a batch failed again and again; its lease will expire");
                    return Ok(());
                }
            },
        }
    }
}

fn deliver_claim<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    claim: &mut Claim,
    report: &mut DrainReport,
) -> Result<(), Error> {
    // A flush's shard emptied since its writer committed has nothing to deliver.
    let shards: Vec<ClaimedShard> = claim
        .shards
        .iter()
        .filter(|shard| shard.bound != i64::MIN)
        .cloned()
        .collect();
    if shards.is_empty() {
        return Ok(());
    }
    let table = claim.table;
    let leased = drainer.options.delivery.is_leased::<C>();
    let lease = claim.lease.map(|id| LeaseUse {
        id,
        leased,
        delete: true,
    });
    let attempt = plan(drainer, conn, table, shards.clone())
        .and_then(|plans| deliver(drainer, conn, table, plans, lease, report));
    match attempt {
        Ok(()) => {
            // The last delivery transaction deleted the lease; the release still lets go
            // of its lock.
            claim.lease_deleted = true;
            Ok(())
        }
        Err(error) if error.is_connection_lost() => Err(error),
        Err(error) if shards.len() > 1 => {
            tracing::debug!(%error, shards = shards.len(), "a batch failed as a whole; retrying it shard by shard");
            let lease = lease.map(|lease| LeaseUse {
                delete: false,
                ..lease
            });
            for shard in shards {
                deliver_alone(drainer, conn, table, shard, lease, report)?;
            }
            Ok(())
        }
        Err(error) => {
            let shard = shards.into_iter().next();
            if let Some(shard) = shard {
                shard_failed(drainer, conn, table, shard, &error, report)?;
            }
            Ok(())
        }
    }
}

/// One shard of a batch that failed as a whole.
fn deliver_alone<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    shard: ClaimedShard,
    lease: Option<LeaseUse>,
    report: &mut DrainReport,
) -> Result<(), Error> {
    let attempt = plan(drainer, conn, table, vec![shard.clone()])
        .and_then(|plans| deliver(drainer, conn, table, plans, lease, report));
    match attempt {
        Ok(()) => Ok(()),
        Err(error) if error.is_connection_lost() => Err(error),
        Err(error) => shard_failed(drainer, conn, table, shard, &error, report),
    }
}

/// Loads the shards' windows and the newest rows of keys their windows cut.
fn plan<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    shards: Vec<ClaimedShard>,
) -> Result<Vec<ShardPlan>, Error> {
    let window = drainer.options.window.max(1);
    let requests: Vec<WindowRequest> = shards
        .iter()
        .map(|shard| WindowRequest {
            shard: shard.key.clone(),
            bound: shard.bound,
        })
        .collect();
    let window_i64 = i64::try_from(window).unwrap_or(i64::MAX);
    let max_rows = drainer.options.max_batch_rows.max(1);
    let max_rows_i64 = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let messages = conn.load_windows(Token::new(), table, &requests, window_i64, max_rows_i64)?;
    let capped = messages.len() >= max_rows;
    let mut by_shard: HashMap<ShardKey, Vec<OutboxMessage>> = HashMap::new();
    for message in messages {
        by_shard
            .entry(message.shard_key())
            .or_default()
            .push(message);
    }
    // When the cap bound, shards were read in order up to the last one with rows: it may
    // be cut short, and those after it were not read (they stay due, with their state).
    let last_read = if capped {
        shards
            .iter()
            .rposition(|shard| by_shard.contains_key(&shard.key))
    } else {
        None
    };
    let mut plans: Vec<ShardPlan> = shards
        .into_iter()
        .enumerate()
        .filter(|(index, _)| last_read.is_none_or(|last| *index <= last))
        .map(|(index, shard)| {
            let mut rows = by_shard.remove(&shard.key).unwrap_or_default();
            rows.sort_by_key(|message| message.id);
            let cut_short = last_read == Some(index);
            let mut plan = ShardPlan::new(shard, rows, window, cut_short);
            if plan.isolated() {
                plan.head_key_only();
            }
            plan
        })
        .collect();
    let after: Vec<_> = plans
        .iter()
        .flat_map(ShardPlan::keys_after_window)
        .collect();
    if !after.is_empty() {
        let rows = conn.rows_after_windows(Token::new(), table, &after)?;
        let newest: Vec<i64> = plans
            .iter_mut()
            .flat_map(|plan| plan.add_rows_after_window(&rows))
            .collect();
        let messages = conn.load_messages(Token::new(), table, &newest)?;
        for plan in &mut plans {
            plan.set_newest(&messages);
        }
    }
    Ok(plans)
}

/// Why a delivery transaction did not commit.
enum Attempt {
    /// A receiver failed at step `at`.
    Stopped { at: usize, failed: Vec<KeyFailure> },
    /// The batch's lease is no longer this worker's.
    LeaseLost,
    /// A statement failed.
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Attempt {
    fn from(error: diesel::result::Error) -> Self {
        Attempt::Database(error)
    }
}

/// The batch's lease as a delivery uses it.
#[derive(Clone, Copy, Debug)]
struct LeaseUse {
    /// The lease.
    id: i64,
    /// Leased delivery: renewed while receivers run outside any transaction, and checked
    /// by each finishing transaction before it deletes anything.
    leased: bool,
    /// The last finishing transaction deletes it (a shard delivered alone after its
    /// batch failed leaves it to the release).
    delete: bool,
}

/// Delivers the plans (see the module docs) and records each shard's outcome.
fn deliver<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    plans: Vec<ShardPlan>,
    lease: Option<LeaseUse>,
    report: &mut DrainReport,
) -> Result<(), Error> {
    let receivers = &drainer.receivers;
    let mut limits = Limits::default();
    let mut failures: Vec<KeyFailure> = Vec::new();
    for (shard, key) in keys_without_receiver(&plans, receivers) {
        limits.stop(shard, key);
        add_failure(
            &mut failures,
            failure(receivers, &plans, shard, key, FailureCause::NoReceiver),
        );
    }
    for (shard, key, declared) in keys_contradicting_declaration(&plans, receivers) {
        limits.stop(shard, key);
        let cause = FailureCause::UnreadableRow(format!(
            "the row contradicts the declaration: its shard scope {} is not its category's \
             scope {declared}; it is not delivered (discard it with `diesel-outbox \
             discard-row`, or park it with the category's exhaustion policy)",
            plans[shard].key().shard().scope
        ));
        add_failure(&mut failures, failure(receivers, &plans, shard, key, cause));
    }
    // Leased: the calls that need no transaction come first, with none open.
    let checked = lease.filter(|lease| lease.leased).map(|lease| lease.id);
    let mut carried: Vec<(usize, usize)> = Vec::new();
    if let Some(id) = checked {
        match call_outside(drainer, conn, &plans, id, &mut limits, &mut failures)? {
            Some(done) => carried = done,
            None => {
                lease_lost(id, &plans, report);
                return Ok(());
            }
        }
    }
    let mut starts = vec![0usize; plans.len()];
    for &(shard, _) in &carried {
        starts[shard] += 1;
    }
    let steps = steps(&plans, receivers, &limits, &starts);
    let mut delivered: Vec<(usize, usize)> = Vec::new();
    let (mut start, mut end) = (0, steps.len());
    let parked = loop {
        let last = end == steps.len();
        let deleted_lease = lease
            .filter(|lease| last && lease.delete)
            .map(|lease| lease.id);
        let attempt = conn.drain_transaction(Token::new(), |conn| {
            if let Some(id) = checked {
                if !conn.renew_lease(Token::new(), id, lease_expiry(drainer))? {
                    return Err(Attempt::LeaseLost);
                }
            }
            let mut done =
                call_receivers(conn, drainer, &plans, &steps[start..end], start, &limits)?;
            // Keys delivered outside any transaction are deleted by the first commit.
            done.extend(carried.iter().copied());
            let mut ids: Vec<i64> = done
                .iter()
                .flat_map(|&(shard, key)| plans[shard].keys[key].ids.iter().copied())
                .collect();
            let mut parked = (Vec::new(), 0);
            if last {
                ids.extend(compacted_ids(&plans));
                parked.0 = record_outcomes(drainer, conn, table, &plans, &failures)?;
                if drainer.exhaustion.any_parks() {
                    let all = delivered.iter().chain(&done).copied();
                    parked.1 = drop_superseded_parked(conn, table, &plans, all)?;
                }
            }
            conn.delete_delivered(Token::new(), table, &ids, deleted_lease)?;
            Ok::<_, Attempt>((done, parked))
        });
        match attempt {
            Ok((done, parked_now)) => {
                carried.clear();
                delivered.extend(done);
                if last {
                    break parked_now;
                }
                (start, end) = (end, steps.len());
            }
            Err(Attempt::Stopped { at, failed }) => {
                for failed in failed {
                    limits.stop(failed.shard, failed.key);
                    add_failure(&mut failures, failed);
                }
                // Replay the calls up to the failure without the failed keys.
                end = at + 1;
            }
            Err(Attempt::LeaseLost) => {
                let id = checked.unwrap_or_default();
                count(drainer, &plans, &delivered, Vec::new(), &[], report);
                lease_lost(id, &plans, report);
                return Ok(());
            }
            Err(Attempt::Database(error)) => return Err(error.into()),
        }
    };
    let (parked, superseded) = parked;
    report.parked_superseded += superseded;
    count(drainer, &plans, &delivered, failures, &parked, report);
    Ok(())
}

/// Discards the parked groups of keys this batch delivered a newer row of: retried, such
/// a group would bring back an older state of its key after the newer one. Only the
/// holder of a shard parks or delivers its keys, so what is read here cannot change under
/// the batch. One cheap count when nothing is parked; nothing at all for an outbox none
/// of whose categories parks (groups parked under a policy it no longer has are not
/// checked: discard or retry them before dropping the policy). Returns the groups
/// dropped.
fn drop_superseded_parked<C: OutboxConnection>(
    conn: &mut C,
    table: OutboxTable,
    plans: &[ShardPlan],
    delivered: impl Iterator<Item = (usize, usize)>,
) -> Result<usize, Attempt> {
    if conn.parked_counts(Token::new(), table)?.groups == 0 {
        return Ok(0);
    }
    let newest: HashMap<ParkedKey, i64> = delivered
        .map(|(shard, key)| {
            let (plan, key) = (&plans[shard], &plans[shard].keys[key]);
            let parked = ParkedKey {
                shard: plan.key().clone(),
                category: key.category,
                object_identifier: key.object_identifier,
            };
            (parked, key.message.id)
        })
        .collect();
    let mut dropped = 0;
    for group in conn.load_parked(Token::new(), table, MAX_PARKED_CHECKED)? {
        if newest.get(&group.key).is_some_and(|&id| id > group.last_id) {
            conn.discard_parked(Token::new(), table, Some(&group.key))?;
            tracing::warn!(shard = %group.key.shard, category = group.key.category, object = group.key.object_identifier, rows = group.rows, "a parked group was superseded by a newer row of its key that was delivered: discarded, so a retry cannot bring back the older state");
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Parked groups a batch compares with what it delivered: the oldest this many. Parking
/// is for the exceptional key; an outbox with more parked groups than this has a problem
/// an operator must see first (`diesel-outbox parked list`).
const MAX_PARKED_CHECKED: i64 = 10_000;

/// Leased delivery's calls outside any transaction: each shard's keys up to the first one
/// whose receiver needs its writes atomic with the delete (those run in the finishing
/// transaction), renewing the lease between calls. A failing key stops its shard and
/// costs no other key a second call. The keys delivered (a prefix of each shard's), or
/// `None` when a renewal found the lease gone: the batch is cancelled.
fn call_outside<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    plans: &[ShardPlan],
    lease: i64,
    limits: &mut Limits,
    failures: &mut Vec<KeyFailure>,
) -> Result<Option<Vec<(usize, usize)>>, Error> {
    let receivers = &drainer.receivers;
    let mut outside = limits.clone();
    for (shard, key) in first_atomic_keys(plans, receivers) {
        outside.stop(shard, key);
    }
    let mut heartbeat = Heartbeat::new(drainer, lease);
    let mut done = Vec::new();
    for step in steps(plans, receivers, &outside, &[]) {
        if !heartbeat.beat(drainer, conn)? {
            return Ok(None);
        }
        let members: Vec<(usize, usize)> = step
            .members()
            .into_iter()
            .filter(|&(shard, key)| outside.allows(shard, key))
            .collect();
        if members.is_empty() {
            continue;
        }
        for failed in run_step(conn, receivers, plans, &step, &members) {
            limits.stop(failed.shard, failed.key);
            outside.stop(failed.shard, failed.key);
            add_failure(failures, failed);
        }
        done.extend(
            members
                .into_iter()
                .filter(|&(shard, key)| outside.allows(shard, key)),
        );
    }
    Ok(Some(done))
}

/// Renews a leased delivery's lease every [`DrainOptions::heartbeat`] while its receivers
/// run, so that the lease need only outlast one call.
///
/// [`DrainOptions::heartbeat`]: super::options::DrainOptions::heartbeat
struct Heartbeat {
    lease: i64,
    every: Duration,
    last: Instant,
}

impl Heartbeat {
    fn new<C>(drainer: &Drainer<C>, lease: i64) -> Self {
        Heartbeat {
            lease,
            every: drainer.options.heartbeat(),
            last: Instant::now(),
        }
    }

    /// Renews the lease if it is time; whether it is still ours. A renewal that fails
    /// (the database is busy) is tried again at the next call: the finishing
    /// transaction's check is what decides.
    fn beat<C: OutboxConnection>(
        &mut self,
        drainer: &Drainer<C>,
        conn: &mut C,
    ) -> Result<bool, Error> {
        if self.last.elapsed() < self.every {
            return Ok(true);
        }
        let expires = lease_expiry(drainer);
        let renewed = conn.drain_transaction(Token::new(), |conn| {
            conn.renew_lease(Token::new(), self.lease, expires)
        });
        match renewed {
            Ok(renewed) => {
                self.last = Instant::now();
                Ok(renewed)
            }
            Err(error) if crate::key::error::is_connection_lost(&error) => Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, lease = self.lease, "renewing a batch's lease failed; retried at the next call");
                Ok(true)
            }
        }
    }
}

/// When a lease renewed now expires.
fn lease_expiry<C>(drainer: &Drainer<C>) -> chrono::NaiveDateTime {
    drainer.clock.now() + chrono::Duration::seconds(drainer.options.lease_seconds())
}

/// A leased delivery whose lease another drain took over (it found it expired, backed its
/// shards off and freed them): this worker deletes nothing more and records nothing; the
/// rows not yet deleted are delivered again by whoever holds the shards now.
fn lease_lost(lease: i64, plans: &[ShardPlan], report: &mut DrainReport) {
    tracing::warn!(
        lease,
        shards = plans.len(),
        "a batch's lease was taken over while its receivers ran (a call outlasted the lease?): \
         nothing of it was deleted; its rows are delivered again"
    );
    report.leases_lost += 1;
}

/// Adds a key's failure, keeping one per shard: the earliest key, where the shard stops
/// (a key with no receiver may have been found after it, before any call).
fn add_failure(failures: &mut Vec<KeyFailure>, failed: KeyFailure) {
    match failures.iter_mut().find(|f| f.shard == failed.shard) {
        Some(existing) if failed.key < existing.key => *existing = failed,
        Some(_) => {}
        None => failures.push(failed),
    }
}

/// Runs `steps` (which start at index `offset` of the plan's steps) for the keys `limits`
/// allows; the keys delivered, or where it stopped.
fn call_receivers<C: OutboxConnection>(
    conn: &mut C,
    drainer: &Drainer<C>,
    plans: &[ShardPlan],
    steps: &[Step],
    offset: usize,
    limits: &Limits,
) -> Result<Vec<(usize, usize)>, Attempt> {
    let mut done = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let members: Vec<(usize, usize)> = step
            .members()
            .into_iter()
            .filter(|&(shard, key)| limits.allows(shard, key))
            .collect();
        if members.is_empty() {
            continue;
        }
        let failed = run_step(conn, &drainer.receivers, plans, step, &members);
        if !failed.is_empty() {
            return Err(Attempt::Stopped {
                at: offset + index,
                failed,
            });
        }
        done.extend(members);
    }
    Ok(done)
}

/// The rows the kill switch removes: every seen row of a skipped shard's keys but each
/// key's newest.
fn compacted_ids(plans: &[ShardPlan]) -> Vec<i64> {
    plans
        .iter()
        .filter(|plan| plan.skipped)
        .flat_map(|plan| &plan.keys)
        .flat_map(|key| {
            let newest = key.message.id;
            key.ids.iter().copied().filter(move |&id| id != newest)
        })
        .collect()
}

/// Stores each shard's outcome: failures back off, or park their key when its category's
/// policy says the attempts are exhausted (the shard then goes on, as after a success);
/// shards that had a stored state and did not fail forget their failures (a skipped shard
/// keeps its switch, with its rows up to what was seen covered). Returns the indexes of
/// the failures whose keys were parked.
fn record_outcomes<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    plans: &[ShardPlan],
    failures: &[KeyFailure],
) -> Result<Vec<usize>, Attempt> {
    let now = drainer.clock.now();
    let mut failed: Vec<ShardFailure> = Vec::new();
    let mut parked: Vec<usize> = Vec::new();
    for (index, key_failure) in failures.iter().enumerate() {
        let plan = &plans[key_failure.shard];
        let previous = plan.claimed.state.as_ref();
        let failure = &key_failure.failure;
        let message = failure.to_string();
        let attempts = backoff::attempts(previous, Some(failure));
        if drainer.exhaustion.of(failure.category).parks_at(attempts) {
            let request = ParkRequest {
                shard: plan.key().clone(),
                ids: plan.keys[key_failure.key].ids.clone(),
                parked_at: now,
                attempts,
                first_failure_at: backoff::first_failure_at(previous, Some(failure), now),
                error: bounded_error(&message),
            };
            conn.park_rows(Token::new(), table, &request)?;
            parked.push(index);
            continue;
        }
        let covered_id = conn
            .shard_max_id(Token::new(), plan.key())?
            .unwrap_or(plan.max_seen);
        failed.push(shard_failure(
            plan.key(),
            previous,
            now,
            covered_id,
            previous.is_some_and(|state| state.isolated),
            Some(failure),
            &message,
        ));
    }
    let still_failing = |shard: usize| {
        failures
            .iter()
            .enumerate()
            .any(|(index, f)| f.shard == shard && !parked.contains(&index))
    };
    let mut succeeded: Vec<(ShardKey, i64)> = Vec::new();
    for (shard, plan) in plans.iter().enumerate() {
        let Some(previous) = plan.claimed.state.as_ref() else {
            continue;
        };
        if still_failing(shard) {
            continue;
        }
        if plan.isolated() && plan.more_after {
            // Its head key got through: the next one is due at once, still alone, with
            // the deaths counted so far (they count against the key that died).
            failed.push(ShardFailure {
                scheduled_for: now,
                scheduled_from: now,
                ..still_isolated(previous, now)
            });
        } else {
            succeeded.push((plan.key().clone(), plan.max_seen));
        }
    }
    if !failed.is_empty() {
        conn.record_failures(Token::new(), table, &failed)?;
    }
    if !succeeded.is_empty() {
        conn.record_successes(Token::new(), table, &succeeded)?;
    }
    Ok(parked)
}

/// An isolated shard's state kept as it is (attempts, first failure, error, failing row).
fn still_isolated(previous: &ShardState, now: NaiveDateTime) -> ShardFailure {
    ShardFailure {
        shard: previous.shard.clone(),
        scheduled_from: now,
        scheduled_for: now,
        covered_id: previous.covered_id,
        isolated: true,
        attempts: previous.attempts,
        first_failure_at: previous.first_failure_at.unwrap_or(now),
        error: previous.last_error.clone().unwrap_or_default(),
        row_id: previous.failed_row_id,
        category: previous.failed_category,
        object_identifier: previous.failed_object_identifier,
    }
}

/// Counts the batch in the report and the metrics.
fn count<C>(
    drainer: &Drainer<C>,
    plans: &[ShardPlan],
    delivered: &[(usize, usize)],
    failures: Vec<KeyFailure>,
    parked: &[usize],
    report: &mut DrainReport,
) {
    let now = drainer.clock.now();
    let elapsed = |since: chrono::NaiveDateTime| (now - since).to_std().unwrap_or_default();
    for &(shard, key) in delivered {
        let (plan, key) = (&plans[shard], &plans[shard].keys[key]);
        let table = plan.key().table();
        let rows = key.ids.len() as u64;
        drainer.metrics.rows_processed(table, key.category, rows);
        drainer
            .metrics
            .processing_lag(table, key.category, elapsed(key.message.date_added));
        drainer
            .metrics
            .coalesced_queue_time(table, key.category, elapsed(key.oldest_added));
        report.delivered += 1;
        report.rows_deleted += key.ids.len();
    }
    for plan in plans.iter().filter(|plan| plan.skipped) {
        for key in &plan.keys {
            let rows = key.ids.len().saturating_sub(1);
            tracing::info!(shard = %plan.key(), category = key.category, rows, "kill switch: older rows deleted without delivery");
            drainer
                .metrics
                .rows_skipped(plan.key().table(), key.category, rows as u64);
            report.skipped += 1;
            report.rows_deleted += rows;
        }
    }
    for (index, failed) in failures.into_iter().enumerate() {
        let failure = failed.failure;
        if parked.contains(&index) {
            let rows = plans[failed.shard].keys[failed.key].ids.len();
            tracing::warn!(
                shard = %failure.shard,
                category = failure.category,
                object = failure.object_identifier,
                row = failure.row_id,
                rows,
                error = %failure,
                "outbox key parked: its attempts are exhausted; the shard goes on"
            );
            drainer
                .metrics
                .delivery_failed(failure.shard.table(), failure.category);
            drainer
                .metrics
                .rows_parked(failure.shard.table(), failure.category, rows as u64);
            report.parked += 1;
            report.failures.push(failure);
            continue;
        }
        tracing::warn!(
            shard = %failure.shard,
            category = failure.category,
            object = failure.object_identifier,
            row = failure.row_id,
            error = %failure,
            "outbox delivery failed; the key stays for a retry"
        );
        drainer
            .metrics
            .delivery_failed(failure.shard.table(), failure.category);
        report.failures.push(failure);
    }
}

/// A shard whose window could not be loaded, or whose delivery failed as a statement:
/// find the row (if one cannot be read), back the shard off in a transaction of its own,
/// and report it.
fn shard_failed<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    shard: ClaimedShard,
    error: &Error,
    report: &mut DrainReport,
) -> Result<(), Error> {
    let failure = diagnose(drainer, conn, table, &shard, error)?;
    let message = failure.to_string();
    let now = drainer.clock.now();
    let previous = shard.state.as_ref();
    let attempts = backoff::attempts(previous, Some(&failure));
    // An unreadable row is parked (alone: the rest of its key reads) under its
    // category's policy, like a key whose receiver keeps failing; the shard goes on.
    let parks = matches!(failure.cause, FailureCause::UnreadableRow(_))
        && failure.row_id != 0
        && drainer.exhaustion.of(failure.category).parks_at(attempts);
    let recorded = conn.drain_transaction(Token::new(), |conn| {
        let covered_id = conn.shard_max_id(Token::new(), &shard.key)?.unwrap_or(0);
        if parks {
            let request = ParkRequest {
                shard: shard.key.clone(),
                ids: vec![failure.row_id],
                parked_at: now,
                attempts,
                first_failure_at: backoff::first_failure_at(previous, Some(&failure), now),
                error: bounded_error(&message),
            };
            conn.park_rows(Token::new(), table, &request)?;
            return conn.record_successes(Token::new(), table, &[(shard.key.clone(), covered_id)]);
        }
        let isolated = previous.is_some_and(|state| state.isolated);
        let record = shard_failure(
            &shard.key,
            previous,
            now,
            covered_id,
            isolated,
            Some(&failure),
            &message,
        );
        conn.record_failures(Token::new(), table, &[record])
    });
    if parks && recorded.is_ok() {
        tracing::warn!(shard = %shard.key, row = failure.row_id, "an unreadable outbox row was parked: its attempts are exhausted; the shard goes on");
        drainer.metrics.rows_parked(table, failure.category, 1);
        report.parked += 1;
    }
    if let Err(error) = recorded {
        if crate::key::error::is_connection_lost(&error) {
            return Err(error.into());
        }
        tracing::error!(%error, shard = %shard.key, "recording a shard's failure failed");
    }
    tracing::warn!(shard = %shard.key, row = failure.row_id, error = %failure, "an outbox shard failed");
    drainer.metrics.delivery_failed(table, failure.category);
    report.failures.push(failure);
    Ok(())
}

/// What failed in `shard`: the first row of its window that cannot be read (its
/// identity always can), or the statement's error at the shard's head.
fn diagnose<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    shard: &ClaimedShard,
    error: &Error,
) -> Result<DeliveryFailure, Error> {
    let request = WindowRequest {
        shard: shard.key.clone(),
        bound: shard.bound,
    };
    let window = i64::try_from(drainer.options.window.max(1)).unwrap_or(i64::MAX);
    let identities = match conn.window_identities(Token::new(), table, &request, window) {
        Ok(identities) => identities,
        Err(lost) if crate::key::error::is_connection_lost(&lost) => return Err(lost.into()),
        Err(_) => Vec::new(),
    };
    let failure = |row: Option<&crate::backend::claim::RowIdentity>, cause| DeliveryFailure {
        shard: shard.key.clone(),
        category: row.map_or(0, |row| row.category),
        category_name: row.and_then(|row| {
            drainer
                .receivers
                .get(table, row.category)
                .map(|registered| registered.category_name)
        }),
        object_identifier: row.map_or(0, |row| row.object_identifier),
        row_id: row.map_or(0, |row| row.id),
        cause,
    };
    for identity in &identities {
        match conn.load_messages(Token::new(), table, &[identity.id]) {
            Ok(_) => {}
            Err(lost) if crate::key::error::is_connection_lost(&lost) => return Err(lost.into()),
            Err(unreadable) => {
                return Ok(failure(
                    Some(identity),
                    FailureCause::UnreadableRow(unreadable.to_string()),
                ))
            }
        }
    }
    let cause = match error {
        Error::Database(error) => FailureCause::Database(error.to_string()),
        other => FailureCause::Database(other.to_string()),
    };
    Ok(failure(identities.first(), cause))
}
