//! How long each change took from its commit in one silo to its application in the
//! other: the demo's last lines. The demo runs every silo in one process, so one clock
//! measures both ends: a write notes its object just before its transaction commits, and
//! the receiving silo's hook notes when it applied it.
//!
//! The figures are real time. The outage the demo stages is bridged with its manual clock
//! (it moves the outboxes' clock instead of sleeping), so a change held up by it shows
//! only the real time it waited, not the backoff it would wait in production.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The organizations' table, as the lag book names it.
pub const ORGANIZATIONS: &str = "organizations";
/// The users' table.
pub const USERS: &str = "users";

#[derive(Default)]
struct Book {
    /// The last commit of each object.
    committed: HashMap<(&'static str, i64), Instant>,
    /// Commit → applied, per application (a user applied in two cells counts twice).
    lags: Vec<Duration>,
}

static BOOK: Mutex<Option<Book>> = Mutex::new(None);

fn with_book<T>(f: impl FnOnce(&mut Book) -> T) -> T {
    let mut book = BOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(book.get_or_insert_with(Book::default))
}

/// Notes that a change of `table`'s object `id` is about to commit.
pub fn committed(table: &'static str, id: i64) {
    with_book(|book| {
        book.committed.insert((table, id), Instant::now());
    });
}

/// Notes that the changes of `table`'s objects `ids` were applied in another silo.
pub fn applied_all(table: &'static str, ids: &[i64]) {
    let now = Instant::now();
    with_book(|book| {
        for id in ids {
            if let Some(at) = book.committed.get(&(table, *id)) {
                let lag = now.saturating_duration_since(*at);
                book.lags.push(lag);
            }
        }
    });
}

/// Changes applied so far, and their commit→applied lag at the median and the 99th
/// percentile.
pub fn summary() -> (usize, Duration, Duration) {
    with_book(|book| {
        let mut lags = book.lags.clone();
        lags.sort_unstable();
        let at = |q: f64| {
            lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        (lags.len(), at(0.5), at(0.99))
    })
}
