//! What a drain did: delivered groups, skipped groups, and failures with their cause.

use std::fmt;

use super::shard::ShardKey;
use crate::receivers::BoxError;

/// Why a coalesced group was not delivered. Its rows stay in the table.
#[derive(Debug)]
#[non_exhaustive]
pub enum FailureCause {
    /// No receiver is registered for the row's table and category.
    NoReceiver,
    /// The receiver returned an error (a payload that does not decode is one).
    Receiver(BoxError),
    /// The receiver panicked; the panic's message.
    Panicked(String),
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::NoReceiver => f.write_str("no receiver is registered for it"),
            FailureCause::Receiver(error) => write!(f, "the receiver failed: {error}"),
            FailureCause::Panicked(message) => write!(f, "the receiver panicked: {message}"),
        }
    }
}

/// A coalesced group that was not delivered: where it is and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeliveryFailure {
    /// The group's shard.
    pub shard: ShardKey,
    /// The category's number.
    pub category: i32,
    /// The category's name, when a receiver registered it.
    pub category_name: Option<&'static str>,
    /// The changed object.
    pub object_identifier: i64,
    /// The id of the row the receiver was (or would have been) called with.
    pub row_id: i64,
    /// What went wrong.
    pub cause: FailureCause,
}

impl DeliveryFailure {
    /// The cause as an error, e.g. to downcast a receiver's own error type.
    pub fn receiver_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.cause {
            FailureCause::Receiver(error) => Some(error.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.category_name {
            Some(name) => write!(f, "category {name} ({})", self.category)?,
            None => write!(f, "category {}", self.category)?,
        }
        write!(
            f,
            " in {}, object {} (row {}): {}",
            self.shard, self.object_identifier, self.row_id, self.cause
        )
    }
}

impl std::error::Error for DeliveryFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            FailureCause::Receiver(error) => Some(error.as_ref()),
            _ => None,
        }
    }
}

/// The outcome of a drain. Receiver failures are reported here, not as an `Err`: one
/// failing shard never stops the others. [`DrainReport::into_result`] turns failures into
/// an error when the caller wants one.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DrainReport {
    /// Shards whose rows this drain worked through (claimed, or flushed).
    pub shards: usize,
    /// Shards another worker held, or that were no longer due when claimed.
    pub shards_not_claimed: usize,
    /// Coalesced groups delivered (receiver called once each).
    pub delivered: usize,
    /// Rows deleted after delivery (delivered plus coalesced away).
    pub rows_deleted: usize,
    /// Groups of kill-switched shards deleted without delivery.
    pub skipped: usize,
    /// Groups that could not be delivered.
    pub failures: Vec<DeliveryFailure>,
}

impl DrainReport {
    /// Adds `other`'s counts and failures to this report.
    pub fn merge(&mut self, other: DrainReport) {
        self.shards += other.shards;
        self.shards_not_claimed += other.shards_not_claimed;
        self.delivered += other.delivered;
        self.rows_deleted += other.rows_deleted;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
    }

    /// Whether the drain delivered or skipped anything.
    pub fn did_work(&self) -> bool {
        self.delivered > 0 || self.skipped > 0
    }

    /// `Ok(self)` without failures, otherwise [`Error::Undelivered`](crate::Error::Undelivered).
    pub fn into_result(self) -> crate::Result<Self> {
        if self.failures.is_empty() {
            Ok(self)
        } else {
            Err(crate::Error::Undelivered(self.failures))
        }
    }
}
