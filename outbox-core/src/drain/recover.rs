//! Batches that dead workers left behind: their leases, found and turned into backoffs.

use std::collections::HashSet;

use super::backoff::{self, shard_failure};
use super::report::DrainReport;
use super::Drainer;
use crate::backend::claim::{Claim, KeyAfterWindow, WindowRequest};
use crate::backend::parked::ParkRequest;
use crate::backend::state::bounded_error;
use crate::backend::OutboxConnection;
use crate::key::error::Error;
use crate::key::error::{DeliveryFailure, FailureCause};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;

/// Backs off the batches of workers that died (see [`recover_abandoned`]), then gives
/// back the shards of `claim` that were in them.
///
/// Run after each claim: a worker that died just before it let go of its shards, which
/// the claim may have taken; delivering them would hand them back to the receiver that
/// killed that worker (an abort), and kill this one too. Checked after the claim rather
/// than before, there is no moment in between for such a death to slip through.
pub(crate) fn without_abandoned<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    mut claim: Claim,
    report: &mut DrainReport,
) -> Result<Claim, Error> {
    let mut dead = recover_abandoned(drainer, conn, claim.table, claim.lease, report)?;
    if claim.shards.is_empty() {
        return Ok(claim);
    }
    dead.extend(isolated_since_claimed(conn, &claim)?);
    if dead.is_empty() {
        return Ok(claim);
    }
    let (given_back, kept) = claim
        .shards
        .into_iter()
        .partition(|shard| dead.contains(&shard.key));
    claim.shards = kept;
    let given_back = Claim {
        shards: given_back,
        lease: None,
        ..Claim::empty(claim.table)
    };
    if !given_back.shards.is_empty() {
        tracing::warn!(
            shards = given_back.shards.len(),
            "claimed shards of a batch whose worker had just died: given back, backed off"
        );
        conn.release_claim(Token::new(), &given_back)?;
    }
    if claim.shards.is_empty() {
        // Nothing left to deliver: the lease goes too.
        conn.release_claim(Token::new(), &claim)?;
        claim.lease = None;
    }
    Ok(claim)
}

/// The claimed shards that a recovery isolated after the claim read their state. While
/// this connection holds them, only the recovery of a dead worker's batch records a
/// failure: another drain that found the lease, backed its shards off (isolated) and
/// deleted it between this claim and this drain's look for abandoned leases, which then
/// finds nothing. Delivering such a shard would hand it back to the receiver that killed
/// that worker. Isolated shards are few (one batch per dead worker, until they succeed),
/// so reading them all is one small statement per claim.
fn isolated_since_claimed<C: OutboxConnection>(
    conn: &mut C,
    claim: &Claim,
) -> Result<HashSet<ShardKey>, Error> {
    let isolated = conn.load_isolated_states(Token::new(), claim.table)?;
    if isolated.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(claim
        .shards
        .iter()
        .filter(|shard| {
            let seen = shard.state.as_ref().and_then(|state| state.last_failure_at);
            isolated
                .iter()
                .any(|state| state.shard == shard.key && state.last_failure_at != seen)
        })
        .map(|shard| shard.key.clone())
        .collect())
}

/// Backs off the shards of batches whose worker died while delivering them (a receiver
/// that aborted its process, say): each is then delivered alone until it succeeds, so a
/// receiver that kills its process stops only its own shard. `own` is the lease of the
/// claim this connection holds, if any. Returns the shards of every such batch found,
/// whether this call or another drain recovered it.
fn recover_abandoned<C: OutboxConnection>(
    drainer: &Drainer<C>,
    conn: &mut C,
    table: OutboxTable,
    own: Option<i64>,
    report: &mut DrainReport,
) -> Result<HashSet<ShardKey>, Error> {
    let now = drainer.clock.now();
    let leases = conn.abandoned_leases(Token::new(), table, now, own)?;
    if leases.is_empty() {
        return Ok(HashSet::new());
    }
    let abandoned: HashSet<ShardKey> = leases
        .iter()
        .filter_map(|lease| lease.shards.clone())
        .flatten()
        .collect();
    let mut parked = 0;
    let recovered = conn.drain_transaction(Token::new(), |conn| {
        let mut recovered = 0;
        parked = 0;
        for lease in &leases {
            // Deleting it tells whether it is still there: only one worker recovers it.
            if !conn.forget_lease(Token::new(), lease.id)? {
                continue;
            }
            recovered += 1;
            let Some(shards) = &lease.shards else {
                tracing::error!(
                    lease = lease.id,
                    "an abandoned lease's shard list cannot be read; its shards are not backed off"
                );
                continue;
            };
            let states = conn.load_shard_states(Token::new(), table, Some(shards))?;
            let mut failures = Vec::new();
            for shard in shards {
                let previous = states.iter().find(|state| &state.shard == shard);
                let covered_id = conn.shard_max_id(Token::new(), shard)?.unwrap_or(0);
                let message = format!(
                    "a drain worker stopped while delivering this shard's batch (lease {}): \
                     a receiver may have aborted its process; the shard is delivered alone, \
                     one key at a time, until it succeeds",
                    lease.id
                );
                // An isolated shard is delivered one key per batch: the worker died
                // delivering its head key, which the death counts against.
                let head = match previous.filter(|state| state.isolated) {
                    Some(_) => head_key(conn, drainer, shard, &message)?,
                    None => None,
                };
                if let Some(head) = &head {
                    let deaths = backoff::attempts(previous, Some(head));
                    if drainer.exhaustion.of(head.category).parks_at(deaths) {
                        park_head_key(conn, table, head, previous, deaths, now, &message)?;
                        conn.record_successes(Token::new(), table, &[(shard.clone(), covered_id)])?;
                        parked += 1;
                        continue;
                    }
                }
                failures.push(shard_failure(
                    shard,
                    previous,
                    now,
                    covered_id,
                    true,
                    head.as_ref(),
                    &message,
                ));
            }
            conn.record_failures(Token::new(), table, &failures)?;
            tracing::warn!(
                lease = lease.id,
                shards = shards.len(),
                "recovered a batch a dead worker left behind: its shards back off"
            );
        }
        Ok::<_, diesel::result::Error>(recovered)
    });
    report.abandoned_batches += recovered?;
    report.parked += parked;
    Ok(abandoned)
}

/// The head key of `shard`, as the failure a death counts as: the key an isolated
/// shard's worker was delivering when it died.
fn head_key<C: OutboxConnection>(
    conn: &mut C,
    drainer: &Drainer<C>,
    shard: &ShardKey,
    message: &str,
) -> diesel::QueryResult<Option<DeliveryFailure>> {
    let request = WindowRequest {
        shard: shard.clone(),
        bound: i64::MAX,
    };
    let head = conn.window_identities(Token::new(), shard.table(), &request, 1)?;
    Ok(head.into_iter().next().map(|row| DeliveryFailure {
        shard: shard.clone(),
        category: row.category,
        category_name: drainer
            .receivers
            .get(shard.table(), row.category)
            .map(|registered| registered.category_name),
        object_identifier: row.object_identifier,
        row_id: row.id,
        cause: FailureCause::Receiver(message.to_owned().into()),
    }))
}

/// Parks every row of the head key: its receiver killed a worker `deaths` times, the
/// category's policy's limit.
fn park_head_key<C: OutboxConnection>(
    conn: &mut C,
    table: OutboxTable,
    head: &DeliveryFailure,
    previous: Option<&crate::backend::state::ShardState>,
    deaths: i32,
    now: chrono::NaiveDateTime,
    message: &str,
) -> diesel::QueryResult<()> {
    let key = KeyAfterWindow {
        shard: head.shard.clone(),
        category: head.category,
        object_identifier: head.object_identifier,
        after_id: head.row_id.saturating_sub(1),
        bound: i64::MAX,
    };
    let ids: Vec<i64> = conn
        .rows_after_windows(Token::new(), table, &[key])?
        .into_iter()
        .map(|row| row.id)
        .collect();
    let request = ParkRequest {
        shard: head.shard.clone(),
        ids,
        parked_at: now,
        attempts: deaths,
        first_failure_at: backoff::first_failure_at(previous, Some(head), now),
        error: bounded_error(&format!("{message} ({deaths} times: parked)")),
    };
    conn.park_rows(Token::new(), table, &request)?;
    tracing::warn!(
        shard = %head.shard,
        category = head.category,
        object = head.object_identifier,
        deaths,
        "an outbox key whose receiver killed its worker again and again was parked; its shard goes on"
    );
    Ok(())
}
