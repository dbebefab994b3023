//! PostgreSQL stopped and started under a draining `Worker`, on a private cluster this
//! program starts itself: twice mid-drain (a fast shutdown, then a crash: `-m
//! immediate`), then once for longer than the pool's connection timeout. A writer keeps
//! writing throughout (its writes fail while the server is down, and resume). The same
//! worker must recover through its pool each time and finish; recovery is the time from
//! the server accepting connections again to the first delivery committed after it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::PgConnection;
use diesel_outbox::{outbox_context, Outbox, Receivers, Worker, WorkerOptions};

use crate::backend::ChaosConn;
use crate::model::{record_update, setup, Category, Deliver, Verdict};
use crate::pg_cluster::{wait_until_up, PgCluster, StopMode};
use crate::report::{secs, Section};
use crate::rng::Rng;
use crate::scenario::{outbox_left, wait_for};
use crate::size::RestartSize;
use crate::CResult;

/// One outage: how the server stops, and how long it stays down.
struct Outage {
    mode: StopMode,
    down: Duration,
    label: &'static str,
}

/// What one outage did.
struct Outcome {
    label: &'static str,
    mid_drain: bool,
    outage: Duration,
    recovery: Option<Duration>,
    isolated: i64,
    settled: Option<Duration>,
}

/// Deliveries committed so far, through a connection that is reopened when it breaks.
struct Monitor {
    url: String,
    conn: Option<PgConnection>,
}

impl Monitor {
    fn committed(&mut self) -> Option<i64> {
        if self.conn.is_none() {
            self.conn = PgConnection::open(&self.url).ok();
        }
        let conn = self.conn.as_mut()?;
        match conn.scalar("SELECT COUNT(*) AS v FROM deliveries") {
            Ok(count) => Some(count),
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }
}

/// Runs the scenario with the cluster's files under `dir`.
pub fn run(dir: &Path, size: &RestartSize, seed: u64) -> CResult<Section> {
    let mut section = Section::new("PostgreSQL restarts under a draining worker (private cluster)");
    let started = Instant::now();
    let cluster = PgCluster::start(dir)?;
    let url = cluster.url();
    section.figure(
        "cluster created and started (initdb, pg_ctl start)",
        secs(started.elapsed()),
    );
    let mut conn = PgConnection::open(&url)?;
    setup(&mut conn, size.objects)?;
    let ids: Vec<i64> = (0..size.objects).collect();
    for chunk in ids.chunks(500) {
        outbox_context(&mut conn, |ctx| {
            for &object in chunk {
                record_update(ctx, object, size.shards)?;
            }
            Ok::<_, diesel_outbox::Error>(())
        })?;
    }
    let deliver = Deliver {
        delay: size.delay,
        ..Deliver::plain()
    };
    let calls = deliver.count.clone();
    let outbox = Outbox::builder(Receivers::new().cell_receiver(Category::ObjectUpdate, deliver))
        .flush_on_commit(false)
        .build();
    let pool = PgConnection::pool(&url, size.threads as u32, size.pool_timeout)?;
    let worker = Worker::spawn(
        pool,
        outbox,
        WorkerOptions {
            threads: size.threads,
            poll_interval: Duration::from_millis(50),
            ..WorkerOptions::default()
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let (commits, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (url, stop, commits, refused) =
            (url.clone(), stop.clone(), commits.clone(), refused.clone());
        let (objects, shards) = (size.objects, size.shards);
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut conn: Option<PgConnection> = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(open) = conn.as_mut() else {
                    conn = PgConnection::open(&url).ok();
                    if conn.is_none() {
                        refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    continue;
                };
                let object = rng.below(objects as u64) as i64;
                match outbox_context(open, |ctx| record_update(ctx, object, shards)) {
                    Ok(_) => commits.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        conn = None;
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let mut monitor = Monitor {
        url: url.clone(),
        conn: None,
    };
    let outages = [
        Outage {
            mode: StopMode::Fast,
            down: Duration::ZERO,
            label: "restart (-m fast)",
        },
        Outage {
            mode: StopMode::Immediate,
            down: Duration::ZERO,
            label: "crash and restart (-m immediate)",
        },
        Outage {
            mode: StopMode::Fast,
            down: size.long_outage,
            label: "outage longer than the pool's connection timeout",
        },
    ];
    let mut outcomes = Vec::new();
    for outage in &outages {
        // Mid-drain: deliveries are being committed and rows are waiting, both seen in
        // the same poll (a drain that has caught up with the writer leaves no row
        // waiting for a moment, and a stop then would test an idle worker).
        let mut last = monitor.committed().unwrap_or(0);
        let mut waiting = 0;
        let moving = wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
            let now = monitor.committed().unwrap_or(last);
            let moved = now > last;
            last = now;
            waiting = outbox_left(&mut conn)?.0;
            Ok(moved && waiting > 0)
        })?;
        let before = monitor.committed().unwrap_or(last);
        let stopping = Instant::now();
        cluster.stop_server(outage.mode)?;
        std::thread::sleep(outage.down);
        cluster.start_server()?;
        wait_until_up(&url, Duration::from_secs(30))?;
        let up = Instant::now();
        let recovery = wait_for(Duration::from_secs(120), Duration::from_millis(10), || {
            Ok(monitor.committed().is_some_and(|now| now > before))
        })?;
        conn = PgConnection::open(&url)?;
        let isolated =
            conn.scalar("SELECT COUNT(*) AS v FROM cell_outbox_shards WHERE isolated")?;
        // Back to normal: every shard the outage backed off delivered again.
        let settled = wait_for(Duration::from_secs(120), Duration::from_millis(20), || {
            Ok(conn.scalar("SELECT COUNT(*) AS v FROM cell_outbox_shards")? == 0)
        })?
        .map(|_| up.elapsed());
        outcomes.push(Outcome {
            label: outage.label,
            mid_drain: moving.is_some() && waiting > 0,
            outage: up - stopping,
            recovery,
            isolated,
            settled,
        });
    }
    stop.store(true, Ordering::Relaxed);
    writer
        .join()
        .map_err(|_| "the restart writer thread panicked")?;
    let drained = wait_for(size.settle, Duration::from_millis(100), || {
        Ok(outbox_left(&mut conn)? == (0, 0, 0))
    })?;
    worker.stop();
    let verdict = Verdict::read(&mut conn)?;

    section.figure(
        "objects / shards / drain threads",
        format!("{} / {} / {}", size.objects, size.shards, size.threads),
    );
    section.figure("pool connection timeout", secs(size.pool_timeout));
    section.figure(
        "writer commits / writes refused while down",
        format!(
            "{} / {}",
            commits.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed)
        ),
    );
    section.figure(
        "receiver calls / deliveries committed",
        format!("{} / {}", calls.load(Ordering::Relaxed), verdict.committed),
    );
    section.note(
        "| outage | server down | up to first delivery | shards backed off as a dead worker's batch | up to every one of them delivered again |",
    );
    section.note("| --- | --- | --- | --- | --- |");
    for outcome in &outcomes {
        section.note(format!(
            "| {} | {} | {} | {} | {} |",
            outcome.label,
            secs(outcome.outage),
            outcome.recovery.map_or_else(|| "never".to_owned(), secs),
            outcome.isolated,
            outcome
                .settled
                .map_or_else(|| "not within 120 s".to_owned(), secs),
        ));
    }
    for outcome in &outcomes {
        section.check(
            format!("{}: mid-drain", outcome.label),
            outcome.mid_drain,
            "deliveries were committing and rows waiting when the server stopped",
        );
        section.check(
            format!("{}: the worker recovers through its pool", outcome.label),
            outcome.recovery.is_some() && outcome.settled.is_some(),
            format!(
                "first delivery after {}, every backed-off shard delivered after {}",
                outcome.recovery.map_or_else(|| "never".to_owned(), secs),
                outcome.settled.map_or_else(|| "never".to_owned(), secs)
            ),
        );
    }
    section.check(
        "the same worker finishes: the outbox ends empty",
        drained.is_some() && verdict.outbox_rows == 0 && verdict.leases == 0,
        format!(
            "{} rows, {} leases left",
            verdict.outbox_rows, verdict.leases
        ),
    );
    section.check(
        "no shard left backing off",
        verdict.shard_states == 0,
        format!("{} shard states", verdict.shard_states),
    );
    section.check(
        "every object's last delivery equals its final state",
        verdict.matching == verdict.objects,
        format!(
            "{}/{} objects{}",
            verdict.matching,
            verdict.objects,
            verdict.describe_mismatches()
        ),
    );
    section.check(
        "no row committed twice",
        verdict.committed_twice == 0,
        verdict.committed_twice,
    );
    section.check(
        "each object's committed deliveries in version order",
        verdict.out_of_order == 0,
        format!("{} out of order", verdict.out_of_order),
    );
    if section.failed().next().is_some() {
        section.note(format!(
            "\nserver log (end):\n```text\n{}\n```",
            cluster.log_tail(20)
        ));
    }
    Ok(section)
}
