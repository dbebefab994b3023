//! kill -9 of drain worker processes at random moments while two writer processes commit
//! updates over a set of objects.
//!
//! Afterwards the workers that are left get to empty the outbox on their own; then every
//! object's replica must hold its final version, the outbox and its leases must be empty,
//! and no row may have been committed twice or out of order. Duplicates are counted twice
//! over (see `model`): in the drain's transaction (what committed: must never repeat a
//! row) and outside it (every receiver call: what an external side effect sees, at least
//! once).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::{ChaosConn, Target};
use crate::child::{signal_stop, Proc, STOP_WORKERS, STOP_WRITERS};
use crate::model::{read_calls, setup, CallFigures, Verdict};
use crate::report::{secs, Section};
use crate::rng::Rng;
use crate::scenario::{count_in_logs, figure_in, outbox_left, wait_for};
use crate::size::KillSize;
use crate::CResult;

/// The warning the drain logs when it backs off a dead worker's batch.
const RECOVERED: &str = "recovered a batch a dead worker left behind";

/// Runs the scenario in `target`, with the children's files under `dir`.
pub fn run<C: ChaosConn>(
    target: &Target,
    dir: &Path,
    size: &KillSize,
    seed: u64,
) -> CResult<Section> {
    let backend = C::BACKEND;
    let mut section = Section::new(format!("kill -9 of drain workers: {}", backend.name()));
    let mut conn = C::open(&target.url)?;
    setup(&mut conn, size.objects)?;
    let mut rng = Rng::new(seed);
    let lease = match backend {
        crate::backend::Backend::Sqlite => size.sqlite_lease,
        // PostgreSQL tells a dead worker by its session's advisory lock, not by time.
        crate::backend::Backend::Postgres => Duration::from_secs(300),
    };
    let common = |extra: &[(&'static str, String)]| {
        let mut args = vec![
            ("backend", backend.arg().to_owned()),
            ("url", target.url.clone()),
            ("dir", dir.display().to_string()),
        ];
        args.extend_from_slice(extra);
        args
    };
    let worker_args = common(&[
        ("threads", size.threads.to_string()),
        ("poll_ms", "50".to_owned()),
        ("lease_s", lease.as_secs().to_string()),
        ("delay_us", size.delay_us.to_string()),
        ("poison", "false".to_owned()),
    ]);
    let mut serial = 0;
    let spawn_worker = |serial: &mut usize| {
        *serial += 1;
        Proc::spawn(dir, "worker", *serial, &worker_args)
    };
    let mut writers = Vec::new();
    for index in 0..2 {
        writers.push(Proc::spawn(
            dir,
            "writer",
            index,
            &common(&[
                ("objects", size.objects.to_string()),
                ("shards", size.shards.to_string()),
                ("seed", rng.next_u64().to_string()),
                ("pause_us", size.writer_pause_us.to_string()),
            ]),
        )?);
    }
    let mut workers = Vec::new();
    for _ in 0..size.workers {
        workers.push(spawn_worker(&mut serial)?);
    }
    let started = Instant::now();
    wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
        Ok(conn.scalar("SELECT COUNT(*) AS v FROM deliveries")? > 0)
    })?;

    let mut killed: Vec<i64> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    while killed.len() < size.kills {
        std::thread::sleep(Duration::from_millis(
            rng.between(size.interval_ms.0, size.interval_ms.1),
        ));
        for worker in workers.iter_mut() {
            if let Some(status) = worker.exited()? {
                unexpected.push(format!("pid {} {status}: {}", worker.pid, worker.tail(5)));
                *worker = spawn_worker(&mut serial)?;
            }
        }
        let victim = &mut workers[rng.below(size.workers as u64) as usize];
        killed.push(i64::from(victim.pid));
        victim.kill()?;
        *victim = spawn_worker(&mut serial)?;
    }
    let last_kill = Instant::now();
    signal_stop(dir, STOP_WRITERS)?;
    let (mut commits, mut writer_errors) = (0, 0);
    for writer in writers.iter_mut() {
        let (status, by_itself) = writer.finish(Duration::from_secs(60))?;
        let output = writer.output();
        if !status.success() || !by_itself {
            unexpected.push(format!("writer {status}: {}", writer.tail(5)));
        }
        commits += figure_in(&output, "commits").unwrap_or(0);
        writer_errors += figure_in(&output, "errors").unwrap_or(u64::MAX / 4);
    }
    let writes_done = last_kill.elapsed();
    let drained = wait_for(size.settle, Duration::from_millis(100), || {
        Ok(outbox_left(&mut conn)? == (0, 0, 0))
    })?;
    let after_last_kill = last_kill.elapsed();
    for worker in workers.iter_mut() {
        if let Some(status) = worker.exited()? {
            unexpected.push(format!("pid {} {status}: {}", worker.pid, worker.tail(5)));
        }
    }
    signal_stop(dir, STOP_WORKERS)?;
    let mut unclean_stops = Vec::new();
    for worker in workers.iter_mut() {
        let (status, by_itself) = worker.finish(Duration::from_secs(30))?;
        if !status.success() || !by_itself {
            unclean_stops.push(format!("pid {} {status}: {}", worker.pid, worker.tail(5)));
        }
    }
    let elapsed = started.elapsed();

    let verdict = Verdict::read(&mut conn)?;
    let calls = read_calls(dir)?;
    let figures = CallFigures::of(&calls, &verdict);
    let interrupted = killed
        .iter()
        .filter(|pid| figures.pids_with_uncommitted.contains(pid))
        .count();
    let uncommitted_alive = figures
        .pids_with_uncommitted
        .iter()
        .filter(|pid| !killed.contains(pid))
        .count();
    let recovered = count_in_logs(dir, "worker-", RECOVERED)?;

    section.figure("seed", seed);
    section.figure(
        "objects / shards / writer processes / worker processes x threads",
        format!(
            "{} / {} / 2 / {} x {}",
            size.objects, size.shards, size.workers, size.threads
        ),
    );
    section.figure("run time (first write to workers stopped)", secs(elapsed));
    section.figure("commits by the writers", commits);
    section.figure("kill -9 of a worker", killed.len());
    section.figure(
        "kills that landed during a delivery (the killed process had called a receiver for a row it never committed)",
        interrupted,
    );
    section.figure(
        "dead workers' batches backed off (counted in the workers' logs)",
        recovered,
    );
    section.figure("receiver calls (out-of-transaction log)", figures.calls);
    section.figure(
        "deliveries committed (in-transaction log)",
        verdict.committed,
    );
    section.figure(
        "rows coalesced away (commits - deliveries committed)",
        i64::try_from(commits).unwrap_or(i64::MAX) - verdict.committed,
    );
    section.figure(
        "duplicate calls: a row called again after an earlier call (at-least-once, what an external side effect sees)",
        figures.repeated,
    );
    section.figure(
        "calls whose transaction never committed",
        figures.uncommitted,
    );
    section.figure(
        "processes not killed with calls that never committed",
        uncommitted_alive,
    );
    section.figure(
        "duplicate commits: a row committed twice",
        verdict.committed_twice,
    );
    section.figure("writes finished after the last kill", secs(writes_done));
    section.figure(
        "outbox empty and every shard settled after the last kill",
        drained.map_or_else(
            || format!("not within {}", secs(size.settle)),
            |_| secs(after_last_kill),
        ),
    );

    section.check(
        "kills",
        killed.len() >= size.kills,
        format!("{} worker processes killed with SIGKILL", killed.len()),
    );
    section.check(
        "no process died unless killed",
        unexpected.is_empty(),
        if unexpected.is_empty() {
            "none".to_owned()
        } else {
            unexpected.join(" | ")
        },
    );
    section.check(
        "writers never failed",
        writer_errors == 0,
        format!("{writer_errors} errors over {commits} commits"),
    );
    section.check(
        "every commit is in the sources",
        verdict.versions == i64::try_from(commits).unwrap_or(-1),
        format!("sum of versions {} = commits {commits}", verdict.versions),
    );
    section.check(
        "the outbox ends empty",
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
        "every object's last delivery equals its final state (nothing lost)",
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
    section.check(
        "every committed delivery is in the call logs",
        figures.committed_unlogged == 0,
        format!("{} missing", figures.committed_unlogged),
    );
    section.check(
        "the workers left stop cleanly",
        unclean_stops.is_empty(),
        if unclean_stops.is_empty() {
            "all".to_owned()
        } else {
            unclean_stops.join(" | ")
        },
    );
    Ok(section)
}
