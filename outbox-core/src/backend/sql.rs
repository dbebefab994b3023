//! The pieces of SQL text and the row types the backends share.
//!
//! Statements are raw SQL over one of the two tables, chosen at run time by
//! [`OutboxTable`]. Their text depends only on the table (never on values: every value is
//! a bind), so each connection sees a handful of distinct texts, and [`Prepared`] lets
//! diesel keep them as prepared statements.

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
use diesel::QueryResult;

use crate::key::shard::{OutboxTable, Shard, ShardKey};
use crate::row::payload::JsonPayload;
use crate::row::record::OutboxMessage;
use crate::row::schema::sql_types::PayloadJson;

use super::claim::RowIdentity;
use super::inspect::{CategoryDepth, OldestRow, ShardDepth};
use super::parked::{ParkedCounts, ParkedGroup, ParkedKey};
use super::state::ShardState;

/// The names a statement over one outbox table uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names {
    pub(crate) table: OutboxTable,
    /// The outbox table.
    pub(crate) rows: &'static str,
    /// Its shard states.
    pub(crate) states: &'static str,
    /// Its parked rows.
    pub(crate) parked: &'static str,
    /// The columns naming a shard, in index order.
    pub(crate) shard: &'static [&'static str],
}

impl Names {
    pub(crate) fn of(table: OutboxTable) -> Self {
        match table {
            OutboxTable::Cell => Names {
                table,
                rows: "cell_outboxes",
                states: "cell_outbox_shards",
                parked: "cell_outbox_parked",
                shard: &["shard_scope", "shard_identifier"],
            },
            OutboxTable::Control => Names {
                table,
                rows: "control_outboxes",
                states: "control_outbox_shards",
                parked: "control_outbox_parked",
                shard: &["cell_name", "shard_scope", "shard_identifier"],
            },
        }
    }

    /// `a.shard_scope, a.shard_identifier` (and `a.cell_name` first for control).
    pub(crate) fn shard_of(&self, alias: &str) -> String {
        self.shard
            .iter()
            .map(|column| format!("{alias}.{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a.shard_scope = b.shard_scope AND ...`.
    pub(crate) fn same_shard(&self, a: &str, b: &str) -> String {
        self.shard
            .iter()
            .map(|column| format!("{a}.{column} = {b}.{column}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `shard_scope = ? AND shard_identifier = ?` (cell name first for control), with
    /// `prefix` before each column.
    pub(crate) fn shard_is(&self, prefix: &str) -> String {
        self.shard
            .iter()
            .map(|column| format!("{prefix}{column} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The cell name as a message column: the column, or a typed NULL for cell rows.
    pub(crate) fn cell_name_of(&self, alias: &str, null: &str) -> String {
        match self.table {
            OutboxTable::Cell => format!("{null} AS cell_name"),
            OutboxTable::Control => format!("{alias}.cell_name"),
        }
    }

    /// Every column of an outbox row, as stored (and as a parked row keeps it).
    pub(crate) fn row_columns(&self) -> &'static str {
        match self.table {
            OutboxTable::Cell => {
                "id, shard_scope, shard_identifier, category, object_identifier, payload, \
                 scheduled_from, scheduled_for, date_added"
            }
            OutboxTable::Control => {
                "id, shard_scope, shard_identifier, category, object_identifier, payload, \
                 scheduled_from, scheduled_for, date_added, cell_name"
            }
        }
    }

    /// Every column a receiver's message needs, from alias `a`.
    pub(crate) fn message_columns(&self, alias: &str, null: &str) -> String {
        format!(
            "{a}.id, {a}.shard_scope, {a}.shard_identifier, {a}.category, {a}.object_identifier, \
             {a}.payload, {a}.scheduled_from, {a}.scheduled_for, {a}.date_added, {cell}",
            a = alias,
            cell = self.cell_name_of(alias, null)
        )
    }

    /// A row's identity columns, from alias `a`.
    pub(crate) fn identity_columns(&self, alias: &str, null: &str) -> String {
        format!(
            "{a}.id, {a}.shard_scope, {a}.shard_identifier, {cell}, {a}.category, \
             {a}.object_identifier",
            a = alias,
            cell = self.cell_name_of(alias, null)
        )
    }

    /// A shard state's columns, from alias `st`, each prefixed `st_` and nullable (for a
    /// LEFT JOIN).
    pub(crate) fn state_columns(&self, alias: &str) -> String {
        STATE_COLUMNS
            .iter()
            .map(|column| format!("{alias}.{column} AS st_{column}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The columns of a shard state besides its shard.
pub(crate) const STATE_COLUMNS: &[&str] = &[
    "scheduled_from",
    "scheduled_for",
    "covered_id",
    "skipped",
    "isolated",
    "attempts",
    "first_failure_at",
    "last_failure_at",
    "last_error",
    "failed_row_id",
    "failed_category",
    "failed_object_identifier",
];

/// Builds the key from its columns; `cell_name` is ignored for cell shards.
pub(crate) fn shard_key(
    table: OutboxTable,
    scope: i32,
    identifier: i64,
    cell_name: Option<String>,
) -> ShardKey {
    let shard = Shard { scope, identifier };
    match table {
        OutboxTable::Cell => ShardKey::Cell(shard),
        OutboxTable::Control => ShardKey::Control {
            cell_name: cell_name.unwrap_or_default(),
            shard,
        },
    }
}

/// A drain statement that diesel may keep as a prepared statement.
///
/// Diesel never caches `sql_query`, since its text could be built from values. Ours is
/// not (see the module docs), so caching it saves the parse (SQLite) or the parse and
/// plan (PostgreSQL) of every statement of every batch.
#[derive(Debug)]
pub(crate) struct Prepared<Q>(pub(crate) Q);

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> diesel::RunQueryDsl<C> for Prepared<Q> {}

/// Numbers `?` placeholders as `$1, $2, ...` (PostgreSQL); text written for SQLite's `?`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn numbered(sql: &str) -> String {
    numbered_from(sql, 1)
}

/// Numbers `?` placeholders from `$first` on, for text that follows other parameters.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn numbered_from(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = first;
    for c in sql.chars() {
        if c == '?' {
            out.push('$');
            out.push_str(&n.to_string());
            n += 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// One `BIGINT` column named `value`.
#[derive(diesel::QueryableByName)]
pub(crate) struct BigIntValue {
    #[diesel(sql_type = BigInt)]
    pub(crate) value: i64,
}

/// One `TEXT` column named `value`.
#[derive(diesel::QueryableByName)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct TextValue {
    #[diesel(sql_type = Text)]
    pub(crate) value: String,
}

/// One nullable `BIGINT` column named `value`.
#[derive(diesel::QueryableByName)]
pub(crate) struct MaybeBigInt {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) value: Option<i64>,
}

/// `MIN(id)` and `MAX(id)` of a table.
#[derive(diesel::QueryableByName)]
pub(crate) struct IdBounds {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) lo: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) hi: Option<i64>,
}

/// A whole row, as handed to a receiver.
#[derive(diesel::QueryableByName)]
pub(crate) struct MessageRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Integer)]
    category: i32,
    #[diesel(sql_type = BigInt)]
    object_identifier: i64,
    #[diesel(sql_type = Nullable<PayloadJson>)]
    payload: Option<JsonPayload>,
    #[diesel(sql_type = Timestamp)]
    scheduled_from: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    scheduled_for: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    date_added: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
}

impl MessageRow {
    pub(crate) fn into_message(self, table: OutboxTable) -> OutboxMessage {
        OutboxMessage {
            table,
            id: self.id,
            category: self.category,
            shard: Shard {
                scope: self.shard_scope,
                identifier: self.shard_identifier,
            },
            object_identifier: self.object_identifier,
            payload: self.payload,
            cell_name: match table {
                OutboxTable::Cell => None,
                OutboxTable::Control => self.cell_name,
            },
            date_added: self.date_added,
            scheduled_from: self.scheduled_from,
            scheduled_for: self.scheduled_for,
        }
    }
}

/// A row's identity.
#[derive(diesel::QueryableByName)]
pub(crate) struct IdentityRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
    #[diesel(sql_type = Integer)]
    category: i32,
    #[diesel(sql_type = BigInt)]
    object_identifier: i64,
}

impl IdentityRow {
    pub(crate) fn into_identity(self, table: OutboxTable) -> RowIdentity {
        RowIdentity {
            id: self.id,
            shard: shard_key(
                table,
                self.shard_scope,
                self.shard_identifier,
                self.cell_name,
            ),
            category: self.category,
            object_identifier: self.object_identifier,
        }
    }
}

/// A stored shard state, read whole.
#[derive(diesel::QueryableByName)]
pub(crate) struct StateRow {
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
    #[diesel(sql_type = Timestamp)]
    scheduled_from: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    scheduled_for: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    covered_id: i64,
    #[diesel(sql_type = Bool)]
    skipped: bool,
    #[diesel(sql_type = Bool)]
    isolated: bool,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamp>)]
    first_failure_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    last_failure_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    failed_row_id: Option<i64>,
    #[diesel(sql_type = Nullable<Integer>)]
    failed_category: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    failed_object_identifier: Option<i64>,
}

impl StateRow {
    pub(crate) fn into_state(self, table: OutboxTable) -> ShardState {
        ShardState {
            shard: shard_key(
                table,
                self.shard_scope,
                self.shard_identifier,
                self.cell_name,
            ),
            scheduled_from: self.scheduled_from,
            scheduled_for: self.scheduled_for,
            covered_id: self.covered_id,
            skipped: self.skipped,
            isolated: self.isolated,
            attempts: self.attempts,
            first_failure_at: self.first_failure_at,
            last_failure_at: self.last_failure_at,
            last_error: self.last_error,
            failed_row_id: self.failed_row_id,
            failed_category: self.failed_category,
            failed_object_identifier: self.failed_object_identifier,
        }
    }
}

/// One row of a claim: a candidate shard (absent when there is none), whether this
/// connection now holds it, its bound and stored state, and the claim's figures (the same
/// on every row).
#[derive(diesel::QueryableByName)]
pub(crate) struct ClaimRow {
    #[diesel(sql_type = Nullable<Integer>)]
    pub(crate) shard_scope: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) shard_identifier: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) cell_name: Option<String>,
    /// Whether this connection now holds it (PostgreSQL's claims lock in the statement).
    #[diesel(sql_type = Nullable<Bool>)]
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) locked: Option<bool>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) bound: Option<i64>,
    /// The claim's lease (PostgreSQL's claims write it in the statement).
    #[diesel(sql_type = Nullable<BigInt>)]
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) lease_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub(crate) scanned_rows: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) last_scanned_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    st_scheduled_from: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    st_scheduled_for: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    st_covered_id: Option<i64>,
    #[diesel(sql_type = Nullable<Bool>)]
    st_skipped: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    st_isolated: Option<bool>,
    #[diesel(sql_type = Nullable<Integer>)]
    st_attempts: Option<i32>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    st_first_failure_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    st_last_failure_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    st_last_error: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    st_failed_row_id: Option<i64>,
    #[diesel(sql_type = Nullable<Integer>)]
    st_failed_category: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    st_failed_object_identifier: Option<i64>,
}

impl ClaimRow {
    /// The candidate's shard, if the row has one.
    pub(crate) fn shard(&self, table: OutboxTable) -> Option<ShardKey> {
        Some(shard_key(
            table,
            self.shard_scope?,
            self.shard_identifier?,
            self.cell_name.clone(),
        ))
    }

    /// The candidate's stored state, if it has one.
    pub(crate) fn state(&self, shard: &ShardKey) -> Option<ShardState> {
        Some(ShardState {
            shard: shard.clone(),
            scheduled_from: self.st_scheduled_from?,
            scheduled_for: self.st_scheduled_for?,
            covered_id: self.st_covered_id?,
            skipped: self.st_skipped?,
            isolated: self.st_isolated?,
            attempts: self.st_attempts?,
            first_failure_at: self.st_first_failure_at,
            last_failure_at: self.st_last_failure_at,
            last_error: self.st_last_error.clone(),
            failed_row_id: self.st_failed_row_id,
            failed_category: self.st_failed_category,
            failed_object_identifier: self.st_failed_object_identifier,
        })
    }
}

/// A lease as an operator reads it.
#[derive(diesel::QueryableByName)]
pub(crate) struct LeaseInfoRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Text)]
    pub(crate) shards: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) taken_at: chrono::NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(crate) expires_at: chrono::NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    pub(crate) holder: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub(crate) live: i64,
}

impl LeaseInfoRow {
    pub(crate) fn into_info(self, table: OutboxTable) -> super::claim::LeaseInfo {
        super::claim::LeaseInfo {
            id: self.id,
            table,
            shards: super::claim::decode_shards(table, &self.shards),
            taken_at: self.taken_at,
            expires_at: self.expires_at,
            holder: self.holder,
            live: self.live != 0,
        }
    }
}

/// A lease as stored.
#[derive(diesel::QueryableByName)]
pub(crate) struct LeaseRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Text)]
    pub(crate) shards: String,
}

/// The statements on shard states that are the same text on every backend (written with
/// `?`; PostgreSQL numbers them).
pub(crate) mod states {
    use super::{Names, STATE_COLUMNS};

    /// Upserts a failure: every column but `skipped`.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn record_failure(names: &Names) -> String {
        let shard = names.shard.join(", ");
        let columns: Vec<&str> = STATE_COLUMNS
            .iter()
            .copied()
            .filter(|column| *column != "skipped")
            .collect();
        let updates = columns
            .iter()
            .map(|column| format!("{column} = excluded.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let marks = vec!["?"; names.shard.len() + columns.len()].join(", ");
        format!(
            "INSERT INTO {states} ({shard}, {columns}) VALUES ({marks}) \
             ON CONFLICT ({shard}) DO UPDATE SET {updates}",
            states = names.states,
            columns = columns.join(", "),
        )
    }

    /// Forgets a delivered shard's state, unless the kill switch keeps it.
    pub(crate) fn delete_unless_skipped(names: &Names) -> String {
        format!(
            "DELETE FROM {states} WHERE {shard} AND NOT skipped",
            states = names.states,
            shard = names.shard_is("")
        )
    }

    /// A skipped shard was compacted: its failures are forgotten, rows up to `?` covered.
    pub(crate) fn compacted(names: &Names) -> String {
        format!(
            "UPDATE {states} SET covered_id = ?, attempts = 0, isolated = FALSE, \
             first_failure_at = NULL, last_failure_at = NULL, last_error = NULL, \
             failed_row_id = NULL, failed_category = NULL, failed_object_identifier = NULL \
             WHERE {shard} AND skipped",
            states = names.states,
            shard = names.shard_is("")
        )
    }

    /// Turns the kill switch on or off (binds: shard, now, due-at-once, skipped). Off
    /// makes the shard due at once.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn set_skipped(names: &Names) -> String {
        let shard = names.shard.join(", ");
        let marks = vec!["?"; names.shard.len()].join(", ");
        format!(
            "INSERT INTO {states} ({shard}, scheduled_from, scheduled_for, skipped) \
             VALUES ({marks}, ?, ?, ?) \
             ON CONFLICT ({shard}) DO UPDATE SET skipped = excluded.skipped, \
             scheduled_for = CASE WHEN excluded.skipped THEN {states}.scheduled_for \
             ELSE excluded.scheduled_for END",
            states = names.states,
        )
    }

    /// One shard's state.
    pub(crate) fn load_one(names: &Names, null_text: &str) -> String {
        format!(
            "SELECT {columns} FROM {states} st WHERE {shard}",
            columns = select_columns(names, null_text),
            states = names.states,
            shard = names.shard_is("st.")
        )
    }

    /// The states of the table's isolated shards.
    pub(crate) fn load_isolated(names: &Names, null_text: &str) -> String {
        format!(
            "SELECT {columns} FROM {states} st WHERE st.isolated",
            columns = select_columns(names, null_text),
            states = names.states,
        )
    }

    /// Every state of the table, failing first.
    pub(crate) fn load_all(names: &Names, null_text: &str) -> String {
        format!(
            "SELECT {columns} FROM {states} st \
             ORDER BY st.attempts DESC, st.last_failure_at DESC, {shard}",
            columns = select_columns(names, null_text),
            states = names.states,
            shard = names.shard_of("st")
        )
    }

    fn select_columns(names: &Names, null_text: &str) -> String {
        let cell = match names.table {
            crate::key::shard::OutboxTable::Cell => format!("{null_text} AS cell_name"),
            crate::key::shard::OutboxTable::Control => "st.cell_name".to_owned(),
        };
        let columns = STATE_COLUMNS
            .iter()
            .map(|column| format!("st.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("st.shard_scope, st.shard_identifier, {cell}, {columns}")
    }
}

/// Statements on outbox rows that are the same text on every backend.
pub(crate) mod rows {
    use super::Names;

    /// Rows left to deliver: every row but those a kill switch keeps.
    pub(crate) fn deliverable(names: &Names) -> String {
        format!(
            "SELECT COUNT(*) AS value FROM {rows} o WHERE NOT EXISTS (\
             SELECT 1 FROM {states} st WHERE {same} AND st.skipped AND o.id <= st.covered_id)",
            rows = names.rows,
            states = names.states,
            same = names.same_shard("st", "o")
        )
    }

    /// `MIN(id)`, `MAX(id)`.
    pub(crate) fn id_bounds(names: &Names) -> String {
        format!(
            "SELECT MIN(id) AS lo, MAX(id) AS hi FROM {rows}",
            rows = names.rows
        )
    }

    /// The identities of the oldest `?` rows (the scan's bound) whose `unreadable`
    /// predicate (on alias `o`, the backend's: a schedule it cannot decode) holds: rows a
    /// drain could never find due, nor read.
    pub(crate) fn unreadable(names: &Names, null_text: &str, unreadable: &str) -> String {
        // The inner read takes only what the check and the identity need (not payloads).
        let cell = match names.table {
            crate::key::shard::OutboxTable::Cell => "",
            crate::key::shard::OutboxTable::Control => "cell_name, ",
        };
        format!(
            "SELECT {columns} FROM (SELECT id, shard_scope, shard_identifier, {cell}category, \
             object_identifier, scheduled_for, scheduled_from, date_added FROM {rows} \
             ORDER BY id LIMIT ?) o WHERE {unreadable} ORDER BY o.id",
            columns = names.identity_columns("o", null_text),
            rows = names.rows,
        )
    }

    /// A shard's newest id.
    pub(crate) fn shard_max_id(names: &Names) -> String {
        format!(
            "SELECT MAX(id) AS value FROM {rows} WHERE {shard}",
            rows = names.rows,
            shard = names.shard_is("")
        )
    }

    /// A shard's window's identities (binds: shard, bound, window).
    pub(crate) fn window_identities(names: &Names, null_text: &str) -> String {
        format!(
            "SELECT {columns} FROM {rows} o WHERE {shard} AND o.id <= ? ORDER BY o.id LIMIT ?",
            columns = names.identity_columns("o", null_text),
            rows = names.rows,
            shard = names.shard_is("o.")
        )
    }
}

/// A shard's depth.
#[derive(diesel::QueryableByName)]
pub(crate) struct ShardDepthRow {
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
    #[diesel(sql_type = BigInt)]
    row_count: i64,
    #[diesel(sql_type = BigInt)]
    oldest_id: i64,
    #[diesel(sql_type = Timestamp)]
    oldest_added: NaiveDateTime,
}

impl ShardDepthRow {
    pub(crate) fn into_depth(self, table: OutboxTable) -> ShardDepth {
        ShardDepth {
            shard: shard_key(
                table,
                self.shard_scope,
                self.shard_identifier,
                self.cell_name,
            ),
            rows: count(self.row_count),
            oldest_id: self.oldest_id,
            oldest_added: self.oldest_added,
        }
    }
}

/// A category's depth.
#[derive(diesel::QueryableByName)]
pub(crate) struct CategoryDepthRow {
    #[diesel(sql_type = Integer)]
    category: i32,
    #[diesel(sql_type = BigInt)]
    row_count: i64,
}

impl CategoryDepthRow {
    pub(crate) fn into_depth(self, table: OutboxTable) -> CategoryDepth {
        CategoryDepth {
            table,
            category: self.category,
            rows: count(self.row_count),
        }
    }
}

/// A row's id and when it was written.
#[derive(diesel::QueryableByName)]
pub(crate) struct OldestRowRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamp)]
    date_added: NaiveDateTime,
}

impl OldestRowRow {
    pub(crate) fn into_oldest(self, table: OutboxTable) -> OldestRow {
        OldestRow {
            table,
            id: self.id,
            date_added: self.date_added,
        }
    }
}

/// A parked group, as listed.
#[derive(diesel::QueryableByName)]
pub(crate) struct ParkedGroupRow {
    #[diesel(sql_type = Integer)]
    shard_scope: i32,
    #[diesel(sql_type = BigInt)]
    shard_identifier: i64,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
    #[diesel(sql_type = Integer)]
    category: i32,
    #[diesel(sql_type = BigInt)]
    object_identifier: i64,
    #[diesel(sql_type = BigInt)]
    row_count: i64,
    #[diesel(sql_type = BigInt)]
    first_id: i64,
    #[diesel(sql_type = BigInt)]
    last_id: i64,
    #[diesel(sql_type = Timestamp)]
    first_added: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    parked_at: NaiveDateTime,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Timestamp>)]
    first_failure_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Text)]
    last_error: String,
}

impl ParkedGroupRow {
    pub(crate) fn into_group(self, table: OutboxTable) -> ParkedGroup {
        ParkedGroup {
            key: ParkedKey {
                shard: shard_key(
                    table,
                    self.shard_scope,
                    self.shard_identifier,
                    self.cell_name,
                ),
                category: self.category,
                object_identifier: self.object_identifier,
            },
            rows: count(self.row_count),
            first_id: self.first_id,
            last_id: self.last_id,
            first_added: self.first_added,
            parked_at: self.parked_at,
            attempts: self.attempts,
            first_failure_at: self.first_failure_at,
            error: self.last_error,
        }
    }
}

/// The groups and rows of a parked table.
#[derive(diesel::QueryableByName)]
pub(crate) struct ParkedCountsRow {
    #[diesel(sql_type = BigInt)]
    group_count: i64,
    #[diesel(sql_type = BigInt)]
    row_count: i64,
}

impl ParkedCountsRow {
    pub(crate) fn into_counts(self) -> ParkedCounts {
        ParkedCounts {
            groups: count(self.group_count),
            rows: count(self.row_count),
        }
    }
}

/// A `COUNT(*)` as unsigned (it is never negative).
pub(crate) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Statements an operator's reads and actions use, the same text on every backend
/// (written with `?`; PostgreSQL numbers them).
pub(crate) mod inspect {
    use super::Names;

    /// The deepest shards (binds: limit).
    pub(crate) fn shard_depths(names: &Names, null_text: &str) -> String {
        format!(
            "SELECT o.shard_scope, o.shard_identifier, {cell}, COUNT(*) AS row_count, \
             MIN(o.id) AS oldest_id, MIN(o.date_added) AS oldest_added FROM {rows} o \
             GROUP BY {shard} ORDER BY COUNT(*) DESC, MIN(o.id) LIMIT ?",
            cell = names.cell_name_of("o", null_text),
            rows = names.rows,
            shard = names.shard_of("o"),
        )
    }

    /// Rows per category.
    pub(crate) fn category_depths(names: &Names) -> String {
        format!(
            "SELECT category, COUNT(*) AS row_count FROM {rows} GROUP BY category \
             ORDER BY category",
            rows = names.rows
        )
    }

    /// The lowest-id row that is due and not kept by a kill switch (binds: now).
    pub(crate) fn oldest_due(names: &Names) -> String {
        format!(
            "SELECT o.id, o.date_added FROM {rows} o WHERE o.scheduled_for <= ? \
             AND NOT EXISTS (SELECT 1 FROM {states} st WHERE {same} AND st.skipped \
                 AND o.id <= st.covered_id) \
             ORDER BY o.id LIMIT 1",
            rows = names.rows,
            states = names.states,
            same = names.same_shard("st", "o"),
        )
    }

    /// Makes a failing shard due now, keeping its attempts (binds: now, now, shard).
    pub(crate) fn retry_now(names: &Names) -> String {
        format!(
            "UPDATE {states} SET scheduled_from = ?, scheduled_for = ? WHERE {shard}",
            states = names.states,
            shard = names.shard_is("")
        )
    }
}

/// Statements on parked rows that are the same text on every backend.
pub(crate) mod parked {
    use super::Names;

    /// Which parked rows an operator's action takes: one key's, or all of a table.
    pub(crate) fn filter(names: &Names, one_key: bool) -> String {
        if one_key {
            format!(
                "{shard} AND category = ? AND object_identifier = ?",
                shard = names.shard_is("")
            )
        } else {
            "1 = 1".to_owned()
        }
    }

    /// The parked groups, oldest first (binds: limit).
    pub(crate) fn groups(names: &Names, null_text: &str) -> String {
        let shard = names.shard.join(", ");
        format!(
            "SELECT p.shard_scope, p.shard_identifier, {cell}, g.category, \
                 g.object_identifier, g.row_count, g.first_id, g.last_id, g.first_added, \
                 p.parked_at, p.attempts, p.first_failure_at, p.last_error \
             FROM (SELECT {shard}, category, object_identifier, COUNT(*) AS row_count, \
                   MIN(id) AS first_id, MAX(id) AS last_id, MIN(date_added) AS first_added \
                   FROM {parked} GROUP BY {shard}, category, object_identifier) g \
             JOIN {parked} p ON p.id = g.last_id \
             ORDER BY g.first_id LIMIT ?",
            cell = names.cell_name_of("p", null_text),
            parked = names.parked,
        )
    }

    /// How many groups and rows are parked (MySQL has a text of its own).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn counts(names: &Names) -> String {
        let shard = names.shard.join(", ");
        format!(
            "SELECT COUNT(*) AS group_count, CAST(COALESCE(SUM(g.n), 0) AS BIGINT) AS row_count \
             FROM (SELECT COUNT(*) AS n FROM {parked} \
                   GROUP BY {shard}, category, object_identifier) g",
            parked = names.parked,
        )
    }

    /// Deletes parked rows without delivery: an operator's discard.
    pub(crate) fn discard(names: &Names, one_key: bool) -> String {
        format!(
            "DELETE FROM {parked} WHERE {filter}",
            parked = names.parked,
            filter = filter(names, one_key)
        )
    }
}
