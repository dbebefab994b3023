//! How big a run is: `--small` (seconds, for CI) or `--full` (the figures of
//! RELIABILITY.md).

use std::time::Duration;

/// Every scenario's size.
#[derive(Clone, Debug)]
pub struct Size {
    /// "small" or "full".
    pub name: &'static str,
    /// kill -9 of drain workers.
    pub kill: KillSize,
    /// A receiver that aborts its process.
    pub abort: AbortSize,
    /// Bad rows and failing receivers.
    pub bad_rows: BadRowsSize,
    /// PostgreSQL restarts.
    pub restart: RestartSize,
}

/// kill -9 of drain workers while writers write.
#[derive(Clone, Debug)]
pub struct KillSize {
    /// Worker processes killed, one at a time.
    pub kills: usize,
    /// Worker processes alive at once.
    pub workers: usize,
    /// Drain threads per worker.
    pub threads: usize,
    /// The pause before each kill, drawn from this range (ms).
    pub interval_ms: (u64, u64),
    /// Objects the writers update.
    pub objects: i64,
    /// Shards they fall in (object % shards).
    pub shards: i64,
    /// Pause of a writer between commits (µs).
    pub writer_pause_us: u64,
    /// Pause of the receiver per call (µs): widens the moments a kill lands mid-batch.
    pub delay_us: u64,
    /// The lease on SQLite, where a dead worker's batch is known by its lease's expiry.
    pub sqlite_lease: Duration,
    /// How long the workers get, after the last kill, to empty the outbox.
    pub settle: Duration,
}

/// A receiver that aborts its process for one object.
#[derive(Clone, Debug)]
pub struct AbortSize {
    /// How long the poisoned receiver runs before it is fixed.
    pub duration: Duration,
    /// Objects (one of them poisoned).
    pub objects: i64,
    /// Shards.
    pub shards: i64,
    /// Updates per object in the backlog.
    pub updates: i64,
    /// Worker processes.
    pub workers: usize,
    /// How often the poisoned shard gets a new row, in the variant where it does.
    pub write_every: Duration,
}

/// Bad rows written by SQL and failing receivers, beside healthy traffic.
#[derive(Clone, Debug)]
pub struct BadRowsSize {
    /// How long the healthy writer writes while the worker runs.
    pub duration: Duration,
    /// Healthy objects.
    pub objects: i64,
    /// Healthy shards.
    pub shards: i64,
}

/// PostgreSQL stopped and started under a draining worker.
#[derive(Clone, Debug)]
pub struct RestartSize {
    /// Objects, each with one row in the starting backlog.
    pub objects: i64,
    /// Shards.
    pub shards: i64,
    /// Drain threads (and pool size).
    pub threads: usize,
    /// Pause of the receiver per call.
    pub delay: Duration,
    /// The pool's connection timeout.
    pub pool_timeout: Duration,
    /// The long outage (longer than the pool's connection timeout).
    pub long_outage: Duration,
    /// How long the worker gets to empty the outbox after the last outage.
    pub settle: Duration,
}

impl Size {
    /// A run of seconds per scenario, for CI.
    pub fn small() -> Size {
        Size {
            name: "small",
            kill: KillSize {
                kills: 20,
                workers: 3,
                threads: 2,
                interval_ms: (50, 250),
                objects: 100,
                shards: 20,
                writer_pause_us: 0,
                delay_us: 1_000,
                sqlite_lease: Duration::from_secs(5),
                settle: Duration::from_secs(120),
            },
            abort: AbortSize {
                duration: Duration::from_secs(6),
                objects: 100,
                shards: 20,
                updates: 3,
                workers: 2,
                write_every: Duration::from_millis(250),
            },
            bad_rows: BadRowsSize {
                duration: Duration::from_secs(6),
                objects: 100,
                shards: 20,
            },
            restart: RestartSize {
                objects: 2_000,
                shards: 100,
                threads: 2,
                delay: Duration::from_millis(1),
                pool_timeout: Duration::from_secs(1),
                long_outage: Duration::from_millis(2_500),
                settle: Duration::from_secs(120),
            },
        }
    }

    /// The run whose figures RELIABILITY.md records.
    pub fn full() -> Size {
        Size {
            name: "full",
            kill: KillSize {
                kills: 200,
                workers: 3,
                threads: 2,
                interval_ms: (100, 1_000),
                objects: 100,
                shards: 20,
                writer_pause_us: 0,
                delay_us: 1_000,
                sqlite_lease: Duration::from_secs(5),
                settle: Duration::from_secs(600),
            },
            abort: AbortSize {
                duration: Duration::from_secs(60),
                objects: 100,
                shards: 20,
                updates: 3,
                workers: 2,
                write_every: Duration::from_millis(250),
            },
            bad_rows: BadRowsSize {
                duration: Duration::from_secs(40),
                objects: 100,
                shards: 20,
            },
            restart: RestartSize {
                objects: 20_000,
                shards: 200,
                threads: 2,
                delay: Duration::from_millis(1),
                pool_timeout: Duration::from_secs(2),
                long_outage: Duration::from_secs(6),
                settle: Duration::from_secs(600),
            },
        }
    }
}
