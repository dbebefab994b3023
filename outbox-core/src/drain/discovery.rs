//! Finding due shards (DESIGN 5.1), optionally within an id range so that parallel
//! schedulers can split the table between them.

use std::ops::Range;

use chrono::NaiveDateTime;

use super::shard::{ShardKey, Silo};
use crate::backend::OutboxConnection;
use crate::error::Error;

/// Which due shards to look for: the tables, how many per table, and an optional id range.
///
/// ```
/// use diesel_outbox::{DueShards, Silo};
/// let second_half = DueShards::new().silo(Silo::Cell).id_range(5_000..10_000).limit(50);
/// # let _ = second_half;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueShards {
    silos: Vec<Silo>,
    limit: i64,
    id_range: Option<Range<i64>>,
}

impl DueShards {
    /// Both tables, up to 100 shards each, every id.
    pub fn new() -> Self {
        DueShards {
            silos: Silo::ALL.to_vec(),
            limit: 100,
            id_range: None,
        }
    }

    /// Only `silo`'s table.
    pub fn silo(mut self, silo: Silo) -> Self {
        self.silos = vec![silo];
        self
    }

    /// At most `limit` shards per table (the oldest due first).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self
    }

    /// Only shards with a due row whose id is in `range` (see
    /// [`Outbox::partition_ids`](crate::Outbox::partition_ids)). A shard with rows in two
    /// ranges is found by both schedulers; claiming keeps it to one worker at a time.
    pub fn id_range(mut self, range: Range<i64>) -> Self {
        self.id_range = Some(range);
        self
    }
}

impl Default for DueShards {
    fn default() -> Self {
        Self::new()
    }
}

/// The due shards at `now`, per table in the order of `options`, oldest first: by earliest
/// schedule, then newest id. A future row does not make its shard due.
pub(crate) fn find_due_shards<C: OutboxConnection>(
    conn: &mut C,
    options: &DueShards,
    now: NaiveDateTime,
) -> Result<Vec<ShardKey>, Error> {
    let mut shards = Vec::new();
    for &silo in &options.silos {
        shards.extend(conn.outbox_due_shards(
            silo,
            now,
            options.id_range.clone(),
            options.limit,
        )?);
    }
    Ok(shards)
}

/// Splits the ids present in `silo`'s table into `parts` contiguous ranges covering them.
pub(crate) fn partition_ids<C: OutboxConnection>(
    conn: &mut C,
    silo: Silo,
    parts: usize,
) -> Result<Vec<Range<i64>>, Error> {
    let Some((lo, hi)) = conn.outbox_id_bounds(silo)? else {
        return Ok(Vec::new());
    };
    Ok(split(lo..hi.saturating_add(1), parts))
}

fn split(range: Range<i64>, parts: usize) -> Vec<Range<i64>> {
    let parts = i64::try_from(parts.max(1)).unwrap_or(i64::MAX);
    let width = range.end.saturating_sub(range.start);
    let step = (width + parts - 1) / parts;
    let step = step.max(1);
    let mut ranges = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = start.saturating_add(step).min(range.end);
        ranges.push(start..end);
        start = end;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn partitions_cover_the_range_without_overlap() {
        assert_eq!(split(1..11, 3), vec![1..5, 5..9, 9..11]);
        assert_eq!(split(7..8, 4), vec![7..8]);
        assert_eq!(split(0..4, 0), vec![0..4]);
    }
}
