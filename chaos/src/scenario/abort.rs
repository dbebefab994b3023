//! A receiver that kills its own process (`abort`) for one object: it must not crash
//! every worker in turn. The batch's lease, committed before any receiver runs, outlives
//! the process; the next drain backs the batch's shards off and delivers each alone, so
//! the poisoned shard stops only itself, and its retries (each one more crash) come at a
//! doubling interval. Then the fault is fixed and the shard is delivered.
//!
//! Two variants: the poisoned shard gets no new rows meanwhile, or it keeps getting them
//! (its organisation is still being written to), which must not turn each new row into a
//! retry, and so into one more crash.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_outbox::{outbox_context, Outbox, Receivers, ShardKey};

use crate::backend::{Backend, ChaosConn, Target};
use crate::child::{signal_stop, Proc, STOP_WORKERS};
use crate::model::{record_update, setup, Scope};
use crate::report::{secs, Section};
use crate::scenario::wait_for;
use crate::size::AbortSize;
use crate::CResult;

/// The object whose receiver aborts.
const POISONED: i64 = 7;
/// SIGABRT.
const SIGABRT: i32 = 6;

/// Runs the scenario in `target`, with the children's files under `dir`; with `written`,
/// another object of the poisoned shard is updated every `size.write_every` meanwhile.
pub fn run<C: ChaosConn>(
    target: &Target,
    dir: &Path,
    size: &AbortSize,
    written: bool,
) -> CResult<Section> {
    let backend = C::BACKEND;
    let mut section = Section::new(format!(
        "a receiver that aborts its process ({}): {}",
        if written {
            "its shard keeps getting rows"
        } else {
            "no new rows in its shard"
        },
        backend.name()
    ));
    let mut conn = C::open(&target.url)?;
    setup(&mut conn, size.objects)?;
    for _ in 0..size.updates {
        outbox_context(&mut conn, |ctx| {
            for object in 0..size.objects {
                record_update(ctx, object, size.shards)?;
            }
            Ok::<_, diesel_outbox::Error>(())
        })?;
    }
    conn.batch_execute(&format!("INSERT INTO poison (object) VALUES ({POISONED})"))?;
    let shard = ShardKey::cell(Scope::Object, POISONED % size.shards);
    // SQLite knows a dead worker's batch by its lease's expiry: keep it short here.
    let lease_s = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 300,
    };
    let args = [
        ("backend", backend.arg().to_owned()),
        ("url", target.url.clone()),
        ("dir", dir.display().to_string()),
        ("threads", "1".to_owned()),
        ("poll_ms", "50".to_owned()),
        ("lease_s", lease_s.to_string()),
        ("delay_us", "0".to_owned()),
        ("poison", "true".to_owned()),
    ];
    let mut serial = 0;
    let spawn = |serial: &mut usize| {
        *serial += 1;
        Proc::spawn(dir, "worker", *serial, &args)
    };
    let mut workers = Vec::new();
    for _ in 0..size.workers {
        workers.push(spawn(&mut serial)?);
    }
    let started = Instant::now();
    let stop_writes = Arc::new(AtomicBool::new(false));
    let neighbour = POISONED + size.shards;
    let writes = written.then(|| {
        let (url, stop, every, shards) = (
            target.url.clone(),
            stop_writes.clone(),
            size.write_every,
            size.shards,
        );
        std::thread::spawn(move || -> CResult<u64> {
            let mut conn = C::open(&url)?;
            let mut count = 0;
            while !stop.load(Ordering::Relaxed) {
                outbox_context(&mut conn, |ctx| record_update(ctx, neighbour, shards))?;
                count += 1;
                std::thread::sleep(every);
            }
            Ok(count)
        })
    });
    let mut deaths: Vec<(Duration, Option<i32>)> = Vec::new();
    let mut others_delivered: Option<Duration> = None;
    // The objects of the other shards (those after the poisoned key in its own shard
    // wait behind it: a shard is delivered in order).
    let poisoned_shard = POISONED % size.shards;
    let others = conn.scalar(&format!(
        "SELECT COUNT(*) AS v FROM source WHERE id % {shards} <> {poisoned_shard}",
        shards = size.shards
    ))?;
    let delivered_others = |conn: &mut C| -> CResult<i64> {
        Ok(conn.scalar(&format!(
            "SELECT COUNT(*) AS v FROM source s JOIN replica r ON r.id = s.id \
             AND r.version = s.version WHERE s.id % {shards} <> {poisoned_shard}",
            shards = size.shards
        ))?)
    };
    let mut last_poll = Instant::now();
    while started.elapsed() < size.duration {
        for worker in workers.iter_mut() {
            if let Some(status) = worker.exited()? {
                deaths.push((started.elapsed(), status.signal()));
                *worker = spawn(&mut serial)?;
            }
        }
        if others_delivered.is_none() && last_poll.elapsed() > Duration::from_millis(200) {
            last_poll = Instant::now();
            if delivered_others(&mut conn)? == others {
                others_delivered = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_writes.store(true, Ordering::Relaxed);
    let neighbour_writes = match writes {
        Some(thread) => thread
            .join()
            .map_err(|_| "the poisoned shard's writer panicked")??,
        None => 0,
    };
    let reader = Outbox::new(Receivers::<C>::new());
    let state = reader.shard_state(&mut conn, &shard)?;
    let poisoned_rows = conn.scalar(&format!(
        "SELECT COUNT(*) AS v FROM cell_outboxes WHERE object_identifier = {POISONED}"
    ))?;
    let others_now = delivered_others(&mut conn)?;

    // The fix: the receiver no longer aborts, a new change to the object arrives, and the
    // operator retries the shard now rather than wait for its backoff (`unskip_shard`
    // makes a shard due at once; the operations issue's `retry-now` is the same).
    conn.batch_execute("DELETE FROM poison")?;
    // A retry that read the poison before the fix committed may still be dying: give the
    // supervisor a moment to see it, and count it before the fix.
    std::thread::sleep(Duration::from_millis(500));
    for worker in workers.iter_mut() {
        if let Some(status) = worker.exited()? {
            deaths.push((started.elapsed(), status.signal()));
            *worker = spawn(&mut serial)?;
        }
    }
    let deaths_before_fix = deaths.len();
    outbox_context(&mut conn, |ctx| record_update(ctx, POISONED, size.shards))?;
    reader.unskip_shard(&mut conn, &shard)?;
    let fixed_after = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        for worker in workers.iter_mut() {
            if let Some(status) = worker.exited()? {
                deaths.push((started.elapsed(), status.signal()));
                *worker = spawn(&mut serial)?;
            }
        }
        // An isolated shard is delivered a key per batch: its state goes with its last
        // key, which may come after the replicas already match.
        Ok(conn.scalar(
            "SELECT COUNT(*) AS v FROM source s JOIN replica r ON r.id = s.id \
             AND r.version = s.version",
        )? == size.objects
            && conn.scalar("SELECT COUNT(*) AS v FROM cell_outboxes")? == 0
            && reader.shard_state(&mut conn, &shard)?.is_none())
    })?;
    let state_after = reader.shard_state(&mut conn, &shard)?;
    let rows_after = conn.scalar("SELECT COUNT(*) AS v FROM cell_outboxes")?;
    signal_stop(dir, STOP_WORKERS)?;
    let mut unclean = Vec::new();
    for worker in workers.iter_mut() {
        let (status, by_itself) = worker.finish(Duration::from_secs(30))?;
        if !status.success() || !by_itself {
            unclean.push(format!("pid {} {status}: {}", worker.pid, worker.tail(5)));
        }
    }

    let duration = size.duration.as_secs_f64();
    // One crash per attempt; attempt n is retried 2^n s after it, so a run of D seconds
    // sees at most log2(D + 2) of them (SQLite fewer: a dead batch waits for its lease to
    // expire first). One more is allowed for a crash that lands between another worker's
    // look for dead batches and its next claim.
    let bound = (duration + 2.0).log2().floor() as usize + 1;
    // Deaths less than a second apart are one episode: a cascade through the workers.
    let episodes = deaths
        .iter()
        .take(deaths_before_fix)
        .zip(std::iter::once(None).chain(deaths.iter().map(Some)))
        .filter(|((at, _), previous)| {
            previous.is_none_or(|(before, _)| *at - *before >= Duration::from_secs(1))
        })
        .count();
    let timeline: Vec<String> = deaths
        .iter()
        .map(|(at, signal)| format!("{:.1} s ({})", at.as_secs_f64(), describe(*signal)))
        .collect();
    section.figure(
        "objects / shards / worker processes",
        format!("{} / {} / {}", size.objects, size.shards, size.workers),
    );
    section.figure("poisoned run", secs(size.duration));
    section.figure(
        "new rows in the poisoned shard meanwhile",
        format!("{neighbour_writes} (object {neighbour}, behind the poisoned key)"),
    );
    section.figure(
        "worker deaths while poisoned / episodes (deaths under 1 s apart are one)",
        format!("{deaths_before_fix} / {episodes}"),
    );
    section.figure("deaths at", timeline.join(", "));
    section.figure(
        "the other shards' objects all delivered after",
        others_delivered.map_or_else(|| "never".to_owned(), secs),
    );
    if let Some(state) = &state {
        section.figure(
            "the poisoned shard's state",
            format!(
                "isolated {}, attempts {}, retried at +{:.0} s",
                state.isolated,
                state.attempts,
                (state.scheduled_for - state.scheduled_from).num_milliseconds() as f64 / 1000.0
            ),
        );
        section.figure(
            "its stored error",
            state.last_error.clone().unwrap_or_default(),
        );
    }
    section.figure(
        "after the fix and a retry-now, its shard delivered in",
        fixed_after.map_or_else(|| "never".to_owned(), secs),
    );

    section.check(
        "the receiver aborted its process",
        deaths_before_fix >= 1,
        format!("{deaths_before_fix} deaths"),
    );
    section.check(
        "every death is the abort",
        deaths.iter().all(|(_, signal)| *signal == Some(SIGABRT)),
        timeline.join(", "),
    );
    section.check(
        "the crashes do not go on worker after worker: retries back off",
        deaths_before_fix <= bound,
        format!("{deaths_before_fix} deaths in {duration:.0} s (at most {bound})"),
    );
    section.check(
        "one crash per retry, not one per worker",
        episodes == deaths_before_fix,
        format!("{deaths_before_fix} deaths in {episodes} episodes"),
    );
    section.check(
        "every other shard is delivered meanwhile",
        others_now == others,
        format!("{others_now}/{others}"),
    );
    section.check(
        "the poisoned shard is isolated and backs off, saying why",
        state.as_ref().is_some_and(|state| {
            state.isolated
                && state.attempts >= 1
                && state.scheduled_for > state.scheduled_from
                && state
                    .last_error
                    .as_deref()
                    .is_some_and(|error| error.contains("stopped while delivering"))
        }),
        state.as_ref().map_or_else(
            || "no state".to_owned(),
            |state| format!("isolated {}, attempts {}", state.isolated, state.attempts),
        ),
    );
    section.check(
        "the poisoned rows were not deleted",
        poisoned_rows >= 1,
        format!("{poisoned_rows} rows of object {POISONED}"),
    );
    section.check(
        "once fixed, the shard is delivered (every object equals its source) and forgets its failures",
        fixed_after.is_some() && state_after.is_none() && rows_after == 0,
        format!(
            "delivered: {}, state left: {}, rows left: {rows_after}",
            fixed_after.is_some(),
            state_after.is_some()
        ),
    );
    section.check(
        "no death after the fix",
        deaths.len() == deaths_before_fix,
        format!("{}", deaths.len() - deaths_before_fix),
    );
    section.check(
        "the workers stop cleanly",
        unclean.is_empty(),
        if unclean.is_empty() {
            "all".to_owned()
        } else {
            unclean.join(" | ")
        },
    );
    Ok(section)
}

fn describe(signal: Option<i32>) -> String {
    match signal {
        Some(SIGABRT) => "SIGABRT".to_owned(),
        Some(other) => format!("signal {other}"),
        None => "exit".to_owned(),
    }
}
