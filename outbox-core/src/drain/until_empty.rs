//! The test helper (DESIGN 5.8): drain everything until the tables are empty.

use chrono::NaiveDateTime;

use super::handle::Outbox;
use super::process::{drain_shard, Mode};
use super::report::DrainReport;
use super::shard::Silo;
use crate::backend::OutboxConnection;
use crate::error::{Error, Result};

/// Later than any schedule: every row counts as due.
const END_OF_TIME: NaiveDateTime = match chrono::NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(date) => date.and_time(chrono::NaiveTime::MIN),
    None => NaiveDateTime::MAX,
};

/// Shards looked at per table and round.
const SHARDS_PER_ROUND: i64 = 100_000;

/// Delivers every outbox row, in rounds, until both tables are empty: "run the outboxes"
/// in a test. Each round drains every shard that has rows, ignoring schedules and backoff
/// and waiting for shards other workers hold; receivers that write outbox rows cause
/// further rounds, up to `max_rounds`.
///
/// Fails with [`Error::Undelivered`] as soon as a round has a failure, and with
/// [`Error::NotDrained`] when rows remain after `max_rounds`.
pub fn drain_until_empty<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    max_rounds: usize,
) -> Result<DrainReport> {
    let mut total = DrainReport::default();
    for _ in 0..max_rounds {
        if remaining(conn)? == 0 {
            return Ok(total);
        }
        let mut round = DrainReport::default();
        for silo in Silo::ALL {
            for shard in conn.outbox_due_shards(silo, END_OF_TIME, None, SHARDS_PER_ROUND)? {
                round.merge(drain_shard(outbox.shared(), conn, &shard, Mode::EXHAUST)?);
            }
        }
        total.merge(round.into_result()?);
    }
    match remaining(conn)? {
        0 => Ok(total),
        remaining => Err(Error::NotDrained {
            rounds: max_rounds,
            remaining,
        }),
    }
}

fn remaining<C: OutboxConnection>(conn: &mut C) -> Result<u64> {
    let mut rows = 0;
    for silo in Silo::ALL {
        rows += conn.outbox_row_count(silo)?;
    }
    Ok(rows)
}
