//! A long-running drain: threads sharing an r2d2 pool, polling for due shards, woken at
//! once on PostgreSQL when a transaction commits outbox rows.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use diesel::r2d2::{ConnectionManager, Pool, PooledConnection, R2D2Connection};

use super::backfill::BackfillOptions;
use super::handoff::Wake;
use super::Outbox;
use crate::backend::guard;
use crate::backend::OutboxConnection;
use crate::drain::options::DueShards;
use crate::key::error::{Error, Result};
use crate::key::token::Token;

/// How often an idle listening thread looks at its connection for notifications. diesel
/// does not expose the connection's socket to wait on, so the thread checks it: a
/// non-blocking read of what the server already sent, no round trip to the server.
const LISTEN_CHECK: Duration = Duration::from_millis(5);

/// How long the listening thread waits before taking another connection after its own
/// failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How a [`Worker`] runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Threads, each draining with its own pooled connection (default 1).
    pub threads: usize,
    /// How long a thread sleeps after a round that found nothing to do (default 1 s),
    /// unless woken sooner by a notification (see `listen`). A round that delivered
    /// something is followed at once by the next.
    pub poll_interval: Duration,
    /// Which shards a round looks for.
    pub due_shards: DueShards,
    /// Whether to wake the threads as soon as a transaction commits outbox rows
    /// (default `true`). On PostgreSQL the first thread keeps its pooled connection for as
    /// long as the worker runs and `LISTEN`s on it for the `NOTIFY` that
    /// [`Outbox::context`] sends with its commit
    /// ([`OutboxBuilder::notify_on_commit`](crate::OutboxBuilder::notify_on_commit)); a
    /// notification wakes every thread. Backends without notifications (SQLite) poll
    /// only.
    pub listen: bool,
    /// How often the first thread reports [`Outbox::report_status`] to the outbox's
    /// metrics (default every 60 s; `None`: never). Each report counts the tables' rows.
    pub report_every: Option<Duration>,
    /// Whether, and how, a thread of its own runs [`Outbox::backfill`] for the models of
    /// the outbox's [`Backfills`](crate::backfill::Backfills) (default `None`: no
    /// backfill). It sleeps until the throttle allows the next batch, or `poll_interval`
    /// when no model has work.
    pub backfill: Option<BackfillOptions>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            threads: 1,
            poll_interval: Duration::from_secs(1),
            due_shards: DueShards::new(),
            listen: true,
            report_every: Some(Duration::from_secs(60)),
            backfill: None,
        }
    }
}

/// What the threads share: whether to stop, and how many wake-ups there were.
#[derive(Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Default)]
struct SignalState {
    stopped: bool,
    wakes: u64,
}

impl Wake for Signal {
    fn wake(&self) {
        Signal::wake(self);
    }
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// New rows were committed: sleeping threads go on at once.
    fn wake(&self) {
        let mut state = self.lock();
        state.wakes = state.wakes.wrapping_add(1);
        self.changed.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// The wake-ups so far: read before a round, so that one arriving during the round
    /// is not slept through.
    fn wakes(&self) -> u64 {
        self.lock().wakes
    }

    /// Sleeps up to `timeout`, less if stopped or woken since `seen` was read.
    fn sleep_unless_woken(&self, seen: u64, timeout: Duration) {
        let state = self.lock();
        let _ = self.changed.wait_timeout_while(state, timeout, |state| {
            !state.stopped && state.wakes == seen
        });
    }

    /// Sleeps up to `timeout`, less if stopped.
    fn sleep(&self, timeout: Duration) {
        let state = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(state, timeout, |state| !state.stopped);
    }
}

/// Drain threads running [`Outbox::drain_due_shards_with`] in a loop; several workers, in
/// one process or many, cooperate through the database's locks. Stop with
/// [`Worker::stop`] (dropping the worker stops it too): each thread finishes its round and
/// is joined.
pub struct Worker {
    signal: Arc<Signal>,
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
                let checked = guard::as_library(&mut *conn, |conn| {
                    conn.check_worker_connection(Token::new())
                });
                if let Err(error) = checked {
                    tracing::warn!(%error, "outbox worker: checking a pooled connection failed");
                }
            }
            Err(error) => tracing::warn!(%error, "outbox worker: no connection from the pool yet"),
        }
        let signal = Arc::new(Signal::default());
        // Flush requests (an async context's commit) wake the threads.
        let waker: Arc<dyn Wake> = signal.clone();
        outbox.flush_requests().register(Arc::downgrade(&waker));
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
            let first = index == 0;
            let thread = thread::Builder::new()
                .name(format!("outbox-drain-{index}"))
                .spawn(move || {
                    let mut thread = DrainThread {
                        pool: &pool,
                        outbox: &outbox,
                        options: &options,
                        signal: &signal,
                        next_report: options
                            .report_every
                            .filter(|_| first)
                            .map(|_| Instant::now()),
                    };
                    if first && options.listen {
                        thread.run_listening();
                    } else {
                        thread.run();
                    }
                })
                .map_err(Error::Thread)?;
            worker.threads.push(thread);
        }
        if let Some(backfill) = options.backfill.clone() {
            let (pool, outbox, signal) = (pool.clone(), outbox.clone(), Arc::clone(&signal));
            let poll = options.poll_interval;
            let thread = thread::Builder::new()
                .name("outbox-backfill".to_owned())
                .spawn(move || backfill_loop(&pool, &outbox, &backfill, poll, &signal))
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

/// The worker from async code (feature `async`): a tokio application owns it without
/// blocking its executor. The threads stay threads (receivers are sync and run on them);
/// what would block the caller (the pool's first connection, joining the threads) runs
/// on tokio's blocking pool. Flush requests ([`Outbox::request_flush`], which
/// [`Outbox::context_async`] makes after each commit) and PostgreSQL's NOTIFY wake it.
#[cfg(feature = "async")]
impl Worker {
    /// [`Worker::spawn`] from async code.
    pub async fn spawn_async<C>(
        pool: Pool<ConnectionManager<C>>,
        outbox: Outbox<C>,
        options: WorkerOptions,
    ) -> Result<Worker>
    where
        C: OutboxConnection + R2D2Connection,
    {
        tokio::task::spawn_blocking(move || Worker::spawn(pool, outbox, options))
            .await
            .map_err(|error| Error::Thread(std::io::Error::other(error.to_string())))?
    }

    /// Stops the threads after their current round and waits for them, gracefully,
    /// without blocking the executor.
    pub async fn stop_async(self) {
        if let Err(error) = tokio::task::spawn_blocking(move || self.stop()).await {
            tracing::error!(%error, "stopping the outbox worker failed");
        }
    }
}

/// The outbox's status from async code (feature `async`): read on tokio's blocking pool
/// through a pooled sync connection.
#[cfg(feature = "async")]
impl<C> Outbox<C>
where
    C: OutboxConnection + R2D2Connection,
{
    /// [`Outbox::status`] from async code, on a connection of `pool`.
    pub async fn status_async(
        &self,
        pool: &Pool<ConnectionManager<C>>,
    ) -> Result<Vec<crate::outbox::inspect::TableStatus>> {
        let (outbox, pool) = (self.clone(), pool.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            outbox.status(&mut conn)
        })
        .await
        .map_err(|error| Error::Thread(std::io::Error::other(error.to_string())))?
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The backfill thread: a step, then a sleep until the throttle allows the next batch (at
/// most `poll`, which is also the sleep when no model has work or a step failed).
fn backfill_loop<C>(
    pool: &Pool<ConnectionManager<C>>,
    outbox: &Outbox<C>,
    options: &BackfillOptions,
    poll: Duration,
    signal: &Signal,
) where
    C: OutboxConnection + R2D2Connection,
{
    while !signal.is_stopped() {
        let step = pool
            .get()
            .map_err(Error::from)
            .and_then(|mut conn| outbox.backfill(&mut conn, options));
        let wait = match step {
            Ok(report) => report.next_batch_at.map_or(poll, |at| {
                (at - outbox.clock().now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(poll)
            }),
            Err(error) => {
                tracing::warn!(%error, "outbox worker: a backfill step failed");
                poll
            }
        };
        if !wait.is_zero() {
            signal.sleep(wait);
        }
    }
}

/// One drain thread.
struct DrainThread<'w, C: R2D2Connection + 'static> {
    pool: &'w Pool<ConnectionManager<C>>,
    outbox: &'w Outbox<C>,
    options: &'w WorkerOptions,
    signal: &'w Signal,
    /// When this thread reports the status to the metrics next (the first thread only).
    next_report: Option<Instant>,
}

impl<C> DrainThread<'_, C>
where
    C: OutboxConnection + R2D2Connection,
{
    /// Rounds on a connection taken from the pool each time, sleeping between idle ones
    /// until the poll interval passes or another thread wakes it.
    fn run(&mut self) {
        while !self.signal.is_stopped() {
            let seen = self.signal.wakes();
            let worked = match self.pool.get() {
                Ok(mut conn) => self.round(&mut conn).unwrap_or_else(|error| {
                    tracing::warn!(%error, "outbox worker: its connection was lost");
                    false
                }),
                Err(error) => {
                    tracing::warn!(%error, "outbox worker: no connection from the pool");
                    false
                }
            };
            if !worked {
                self.signal
                    .sleep_unless_woken(seen, self.options.poll_interval);
            }
        }
    }

    /// Rounds on one connection kept from the pool, which also listens for committed
    /// rows: between idle rounds the thread looks for notifications and wakes every
    /// thread when one arrives. Where the backend cannot listen, it polls as
    /// [`run`](Self::run) does.
    fn run_listening(&mut self) {
        while !self.signal.is_stopped() {
            let mut conn = match self.pool.get() {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "outbox worker: no connection from the pool");
                    self.signal.sleep(self.options.poll_interval);
                    continue;
                }
            };
            let own = match guard::as_library(&mut *conn, |conn| conn.listen_for_rows(Token::new()))
            {
                Ok(Some(own)) => own,
                Ok(None) => {
                    drop(conn);
                    return self.run();
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox worker: LISTEN failed; polling until it works");
                    self.signal.sleep(self.options.poll_interval);
                    continue;
                }
            };
            match self.listen_on(&mut conn, &own) {
                // A pooled connection must not keep listening for its next user.
                Ok(()) => {
                    let stopped =
                        guard::as_library(&mut *conn, |conn| conn.stop_listening(Token::new()));
                    if let Err(error) = stopped {
                        tracing::warn!(%error, "outbox worker: UNLISTEN failed");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox worker: its listening connection failed; taking another");
                    drop(conn);
                    self.signal.sleep(LISTEN_RETRY);
                }
            }
        }
    }

    /// Rounds on the listening connection `conn` until stopped, or until it fails.
    fn listen_on(
        &mut self,
        conn: &mut PooledConnection<ConnectionManager<C>>,
        own: &str,
    ) -> std::result::Result<(), Error> {
        while !self.signal.is_stopped() {
            let seen = self.signal.wakes();
            if !self.round(conn)? {
                self.wait_for_rows(conn, own, seen)?;
            }
        }
        Ok(())
    }

    /// Sleeps until the poll interval passes, a notification for this outbox arrives on
    /// `conn` (every thread is then woken), another thread is woken, or the worker stops.
    fn wait_for_rows(
        &self,
        conn: &mut PooledConnection<ConnectionManager<C>>,
        own: &str,
        seen: u64,
    ) -> diesel::QueryResult<()> {
        let deadline = Instant::now() + self.options.poll_interval;
        loop {
            let payloads =
                guard::as_library(&mut **conn, |conn| conn.take_notifications(Token::new()))?;
            if payloads.iter().any(|payload| payload == own) {
                self.signal.wake();
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || self.signal.is_stopped() || self.signal.wakes() != seen {
                return Ok(());
            }
            self.signal
                .sleep_unless_woken(seen, LISTEN_CHECK.min(deadline - now));
        }
    }

    /// One drain round on `conn`, and the status report when it is due: whether the round
    /// did anything. Only a lost connection is an error; other failures are logged. The
    /// shards handed to the worker ([`Outbox::request_flush`]) are flushed first.
    fn round(&mut self, conn: &mut C) -> std::result::Result<bool, Error> {
        let requested = self.outbox.flush_requests().take();
        if !requested.is_empty() {
            match self.outbox.flush_shards(conn, &requested) {
                Ok(_) => {}
                Err(error) if error.is_connection_lost() => return Err(error),
                Err(error) => tracing::warn!(%error, "outbox worker: a requested flush failed"),
            }
        }
        let worked = match self
            .outbox
            .drain_due_shards_with(conn, &self.options.due_shards)
        {
            Ok(report) => report.did_work(),
            Err(error) if error.is_connection_lost() => return Err(error),
            Err(error) => {
                tracing::error!(%error, "outbox worker: drain round failed");
                false
            }
        };
        if let (Some(at), Some(every)) = (self.next_report, self.options.report_every) {
            if Instant::now() >= at {
                self.next_report = Some(Instant::now() + every);
                if let Err(error) = self.outbox.report_status(conn) {
                    tracing::warn!(%error, "outbox worker: reading the status for metrics failed");
                }
            }
        }
        Ok(worked)
    }
}
