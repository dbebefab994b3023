//! SQLite: the embedded default.
//!
//! One writer at a time: a drain's transactions are `BEGIN IMMEDIATE`, so they take the
//! write lock up front (waiting up to the busy timeout) rather than fail at their first
//! write. A claimed shard is held by its lease, which every claim reads under that lock;
//! a lease whose worker died is known by its expiry. Statements run in the process, so
//! sets are simply looped over, one cached statement per shard or key.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::sql_types::{BigInt, Text, Timestamp};
use diesel::sqlite::SqliteConnection;
use diesel::{OptionalExtension, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::claim::{
    decode_shards, encode_shards, Claim, ClaimedShard, DueFound, DueScan, KeyAfterWindow, Lease,
    LeaseInfo, RowIdentity, WindowRequest,
};
use super::parked::{ParkRequest, ParkedKey};
use super::scan::{ScanRow, Scanned};
use super::shared::{bind_parked_key, bind_shard, shared_statements, NULL_TEXT};
use super::sql::{
    parked, BigIntValue, IdentityRow, LeaseInfoRow, LeaseRow, MaybeBigInt, MessageRow, Names,
    Prepared, StateRow,
};
use super::transaction;
use super::{OutboxConnection, Sealed};
use crate::key::error::{Error, Result};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;
use crate::row::record::OutboxMessage;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

impl Sealed for SqliteConnection {}

impl OutboxConnection for SqliteConnection {
    /// SQLITE_MAX_VARIABLE_NUMBER of the bundled build (3.32 and later).
    const MAX_BIND_PARAMS: usize = 32_766;
    const BACKEND_NAME: &'static str = "SQLite";
    const LEASED_DELIVERY_BY_DEFAULT: bool = true;

    fn run_outbox_migrations(&mut self) -> Result<()> {
        // Usually the first thing run on a new file: it switches to WAL here, before any
        // worker or writer shares it (a switch made under load waits for their locks).
        super::sqlite_options::prepare(self)?;
        self.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(Error::Migration)
    }

    shared_statements!(text = str::to_owned);

    fn begin_context_transaction(&mut self, _token: Token<'_>) -> QueryResult<()> {
        // A deferred transaction that reads first and writes later fails at once with
        // SQLITE_BUSY when another connection wrote meanwhile, whatever the busy timeout;
        // BEGIN IMMEDIATE waits for the write lock instead.
        if transaction::depth(self)? == 0 {
            super::sqlite_options::prepare(self)?;
            AnsiTransactionManager::begin_transaction_sql(self, "BEGIN IMMEDIATE")
        } else {
            AnsiTransactionManager::begin_transaction(self)
        }
    }

    fn next_object_identifier(&mut self, _token: Token<'_>) -> QueryResult<i64> {
        // SQLite has no sequences: a one-row counter, bumped in the caller's transaction.
        Prepared(diesel::sql_query(
            "UPDATE diesel_outbox_object_ids SET value = value + 1 WHERE id = 1 RETURNING value",
        ))
        .get_result::<BigIntValue>(self)
        .map(|row| row.value)
    }

    fn check_worker_connection(&mut self, _token: Token<'_>) -> QueryResult<()> {
        super::sqlite_options::prepare(self)
    }

    fn drain_transaction<T, E, F>(&mut self, _token: Token<'_>, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        immediate(self, f)
    }

    fn abandoned_leases(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
        _own: Option<i64>,
    ) -> QueryResult<Vec<Lease>> {
        // Our own lease was just written: it has not expired.
        let found = Prepared(
            diesel::sql_query(
                "SELECT id, shards FROM outbox_drain_leases \
                 WHERE outbox_table = ? AND expires_at < ? ORDER BY id",
            )
            .bind::<Text, _>(table.name())
            .bind::<Timestamp, _>(now),
        )
        .load::<LeaseRow>(self)?;
        Ok(found
            .into_iter()
            .map(|lease| Lease {
                id: lease.id,
                table,
                shards: decode_shards(table, &lease.shards),
            })
            .collect())
    }

    fn leases(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
    ) -> QueryResult<Vec<LeaseInfo>> {
        // Liveness is the expiry, which a live worker's heartbeat keeps moving.
        let found = Prepared(
            diesel::sql_query(
                "SELECT id, shards, taken_at, expires_at, holder, \
                 CAST(expires_at >= ? AS BIGINT) AS live \
                 FROM outbox_drain_leases WHERE outbox_table = ? ORDER BY id",
            )
            .bind::<Timestamp, _>(now)
            .bind::<Text, _>(table.name()),
        )
        .load::<LeaseInfoRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_info(table)).collect())
    }

    fn forget_lease(&mut self, _token: Token<'_>, lease: i64) -> QueryResult<bool> {
        Ok(delete_lease(self, Some(lease))? > 0)
    }

    fn claim_due_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<Claim> {
        immediate(self, |conn| {
            let found = scan_due(conn, table, scan, now)?;
            let mut claim = Claim::empty(table);
            claim.scanned_rows = found.scanned_rows;
            claim.last_scanned_id = found.last_scanned_id;
            take_unleased(conn, &mut claim, found.shards, now, scan.lease_seconds)?;
            Ok(claim)
        })
    }

    fn due_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<DueFound> {
        let found = scan_due(self, table, scan, now)?;
        Ok(DueFound {
            shards: found.shards.into_iter().map(|shard| shard.key).collect(),
            scanned_rows: found.scanned_rows,
            last_scanned_id: found.last_scanned_id,
        })
    }

    fn claim_isolated_shard(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
        lease_seconds: i64,
    ) -> QueryResult<Claim> {
        let names = Names::of(table);
        // An isolated shard waits for its schedule even when new rows arrive (see the
        // PostgreSQL claim).
        let text = format!(
            "SELECT {columns} FROM {states} st WHERE st.isolated AND NOT st.skipped \
             AND st.scheduled_for <= ? ORDER BY st.scheduled_for LIMIT 1",
            columns = state_select(&names),
            states = names.states,
        );
        immediate(self, |conn| {
            let found = Prepared(diesel::sql_query(text).bind::<Timestamp, _>(now))
                .get_result::<StateRow>(conn)
                .optional()?;
            let mut claim = Claim::empty(table);
            let candidates = found
                .map(|row| {
                    let state = row.into_state(table);
                    ClaimedShard {
                        key: state.shard.clone(),
                        bound: i64::MAX,
                        state: Some(state),
                    }
                })
                .into_iter()
                .collect();
            take_unleased(conn, &mut claim, candidates, now, lease_seconds)?;
            Ok(claim)
        })
    }

    fn claim_flush_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shards: &[ShardKey],
        now: NaiveDateTime,
        lease_seconds: i64,
    ) -> QueryResult<Claim> {
        let names = Names::of(table);
        let has_state = format!(
            "SELECT COUNT(*) AS value FROM {states} WHERE {shard}",
            states = names.states,
            shard = names.shard_is("")
        );
        let newest = super::sql::rows::shard_max_id(&names);
        immediate(self, |conn| {
            let mut claim = Claim::empty(table);
            let mut candidates = Vec::new();
            for key in shards.iter().filter(|key| key.table() == table) {
                // A shard with stored state is failing or skipped: left to the periodic
                // drain, so that the writer does not pay for its trouble.
                let query = bind_shard(diesel::sql_query(has_state.as_str()).into_boxed(), key);
                if Prepared(query).get_result::<BigIntValue>(conn)?.value > 0 {
                    continue;
                }
                let query = bind_shard(diesel::sql_query(newest.as_str()).into_boxed(), key);
                if let Some(bound) = Prepared(query).get_result::<MaybeBigInt>(conn)?.value {
                    candidates.push(ClaimedShard {
                        key: key.clone(),
                        bound,
                        state: None,
                    });
                }
            }
            take_unleased(conn, &mut claim, candidates, now, lease_seconds)?;
            Ok(claim)
        })
    }

    fn release_claim(&mut self, _token: Token<'_>, claim: &Claim) -> QueryResult<()> {
        // Nothing but the lease row holds the shards; the delivery's commit may have
        // deleted it already (a DELETE would cost a write transaction for nothing).
        delete_lease(self, claim.lease.filter(|_| !claim.lease_deleted)).map(|_| ())
    }

    fn load_windows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shards: &[WindowRequest],
        window: i64,
        max_rows: i64,
    ) -> QueryResult<Vec<OutboxMessage>> {
        if shards.is_empty() || max_rows <= 0 {
            return Ok(Vec::new());
        }
        // A statement per slice of the batch: each shard's window is counted and its last
        // id found on the shard's index, the windows are taken in the order given until the
        // cap, and the rows of those shards read (the last shard may hold more than the
        // cap leaves it: it is cut here, as are the rows' order and grouping). The first
        // slice is as many shards as the cap holds full windows; the next ones are sized
        // by the rows per shard seen so far, so that one-row shards take one or two
        // statements a batch and deep shards are not counted past the cap.
        let names = Names::of(table);
        let text = windows_statement(&names);
        let cap = usize::try_from(max_rows).unwrap_or(usize::MAX);
        let window_rows = usize::try_from(window.max(1)).unwrap_or(usize::MAX);
        let mut messages: Vec<OutboxMessage> = Vec::new();
        let mut next = 0;
        let mut slice = (cap / window_rows).max(1);
        while next < shards.len() && messages.len() < cap {
            let part = &shards[next..shards.len().min(next.saturating_add(slice))];
            let left = cap - messages.len();
            let query = Prepared(
                diesel::sql_query(text.as_str())
                    .bind::<Text, _>(json_windows(part))
                    .bind::<BigInt, _>(window)
                    .bind::<BigInt, _>(i64::try_from(left).unwrap_or(i64::MAX)),
            );
            let found = query.load::<MessageRow>(self)?;
            let mut by_shard: std::collections::HashMap<ShardKey, Vec<OutboxMessage>> =
                std::collections::HashMap::with_capacity(part.len());
            for row in found {
                let message = row.into_message(table);
                by_shard
                    .entry(message.shard_key())
                    .or_default()
                    .push(message);
            }
            for request in part {
                let left = cap.saturating_sub(messages.len());
                if left == 0 {
                    break;
                }
                if let Some(mut rows) = by_shard.remove(&request.shard) {
                    rows.sort_by_key(|message| message.id);
                    rows.truncate(left.min(window_rows));
                    messages.extend(rows);
                }
            }
            next += part.len();
            let per_shard = (messages.len() / next).max(1);
            slice = (cap.saturating_sub(messages.len()) / per_shard).max(1);
        }
        Ok(messages)
    }

    fn load_messages(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        ids: &[i64],
    ) -> QueryResult<Vec<OutboxMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names = Names::of(table);
        let text = format!(
            "SELECT {columns} FROM {rows} o \
             WHERE o.id IN (SELECT value FROM json_each(?)) ORDER BY o.id",
            columns = names.message_columns("o", NULL_TEXT),
            rows = names.rows,
        );
        let found = Prepared(diesel::sql_query(text).bind::<Text, _>(json_ids(ids)))
            .load::<MessageRow>(self)?;
        Ok(found
            .into_iter()
            .map(|row| row.into_message(table))
            .collect())
    }

    fn rows_after_windows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        keys: &[KeyAfterWindow],
    ) -> QueryResult<Vec<RowIdentity>> {
        use diesel::sql_types::Integer;
        let names = Names::of(table);
        let text = format!(
            "SELECT {columns} FROM {rows} o WHERE {shard} AND o.category = ? \
             AND o.object_identifier = ? AND o.id > ? AND o.id <= ? ORDER BY o.id",
            columns = names.identity_columns("o", NULL_TEXT),
            rows = names.rows,
            shard = names.shard_is("o.")
        );
        let mut found = Vec::new();
        for key in keys {
            let query = bind_shard(diesel::sql_query(text.as_str()).into_boxed(), &key.shard)
                .bind::<Integer, _>(key.category)
                .bind::<BigInt, _>(key.object_identifier)
                .bind::<BigInt, _>(key.after_id)
                .bind::<BigInt, _>(key.bound);
            let rows = Prepared(query).load::<IdentityRow>(self)?;
            found.extend(rows.into_iter().map(|row| row.into_identity(table)));
        }
        Ok(found)
    }

    fn unreadable_rows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan_rows: i64,
    ) -> QueryResult<Vec<RowIdentity>> {
        let text = super::sql::rows::unreadable(&Names::of(table), NULL_TEXT, UNREADABLE);
        let found = Prepared(diesel::sql_query(text).bind::<BigInt, _>(scan_rows))
            .load::<IdentityRow>(self)?;
        Ok(found
            .into_iter()
            .map(|row| row.into_identity(table))
            .collect())
    }

    fn repair_row(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        id: i64,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        let text = format!(
            "UPDATE {rows} SET \
             scheduled_for = CASE WHEN datetime(scheduled_for) IS NULL THEN ?1 ELSE scheduled_for END, \
             scheduled_from = CASE WHEN datetime(scheduled_from) IS NULL THEN ?1 ELSE scheduled_from END, \
             date_added = CASE WHEN datetime(date_added) IS NULL THEN ?1 ELSE date_added END \
             WHERE id = ?2",
            rows = Names::of(table).rows
        );
        let query = diesel::sql_query(text)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(id);
        immediate(self, |conn| Ok(Prepared(query).execute(conn)? > 0))
    }

    fn discard_row(&mut self, _token: Token<'_>, table: OutboxTable, id: i64) -> QueryResult<bool> {
        let text = format!(
            "DELETE FROM {rows} WHERE id = ?",
            rows = Names::of(table).rows
        );
        let query = diesel::sql_query(text).bind::<BigInt, _>(id);
        immediate(self, |conn| Ok(Prepared(query).execute(conn)? > 0))
    }

    fn delete_delivered(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        ids: &[i64],
        lease: Option<i64>,
    ) -> QueryResult<usize> {
        delete_lease(self, lease)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let text = format!(
            "DELETE FROM {rows} WHERE id IN (SELECT value FROM json_each(?))",
            rows = Names::of(table).rows
        );
        Prepared(diesel::sql_query(text).bind::<Text, _>(json_ids(ids))).execute(self)
    }

    fn park_rows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        request: &ParkRequest,
    ) -> QueryResult<usize> {
        use diesel::sql_types::Integer;
        let names = Names::of(table);
        let columns = names.row_columns();
        let copy = format!(
            "INSERT INTO {parked} ({columns}, parked_at, attempts, first_failure_at, last_error) \
             SELECT {columns}, ?, ?, ?, ? FROM {rows} \
             WHERE {shard} AND id IN (SELECT value FROM json_each(?))",
            parked = names.parked,
            rows = names.rows,
            shard = names.shard_is(""),
        );
        let query = diesel::sql_query(copy)
            .into_boxed()
            .bind::<Timestamp, _>(request.parked_at)
            .bind::<Integer, _>(request.attempts)
            .bind::<Timestamp, _>(request.first_failure_at)
            .bind::<Text, _>(request.error.clone());
        let query = bind_shard(query, &request.shard).bind::<Text, _>(json_ids(&request.ids));
        let moved = Prepared(query).execute(self)?;
        let delete = format!(
            "DELETE FROM {rows} WHERE {shard} AND id IN (SELECT value FROM json_each(?))",
            rows = names.rows,
            shard = names.shard_is(""),
        );
        let query = bind_shard(diesel::sql_query(delete).into_boxed(), &request.shard)
            .bind::<Text, _>(json_ids(&request.ids));
        Prepared(query).execute(self)?;
        Ok(moved)
    }

    fn restore_parked(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        key: Option<&ParkedKey>,
    ) -> QueryResult<usize> {
        let names = Names::of(table);
        let columns = names.row_columns();
        let filter = parked::filter(&names, key.is_some());
        let copy = format!(
            "INSERT INTO {rows} ({columns}) SELECT {columns} FROM {parked} WHERE {filter}",
            rows = names.rows,
            parked = names.parked,
        );
        let discard = parked::discard(&names, key.is_some());
        immediate(self, |conn| {
            let query = bind_parked_key(diesel::sql_query(copy).into_boxed(), key);
            let moved = Prepared(query).execute(conn)?;
            let query = bind_parked_key(diesel::sql_query(discard).into_boxed(), key);
            Prepared(query).execute(conn)?;
            Ok(moved)
        })
    }

    fn notify_rows_written(&mut self, _token: Token<'_>) -> QueryResult<()> {
        // SQLite has no notifications: workers find new rows by polling.
        Ok(())
    }

    fn listen_for_rows(&mut self, _token: Token<'_>) -> QueryResult<Option<String>> {
        Ok(None)
    }

    fn stop_listening(&mut self, _token: Token<'_>) -> QueryResult<()> {
        Ok(())
    }

    fn take_notifications(&mut self, _token: Token<'_>) -> QueryResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// `f` in a `BEGIN IMMEDIATE` transaction, or a savepoint inside an open one (whose lock
/// is already decided).
fn immediate<T, E, F>(conn: &mut SqliteConnection, f: F) -> std::result::Result<T, E>
where
    F: FnOnce(&mut SqliteConnection) -> std::result::Result<T, E>,
    E: From<diesel::result::Error>,
{
    match transaction::depth(conn).map_err(E::from)? {
        0 => {
            super::sqlite_options::prepare(conn).map_err(E::from)?;
            conn.immediate_transaction(f)
        }
        _ => diesel::Connection::transaction(conn, f),
    }
}

/// Claims those of `candidates` that no live lease lists, and writes their lease.
fn take_unleased(
    conn: &mut SqliteConnection,
    claim: &mut Claim,
    candidates: Vec<ClaimedShard>,
    now: NaiveDateTime,
    lease_seconds: i64,
) -> QueryResult<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let leased = leased_shards(conn, claim.table)?;
    for candidate in candidates {
        if leased.contains(&candidate.key) {
            claim.busy += 1;
        } else {
            claim.shards.push(candidate);
        }
    }
    if claim.shards.is_empty() {
        return Ok(());
    }
    let keys: Vec<ShardKey> = claim.shards.iter().map(|shard| shard.key.clone()).collect();
    let expires = now + chrono::Duration::seconds(lease_seconds);
    let lease = Prepared(
        diesel::sql_query(
            "INSERT INTO outbox_drain_leases (outbox_table, shards, taken_at, expires_at, holder) \
             VALUES (?, ?, ?, ?, ?) RETURNING id AS value",
        )
        .bind::<Text, _>(claim.table.name())
        .bind::<Text, _>(encode_shards(&keys))
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(expires)
        .bind::<BigInt, _>(i64::from(std::process::id())),
    )
    .get_result::<BigIntValue>(conn)?;
    claim.lease = Some(lease.value);
    Ok(())
}

/// The shards of `table` that a lease lists, expired or not: an expired lease belongs to
/// a worker that died, and its shards wait until a drain recovers it (backs them off and
/// deletes it, in one transaction), so that no claim takes them back to the receiver that
/// killed that worker first.
fn leased_shards(
    conn: &mut SqliteConnection,
    table: OutboxTable,
) -> QueryResult<HashSet<ShardKey>> {
    let leases = Prepared(
        diesel::sql_query("SELECT id, shards FROM outbox_drain_leases WHERE outbox_table = ?")
            .bind::<Text, _>(table.name()),
    )
    .load::<LeaseRow>(conn)?;
    Ok(leases
        .iter()
        .filter_map(|lease| decode_shards(table, &lease.shards))
        .flatten()
        .collect())
}

fn delete_lease(conn: &mut SqliteConnection, lease: Option<i64>) -> QueryResult<usize> {
    match lease {
        Some(lease) => Prepared(
            diesel::sql_query("DELETE FROM outbox_drain_leases WHERE id = ?")
                .bind::<BigInt, _>(lease),
        )
        .execute(conn),
        None => Ok(0),
    }
}

/// A row whose schedule SQLite cannot read as a date (diesel could not either).
const UNREADABLE: &str = "datetime(o.scheduled_for) IS NULL OR datetime(o.scheduled_from) IS NULL \
     OR datetime(o.date_added) IS NULL";

/// Ids as the JSON array `json_each` reads: one bind, whatever the count.
fn json_ids(ids: &[i64]) -> String {
    let mut text = String::with_capacity(ids.len() * 8 + 2);
    text.push('[');
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&id.to_string());
    }
    text.push(']');
    text
}

/// A state's columns as [`StateRow`] reads them.
fn state_select(names: &Names) -> String {
    let cell = match names.table {
        OutboxTable::Cell => format!("{NULL_TEXT} AS cell_name"),
        OutboxTable::Control => "st.cell_name".to_owned(),
    };
    let columns = super::sql::STATE_COLUMNS
        .iter()
        .map(|column| format!("st.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("st.shard_scope, st.shard_identifier, {cell}, {columns}")
}

/// The candidates of a periodic claim (see [`super::scan`]), with the states of those
/// that have one.
fn scan_due(
    conn: &mut SqliteConnection,
    table: OutboxTable,
    scan: &DueScan,
    now: NaiveDateTime,
) -> QueryResult<Scanned> {
    use diesel::sql_types::Bool;
    let names = Names::of(table);
    let order = [
        "from_id",
        "to_id",
        "scan_rows",
        "now",
        "ignore",
        "max_shards",
    ];
    let param = |name: &str| {
        let index = order.iter().position(|known| *known == name).unwrap_or(0);
        format!("?{}", index + 1)
    };
    let cell = |alias: &str| names.cell_name_of(alias, NULL_TEXT);
    // Shards have stored states only while failing or skipped: usually none, and then
    // the rows alone say what is due (one probe here spares one per row).
    let any_state = Prepared(diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM {states}) AS value",
        states = names.states
    )))
    .get_result::<BigIntValue>(conn)?
    .value
        != 0;
    let rows = if any_state {
        let text = super::scan::statement(&names, &param, &cell);
        Prepared(
            diesel::sql_query(text)
                .bind::<BigInt, _>(scan.from_id)
                .bind::<BigInt, _>(scan.to_id)
                .bind::<BigInt, _>(scan.scan_rows)
                .bind::<Timestamp, _>(now)
                .bind::<Bool, _>(scan.ignore_schedule)
                .bind::<BigInt, _>(scan.max_shards),
        )
        .load::<ScanRow>(conn)?
    } else {
        let text = super::scan::statement_without_states(&names, &param, &cell);
        Prepared(
            diesel::sql_query(text)
                .bind::<BigInt, _>(scan.from_id)
                .bind::<BigInt, _>(scan.to_id)
                .bind::<BigInt, _>(scan.scan_rows)
                .bind::<Timestamp, _>(now)
                .bind::<Bool, _>(scan.ignore_schedule),
        )
        .load::<ScanRow>(conn)?
    };
    let mut found = super::scan::choose(table, rows, scan);
    let keys = found.keys_with_state();
    if !keys.is_empty() {
        let states = conn.load_shard_states(Token::new(), table, Some(&keys))?;
        found.set_states(states);
    }
    Ok(found)
}

/// The windows of a slice of a batch in one statement. Binds: ?1 the shards as JSON (see
/// [`json_windows`]), ?2 the window, ?3 the rows the batch holds at most. Each shard's
/// window is counted and its last id found with two probes of the shard's index (SQLite
/// takes no correlated `LIMIT`, so the cap's cut of the last shard is left to the
/// caller); the running count keeps the shards after the cap out.
fn windows_statement(names: &Names) -> String {
    let from_json = names
        .shard
        .iter()
        .enumerate()
        .map(|(index, column)| format!("j.value ->> {index} AS {column}"))
        .collect::<Vec<_>>()
        .join(", ");
    let same = names.same_shard("i", "w");
    format!(
        "WITH w AS MATERIALIZED (SELECT j.key AS ord, {from_json}, j.value ->> {bound} AS bound \
             FROM json_each(?1) j), \
         c AS MATERIALIZED (SELECT w.*, \
             (SELECT COUNT(*) FROM (SELECT 1 FROM {rows} i WHERE {same} AND i.id <= w.bound \
                 LIMIT ?2)) AS n, \
             (SELECT MAX(x.id) FROM (SELECT i.id FROM {rows} i WHERE {same} \
                 AND i.id <= w.bound ORDER BY i.id LIMIT ?2) x) AS last_id \
             FROM w), \
         s AS MATERIALIZED (SELECT c.*, \
             SUM(c.n) OVER (ORDER BY c.ord ROWS UNBOUNDED PRECEDING) - c.n AS before FROM c) \
         SELECT {columns} FROM s CROSS JOIN {rows} o \
         WHERE s.n > 0 AND s.before < ?3 AND {same_o} AND o.id <= s.last_id",
        bound = names.shard.len(),
        rows = names.rows,
        columns = names.message_columns("o", NULL_TEXT),
        same_o = names.same_shard("o", "s"),
    )
}

/// A batch's shards with their bounds as the JSON [`windows_statement`] reads:
/// `[[scope, id, bound], ...]`, `[[cell, scope, id, bound], ...]` for control shards.
fn json_windows(shards: &[WindowRequest]) -> String {
    let values: Vec<serde_json::Value> = shards
        .iter()
        .map(|request| {
            let shard = request.shard.shard();
            match request.shard.cell_name() {
                Some(cell) => {
                    serde_json::json!([cell, shard.scope, shard.identifier, request.bound])
                }
                None => serde_json::json!([shard.scope, shard.identifier, request.bound]),
            }
        })
        .collect();
    serde_json::Value::Array(values).to_string()
}
