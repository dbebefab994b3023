//! Rows written by SQL that the drain cannot read, and receivers that fail, each in a
//! shard of its own, beside healthy traffic: the error names the row, the shard backs off
//! (retried at a doubling interval, not in a loop), its rows stay, and every other shard
//! drains. Healthy writes go through `Outbox::context`, so their flushes run beside the
//! failing shards too.
//!
//! Each case is a row of [`cases`]; what must happen to it is its [`Outcome`]: it backs
//! off forever (the default exhaustion policy), or, for the one category whose policy is
//! `Exhaustion::Park`, it is parked after its last allowed attempt and its shard goes on
//! with the key after it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_outbox::category::{OutboxCategory, OutboxScope};
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::inspect::ParkedGroup;
use diesel_outbox::{
    BoxError, Outbox, OutboxMessage, OutboxTable, Receivers, ShardKey, Worker, WorkerOptions,
};

use crate::backend::{Backend, ChaosConn, Target};
use crate::model::{record_update, setup, Category, Deliver, Scope};
use crate::report::{secs, Section};
use crate::rng::Rng;
use crate::scenario::wait_for;
use crate::size::BadRowsSize;
use crate::CResult;

/// What must become of a bad key.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// It stays, its shard backs off and retries at a doubling interval, forever.
    BacksOff,
    /// Its category parks after [`PARK_AFTER`] failed attempts: its row moves, with its id,
    /// the error and the attempts, to `cell_outbox_parked`; its shard goes on with the
    /// key after it and is left without a failure.
    Parked,
}

/// The `max_attempts` of `FailsThenParks`: the first failure backs off 2 s, the second
/// parks.
const PARK_AFTER: u32 = 2;

/// One bad row, in a shard of its own between a healthy row before it and one after.
struct Case {
    name: &'static str,
    /// The backend it exists on (`None`: both).
    only: Option<Backend>,
    /// The row's category number.
    category: i32,
    /// Its payload and schedule, as SQL expressions.
    payload: &'static str,
    scheduled_for: &'static str,
    /// Words the stored error must hold (besides the row's id).
    cause: &'static str,
    /// Whether the drain cannot read the row; otherwise a receiver fails at it, and the
    /// key before it must be delivered. (An unreadable row fails its shard's window, so
    /// today the key before it waits too: reported, not required.)
    unreadable: bool,
    outcome: Outcome,
}

const DUE: &str = "'2016-08-01 00:00:00'";
const GOOD_PAYLOAD: &str = "'{\"version\": 1}'";

fn cases() -> Vec<Case> {
    let case = |name, only, category, payload, scheduled_for, cause, unreadable| Case {
        name,
        only,
        category,
        payload,
        scheduled_for,
        cause,
        unreadable,
        outcome: Outcome::BacksOff,
    };
    vec![
        case(
            "schedule '-infinity'",
            Some(Backend::Postgres),
            1,
            GOOD_PAYLOAD,
            "'-infinity'",
            "cannot be read",
            true,
        ),
        case(
            "schedule 'infinity'",
            Some(Backend::Postgres),
            1,
            GOOD_PAYLOAD,
            "'infinity'",
            "cannot be read",
            true,
        ),
        case(
            "schedule that is not a date",
            Some(Backend::Sqlite),
            1,
            GOOD_PAYLOAD,
            "'not a date'",
            "cannot be read",
            true,
        ),
        case(
            "payload that is not UTF-8",
            Some(Backend::Sqlite),
            1,
            "CAST(X'FF' AS TEXT)",
            DUE,
            "cannot be read",
            true,
        ),
        case(
            "payload that does not decode",
            None,
            1,
            "'{\"version\": \"x\"}'",
            DUE,
            "could not be decoded",
            false,
        ),
        case(
            "receiver panics",
            None,
            <Category::AlwaysPanics as OutboxCategory>::NUMBER,
            GOOD_PAYLOAD,
            DUE,
            "panicked",
            false,
        ),
        case(
            "receiver fails forever",
            None,
            <Category::AlwaysFails as OutboxCategory>::NUMBER,
            GOOD_PAYLOAD,
            DUE,
            "the receiver failed",
            false,
        ),
        case(
            "unknown category (99)",
            None,
            99,
            GOOD_PAYLOAD,
            DUE,
            "no receiver",
            false,
        ),
        case(
            "declared category without a receiver",
            None,
            <Category::NoReceiver as OutboxCategory>::NUMBER,
            GOOD_PAYLOAD,
            DUE,
            "no receiver",
            false,
        ),
        Case {
            outcome: Outcome::Parked,
            ..case(
                "receiver fails, parked after 2 attempts",
                None,
                <Category::FailsThenParks as OutboxCategory>::NUMBER,
                GOOD_PAYLOAD,
                DUE,
                "the receiver failed",
                false,
            )
        },
    ]
}

/// The first shard of the bad cases; healthy shards are below it.
const FIRST_BAD_SHARD: i64 = 1_000;

/// A case as written: its shard and its three rows, each as (id, object).
struct Written {
    shard: i64,
    before: (i64, i64),
    bad: (i64, i64),
    after: (i64, i64),
}

/// Runs the scenario in `target`.
pub fn run<C: ChaosConn>(target: &Target, size: &BadRowsSize, seed: u64) -> CResult<Section> {
    let backend = C::BACKEND;
    let mut section = Section::new(format!(
        "bad rows and failing receivers: {}",
        backend.name()
    ));
    let mut conn = C::open(&target.url)?;
    setup(&mut conn, size.objects)?;
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|case| case.only.is_none_or(|only| only == backend))
        .collect();
    let mut written = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        written.push(write_case(&mut conn, index as i64, case)?);
    }

    let outbox = Outbox::builder(
        Receivers::new()
            .cell_receiver(Category::ObjectUpdate, Deliver::plain())
            .cell(
                Category::AlwaysPanics,
                |_: &mut C, message: &OutboxMessage| -> Result<(), BoxError> {
                    panic!("chaos: the receiver of row {} panics", message.id)
                },
            )
            .cell(
                Category::AlwaysFails,
                |_: &mut C, message: &OutboxMessage| -> Result<(), BoxError> {
                    Err(format!("chaos: the receiver of row {} fails", message.id).into())
                },
            )
            .cell(
                Category::FailsThenParks,
                |_: &mut C, message: &OutboxMessage| -> Result<(), BoxError> {
                    Err(format!(
                        "chaos: the receiver of row {} fails until it is parked",
                        message.id
                    )
                    .into())
                },
            ),
    )
    .exhaustion(
        Category::FailsThenParks,
        Exhaustion::Park {
            max_attempts: PARK_AFTER,
        },
    )
    .build();
    let pool = C::pool(&target.url, 2, Duration::from_secs(10))?;
    let worker = Worker::spawn(
        pool,
        outbox.clone(),
        WorkerOptions {
            threads: 2,
            poll_interval: Duration::from_millis(100),
            ..WorkerOptions::default()
        },
    )?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (commits, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (outbox, url, stop) = (outbox.clone(), target.url.clone(), stop.clone());
        let (commits, errors) = (commits.clone(), errors.clone());
        let (objects, shards) = (size.objects, size.shards);
        std::thread::spawn(move || -> CResult<()> {
            let mut conn = C::open(&url)?;
            let mut rng = Rng::new(seed);
            while !stop.load(Ordering::Relaxed) {
                let object = rng.below(objects as u64) as i64;
                match outbox.context(&mut conn, |ctx| record_update(ctx, object, shards)) {
                    Ok(_) => commits.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        eprintln!("bad-rows writer: {error}");
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
    };
    std::thread::sleep(size.duration);
    stop.store(true, Ordering::Relaxed);
    let writer_result = writer
        .join()
        .map_err(|_| "the bad-rows writer thread panicked")?;
    writer_result?;
    let healthy_left = |conn: &mut C| -> CResult<i64> {
        Ok(conn.scalar(&format!(
            "SELECT COUNT(*) AS v FROM cell_outboxes WHERE shard_identifier < {FIRST_BAD_SHARD}"
        ))?)
    };
    let settled = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        Ok(healthy_left(&mut conn)? == 0)
    })?;
    // A parking case parks about 2 s after its first attempt, and its shard goes on in a
    // later batch: a short run waits for both before the worker stops (the checks below
    // still look at each).
    let parking: Vec<&Written> = cases
        .iter()
        .zip(&written)
        .filter(|(case, _)| matches!(case.outcome, Outcome::Parked))
        .map(|(_, rows)| rows)
        .collect();
    let parked_now = |conn: &mut C| -> CResult<bool> {
        for rows in &parking {
            let parked = conn.scalar(&format!(
                "SELECT COUNT(*) AS v FROM cell_outbox_parked WHERE id = {}",
                rows.bad.0
            ))?;
            if parked == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let gone_on = |conn: &mut C| -> CResult<bool> {
        for rows in &parking {
            let left = conn.scalar(&format!(
                "SELECT COUNT(*) AS v FROM cell_outboxes WHERE shard_identifier = {}",
                rows.shard
            ))?;
            if left > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    };
    wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        parked_now(&mut conn)
    })?;
    wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        gone_on(&mut conn)
    })?;
    // The failing shards retried until now: their attempts are bounded by this.
    let elapsed = started.elapsed();
    worker.stop();

    let mismatched = conn.scalar(
        "SELECT COUNT(*) AS v FROM source s LEFT JOIN replica r ON r.id = s.id \
         WHERE s.version > 0 AND (r.version IS NULL OR r.version <> s.version)",
    )?;
    let healthy_states = conn.scalar(&format!(
        "SELECT COUNT(*) AS v FROM cell_outbox_shards WHERE shard_identifier < {FIRST_BAD_SHARD}"
    ))?;
    let commits = commits.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    section.figure(
        "healthy objects / shards",
        format!("{} / {}", size.objects, size.shards),
    );
    section.figure("healthy commits (each flushed after commit)", commits);
    section.figure("run", secs(elapsed));
    section.check(
        "the healthy writer never failed",
        errors == 0 && commits > 0,
        format!("{commits} commits, {errors} errors"),
    );
    section.check(
        "every other shard drains",
        settled.is_some() && healthy_left(&mut conn)? == 0 && mismatched == 0,
        format!("{mismatched} healthy objects not delivered"),
    );
    section.check(
        "no healthy shard backs off",
        healthy_states == 0,
        format!("{healthy_states} healthy shards with a state"),
    );

    section.note("| case | bad row | key before it | attempts | retried after | stored error |");
    section.note("| --- | --- | --- | --- | --- | --- |");
    // Attempt n is retried 2^n s after it: a run of D seconds makes at most log2(D + 2)
    // attempts, plus the first.
    let most = (elapsed.as_secs_f64() + 2.0).log2().floor() as i32 + 1;
    let least = if elapsed >= Duration::from_secs(5) {
        2
    } else {
        1
    };
    for (case, rows) in cases.iter().zip(&written) {
        check_case(&mut conn, &outbox, &mut section, case, rows, (least, most))?;
    }
    Ok(section)
}

/// Writes `case`'s three rows in shard `FIRST_BAD_SHARD + index`.
fn write_case<C: ChaosConn>(conn: &mut C, index: i64, case: &Case) -> CResult<Written> {
    let shard = FIRST_BAD_SHARD + index;
    let object = 100_000 + 10 * index;
    let insert = |conn: &mut C, category: i32, object: i64, payload: &str, scheduled_for: &str| {
        conn.scalar(&format!(
            "INSERT INTO cell_outboxes (shard_scope, shard_identifier, category, \
             object_identifier, payload, scheduled_from, scheduled_for, date_added) \
             VALUES ({scope}, {shard}, {category}, {object}, {payload}, \
             '2026-01-01 00:00:00', {scheduled_for}, '2026-01-01 00:00:00') RETURNING id AS v",
            scope = <Scope::Object as OutboxScope>::NUMBER,
        ))
    };
    let before = insert(conn, 1, object, GOOD_PAYLOAD, DUE)?;
    let bad = insert(
        conn,
        case.category,
        object + 1,
        case.payload,
        case.scheduled_for,
    )?;
    let after = insert(conn, 1, object + 2, GOOD_PAYLOAD, DUE)?;
    Ok(Written {
        shard,
        before: (before, object),
        bad: (bad, object + 1),
        after: (after, object + 2),
    })
}

/// Checks what became of one case, and adds its line to the table.
fn check_case<C: ChaosConn>(
    conn: &mut C,
    outbox: &Outbox<C>,
    section: &mut Section,
    case: &Case,
    rows: &Written,
    (least, most): (i32, i32),
) -> CResult<()> {
    let name = case.name;
    let (bad, bad_object) = rows.bad;
    let shard = ShardKey::cell(Scope::Object, rows.shard);
    let state = outbox.shard_state(conn, &shard)?;
    let present = |conn: &mut C, id: i64| -> CResult<bool> {
        Ok(conn.scalar(&format!(
            "SELECT COUNT(*) AS v FROM cell_outboxes WHERE id = {id}"
        ))? == 1)
    };
    let delivered = |conn: &mut C, object: i64| -> CResult<bool> {
        Ok(conn.scalar(&format!(
            "SELECT COUNT(*) AS v FROM replica WHERE id = {object}"
        ))? == 1)
    };
    // The bad key's parked group, as an operator lists it.
    let group: Option<ParkedGroup> = outbox
        .parked(conn, OutboxTable::Cell, 1_000)?
        .into_iter()
        .find(|group| {
            group.key.shard == shard
                && group.key.category == case.category
                && group.key.object_identifier == bad_object
        });
    // From its first failure to its parking: the backoff between the attempts.
    let parked_after = group.as_ref().and_then(|group| {
        group
            .first_failure_at
            .map(|first| (group.parked_at - first).num_milliseconds() as f64 / 1000.0)
    });
    let error = match (&case.outcome, &group) {
        (Outcome::Parked, Some(group)) => group.error.clone(),
        _ => state
            .as_ref()
            .and_then(|state| state.last_error.clone())
            .unwrap_or_default(),
    };
    let (attempts, retried) = match (&case.outcome, &group) {
        (Outcome::Parked, Some(group)) => (
            group.attempts,
            parked_after.map_or_else(
                || "parked".to_owned(),
                |after| format!("{after:.0} s, then parked"),
            ),
        ),
        _ => (
            state.as_ref().map_or(0, |state| state.attempts),
            state.as_ref().map_or_else(String::new, |state| {
                format!(
                    "{:.0} s",
                    (state.scheduled_for - state.scheduled_from).num_milliseconds() as f64 / 1000.0
                )
            }),
        ),
    };
    let before = if delivered(conn, rows.before.1)? {
        "delivered"
    } else {
        "waits"
    };
    section.note(format!(
        "| {name} | {bad} | {before} | {attempts} | {retried} | {} |",
        error
            .replace('|', "/")
            .chars()
            .take(140)
            .collect::<String>(),
    ));
    match case.outcome {
        Outcome::BacksOff => {
            section.check(
                format!("{name}: the error names the row and says why"),
                state
                    .as_ref()
                    .is_some_and(|state| state.failed_row_id == Some(bad))
                    && error.contains(&format!("row {bad}"))
                    && error.contains(case.cause),
                format!(
                    "failed row {:?}: {error}",
                    state.as_ref().and_then(|s| s.failed_row_id)
                ),
            );
            section.check(
                format!("{name}: the shard backs off and retries at a doubling interval"),
                state.as_ref().is_some_and(|state| {
                    state.scheduled_for > state.scheduled_from
                        && (least..=most).contains(&state.attempts)
                }),
                format!(
                    "attempts {} (expected {least} to {most})",
                    state.as_ref().map_or(0, |state| state.attempts)
                ),
            );
            section.check(
                format!("{name}: its row and the key after it stay"),
                present(conn, bad)?
                    && present(conn, rows.after.0)?
                    && !delivered(conn, rows.after.1)?,
                format!("rows {bad} and {}", rows.after.0),
            );
        }
        Outcome::Parked => {
            let in_outbox = present(conn, bad)?;
            let parked_in_shard = conn.scalar(&format!(
                "SELECT COUNT(*) AS v FROM cell_outbox_parked WHERE shard_identifier = {}",
                rows.shard
            ))?;
            let parked_as_written = conn.scalar(&format!(
                "SELECT COUNT(*) AS v FROM cell_outbox_parked WHERE id = {bad} \
                 AND shard_identifier = {} AND category = {} AND object_identifier = {bad_object}",
                rows.shard, case.category
            ))? == 1;
            section.check(
                format!("{name}: its row left the outbox and is parked with its id"),
                !in_outbox && parked_as_written && parked_in_shard == 1,
                format!(
                    "row {bad} in cell_outboxes: {in_outbox}, in cell_outbox_parked: \
                     {parked_as_written}; parked rows of its shard: {parked_in_shard}"
                ),
            );
            let attempts = i32::try_from(PARK_AFTER)?;
            section.check(
                format!(
                    "{name}: `Outbox::parked` lists it, parked at attempt {attempts}, \
                     the error naming the row and why"
                ),
                group.as_ref().is_some_and(|group| {
                    group.rows == 1
                        && group.first_id == bad
                        && group.last_id == bad
                        && group.attempts == attempts
                        && group.error.contains(&format!("row {bad}"))
                        && group.error.contains(case.cause)
                }),
                group.as_ref().map_or_else(
                    || format!("no parked group of object {bad_object}"),
                    |group| {
                        format!(
                            "{} row(s), ids {}..{}, attempts {}: {}",
                            group.rows, group.first_id, group.last_id, group.attempts, group.error
                        )
                    },
                ),
            );
            section.check(
                format!("{name}: parked at its retry after the first backoff (2 s), not at once"),
                parked_after.is_some_and(|after| after >= 2.0),
                parked_after.map_or_else(
                    || "no first failure recorded".to_owned(),
                    |after| format!("parked {after:.2} s after its first failure"),
                ),
            );
            let after = delivered(conn, rows.after.1)? && !present(conn, rows.after.0)?;
            section.check(
                format!("{name}: the key after it is delivered and its row deleted"),
                after,
                format!("row {} delivered and deleted: {after}", rows.after.0),
            );
            section.check(
                format!("{name}: its shard is not left backing off"),
                state.is_none(),
                state.as_ref().map_or_else(
                    || "no shard state".to_owned(),
                    |state| {
                        format!(
                            "a state: attempts {}, failed row {:?}, skipped {}, retried at {}",
                            state.attempts, state.failed_row_id, state.skipped, state.scheduled_for
                        )
                    },
                ),
            );
        }
    }
    if !case.unreadable {
        // The keys before a failing key stay delivered (their writes commit).
        let before = delivered(conn, rows.before.1)? && !present(conn, rows.before.0)?;
        section.check(
            format!("{name}: the key before it is delivered"),
            before,
            format!("delivered: {before}"),
        );
    }
    Ok(())
}
