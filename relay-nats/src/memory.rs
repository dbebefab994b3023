//! The rows JetStream acknowledged lately, so that a batch the drain replays is not
//! published again.
//!
//! When one row of a batch fails, the drain rolls the batch back and calls the relay
//! again with the rows before the failure (`BatchReceiver`'s replay). Those rows were
//! acknowledged moments ago: publishing them again would cost a round trip per row and
//! fail while the server is down, leaving acknowledged rows undeleted. Skipping them is
//! what JetStream would do with the copies (drop them as duplicates), so the memory
//! holds an id only for a fraction of the stream's duplicate window.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use diesel_outbox::OutboxTable;

/// A row of this relay's silo: table and id.
pub(crate) type RowKey = (OutboxTable, i64);

/// Recently acknowledged rows, oldest first, bounded in age and number.
pub(crate) struct Acknowledged {
    ttl: Duration,
    capacity: usize,
    order: VecDeque<(Instant, RowKey)>,
    rows: HashSet<RowKey>,
}

impl Acknowledged {
    /// Remembers rows for `ttl`, at most `capacity` of them.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Acknowledged {
            ttl,
            capacity: capacity.max(1),
            order: VecDeque::new(),
            rows: HashSet::new(),
        }
    }

    /// Whether `row` was acknowledged within the last `ttl`.
    pub(crate) fn contains(&mut self, row: &RowKey, now: Instant) -> bool {
        self.expire(now);
        self.rows.contains(row)
    }

    /// Remembers that `rows` were acknowledged at `now`.
    pub(crate) fn insert_all(&mut self, rows: impl IntoIterator<Item = RowKey>, now: Instant) {
        for row in rows {
            if self.rows.insert(row) {
                self.order.push_back((now, row));
            }
        }
        self.expire(now);
        while self.order.len() > self.capacity {
            if let Some((_, row)) = self.order.pop_front() {
                self.rows.remove(&row);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, row)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            self.rows.remove(&row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_forgotten_after_their_time_or_beyond_capacity() {
        let start = Instant::now();
        let mut memory = Acknowledged::new(Duration::from_secs(10), 3);
        memory.insert_all([(OutboxTable::Cell, 1), (OutboxTable::Control, 1)], start);
        assert!(memory.contains(&(OutboxTable::Cell, 1), start));
        assert!(memory.contains(&(OutboxTable::Control, 1), start));
        assert!(!memory.contains(&(OutboxTable::Cell, 2), start));

        let later = start + Duration::from_secs(5);
        memory.insert_all([(OutboxTable::Cell, 2), (OutboxTable::Cell, 3)], later);
        // Capacity 3: the oldest is gone.
        assert!(!memory.contains(&(OutboxTable::Cell, 1), later));
        assert!(memory.contains(&(OutboxTable::Control, 1), later));

        let expired = start + Duration::from_secs(11);
        assert!(!memory.contains(&(OutboxTable::Control, 1), expired));
        assert!(memory.contains(&(OutboxTable::Cell, 3), expired));
    }
}
