//! Flush requests handed to the workers of this process: how a commit that cannot flush
//! on its own connection (an async context, whose drain stays on sync connections) gets
//! its shards delivered at once without blocking the caller.
//!
//! A [`Worker`](crate::Worker) registers its wake-up here; a request queues the shards
//! and wakes it, and its next round flushes them first. Without a live worker nothing is
//! queued (the rows wait for a drain, woken by NOTIFY on PostgreSQL).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError, Weak};

use crate::key::shard::ShardKey;

/// What a worker is woken through.
pub(crate) trait Wake: Send + Sync {
    /// Wakes the worker's sleeping threads.
    fn wake(&self);
}

/// The shards waiting for a worker's flush, and the workers to wake.
#[derive(Default)]
pub(crate) struct FlushRequests {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    shards: BTreeSet<ShardKey>,
    workers: Vec<Weak<dyn Wake>>,
}

impl FlushRequests {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker of this outbox started: wake it with requests.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn register(&self, worker: Weak<dyn Wake>) {
        let mut state = self.lock();
        state.workers.retain(|worker| worker.strong_count() > 0);
        state.workers.push(worker);
    }

    /// Whether a worker of this outbox runs in this process.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn has_worker(&self) -> bool {
        self.lock()
            .workers
            .iter()
            .any(|worker| worker.strong_count() > 0)
    }

    /// Queues `shards` for the workers' next round and wakes them; `false` (nothing
    /// queued) when no worker runs.
    pub(crate) fn request(&self, shards: &[ShardKey]) -> bool {
        let mut state = self.lock();
        let workers: Vec<_> = state.workers.iter().filter_map(Weak::upgrade).collect();
        if workers.is_empty() {
            return false;
        }
        state.shards.extend(shards.iter().cloned());
        drop(state);
        for worker in workers {
            worker.wake();
        }
        true
    }

    /// The shards queued so far (emptying the queue).
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn take(&self) -> Vec<ShardKey> {
        std::mem::take(&mut self.lock().shards)
            .into_iter()
            .collect()
    }
}
