//! The backoff rule: "proof of failure by remaining". A failed shard is retried at
//! `now + min(2 * last_delay, 1 h)` with `last_delay = max(scheduled_for -
//! scheduled_from, 1 s)` of its previous schedule; success forgets it.

use chrono::{Duration, NaiveDateTime};

use crate::backend::state::{bounded_error, ShardFailure, ShardState};
use crate::key::error::DeliveryFailure;
use crate::key::shard::ShardKey;

/// The smallest delay of the backoff.
const MIN_DELAY: Duration = Duration::seconds(1);
/// The largest delay of the backoff: a failing shard is retried at least this often.
/// A broker that deduplicates redelivered rows (e.g. by message id) must remember ids for
/// longer than this.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// [`MAX_BACKOFF`] as a chrono duration, for schedule arithmetic.
const MAX_DELAY: Duration = Duration::seconds(MAX_BACKOFF.as_secs() as i64);

/// When a shard whose previous schedule was `previous` is retried, failing at `now`.
pub(crate) fn next_schedule(previous: Option<&ShardState>, now: NaiveDateTime) -> NaiveDateTime {
    let last_delay = previous
        .filter(|state| state.attempts > 0)
        .map_or(MIN_DELAY, |state| {
            state.scheduled_for - state.scheduled_from
        })
        .max(MIN_DELAY);
    now + (last_delay * 2).min(MAX_DELAY)
}

/// What to store about `shard` failing now: a new schedule covering its rows up to
/// `covered_id`, one more attempt, and the failure itself (if it names a row).
pub(crate) fn shard_failure(
    shard: &ShardKey,
    previous: Option<&ShardState>,
    now: NaiveDateTime,
    covered_id: i64,
    isolated: bool,
    failure: Option<&DeliveryFailure>,
    message: &str,
) -> ShardFailure {
    let failing_before = previous.filter(|state| state.attempts > 0);
    ShardFailure {
        shard: shard.clone(),
        scheduled_from: now,
        scheduled_for: next_schedule(previous, now),
        covered_id,
        isolated,
        attempts: failing_before.map_or(1, |state| state.attempts.saturating_add(1)),
        first_failure_at: failing_before
            .and_then(|state| state.first_failure_at)
            .unwrap_or(now),
        error: bounded_error(message),
        row_id: failure.map(|failure| failure.row_id),
        category: failure.map(|failure| failure.category),
        object_identifier: failure.map(|failure| failure.object_identifier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::shard::Shard;

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_700_000_000 + seconds, 0)
            .map(|t| t.naive_utc())
            .unwrap_or_default()
    }

    fn failing(from: i64, until: i64) -> ShardState {
        ShardState {
            shard: ShardKey::Cell(Shard {
                scope: 0,
                identifier: 1,
            }),
            scheduled_from: at(from),
            scheduled_for: at(until),
            covered_id: 0,
            skipped: false,
            isolated: false,
            attempts: 1,
            first_failure_at: Some(at(from)),
            last_failure_at: Some(at(from)),
            last_error: None,
            failed_row_id: None,
            failed_category: None,
            failed_object_identifier: None,
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_an_hour() {
        assert_eq!(next_schedule(None, at(10)), at(12));
        assert_eq!(next_schedule(Some(&failing(10, 12)), at(12)), at(16));
        assert_eq!(
            next_schedule(Some(&failing(0, 3_000)), at(3_000)),
            at(6_600)
        );
    }

    #[test]
    fn a_state_without_failures_starts_the_backoff_over() {
        let mut skipped = failing(0, 3_000);
        skipped.attempts = 0;
        assert_eq!(next_schedule(Some(&skipped), at(10)), at(12));
    }
}
