//! A shard's stored state: its schedule, its failures, its kill switch.
//!
//! A shard has a state row only while it needs remembering (it failed, it is skipped, or
//! a worker died delivering it); a healthy shard has none, so claiming and finishing it
//! write nothing here.

use chrono::NaiveDateTime;

use crate::key::shard::ShardKey;

/// What is stored about a shard that failed, is skipped, or was being delivered by a
/// worker that died.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardState {
    /// The shard.
    pub shard: ShardKey,
    /// When the current schedule was set (UTC).
    pub scheduled_from: NaiveDateTime,
    /// When the shard is retried (UTC). New rows do not make a failing shard due sooner:
    /// it is retried at most once per backoff step however much traffic it gets.
    pub scheduled_for: NaiveDateTime,
    /// Rows up to this id wait for `scheduled_for`; of a shard that is only skipped (no
    /// failure), a newer row makes it due at once, for the kill switch to compact.
    pub covered_id: i64,
    /// The kill switch: each key's older rows are deleted without delivery and its newest
    /// row kept.
    pub skipped: bool,
    /// A worker died while delivering this shard's batch: it is delivered alone until it
    /// succeeds, so that a receiver that kills its process stops only its own shard, and
    /// only at its schedule (new rows do not make it due sooner: each attempt may cost a
    /// process).
    pub isolated: bool,
    /// Failed attempts since the last success.
    pub attempts: i32,
    /// When the first of them failed (UTC).
    pub first_failure_at: Option<NaiveDateTime>,
    /// When the last one failed (UTC).
    pub last_failure_at: Option<NaiveDateTime>,
    /// The last failure's message (at most [`MAX_ERROR_LEN`] characters).
    pub last_error: Option<String>,
    /// The row the last failure was at.
    pub failed_row_id: Option<i64>,
    /// That row's category.
    pub failed_category: Option<i32>,
    /// That row's object.
    pub failed_object_identifier: Option<i64>,
}

/// The longest failure message stored.
pub const MAX_ERROR_LEN: usize = 2_000;

/// A failure to record: the shard's new schedule and what failed.
#[derive(Clone, Debug)]
pub struct ShardFailure {
    /// The shard.
    pub shard: ShardKey,
    /// Now.
    pub scheduled_from: NaiveDateTime,
    /// When to retry.
    pub scheduled_for: NaiveDateTime,
    /// Rows up to this id wait for the retry.
    pub covered_id: i64,
    /// Deliver the shard alone from now on.
    pub isolated: bool,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// The first failure of the run.
    pub first_failure_at: NaiveDateTime,
    /// The message, cut to [`MAX_ERROR_LEN`] characters.
    pub error: String,
    /// The row it failed at.
    pub row_id: Option<i64>,
    /// That row's category.
    pub category: Option<i32>,
    /// That row's object.
    pub object_identifier: Option<i64>,
}

/// `message` cut to [`MAX_ERROR_LEN`] characters.
pub(crate) fn bounded_error(message: &str) -> String {
    match message.char_indices().nth(MAX_ERROR_LEN) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}
