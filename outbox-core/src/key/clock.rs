//! Where the drain reads "now": an injectable clock, so tests can move time by hand.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{Duration, NaiveDateTime};

/// The source of the current instant (UTC) for an [`Outbox`](crate::Outbox): due-shard
/// discovery, backoff, the `date_added` of written rows and the lag metrics all read it.
pub trait Clock: Send + Sync + 'static {
    /// The current instant, UTC.
    fn now(&self) -> NaiveDateTime;
}

/// The system clock (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> NaiveDateTime {
        chrono::Utc::now().naive_utc()
    }
}

/// A clock that only moves when told to; clones share one instant.
///
/// ```
/// use diesel_outbox::{Clock, ManualClock};
/// let clock = ManualClock::starting_now();
/// let before = clock.now();
/// clock.advance(chrono::Duration::seconds(5));
/// assert_eq!(clock.now() - before, chrono::Duration::seconds(5));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<NaiveDateTime>>);

impl ManualClock {
    /// A clock standing at `instant`.
    pub fn new(instant: NaiveDateTime) -> Self {
        ManualClock(Arc::new(Mutex::new(instant)))
    }

    /// A clock standing at the current system time, truncated to whole microseconds (what
    /// the databases store), so values read back compare equal.
    pub fn starting_now() -> Self {
        let now = SystemClock.now();
        let micros = now.and_utc().timestamp_micros();
        let truncated = chrono::DateTime::from_timestamp_micros(micros)
            .map(|instant| instant.naive_utc())
            .unwrap_or(now);
        ManualClock::new(truncated)
    }

    /// Moves the clock forward by `by` (backward if negative).
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `instant`.
    pub fn set(&self, instant: NaiveDateTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = instant;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> NaiveDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
