//! A long-running drain: threads sharing an r2d2 pool, polling for due shards.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};

use super::Outbox;
use crate::backend::OutboxConnection;
use crate::drain::options::DueShards;
use crate::key::error::{Error, Result};
use crate::key::token::Token;

/// How a [`Worker`] runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Threads, each draining with its own pooled connection (default 1).
    pub threads: usize,
    /// How long a thread sleeps after a round that found nothing to do (default 1 s).
    /// A round that delivered something is followed at once by the next.
    pub poll_interval: Duration,
    /// Which shards a round looks for.
    pub due_shards: DueShards,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            threads: 1,
            poll_interval: Duration::from_secs(1),
            due_shards: DueShards::new(),
        }
    }
}

/// Tells the threads to stop, and wakes them from their sleep.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps up to `timeout`, less if stopped.
    fn sleep(&self, timeout: Duration) {
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .wake
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped);
    }
}

/// Drain threads running [`Outbox::drain_due_shards_with`] in a loop; several workers, in
/// one process or many, cooperate through the database's locks. Stop with
/// [`Worker::stop`] (dropping the worker stops it too): each thread finishes its round and
/// is joined.
pub struct Worker {
    signal: Arc<StopSignal>,
    threads: Vec<JoinHandle<()>>,
}

impl Worker {
    /// Starts `options.threads` threads draining through `pool`.
    pub fn spawn<C>(
        pool: Pool<ConnectionManager<C>>,
        outbox: Outbox<C>,
        options: WorkerOptions,
    ) -> Result<Worker>
    where
        C: OutboxConnection + R2D2Connection,
    {
        // A pooled connection the worker cannot use well (SQLite without a busy timeout)
        // is reported once, at the start, rather than as a stream of failed rounds.
        match pool.get() {
            Ok(mut conn) => {
                if let Err(error) = conn.check_worker_connection(Token::new()) {
                    tracing::warn!(%error, "outbox worker: checking a pooled connection failed");
                }
            }
            Err(error) => tracing::warn!(%error, "outbox worker: no connection from the pool yet"),
        }
        let signal = Arc::new(StopSignal::default());
        let mut worker = Worker {
            signal: Arc::clone(&signal),
            threads: Vec::new(),
        };
        for index in 0..options.threads.max(1) {
            let (pool, outbox, options, signal) = (
                pool.clone(),
                outbox.clone(),
                options.clone(),
                Arc::clone(&signal),
            );
            let thread = thread::Builder::new()
                .name(format!("outbox-drain-{index}"))
                .spawn(move || run(&pool, &outbox, &options, &signal))
                .map_err(Error::Thread)?;
            worker.threads.push(thread);
        }
        Ok(worker)
    }

    /// Stops the threads after their current round and waits for them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.signal.stop();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("an outbox drain thread panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run<C>(
    pool: &Pool<ConnectionManager<C>>,
    outbox: &Outbox<C>,
    options: &WorkerOptions,
    signal: &StopSignal,
) where
    C: OutboxConnection + R2D2Connection,
{
    while !signal.is_stopped() {
        if !round(pool, outbox, options) {
            signal.sleep(options.poll_interval);
        }
    }
}

/// One drain round; whether it did anything.
fn round<C>(pool: &Pool<ConnectionManager<C>>, outbox: &Outbox<C>, options: &WorkerOptions) -> bool
where
    C: OutboxConnection + R2D2Connection,
{
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "outbox worker: no connection from the pool");
            return false;
        }
    };
    match outbox.drain_due_shards_with(&mut conn, &options.due_shards) {
        Ok(report) => report.did_work(),
        Err(error) => {
            tracing::error!(%error, "outbox worker: drain round failed");
            false
        }
    }
}
