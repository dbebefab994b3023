//! The scenarios, each a function of a backend's connection type that returns a
//! [`Section`](crate::report::Section) of figures and checks.
//!
//! * `kill`: kill -9 of drain worker processes while two writer processes write;
//! * `abort`: a receiver that aborts its own process;
//! * `bad_rows`: rows the drain cannot read and receivers that fail, beside healthy
//!   traffic;
//! * `restart`: a private PostgreSQL cluster stopped and started under a draining worker.

pub mod abort;
pub mod bad_rows;
pub mod kill;
pub mod restart;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::ChaosConn;
use crate::CResult;

/// Polls `done` every `every` until it holds or `timeout` passes; how long it took, or
/// `None` on timeout. An error of `done` ends the wait.
pub fn wait_for(
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> CResult<bool>,
) -> CResult<Option<Duration>> {
    let started = Instant::now();
    loop {
        if done()? {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(every);
    }
}

/// Rows, leases and shard states left in the outbox: `(0, 0, 0)` once it is settled (a
/// shard backed off after its rows were delivered keeps its state until its retry finds
/// it empty).
pub fn outbox_left<C: ChaosConn>(conn: &mut C) -> CResult<(i64, i64, i64)> {
    Ok((
        conn.scalar("SELECT COUNT(*) AS v FROM cell_outboxes")?,
        conn.scalar("SELECT COUNT(*) AS v FROM outbox_drain_leases")?,
        conn.scalar("SELECT COUNT(*) AS v FROM cell_outbox_shards")?,
    ))
}

/// Lines of the `*.log` files of `dir` whose name starts with `prefix` that contain
/// `needle`.
pub fn count_in_logs(dir: &Path, prefix: &str, needle: &str) -> CResult<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(prefix) && name.ends_with(".log") {
            count += std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains(needle))
                .count();
        }
    }
    Ok(count)
}

/// The number after `name=` in `text`.
pub fn figure_in(text: &str, name: &str) -> Option<u64> {
    text.split_whitespace()
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|value| value.parse().ok())
}
