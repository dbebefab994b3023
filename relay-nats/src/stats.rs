//! What a relay has done since it started.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of a relay's messages since it started (see [`NatsRelay::stats`]).
///
/// [`NatsRelay::stats`]: crate::NatsRelay::stats
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Messages JetStream acknowledged as new: stored once.
    pub stored: u64,
    /// Messages JetStream acknowledged as duplicates of a message id it had stored: a row
    /// published again after a drain died between publishing and deleting it.
    pub duplicates: u64,
    /// Messages not sent again because the relay had seen them acknowledged moments
    /// before (the drain replaying a batch after another row's failure).
    pub remembered: u64,
    /// Messages that failed (not sent, refused, or not acknowledged in time); their rows
    /// stay.
    pub failed: u64,
    /// Connections opened, the first included.
    pub connections: u64,
}

/// The live counters behind [`RelayStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) stored: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) remembered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) connections: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RelayStats {
        RelayStats {
            stored: self.stored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            remembered: self.remembered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}
