//! What a drain asks for when it claims shards, and what it gets back.
//!
//! A claim makes this connection the one worker of each claimed shard until it is
//! released, and records the batch in a *lease* committed before any receiver runs: a
//! lease left behind by a worker that died names the shards to back off.

use chrono::NaiveDateTime;

use crate::key::shard::{OutboxTable, Shard, ShardKey};

use super::state::ShardState;

/// How a periodic drain looks for due shards of one table: the oldest rows from
/// `from_id` (below `to_id`), read `scan_rows` at a time, plus the shards whose stored
/// schedule is due.
#[derive(Clone, Debug)]
pub struct DueScan {
    /// The lowest id to read.
    pub from_id: i64,
    /// The id to stop before.
    pub to_id: i64,
    /// Rows read by one claim.
    pub scan_rows: i64,
    /// Shards claimed at most.
    pub max_shards: i64,
    /// Every shard with rows is due (the test helper): schedules and backoff are ignored.
    pub ignore_schedule: bool,
    /// How long the lease of the batch lives, where liveness is told by time (SQLite).
    pub lease_seconds: i64,
}

/// What a look for due shards found, claiming nothing: the shards, oldest first, and the
/// scan's figures (so that a caller wanting more can read on from the last id).
#[derive(Debug, Default)]
pub struct DueFound {
    /// The due shards, oldest first.
    pub shards: Vec<ShardKey>,
    /// Rows the scan read.
    pub scanned_rows: i64,
    /// The highest id it read.
    pub last_scanned_id: Option<i64>,
}

/// Shards this connection holds, until [`release_claim`](super::OutboxConnection::release_claim).
#[derive(Debug)]
pub struct Claim {
    /// The table.
    pub table: OutboxTable,
    /// The shards claimed, oldest first.
    pub shards: Vec<ClaimedShard>,
    /// Due shards another worker holds.
    pub busy: usize,
    /// Rows the claim read to find them.
    pub scanned_rows: i64,
    /// The highest id it read.
    pub last_scanned_id: Option<i64>,
    /// The lease listing the claimed shards.
    pub lease: Option<i64>,
    /// Whether the delivery's commit already deleted the lease row (its lock, where there
    /// is one, is still held until the release).
    pub lease_deleted: bool,
}

impl Claim {
    /// A claim of nothing.
    pub(crate) fn empty(table: OutboxTable) -> Self {
        Claim {
            table,
            shards: Vec::new(),
            busy: 0,
            scanned_rows: 0,
            last_scanned_id: None,
            lease: None,
            lease_deleted: false,
        }
    }
}

/// One claimed shard.
#[derive(Clone, Debug)]
pub struct ClaimedShard {
    /// The shard.
    pub key: ShardKey,
    /// The highest id to deliver (a flush's bound), `i64::MAX` otherwise.
    pub bound: i64,
    /// Its stored state, if it has one.
    pub state: Option<ShardState>,
}

/// Which rows of a shard to load.
#[derive(Clone, Debug)]
pub struct WindowRequest {
    /// The shard.
    pub shard: ShardKey,
    /// The highest id to load.
    pub bound: i64,
}

/// A key whose window ended before its newest row: its rows with
/// `after_id < id <= bound`.
#[derive(Clone, Debug)]
pub struct KeyAfterWindow {
    /// The key's shard.
    pub shard: ShardKey,
    /// The key's category.
    pub category: i32,
    /// The key's object.
    pub object_identifier: i64,
    /// The last id of the window.
    pub after_id: i64,
    /// The highest id to look at.
    pub bound: i64,
}

/// A row's id and coalescing key: integers, which read even when another column of the
/// row does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowIdentity {
    /// The row's id.
    pub id: i64,
    /// The row's shard.
    pub shard: ShardKey,
    /// The row's category.
    pub category: i32,
    /// The row's object.
    pub object_identifier: i64,
}

/// A lease whose worker is gone.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The lease.
    pub id: i64,
    /// The table.
    pub table: OutboxTable,
    /// Its shards, as recorded; `None` when the record cannot be read.
    pub shards: Option<Vec<ShardKey>>,
}

/// A batch's lease as an operator reads it (`diesel-outbox leases`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The lease.
    pub id: i64,
    /// The table.
    pub table: OutboxTable,
    /// Its shards, as recorded; `None` when the record cannot be read.
    pub shards: Option<Vec<ShardKey>>,
    /// When the batch was claimed (UTC).
    pub taken_at: NaiveDateTime,
    /// When it expires unless renewed (UTC; what tells liveness on SQLite).
    pub expires_at: NaiveDateTime,
    /// Who holds it: the process id on SQLite, the server's session (backend pid on
    /// PostgreSQL, connection id on MySQL) elsewhere; `None` when not known (a SQLite
    /// lease written before the holder was recorded, or a PostgreSQL lease whose session
    /// is gone).
    pub holder: Option<i64>,
    /// Whether its worker is alive: on SQLite, not expired; on PostgreSQL and MySQL, its
    /// session still holds its lock. A lease that is not is recovered (its shards backed
    /// off and freed) by the next drain.
    pub live: bool,
}

/// A lease's shards as stored: JSON, `[[scope, id], ...]` for cell shards and
/// `[[cell, scope, id], ...]` for control shards.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn encode_shards(shards: &[ShardKey]) -> String {
    let values: Vec<serde_json::Value> = shards
        .iter()
        .map(|key| {
            let shard = key.shard();
            match key.cell_name() {
                Some(cell) => serde_json::json!([cell, shard.scope, shard.identifier]),
                None => serde_json::json!([shard.scope, shard.identifier]),
            }
        })
        .collect();
    serde_json::Value::Array(values).to_string()
}

/// The shards of [`encode_shards`]'s text, or `None` when it is not that.
pub(crate) fn decode_shards(table: OutboxTable, text: &str) -> Option<Vec<ShardKey>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    values
        .iter()
        .map(|value| {
            let items = value.as_array()?;
            let shard = |scope: &serde_json::Value, identifier: &serde_json::Value| {
                Some(Shard {
                    scope: i32::try_from(scope.as_i64()?).ok()?,
                    identifier: identifier.as_i64()?,
                })
            };
            match (table, items.as_slice()) {
                (OutboxTable::Cell, [scope, identifier]) => {
                    Some(ShardKey::Cell(shard(scope, identifier)?))
                }
                (OutboxTable::Control, [cell, scope, identifier]) => Some(ShardKey::Control {
                    cell_name: cell.as_str()?.to_owned(),
                    shard: shard(scope, identifier)?,
                }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_shards_round_trip() {
        let cell = vec![ShardKey::Cell(Shard {
            scope: 1,
            identifier: -7,
        })];
        let control = vec![ShardKey::Control {
            cell_name: "eu \"west\"".to_owned(),
            shard: Shard {
                scope: 2,
                identifier: 9,
            },
        }];
        assert_eq!(
            decode_shards(OutboxTable::Cell, &encode_shards(&cell)),
            Some(cell)
        );
        assert_eq!(
            decode_shards(OutboxTable::Control, &encode_shards(&control)),
            Some(control)
        );
        assert_eq!(decode_shards(OutboxTable::Cell, "nonsense"), None);
    }
}
