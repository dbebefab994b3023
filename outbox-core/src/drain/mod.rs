//! The drain (DESIGN 5): finding due shards, claiming them, delivering coalesced groups to
//! receivers, backoff, flush after commit, the kill switch and the background worker.

mod claim;
mod discovery;
mod flush;
mod handle;
mod process;
mod report;
mod shard;
pub(crate) mod sql;
mod until_empty;
#[cfg(feature = "pool")]
mod worker;

pub use claim::Claim;
pub use discovery::DueShards;
pub use handle::{Outbox, OutboxBuilder};
pub use report::{DeliveryFailure, DrainReport, FailureCause};
pub use shard::{ShardKey, Silo};
pub use until_empty::drain_until_empty;
#[cfg(feature = "pool")]
pub use worker::{Worker, WorkerOptions};

/// The message of [`Error::Undelivered`](crate::Error::Undelivered).
pub(crate) fn describe_failures(failures: &[DeliveryFailure]) -> String {
    match failures {
        [] => "no outbox group failed".to_owned(),
        [only] => format!("an outbox group was not delivered: {only}"),
        [first, rest @ ..] => format!(
            "{} outbox groups were not delivered; the first: {first} (and {} more)",
            failures.len(),
            rest.len()
        ),
    }
}
