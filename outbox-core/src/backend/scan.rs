//! A look for due shards where the grouping is done in the process (SQLite's and MySQL's
//! claims, and every backend's `due_shards`; PostgreSQL's claim locks inside its one
//! statement and groups there): one statement returns the oldest rows, each with what its shard's
//! stored state says of it, and the shards whose stored schedule is due; the rows are
//! grouped into shards here. The statement is a range of the primary key and a range of
//! the states' schedule index, with no temporary tables, and its rows are narrow: diesel
//! reads a raw statement's columns by name, so a row of twenty columns costs more to read
//! than the server takes to find it. The whole state of a chosen shard that has one is
//! read afterwards (a failing or skipped shard: rare).

use std::collections::HashSet;

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};

use super::claim::{ClaimedShard, DueScan};
use super::sql::shard_key;
use crate::key::shard::{OutboxTable, ShardKey};

/// One row of the statement: a scanned row (`timed` false: its id, and whether it makes
/// its shard due, its stored state considered), or a shard whose stored schedule is due
/// (`timed` true, `takes` true); `has_state` when the shard has a stored state.
#[derive(diesel::QueryableByName)]
pub(crate) struct ScanRow {
    #[diesel(sql_type = Bool)]
    timed: bool,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
    #[diesel(sql_type = Bool)]
    takes: bool,
    #[diesel(sql_type = Bool)]
    has_state: bool,
}

/// What the look found: the candidates, oldest first (shards whose schedule is due
/// first, then by their first due row), whether each has a stored state to read, and the
/// scan's figures.
pub(crate) struct Scanned {
    pub(crate) shards: Vec<ClaimedShard>,
    pub(crate) with_state: Vec<usize>,
    pub(crate) scanned_rows: i64,
    pub(crate) last_scanned_id: Option<i64>,
}

impl Scanned {
    /// The shards whose stored state is still to be read.
    pub(crate) fn keys_with_state(&self) -> Vec<ShardKey> {
        self.with_state
            .iter()
            .map(|&index| self.shards[index].key.clone())
            .collect()
    }

    /// Puts the states read into their shards.
    pub(crate) fn set_states(&mut self, states: Vec<super::state::ShardState>) {
        for state in states {
            if let Some(shard) = self.shards.iter_mut().find(|s| s.key == state.shard) {
                shard.state = Some(state);
            }
        }
    }
}

/// The statement's text, parameters written by `param` (`?1`-style or `:name`): rows
/// `from_id <= id < to_id`, `scan_rows` of them, due at `now`; states due at `now`,
/// `max_shards` of them, unless `ignore` (schedules ignored). `cell` is the cell name's
/// column for alias `o` or `st` (a typed NULL on the cell table).
///
/// A row makes its shard due when it is due and its shard has no state, or a state that
/// is not isolated, not failing and covers an older row; ignoring schedules, any row not
/// kept back by a kill switch does. The columns are few on purpose: diesel reads a raw
/// statement's columns by name, one search of the column list per field and row.
pub(crate) fn statement(
    names: &super::sql::Names,
    param: &dyn Fn(&str) -> String,
    cell: &dyn Fn(&str) -> String,
) -> String {
    format!(
        "SELECT FALSE AS timed, o.id, o.shard_scope, o.shard_identifier, {o_cell}, \
             CASE WHEN {ignore} \
                 THEN (st.shard_scope IS NULL OR NOT st.skipped OR o.id > st.covered_id) \
                 ELSE (o.scheduled_for <= {now} AND (st.shard_scope IS NULL \
                     OR (NOT st.isolated AND st.attempts = 0 AND o.id > st.covered_id))) \
             END AS takes, \
             (st.shard_scope IS NOT NULL) AS has_state \
         FROM (SELECT o.id, {o_shard}, o.scheduled_for FROM {rows} o \
             WHERE o.id >= {from} AND o.id < {to} ORDER BY o.id LIMIT {scan}) o \
         LEFT JOIN {states} st ON {same} \
         UNION ALL \
         SELECT TRUE, 0, st.shard_scope, st.shard_identifier, {st_cell}, TRUE, TRUE \
         FROM (SELECT {st_shard}, st.scheduled_for FROM {states} st \
             WHERE NOT {ignore} AND st.scheduled_for <= {now} \
             AND NOT st.skipped AND NOT st.isolated ORDER BY st.scheduled_for \
             LIMIT {max}) st",
        o_cell = cell("o"),
        st_cell = cell("st"),
        now = param("now"),
        from = param("from_id"),
        to = param("to_id"),
        scan = param("scan_rows"),
        ignore = param("ignore"),
        max = param("max_shards"),
        o_shard = names.shard_of("o"),
        st_shard = names.shard_of("st"),
        rows = names.rows,
        states = names.states,
        same = names.same_shard("st", "o"),
    )
}

/// The statement when the states table is empty (SQLite, which knows it for the price of
/// one in-process probe): the oldest rows alone, each making its shard due when it is
/// due (or always, ignoring schedules). Parameters: `from_id`, `to_id`, `scan_rows`,
/// `now`, `ignore`.
pub(crate) fn statement_without_states(
    names: &super::sql::Names,
    param: &dyn Fn(&str) -> String,
    cell: &dyn Fn(&str) -> String,
) -> String {
    format!(
        "SELECT FALSE AS timed, o.id, o.shard_scope, o.shard_identifier, {o_cell}, \
             ({ignore} OR o.scheduled_for <= {now}) AS takes, FALSE AS has_state \
         FROM {rows} o WHERE o.id >= {from} AND o.id < {to} ORDER BY o.id LIMIT {scan}",
        o_cell = cell("o"),
        now = param("now"),
        from = param("from_id"),
        to = param("to_id"),
        scan = param("scan_rows"),
        ignore = param("ignore"),
        rows = names.rows,
    )
}

/// Groups the statement's rows into the candidates of a claim: each shard at its first
/// row that makes it due, at most `scan.max_shards`.
pub(crate) fn choose(table: OutboxTable, rows: Vec<ScanRow>, scan: &DueScan) -> Scanned {
    let (timed, mut rows): (Vec<ScanRow>, Vec<ScanRow>) =
        rows.into_iter().partition(|row| row.timed);
    rows.sort_by_key(|row| row.id);
    let mut found = Scanned {
        shards: Vec::new(),
        with_state: Vec::new(),
        scanned_rows: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        last_scanned_id: rows.iter().map(|row| row.id).max(),
    };
    let max = usize::try_from(scan.max_shards).unwrap_or(usize::MAX);
    let mut seen: HashSet<ShardKey> = HashSet::new();
    for row in timed.into_iter().chain(rows) {
        if found.shards.len() >= max {
            break;
        }
        let key = shard_key(table, row.shard_scope, row.shard_identifier, row.cell_name);
        if seen.contains(&key) {
            continue;
        }
        if row.takes {
            seen.insert(key.clone());
            if row.has_state {
                found.with_state.push(found.shards.len());
            }
            found.shards.push(ClaimedShard {
                key,
                bound: i64::MAX,
                state: None,
            });
        }
    }
    found
}
