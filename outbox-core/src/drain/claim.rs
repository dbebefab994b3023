//! Claiming a shard: locking its head row and backing the whole shard off (DESIGN 5.2).
//!
//! The lock is on the shard's lowest row, the head of its queue: whoever holds it is the
//! one worker processing the shard. The backoff is "proof of failure by remaining": the
//! claim pushes every row of the shard into the future, and success deletes them, so only
//! rows whose delivery failed (or a worker that died) keep the delay.

use chrono::{Duration, NaiveDateTime};

use super::shard::ShardKey;
use super::sql::{HeadRow, RowLock, Schedule};
use crate::backend::OutboxConnection;
use crate::error::Error;

/// The smallest delay of the backoff.
const MIN_DELAY: Duration = Duration::seconds(1);
/// The largest delay of the backoff.
const MAX_DELAY: Duration = Duration::hours(1);
/// How often to look again for a head row that was deleted while we locked it. Each retry
/// means another worker made progress on the shard; the limit only guards against a
/// livelock, after which the shard counts as busy.
const MAX_HEAD_ATTEMPTS: usize = 64;

/// What [`Outbox::claim_shard`](crate::Outbox::claim_shard) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The shard is ours to drain; every row of it is now scheduled for `until`.
    Claimed {
        /// The shard's new schedule: when it is retried if its rows remain.
        until: NaiveDateTime,
    },
    /// Another worker holds the shard (PostgreSQL): not claimed, move on.
    Busy,
    /// No row of the shard is due: another worker claimed it since it was found, or its
    /// rows are backing off.
    NotDue,
    /// The shard has no rows.
    Empty,
}

/// The shard's head row, locked for the rest of the transaction.
pub(crate) enum HeadLock {
    Locked(HeadRow, Schedule),
    Busy,
    Empty,
}

/// Locks the shard's lowest row (among ids `<= bound`). `wait` waits for another holder
/// (flush); otherwise a held head is [`HeadLock::Busy`] at once (periodic drain).
pub(crate) fn lock_head<C: OutboxConnection>(
    conn: &mut C,
    key: &ShardKey,
    bound: Option<i64>,
    wait: bool,
) -> diesel::QueryResult<HeadLock> {
    for _ in 0..MAX_HEAD_ATTEMPTS {
        let Some(head) = conn.outbox_shard_head(key, bound)? else {
            return Ok(HeadLock::Empty);
        };
        match conn.outbox_lock_row(key.silo(), head.id, wait)? {
            RowLock::Locked(schedule) => return Ok(HeadLock::Locked(head, schedule)),
            RowLock::Busy => return Ok(HeadLock::Busy),
            // The holder delivered and deleted it: the shard has a new head.
            RowLock::Gone => continue,
        }
    }
    Ok(HeadLock::Busy)
}

/// The backoff rule: `now + min(2 * last_delay, 1 h)` with
/// `last_delay = max(scheduled_for - scheduled_from, 1 s)` of the head row.
pub(crate) fn next_schedule(schedule: Schedule, now: NaiveDateTime) -> NaiveDateTime {
    let last_delay = (schedule.scheduled_for - schedule.scheduled_from).max(MIN_DELAY);
    now + (last_delay * 2).min(MAX_DELAY)
}

/// Claims `key` for a periodic drain, in its own short transaction.
pub(crate) fn claim<C: OutboxConnection>(
    conn: &mut C,
    key: &ShardKey,
    now: NaiveDateTime,
) -> Result<Claim, Error> {
    conn.outbox_write_transaction(|conn| {
        // Checked first without a lock: a shard another worker has claimed is no longer
        // due, and taking its head lock even briefly would make that worker's next group
        // find the head busy and leave the shard to its backoff (measured: 2 and 4 drain
        // threads on PostgreSQL fell from ~1,000 to 33 and 7 rows/s).
        if !conn.outbox_shard_is_due(key, now)? {
            return Ok(match conn.outbox_shard_head(key, None)? {
                Some(_) => Claim::NotDue,
                None => Claim::Empty,
            });
        }
        let schedule = match lock_head(conn, key, None, false)? {
            HeadLock::Locked(_, schedule) => schedule,
            HeadLock::Busy => return Ok(Claim::Busy),
            HeadLock::Empty => return Ok(Claim::Empty),
        };
        // Checked under the lock: a worker that claimed the shard since we found it has
        // pushed every row into the future, and a second claim would double its backoff.
        if !conn.outbox_shard_is_due(key, now)? {
            return Ok(Claim::NotDue);
        }
        let until = next_schedule(schedule, now);
        conn.outbox_reschedule(key, now, until)?;
        Ok(Claim::Claimed { until })
    })
}

/// Backs `key` off after a failed flush, waiting for the shard if another worker holds
/// it: the rows stay, and the periodic drain retries them when they are due.
pub(crate) fn reschedule_after_failure<C: OutboxConnection>(
    conn: &mut C,
    key: &ShardKey,
    now: NaiveDateTime,
) -> Result<(), Error> {
    conn.outbox_write_transaction(|conn| {
        if let HeadLock::Locked(_, schedule) = lock_head(conn, key, None, true)? {
            conn.outbox_reschedule(key, now, next_schedule(schedule, now))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_700_000_000 + seconds, 0)
            .map(|t| t.naive_utc())
            .unwrap_or_default()
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_an_hour() {
        let fresh = Schedule {
            scheduled_for: crate::DUE_AT_ONCE,
            scheduled_from: at(0),
        };
        assert_eq!(next_schedule(fresh, at(10)), at(12));
        let once = Schedule {
            scheduled_for: at(12),
            scheduled_from: at(10),
        };
        assert_eq!(next_schedule(once, at(12)), at(16));
        let long = Schedule {
            scheduled_for: at(3_000),
            scheduled_from: at(0),
        };
        assert_eq!(next_schedule(long, at(3_000)), at(6_600));
    }
}
