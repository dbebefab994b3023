//! `backfill status` and `backfill run`.
//!
//! The tool cannot see the application's models, so it cannot read a model's table or
//! compute its outbox rows. It works from `outbox_backfills`, where the application
//! records its declared versions and its backfill's position: `status` reads it, and
//! `run` records a request there (a rate too, if given), which the application's backfill
//! (a `Worker` with `WorkerOptions::backfill`, or its own calls of `Outbox::backfill`)
//! takes up before any other model, then follows the progress until the stored version is
//! the declared one: a progress bar on a terminal, a line every second otherwise (both on
//! stderr, so that stdout holds the result, or its JSON).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use diesel_outbox::backfill::{BackfillPhase, BackfillStatus};
use diesel_outbox::{Outbox, OutboxConnection};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::{BackfillAction, TableArg};
use crate::failure::{Exit, Failure};
use crate::view::{human_duration, json_time, table, Output};

/// How often `run` reads the progress.
const POLL: Duration = Duration::from_millis(250);

/// Without progress for this long, `run` says what runs a backfill.
const STALL_HINT: Duration = Duration::from_secs(10);

/// Runs a `backfill` command.
pub fn run<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    action: &BackfillAction,
) -> Result<Output, Failure> {
    match action {
        BackfillAction::Status => status(conn, outbox),
        BackfillAction::Run {
            model,
            rate,
            tables,
            no_wait,
            timeout,
        } => {
            let request = Request {
                model,
                rate: *rate,
                tables,
                wait: !no_wait,
                timeout: timeout.map(Duration::from_secs),
            };
            request.run(conn, outbox)
        }
    }
}

fn status<C: OutboxConnection>(conn: &mut C, outbox: &Outbox<C>) -> Result<Output, Failure> {
    let statuses = outbox.backfill_status(conn)?;
    let attention = statuses
        .iter()
        .any(|status| status.problem.is_some() || status.last_error.is_some());
    let views: Vec<BackfillView> = statuses.iter().map(BackfillView::new).collect();
    let text = render(&views);
    let output = Output::new(Backfills { backfills: views }, text);
    Ok(output.with_exit(if attention { Exit::Attention } else { Exit::Ok }))
}

/// `backfill run`.
struct Request<'a> {
    model: &'a str,
    rate: Option<u32>,
    tables: &'a TableArg,
    wait: bool,
    timeout: Option<Duration>,
}

impl Request<'_> {
    fn run<C: OutboxConnection>(
        &self,
        conn: &mut C,
        outbox: &Outbox<C>,
    ) -> Result<Output, Failure> {
        let status = self.find(conn, outbox)?;
        if let Some(problem) = &status.problem {
            return Err(Failure::error(format!(
                "the backfill of `{}` ({}) cannot run: {problem}",
                status.model, status.table
            )));
        }
        if status.phase == BackfillPhase::UpToDate {
            let view = BackfillView::new(&status);
            let text = format!(
                "{} ({}): up to date at version {}: nothing to backfill",
                status.model, status.table, status.stored_version
            );
            return Ok(Output::new(view, text).with_exit(Exit::NotFound));
        }
        outbox.request_backfill(conn, status.table, &status.model, self.rate)?;
        if !self.wait {
            let view = BackfillView::new(&self.find(conn, outbox)?);
            let text = format!(
                "{} ({}): asked for; the application's backfill runs it (follow it with `backfill status`)",
                status.model, status.table
            );
            return Ok(Output::new(view, text));
        }
        let done = self.follow(conn, outbox, &status)?;
        let text = format!(
            "{} ({}): version {} backfilled: {} objects, last key {}",
            done.model,
            done.table,
            done.stored_version,
            done.rows_done,
            done.last_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string())
        );
        Ok(Output::new(BackfillView::new(&done), text))
    }

    /// The status of the one model the command names.
    fn find<C: OutboxConnection>(
        &self,
        conn: &mut C,
        outbox: &Outbox<C>,
    ) -> Result<BackfillStatus, Failure> {
        let tables = self.tables.tables();
        let statuses = outbox.backfill_status(conn)?;
        let known: Vec<String> = statuses
            .iter()
            .map(|status| format!("{} ({})", status.model, status.table))
            .collect();
        let mut found: Vec<BackfillStatus> = statuses
            .into_iter()
            .filter(|status| status.model == self.model && tables.contains(&status.table))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => {
                Err(Failure {
                    exit: Exit::NotFound,
                    message: format!(
                    "no model `{}` is recorded in outbox_backfills (the application records its \
                     models at its first backfill step); recorded: {}",
                    self.model,
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
                })
            }
            _ => Err(Failure::usage(format!(
                "`{}` is a model of both outbox tables: add --table cell or --table control",
                self.model
            ))),
        }
    }

    /// Reads the progress until the run is done (or the timeout passes).
    fn follow<C: OutboxConnection>(
        &self,
        conn: &mut C,
        outbox: &Outbox<C>,
        first: &BackfillStatus,
    ) -> Result<BackfillStatus, Failure> {
        let started = Instant::now();
        let mut progress = Progress::new(first);
        let (mut last_done, mut last_change, mut hinted) = (None, Instant::now(), false);
        loop {
            let status = self.find(conn, outbox)?;
            if status.phase == BackfillPhase::UpToDate {
                progress.finish(&status);
                return Ok(status);
            }
            if let Some(problem) = &status.problem {
                progress.abandon();
                return Err(Failure::error(format!(
                    "the backfill of `{}` ({}) stopped: {problem}",
                    status.model, status.table
                )));
            }
            let done = (status.target_version, status.rows_done);
            if last_done != Some(done) {
                (last_done, last_change) = (Some(done), Instant::now());
            } else if !hinted && last_change.elapsed() >= STALL_HINT {
                hinted = true;
                progress.note(&format!(
                    "no progress for {}s: the application's backfill runs it (a Worker with \
                     WorkerOptions::backfill set, or its own calls of Outbox::backfill); is one running?",
                    STALL_HINT.as_secs()
                ));
            }
            progress.show(&status);
            if self
                .timeout
                .is_some_and(|timeout| started.elapsed() >= timeout)
            {
                progress.abandon();
                return Err(Failure::error(format!(
                    "`{}` is still backfilling after {}s ({} objects done); it goes on: follow it \
                     with `backfill status`",
                    status.model,
                    started.elapsed().as_secs(),
                    status.rows_done
                )));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The progress, on stderr: a bar on a terminal, a line a second otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines { last: Option<Instant> },
}

impl Progress {
    fn new(status: &BackfillStatus) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { last: None };
        }
        let bar = ProgressBar::new(status.rows_total.unwrap_or(0).max(0) as u64);
        let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} objects {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(status.model.clone());
        Progress::Bar(bar)
    }

    fn show(&mut self, status: &BackfillStatus) {
        let figures = figures(status);
        match self {
            Progress::Bar(bar) => {
                if let Some(total) = status.rows_total {
                    bar.set_length(total.max(status.rows_done).max(0) as u64);
                }
                bar.set_position(status.rows_done.max(0) as u64);
                bar.set_message(figures);
            }
            Progress::Lines { last } => {
                if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    eprintln!("{}: {figures}", status.model);
                }
            }
        }
    }

    fn note(&self, text: &str) {
        match self {
            Progress::Bar(bar) => bar.println(text),
            Progress::Lines { .. } => eprintln!("{text}"),
        }
    }

    fn finish(&mut self, status: &BackfillStatus) {
        if let Progress::Bar(bar) = self {
            bar.set_position(status.rows_done.max(0) as u64);
            bar.finish_with_message("done");
        }
    }

    fn abandon(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.abandon();
        }
    }
}

/// `4500 of 10000 objects, 450/s, ETA 12.2s`.
fn figures(status: &BackfillStatus) -> String {
    let mut text = match (status.phase, status.rows_total) {
        (BackfillPhase::Pending, _) => "waiting for its first batch".to_owned(),
        (_, Some(total)) => format!("{} of {total} objects", status.rows_done),
        (_, None) => format!("{} objects", status.rows_done),
    };
    if let Some(rate) = status.rate {
        text.push_str(&format!(", {rate:.0}/s"));
    }
    if let Some(eta) = status.eta {
        text.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    text
}

#[derive(Serialize)]
struct Backfills {
    backfills: Vec<BackfillView>,
}

/// One model's backfill, for JSON and the table.
#[derive(Serialize)]
pub struct BackfillView {
    model: String,
    table: &'static str,
    declared_version: Option<i32>,
    stored_version: i32,
    target_version: Option<i32>,
    state: &'static str,
    /// The highest key done: where the run resumes.
    position: Option<i64>,
    rows_done: i64,
    rows_total: Option<i64>,
    rows_per_second: Option<f64>,
    eta_seconds: Option<f64>,
    started_at: Option<String>,
    updated_at: Option<String>,
    finished_at: Option<String>,
    requested_at: Option<String>,
    requested_rate: Option<i32>,
    last_error: Option<String>,
    problem: Option<String>,
}

impl BackfillView {
    fn new(status: &BackfillStatus) -> Self {
        BackfillView {
            model: status.model.clone(),
            table: status.table.name(),
            declared_version: status.declared_version,
            stored_version: status.stored_version,
            target_version: status.target_version,
            state: match status.phase {
                BackfillPhase::UpToDate => "up to date",
                BackfillPhase::Pending => "pending",
                BackfillPhase::Running => "running",
                BackfillPhase::NotDeclared => "not declared",
            },
            position: status.last_id,
            rows_done: status.rows_done,
            rows_total: status.rows_total,
            rows_per_second: status.rate,
            eta_seconds: status.eta.map(|eta| eta.as_secs_f64()),
            started_at: status.started_at.map(json_time),
            updated_at: status.updated_at.map(json_time),
            finished_at: status.finished_at.map(json_time),
            requested_at: status.requested_at.map(json_time),
            requested_rate: status.requested_rate,
            last_error: status.last_error.clone(),
            problem: status.problem.as_ref().map(|problem| {
                format!(
                    "the backfill of `{}` ({}): {problem}",
                    status.model, status.table
                )
            }),
        }
    }
}

fn render(views: &[BackfillView]) -> String {
    if views.is_empty() {
        return "no backfills recorded: the application records its models at its first \
                backfill step"
            .to_owned();
    }
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            vec![
                view.model.clone(),
                view.table.to_owned(),
                view.declared_version.map_or_else(dash, |v| v.to_string()),
                view.stored_version.to_string(),
                view.state.to_owned(),
                view.position.map_or_else(dash, |id| id.to_string()),
                match view.rows_total {
                    Some(total) => format!("{} of {total}", view.rows_done),
                    None => view.rows_done.to_string(),
                },
                view.rows_per_second
                    .map_or_else(dash, |rate| format!("{rate:.0}/s")),
                view.eta_seconds
                    .map_or_else(dash, |eta| human_duration(Duration::from_secs_f64(eta))),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "MODEL", "TABLE", "DECLARED", "STORED", "STATE", "POSITION", "DONE", "RATE", "ETA",
        ],
        &rows,
    );
    for view in views {
        if let Some(problem) = &view.problem {
            out.push_str(&format!("\nerror: {problem}"));
        }
        if let Some(error) = &view.last_error {
            out.push_str(&format!(
                "\n{} ({}): its last batch failed: {error}",
                view.model, view.table
            ));
        }
    }
    out
}
