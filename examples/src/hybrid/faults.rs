//! A connector that can be cut, to show a cell that is unreachable for a while.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use diesel_outbox::{BoxError, SiloConnector};

/// The fault state of one silo's connections, shared by every connector that reaches it.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<FaultState>);

#[derive(Debug, Default)]
struct FaultState {
    down: AtomicBool,
    fail_next: AtomicUsize,
    refused: AtomicUsize,
}

impl FaultSwitch {
    /// Refuses every connection until [`FaultSwitch::restore`].
    pub fn cut(&self) {
        self.0.down.store(true, Ordering::SeqCst);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.0.down.store(false, Ordering::SeqCst);
    }

    /// Refuses the next `attempts` connections, then accepts.
    pub fn fail_next(&self, attempts: usize) {
        self.0.fail_next.store(attempts, Ordering::SeqCst);
    }

    /// How many connections were refused so far.
    pub fn refused(&self) -> usize {
        self.0.refused.load(Ordering::SeqCst)
    }

    fn refuses(&self) -> bool {
        let failing = self.0.down.load(Ordering::SeqCst)
            || self
                .0
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if failing {
            self.0.refused.fetch_add(1, Ordering::SeqCst);
        }
        failing
    }
}

/// Wraps a connector; refuses connections while its [`FaultSwitch`] says so.
pub struct FaultyConnector<K> {
    inner: K,
    faults: FaultSwitch,
}

impl<K> FaultyConnector<K> {
    /// `inner`, subject to `faults`.
    pub fn new(inner: K, faults: FaultSwitch) -> Self {
        FaultyConnector { inner, faults }
    }
}

impl<C, K: SiloConnector<C>> SiloConnector<C> for FaultyConnector<K> {
    fn with_connection(
        &self,
        f: &mut dyn FnMut(&mut C) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        if self.faults.refuses() {
            return Err("connection refused (the demo cut this cell off)".into());
        }
        self.inner.with_connection(f)
    }
}
