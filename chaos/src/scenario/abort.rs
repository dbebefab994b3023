//! A receiver that kills its own process (`abort`) for one object: it must not crash
//! every worker in turn. The batch's lease, committed before any receiver runs, outlives
//! the process; the next drain backs the batch's shards off and delivers each alone, so
//! the poisoned shard stops only itself, and its retries (each one more crash) come at a
//! doubling interval. Then the fault is fixed and the shard is delivered.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
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

/// Runs the scenario in `target`, with the children's files under `dir`.
pub fn run<C: ChaosConn>(target: &Target, dir: &Path, size: &AbortSize) -> CResult<Section> {
    let backend = C::BACKEND;
    let mut section = Section::new(format!(
        "a receiver that aborts its process: {}",
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
    let mut deaths: Vec<(Duration, Option<i32>)> = Vec::new();
    let mut others_delivered: Option<Duration> = None;
    let others = size.objects - 1;
    let delivered_others = |conn: &mut C| -> CResult<i64> {
        Ok(conn.scalar(&format!(
            "SELECT COUNT(*) AS v FROM source s JOIN replica r ON r.id = s.id \
             AND r.version = s.version WHERE s.id <> {POISONED}"
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
    let reader = Outbox::new(Receivers::<C>::new());
    let state = reader.shard_state(&mut conn, &shard)?;
    let poisoned_rows = conn.scalar(&format!(
        "SELECT COUNT(*) AS v FROM cell_outboxes WHERE object_identifier = {POISONED}"
    ))?;
    let others_now = delivered_others(&mut conn)?;

    // The fix: the receiver no longer aborts, and a new change to the object arrives,
    // which makes its backed-off shard due at once.
    conn.batch_execute("DELETE FROM poison")?;
    outbox_context(&mut conn, |ctx| record_update(ctx, POISONED, size.shards))?;
    let deaths_before_fix = deaths.len();
    let fixed_after = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        for worker in workers.iter_mut() {
            if let Some(status) = worker.exited()? {
                deaths.push((started.elapsed(), status.signal()));
                *worker = spawn(&mut serial)?;
            }
        }
        Ok(conn.scalar(&format!(
            "SELECT COUNT(*) AS v FROM source s JOIN replica r ON r.id = s.id \
             AND r.version = s.version WHERE s.id = {POISONED}"
        ))? == 1)
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
    // One crash per attempt; attempt n waits 2^n s after the one before, so a run of D
    // seconds sees about log2(D + 2) of them. Two workers can both take the shard in the
    // moment between a crash and its recovery: allow twice that.
    let bound = 2 * ((duration + 2.0).log2().floor() as usize + 1);
    let timeline: Vec<String> = deaths
        .iter()
        .map(|(at, signal)| format!("{:.1} s ({})", at.as_secs_f64(), describe(*signal)))
        .collect();
    section.figure(
        "objects / shards / worker processes",
        format!("{} / {} / {}", size.objects, size.shards, size.workers),
    );
    section.figure("poisoned run", secs(size.duration));
    section.figure("worker deaths while poisoned", deaths_before_fix);
    section.figure("deaths at", timeline.join(", "));
    section.figure(
        "the other objects all delivered after",
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
        "after the fix, the poisoned object delivered in",
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
        "every other object is delivered meanwhile",
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
        "once fixed, the shard is delivered and forgets its failures",
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
