//! MySQL 8 and MariaDB 10.6+: the second production backend.
//!
//! A claimed shard is held with a named lock, `GET_LOCK(name, 0)` on a hash of the
//! database, the table and the shard: taken without waiting (a busy shard is left to its
//! holder), kept by the session across the lease's commit and the delivery's, released
//! when the batch is done, and dropped by the server if the worker's connection dies.
//! A worker also holds a lock named for its connection while it has a batch: a lease
//! whose worker's lock is free has no live worker behind it.
//!
//! Sets of shards, rows and keys travel as one JSON bind read with `JSON_TABLE`, so a
//! batch of hundreds of shards costs a handful of round trips. MariaDB has no LATERAL: a
//! shard's window is read through a join when the shard's rest fits in it (the common
//! case, found by one index probe per shard), and by a statement of its own when it does
//! not, so that no statement reads past a window.
//!
//! Drain transactions run at READ COMMITTED (the session's level is left alone): each
//! statement sees the latest commits, as on PostgreSQL, and InnoDB takes no gap locks
//! that would make writers wait behind a drain.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamp};
use diesel::{Connection, OptionalExtension, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::claim::{
    decode_shards, encode_shards, Claim, ClaimedShard, DueFound, DueScan, KeyAfterWindow, Lease,
    LeaseInfo, RowIdentity, WindowRequest,
};
use super::inspect::{CategoryDepth, OldestRow, ShardDepth};
use super::mysql_raw::{raw_sql, RawStatement};
use super::parked::{ParkRequest, ParkedCounts, ParkedGroup, ParkedKey};
use super::shared::{bind_parked_key, bind_shard};
use super::sql::{
    inspect, parked, rows, states, BigIntValue, CategoryDepthRow, ClaimRow, IdBounds, IdentityRow,
    LeaseInfoRow, LeaseRow, MaybeBigInt, MessageRow, Names, OldestRowRow, ParkedCountsRow,
    ParkedGroupRow, Prepared, ShardDepthRow, StateRow, STATE_COLUMNS,
};
use super::state::{ShardFailure, ShardState};
use super::transaction;
use super::{OutboxConnection, Sealed};
use crate::key::error::{Error, Result};
use crate::key::shard::{OutboxTable, Shard, ShardKey};
use crate::key::token::Token;
use crate::row::insert::{CellValues, ControlValues, NewCellOutbox, NewControlOutbox};
use crate::row::payload::JsonPayload;
use crate::row::record::{CellOutboxRecord, ControlOutboxRecord, OutboxMessage};
use crate::row::schema::sql_types::PayloadJson;
use crate::row::tombstone::{Tombstone, TombstoneTable};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// A typed NULL text column (MySQL has no `CAST(... AS TEXT)`).
const NULL_TEXT: &str = "CAST(NULL AS CHAR)";

/// The bound of a shard that is drained whole.
const UNBOUNDED: &str = "9223372036854775807";

/// The library's tables, as `run_migrations` checks them.
const TABLES: [&str; 10] = [
    "cell_outboxes",
    "control_outboxes",
    "cell_tombstones",
    "control_tombstones",
    "cell_outbox_shards",
    "control_outbox_shards",
    "outbox_drain_leases",
    "cell_outbox_parked",
    "control_outbox_parked",
    "outbox_backfills",
];

/// The longest tombstone table name the column stores (`INSERT IGNORE` would cut a longer
/// one silently).
const MAX_TABLE_NAME_LEN: usize = 64;

impl Sealed for MysqlConnection {}

impl OutboxConnection for MysqlConnection {
    /// Placeholders in one prepared statement.
    const MAX_BIND_PARAMS: usize = 65_535;
    const BACKEND_NAME: &'static str = "MySQL";
    const LEASED_DELIVERY_BY_DEFAULT: bool = false;

    fn run_outbox_migrations(&mut self) -> Result<()> {
        self.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(Error::Migration)?;
        check_tables(self)
    }

    fn begin_context_transaction(&mut self, _token: Token<'_>) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction(self)
    }

    fn check_worker_connection(&mut self, _token: Token<'_>) -> QueryResult<()> {
        // The tables as `run_migrations` checks them: a worker started on a database
        // whose tables were altered since says so once, at the start.
        check_tables(self).map_err(Error::into_diesel)
    }

    fn insert_cell_rows(&mut self, _token: Token<'_>, rows: &[NewCellOutbox]) -> QueryResult<()> {
        crate::backend::mysql::insert_mysql_rows!(
            self,
            rows,
            &CELL_SIZES,
            cell_outboxes,
            CellValues,
            []
        )
    }

    fn insert_control_rows(
        &mut self,
        _token: Token<'_>,
        rows: &[NewControlOutbox],
    ) -> QueryResult<()> {
        crate::backend::mysql::insert_mysql_rows!(
            self,
            rows,
            &CONTROL_SIZES,
            control_outboxes,
            ControlValues,
            []
        )
    }

    fn next_object_identifier(&mut self, _token: Token<'_>) -> QueryResult<i64> {
        // MySQL has no sequences. UUID_SHORT() is unique on the server (its server_id,
        // start time and a counter) and takes no lock, where a counter row would
        // serialise every transaction that mints an id until it commits.
        next_object_identifier_query()
            .get_result::<BigIntValue>(self)
            .map(|row| row.value)
    }

    fn insert_tombstones(
        &mut self,
        _token: Token<'_>,
        table: TombstoneTable,
        table_name: &str,
        object_identifiers: &[i64],
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        if table_name.chars().count() > MAX_TABLE_NAME_LEN {
            return Err(DieselError::QueryBuilderError(
                format!("a tombstone's table name is at most 64 characters: {table_name:?}").into(),
            ));
        }
        // IGNORE: an existing tombstone counts 0 rows (ON DUPLICATE KEY UPDATE would count
        // it 1 with the found-rows flag diesel sets, so a repeat would look new). The ids
        // travel as one JSON array, so the text is one whatever their number.
        let text = format!(
            "INSERT IGNORE INTO {} (table_name, object_identifier, created_at) \
             SELECT ?, j.id, ? FROM {ID_TABLE_POSITIONAL}",
            tombstone_table(table)
        );
        Prepared(
            raw_sql(text)
                .bind::<Text, _>(table_name)
                .bind::<Timestamp, _>(now)
                .bind::<Text, _>(json_ids(object_identifiers)),
        )
        .execute(self)
    }

    fn load_tombstones(
        &mut self,
        _token: Token<'_>,
        table: TombstoneTable,
        table_name: Option<&str>,
    ) -> QueryResult<Vec<Tombstone>> {
        use diesel::{ExpressionMethods, QueryDsl};
        type Row = (i64, String, i64, NaiveDateTime);
        macro_rules! load_from {
            ($t:ident) => {{
                use crate::row::schema::$t::dsl;
                let mut query = dsl::$t
                    .select((
                        dsl::id,
                        dsl::table_name,
                        dsl::object_identifier,
                        dsl::created_at,
                    ))
                    .order(dsl::id)
                    .into_boxed();
                if let Some(name) = table_name {
                    query = query.filter(dsl::table_name.eq(name.to_owned()));
                }
                query.load::<Row>(self)
            }};
        }
        let found = match table {
            TombstoneTable::Cell => load_from!(cell_tombstones),
            TombstoneTable::Control => load_from!(control_tombstones),
        }?;
        Ok(found
            .into_iter()
            .map(
                |(id, table_name, object_identifier, created_at)| Tombstone {
                    id,
                    table_name,
                    object_identifier,
                    created_at,
                },
            )
            .collect())
    }

    fn drain_transaction<T, E, F>(&mut self, _token: Token<'_>, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        // The named locks do the excluding. READ COMMITTED (for this transaction only)
        // lets each statement see the latest commits and keeps InnoDB from taking gap
        // locks; inside an open transaction the level is already decided.
        if transaction::depth(self).map_err(E::from)? == 0 {
            read_committed_next(self).map_err(E::from)?;
        }
        self.transaction(f)
    }

    fn abandoned_leases(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        _now: NaiveDateTime,
        own: Option<i64>,
    ) -> QueryResult<Vec<Lease>> {
        // A live worker holds its connection's lock from before it writes a lease until
        // after the commit that deletes it: a lease whose worker's lock is free has no
        // live worker. IS_FREE_LOCK takes nothing, so nothing is held afterwards: a drain
        // recovering the lease deletes its row in the transaction that backs its shards
        // off, and another that finds it meanwhile waits on that row in `forget_lease`.
        // (Our own lease's lock is ours, so not free; it is left out all the same.)
        let text = format!(
            "SELECT l.id, l.shards FROM outbox_drain_leases l \
             WHERE l.outbox_table = :table AND NOT l.id <=> :own AND IS_FREE_LOCK({lock}) = 1 \
             ORDER BY l.taken_at, l.id",
            lock = worker_lock("l.holder")
        );
        let found = statement(
            &text,
            &[
                ("table", Param::Text(table.name().to_owned())),
                ("own", Param::MaybeBigInt(own)),
            ],
        )?
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
        _now: NaiveDateTime,
    ) -> QueryResult<Vec<LeaseInfo>> {
        // Liveness is the lock named for the holder's connection.
        let text = format!(
            "SELECT l.id, l.shards, l.taken_at, l.expires_at, l.holder, \
                 CAST(IS_USED_LOCK({lock}) IS NOT NULL AS SIGNED) AS live \
             FROM outbox_drain_leases l WHERE l.outbox_table = :table ORDER BY l.id",
            lock = worker_lock("l.holder")
        );
        let found = statement(&text, &[("table", Param::Text(table.name().to_owned()))])?
            .load::<LeaseInfoRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_info(table)).collect())
    }

    fn renew_lease(
        &mut self,
        _token: Token<'_>,
        lease: i64,
        expires_at: NaiveDateTime,
    ) -> QueryResult<bool> {
        let renewed = statement(
            "UPDATE outbox_drain_leases SET expires_at = :expires WHERE id = :lease",
            &[
                ("expires", Param::Time(expires_at)),
                ("lease", Param::BigInt(lease)),
            ],
        )?
        .execute(self)?;
        Ok(renewed > 0)
    }

    fn forget_lease(&mut self, _token: Token<'_>, lease: i64) -> QueryResult<bool> {
        Ok(delete_lease(self, lease)? > 0)
    }

    fn claim_due_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<Claim> {
        let found = due_candidates(self, table, scan, now)?;
        let mut claim = Claim::empty(table);
        claim.scanned_rows = found.scanned_rows;
        claim.last_scanned_id = found.last_scanned_id;
        take_candidates(self, claim, found.shards, now, scan.lease_seconds)
    }

    fn due_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<DueFound> {
        let found = due_candidates(self, table, scan, now)?;
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
        // An isolated shard waits for its schedule even when new rows arrive (each attempt
        // may cost a process), and one a lease lists is left alone even though its lock
        // is free: its worker died and the lease is not recovered yet, and taking it now
        // would hand it to the receiver that killed that worker (see the PostgreSQL
        // claim). The leases are read only for the due isolated shards, at most 64.
        let text = format!(
            "WITH due_isolated AS (SELECT st.* FROM {states} st \
                 WHERE st.isolated AND NOT st.skipped AND st.scheduled_for <= :now \
                 ORDER BY st.scheduled_for LIMIT 64) \
             SELECT {d_shard}, {cell}, NULL AS locked, {UNBOUNDED} AS bound, \
                 NULL AS lease_id, 0 AS scanned_rows, NULL AS last_scanned_id, {state} \
             FROM due_isolated d WHERE NOT EXISTS ({leased}) \
             ORDER BY d.scheduled_for LIMIT 1",
            states = names.states,
            d_shard = shard_columns(&names, "d"),
            cell = cell_column(&names, "d"),
            state = names.state_columns("d"),
            leased = leased(&names, "d"),
        );
        let rows = statement(&text, &[("now", Param::Time(now))])?.load::<ClaimRow>(self)?;
        take(self, table, rows, now, lease_seconds)
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
        let mut seen = HashSet::new();
        let wanted: Vec<&ShardKey> = shards
            .iter()
            .filter(|key| key.table() == table && seen.insert(*key))
            .collect();
        if wanted.is_empty() {
            return Ok(Claim::empty(table));
        }
        // A shard with stored state is failing or skipped, and a shard a lease lists is
        // being delivered or was when its worker died (its lock died with it): the flush
        // leaves them to the periodic drain rather than make the writer pay for another's
        // trouble, or run a receiver that killed a worker. Its bound is its newest id now
        // (one backwards probe), or none when it has no rows.
        let text = format!(
            "SELECT {w_shard}, {cell}, NULL AS locked, \
                 COALESCE((SELECT o.id FROM {rows} o WHERE {same_o} ORDER BY o.id DESC LIMIT 1), \
                     -9223372036854775808) AS bound, \
                 NULL AS lease_id, 0 AS scanned_rows, NULL AS last_scanned_id, {state} \
             FROM {wanted} LEFT JOIN {states} st ON {same_st} \
             WHERE st.shard_scope IS NULL AND NOT EXISTS ({leased}) ORDER BY w.ord",
            w_shard = shard_columns(&names, "w"),
            cell = cell_column(&names, "w"),
            rows = names.rows,
            same_o = names.same_shard("o", "w"),
            state = names.state_columns("st"),
            wanted = shard_table(&names, ":shards", &[], "w"),
            states = names.states,
            same_st = names.same_shard("st", "w"),
            leased = leased(&names, "w"),
        );
        let json = shard_json(wanted.iter().map(|key| (*key, Vec::new())));
        let rows = statement(&text, &[("shards", Param::Text(json))])?.load::<ClaimRow>(self)?;
        take(self, table, rows, now, lease_seconds)
    }

    fn release_claim(&mut self, _token: Token<'_>, claim: &Claim) -> QueryResult<()> {
        // The lease goes before the locks: a lease whose worker's lock is free would be
        // taken for abandoned.
        let deleted = match claim.lease.filter(|_| !claim.lease_deleted) {
            Some(lease) => delete_lease(self, lease).map(|_| ()),
            None => Ok(()),
        };
        let keys: Vec<&ShardKey> = claim.shards.iter().map(|shard| &shard.key).collect();
        let released = if keys.is_empty() {
            Ok(())
        } else {
            release_locks(self, claim.table, &keys, true)
        };
        deleted.and(released)
    }

    fn load_windows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shards: &[WindowRequest],
        window: i64,
        max_rows: i64,
    ) -> QueryResult<Vec<OutboxMessage>> {
        let requests: Vec<&WindowRequest> = shards
            .iter()
            .filter(|request| request.shard.table() == table)
            .collect();
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let names = Names::of(table);
        // `cut` is the id of the row after the shard's window, if there is one (an index
        // probe that reads at most window + 1 entries). A shard without one is read
        // whole by the join; a deeper shard by a statement of its own below, since a
        // join on MySQL reads every row of the shard, whatever bounds its ids.
        let text = format!(
            "SELECT w.ord, w.cut, {columns} FROM (\
                 SELECT w.ord, {w_shard}, w.bound, \
                     (SELECT o2.id FROM {rows} o2 WHERE {same_o2} AND o2.id <= w.bound \
                      ORDER BY o2.id LIMIT :window, 1) AS cut \
                 FROM {wanted}) w \
             LEFT JOIN {rows} o ON w.cut IS NULL AND {same_o} AND o.id <= w.bound",
            columns = names.message_columns("o", NULL_TEXT),
            w_shard = names.shard_of("w"),
            rows = names.rows,
            same_o2 = names.same_shard("o2", "w"),
            wanted = shard_table(&names, ":shards", &[("bound", "BIGINT")], "w"),
            same_o = names.same_shard("o", "w"),
        );
        let json = shard_json(
            requests
                .iter()
                .map(|request| (&request.shard, vec![request.bound])),
        );
        let found = statement(
            &text,
            &[
                ("window", Param::BigInt(window)),
                ("shards", Param::Text(json)),
            ],
        )?
        .load::<WindowRow>(self)?;
        // Shallow shards come whole from the join, deep ones one statement each; then the
        // shards are taken in the order given until the batch has `max_rows` rows.
        let mut by_ord: std::collections::BTreeMap<i64, Vec<OutboxMessage>> =
            std::collections::BTreeMap::new();
        let mut deep = Vec::new();
        for row in found {
            if let Some(cut) = row.cut {
                let request = usize::try_from(row.ord - 1)
                    .ok()
                    .and_then(|index| requests.get(index));
                if let Some(request) = request {
                    deep.push((row.ord, &request.shard, cut));
                }
                continue;
            }
            let ord = row.ord;
            by_ord
                .entry(ord)
                .or_default()
                .extend(row.into_message(table));
        }
        deep.sort_by_key(|(ord, _, _)| *ord);
        let mut messages = Vec::new();
        let mut deep = deep.into_iter().peekable();
        for ord in 1..=requests.len() as i64 {
            let left = usize::try_from(max_rows)
                .unwrap_or(usize::MAX)
                .saturating_sub(messages.len());
            if left == 0 {
                break;
            }
            if deep.peek().is_some_and(|(deep_ord, _, _)| *deep_ord == ord) {
                if let Some((_, shard, cut)) = deep.next() {
                    let rows = load_below(self, &names, shard, cut)?;
                    messages.extend(rows.into_iter().take(left));
                }
            } else if let Some(rows) = by_ord.remove(&ord) {
                messages.extend(rows.into_iter().take(left));
            }
        }
        Ok(messages)
    }

    fn window_identities(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shard: &WindowRequest,
        window: i64,
    ) -> QueryResult<Vec<RowIdentity>> {
        let text = rows::window_identities(&Names::of(table), NULL_TEXT);
        let query = bind_shard(raw_sql(text), &shard.shard)
            .bind::<BigInt, _>(shard.bound)
            .bind::<BigInt, _>(window);
        let found = Prepared(query).load::<IdentityRow>(self)?;
        Ok(found
            .into_iter()
            .map(|row| row.into_identity(table))
            .collect())
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
            "SELECT {columns} FROM {ids} STRAIGHT_JOIN {rows} o ON o.id = j.id ORDER BY o.id",
            columns = names.message_columns("o", NULL_TEXT),
            ids = ID_TABLE,
            rows = names.rows,
        );
        let found =
            statement(&text, &[("ids", Param::Text(json_ids(ids)))])?.load::<MessageRow>(self)?;
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
        let keys: Vec<&KeyAfterWindow> = keys
            .iter()
            .filter(|key| key.shard.table() == table)
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names = Names::of(table);
        // Each key is a range of the coalescing index.
        let text = format!(
            "SELECT {columns} FROM {wanted} STRAIGHT_JOIN {rows} o ON {same} \
             AND o.category = k.category AND o.object_identifier = k.object_identifier \
             AND o.id > k.after_id AND o.id <= k.bound ORDER BY o.id",
            columns = names.identity_columns("o", NULL_TEXT),
            wanted = shard_table(
                &names,
                ":keys",
                &[
                    ("category", "INT"),
                    ("object_identifier", "BIGINT"),
                    ("after_id", "BIGINT"),
                    ("bound", "BIGINT"),
                ],
                "k"
            ),
            rows = names.rows,
            same = names.same_shard("o", "k"),
        );
        let json = shard_json(keys.iter().map(|key| {
            (
                &key.shard,
                vec![
                    i64::from(key.category),
                    key.object_identifier,
                    key.after_id,
                    key.bound,
                ],
            )
        }));
        let found = statement(&text, &[("keys", Param::Text(json))])?.load::<IdentityRow>(self)?;
        Ok(found
            .into_iter()
            .map(|row| row.into_identity(table))
            .collect())
    }

    fn shard_max_id(&mut self, _token: Token<'_>, shard: &ShardKey) -> QueryResult<Option<i64>> {
        let text = rows::shard_max_id(&Names::of(shard.table()));
        let query = bind_shard(raw_sql(text), shard);
        Ok(Prepared(query).get_result::<MaybeBigInt>(self)?.value)
    }

    fn unreadable_rows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan_rows: i64,
    ) -> QueryResult<Vec<RowIdentity>> {
        // A zero date (allowed by a lax sql_mode) is below DATETIME's range.
        let text = rows::unreadable(
            &Names::of(table),
            NULL_TEXT,
            "o.scheduled_for < '1000-01-01' OR o.scheduled_from < '1000-01-01' \
             OR o.date_added < '1000-01-01'",
        )
        .replace("LIMIT ?", "LIMIT :scan");
        let found =
            statement(&text, &[("scan", Param::BigInt(scan_rows))])?.load::<IdentityRow>(self)?;
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
             scheduled_for = CASE WHEN scheduled_for < '1000-01-01' THEN :now ELSE scheduled_for END, \
             scheduled_from = CASE WHEN scheduled_from < '1000-01-01' THEN :now ELSE scheduled_from END, \
             date_added = CASE WHEN date_added < '1000-01-01' THEN :now ELSE date_added END \
             WHERE id = :id",
            rows = Names::of(table).rows
        );
        let updated = statement(
            &text,
            &[("now", Param::Time(now)), ("id", Param::BigInt(id))],
        )?
        .execute(self)?;
        Ok(updated > 0)
    }

    fn discard_row(&mut self, _token: Token<'_>, table: OutboxTable, id: i64) -> QueryResult<bool> {
        let text = format!(
            "DELETE FROM {rows} WHERE id = :id",
            rows = Names::of(table).rows
        );
        Ok(statement(&text, &[("id", Param::BigInt(id))])?.execute(self)? > 0)
    }

    fn delete_delivered(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        ids: &[i64],
        lease: Option<i64>,
    ) -> QueryResult<usize> {
        // One multi-table DELETE: the rows by id, and the lease joined on its id. The id
        // 0, never a row's, keeps the id list from being empty, so that the lease goes
        // even when no row does. The count includes the lease.
        let text = format!(
            "DELETE o, l FROM {ids} LEFT JOIN {rows} o ON o.id = j.id \
             LEFT JOIN outbox_drain_leases l ON l.id = :lease",
            ids = ID_TABLE,
            rows = Names::of(table).rows,
        );
        let mut listed = Vec::with_capacity(ids.len() + 1);
        listed.push(0);
        listed.extend_from_slice(ids);
        statement(
            &text,
            &[
                ("ids", Param::Text(json_ids(&listed))),
                ("lease", Param::MaybeBigInt(lease)),
            ],
        )?
        .execute(self)
    }

    fn record_failures(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        failures: &[ShardFailure],
    ) -> QueryResult<()> {
        let text = record_failure_sql(&Names::of(table));
        for failure in failures {
            // In the order of STATE_COLUMNS, without `skipped`.
            let query = bind_shard(raw_sql(text.as_str()), &failure.shard)
                .bind::<Timestamp, _>(failure.scheduled_from)
                .bind::<Timestamp, _>(failure.scheduled_for)
                .bind::<BigInt, _>(failure.covered_id)
                .bind::<Bool, _>(failure.isolated)
                .bind::<Integer, _>(failure.attempts)
                .bind::<Nullable<Timestamp>, _>(Some(failure.first_failure_at))
                .bind::<Nullable<Timestamp>, _>(Some(failure.scheduled_from))
                .bind::<Nullable<Text>, _>(Some(failure.error.clone()))
                .bind::<Nullable<BigInt>, _>(failure.row_id)
                .bind::<Nullable<Integer>, _>(failure.category)
                .bind::<Nullable<BigInt>, _>(failure.object_identifier);
            Prepared(query).execute(self)?;
        }
        Ok(())
    }

    fn record_successes(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shards: &[(ShardKey, i64)],
    ) -> QueryResult<()> {
        let names = Names::of(table);
        let (delete, compacted) = (
            states::delete_unless_skipped(&names),
            states::compacted(&names),
        );
        for (shard, covered_id) in shards {
            Prepared(bind_shard(raw_sql(delete.as_str()), shard)).execute(self)?;
            let query = raw_sql(compacted.as_str()).bind::<BigInt, _>(*covered_id);
            Prepared(bind_shard(query, shard)).execute(self)?;
        }
        Ok(())
    }

    fn set_skipped(
        &mut self,
        _token: Token<'_>,
        shard: &ShardKey,
        skipped: bool,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let names = Names::of(shard.table());
        let columns = names.shard.join(", ");
        let marks = vec!["?"; names.shard.len()].join(", ");
        // Off makes the shard due at once; on keeps its schedule. (VALUES(skipped) is the
        // new value whatever order MySQL assigns in.)
        let text = format!(
            "INSERT INTO {states} ({columns}, scheduled_from, scheduled_for, skipped) \
             VALUES ({marks}, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE \
             scheduled_for = IF(VALUES(skipped), scheduled_for, VALUES(scheduled_for)), \
             skipped = VALUES(skipped)",
            states = names.states,
        );
        let query = bind_shard(raw_sql(text), shard)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(crate::row::write::DUE_AT_ONCE)
            .bind::<Bool, _>(skipped);
        Prepared(query).execute(self)?;
        Ok(())
    }

    fn load_shard_states(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shards: Option<&[ShardKey]>,
    ) -> QueryResult<Vec<ShardState>> {
        let names = Names::of(table);
        let Some(shards) = shards else {
            let text = states::load_all(&names, NULL_TEXT);
            let found = Prepared(raw_sql(text)).load::<StateRow>(self)?;
            return Ok(found.into_iter().map(|row| row.into_state(table)).collect());
        };
        let text = states::load_one(&names, NULL_TEXT);
        let mut found = Vec::new();
        for shard in shards.iter().filter(|shard| shard.table() == table) {
            let query = bind_shard(raw_sql(text.as_str()), shard);
            if let Some(row) = Prepared(query).get_result::<StateRow>(self).optional()? {
                found.push(row.into_state(table));
            }
        }
        Ok(found)
    }

    fn load_isolated_states(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<Vec<ShardState>> {
        let text = states::load_isolated(&Names::of(table), NULL_TEXT);
        let found = Prepared(raw_sql(text)).load::<StateRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_state(table)).collect())
    }

    fn deliverable_rows(&mut self, _token: Token<'_>, table: OutboxTable) -> QueryResult<u64> {
        let text = rows::deliverable(&Names::of(table));
        let count = Prepared(raw_sql(text)).get_result::<BigIntValue>(self)?;
        Ok(u64::try_from(count.value).unwrap_or(0))
    }

    fn load_cell_records(&mut self, _token: Token<'_>) -> QueryResult<Vec<CellOutboxRecord>> {
        use crate::row::record::CELL_COLUMNS;
        use crate::row::schema::cell_outboxes;
        use diesel::QueryDsl;
        cell_outboxes::table
            .select(CELL_COLUMNS)
            .order(cell_outboxes::id)
            .load::<CellOutboxRecord>(self)
    }

    fn load_control_records(&mut self, _token: Token<'_>) -> QueryResult<Vec<ControlOutboxRecord>> {
        use crate::row::record::CONTROL_COLUMNS;
        use crate::row::schema::control_outboxes;
        use diesel::QueryDsl;
        control_outboxes::table
            .select(CONTROL_COLUMNS)
            .order(control_outboxes::id)
            .load::<ControlOutboxRecord>(self)
    }

    fn retry_shard_now(
        &mut self,
        _token: Token<'_>,
        shard: &ShardKey,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        let text = inspect::retry_now(&Names::of(shard.table()));
        let query = raw_sql(text)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now);
        Ok(Prepared(bind_shard(query, shard)).execute(self)? > 0)
    }

    fn shard_depths(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        limit: i64,
    ) -> QueryResult<Vec<ShardDepth>> {
        let text = inspect::shard_depths(&Names::of(table), NULL_TEXT);
        let found = Prepared(raw_sql(text).bind::<BigInt, _>(limit)).load::<ShardDepthRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_depth(table)).collect())
    }

    fn category_depths(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<Vec<CategoryDepth>> {
        let text = inspect::category_depths(&Names::of(table));
        let found = Prepared(raw_sql(text)).load::<CategoryDepthRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_depth(table)).collect())
    }

    fn oldest_due_row(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
    ) -> QueryResult<Option<OldestRow>> {
        let text = inspect::oldest_due(&Names::of(table));
        let found = Prepared(raw_sql(text).bind::<Timestamp, _>(now))
            .get_result::<OldestRowRow>(self)
            .optional()?;
        Ok(found.map(|row| row.into_oldest(table)))
    }

    fn park_rows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        request: &ParkRequest,
    ) -> QueryResult<usize> {
        let names = Names::of(table);
        let columns = names.row_columns();
        // In the caller's transaction: the rows are copied, then deleted (MySQL has no
        // DELETE ... RETURNING to do both in one statement).
        let copy = format!(
            "INSERT INTO {parked} ({columns}, parked_at, attempts, first_failure_at, last_error) \
             SELECT {from_o}, :parked_at, :attempts, :first_failure_at, :error \
             FROM {ids} STRAIGHT_JOIN {rows} o ON o.id = j.id WHERE {shard}",
            parked = names.parked,
            from_o = prefixed(columns, "o"),
            ids = ID_TABLE,
            rows = names.rows,
            shard = shard_is_named(&names, "o"),
        );
        let mut params = shard_params(&request.shard);
        params.extend([
            ("ids", Param::Text(json_ids(&request.ids))),
            ("parked_at", Param::Time(request.parked_at)),
            ("attempts", Param::BigInt(i64::from(request.attempts))),
            ("first_failure_at", Param::Time(request.first_failure_at)),
            ("error", Param::Text(request.error.clone())),
        ]);
        let moved = statement(&copy, &params)?.execute(self)?;
        let delete = format!(
            "DELETE o FROM {ids} STRAIGHT_JOIN {rows} o ON o.id = j.id WHERE {shard}",
            ids = ID_TABLE,
            rows = names.rows,
            shard = shard_is_named(&names, "o"),
        );
        statement(&delete, &params)?.execute(self)?;
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
        let copy = format!(
            "INSERT INTO {rows} ({columns}) SELECT {columns} FROM {parked} WHERE {filter}",
            rows = names.rows,
            parked = names.parked,
            filter = parked::filter(&names, key.is_some()),
        );
        let discard = parked::discard(&names, key.is_some());
        // One transaction (a savepoint inside an open one): the rows leave the parked
        // table as they arrive in the outbox.
        self.transaction(|conn| {
            let query = bind_parked_key(raw_sql(copy), key);
            let moved = Prepared(query).execute(conn)?;
            let query = bind_parked_key(raw_sql(discard), key);
            Prepared(query).execute(conn)?;
            Ok(moved)
        })
    }

    fn discard_parked(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        key: Option<&ParkedKey>,
    ) -> QueryResult<usize> {
        let text = parked::discard(&Names::of(table), key.is_some());
        let query = bind_parked_key(raw_sql(text), key);
        Prepared(query).execute(self)
    }

    fn load_parked(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        limit: i64,
    ) -> QueryResult<Vec<ParkedGroup>> {
        let text = parked::groups(&Names::of(table), NULL_TEXT);
        let found =
            Prepared(raw_sql(text).bind::<BigInt, _>(limit)).load::<ParkedGroupRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_group(table)).collect())
    }

    fn parked_counts(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<ParkedCounts> {
        let names = Names::of(table);
        // `parked::counts` with MySQL's name for a 64-bit integer cast.
        let text = format!(
            "SELECT COUNT(*) AS group_count, CAST(COALESCE(SUM(g.n), 0) AS SIGNED) AS row_count \
             FROM (SELECT COUNT(*) AS n FROM {parked} \
                   GROUP BY {shard}, category, object_identifier) g",
            parked = names.parked,
            shard = names.shard.join(", "),
        );
        Ok(Prepared(raw_sql(text))
            .get_result::<ParkedCountsRow>(self)?
            .into_counts())
    }

    fn notify_rows_written(&mut self, _token: Token<'_>) -> QueryResult<()> {
        // MySQL has no notifications: workers find new rows by polling.
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

    fn outbox_id_bounds(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<Option<(i64, i64)>> {
        let text = rows::id_bounds(&Names::of(table));
        let bounds = Prepared(raw_sql(text)).get_result::<IdBounds>(self)?;
        Ok(bounds.lo.zip(bounds.hi))
    }
}

/// Makes the next transaction READ COMMITTED. As a cached prepared statement (one round
/// trip) where the server prepares it, as MariaDB does; otherwise as text.
fn read_committed_next(conn: &mut MysqlConnection) -> QueryResult<()> {
    const SQL: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
    match Prepared(raw_sql(SQL)).execute(conn) {
        Ok(_) => Ok(()),
        // ER_UNSUPPORTED_PS: "not supported in the prepared statement protocol".
        Err(DieselError::DatabaseError(_, info))
            if info.message().contains("prepared statement") =>
        {
            diesel::connection::SimpleConnection::batch_execute(conn, SQL)
        }
        Err(error) => Err(error),
    }
}

// ---- Statements with named parameters.

/// A value for a named parameter.
#[derive(Clone, Debug)]
enum Param {
    BigInt(i64),
    MaybeBigInt(Option<i64>),
    Text(String),
    Time(NaiveDateTime),
    Bool(bool),
}

type Boxed = RawStatement<'static>;

/// `sql` with its `:name` parameters turned into MySQL's positional `?` (a name may
/// appear more than once), each bound from `params`. The text depends on the table only,
/// so diesel keeps it as a prepared statement.
fn statement(sql: &str, params: &[(&str, Param)]) -> QueryResult<Prepared<Boxed>> {
    let (text, order) = positional(sql);
    let mut query = raw_sql(text);
    for name in order {
        let Some((_, value)) = params.iter().find(|(known, _)| *known == name) else {
            return Err(DieselError::QueryBuilderError(
                format!("no value for the parameter :{name}").into(),
            ));
        };
        query = match value.clone() {
            Param::BigInt(value) => query.bind::<BigInt, _>(value),
            Param::MaybeBigInt(value) => query.bind::<Nullable<BigInt>, _>(value),
            Param::Text(value) => query.bind::<Text, _>(value),
            Param::Time(value) => query.bind::<Timestamp, _>(value),
            Param::Bool(value) => query.bind::<Bool, _>(value),
        };
    }
    Ok(Prepared(query))
}

/// The text with `?` for each `:name` outside quotes, and the names in order.
fn positional(sql: &str) -> (String, Vec<String>) {
    let mut text = String::with_capacity(sql.len());
    let mut names = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        let starts_name = c == ':' && !quoted && chars.peek().is_some_and(char::is_ascii_lowercase);
        if !starts_name {
            quoted ^= c == '\'';
            text.push(c);
            continue;
        }
        let mut name = String::new();
        while let Some(&next) = chars.peek() {
            if !(next.is_ascii_lowercase() || next.is_ascii_digit() || next == '_') {
                break;
            }
            name.push(next);
            chars.next();
        }
        names.push(name);
        text.push('?');
    }
    (text, names)
}

// ---- Pieces of SQL.

/// `a.shard_scope, a.shard_identifier` (the cell name is [`cell_column`]).
fn shard_columns(_names: &Names, alias: &str) -> String {
    format!("{alias}.shard_scope, {alias}.shard_identifier")
}

/// The cell name as a claim row's column.
fn cell_column(names: &Names, alias: &str) -> String {
    names.cell_name_of(alias, NULL_TEXT)
}

/// JSON shards (`source`: a `:param` or a column) read as a table `alias`: `ord` (1, 2,
/// ...), the shard's columns, then `extra` columns in order (see [`shard_json`]).
fn shard_table(names: &Names, source: &str, extra: &[(&str, &str)], alias: &str) -> String {
    let mut columns = vec!["ord FOR ORDINALITY".to_owned()];
    let mut path = 0;
    let mut column = |name: &str, ty: &str| {
        columns.push(format!("{name} {ty} PATH '$[{path}]'"));
        path += 1;
    };
    if names.table == OutboxTable::Control {
        // Bytes, as the table stores them: compared without a collation.
        column("cell_name", "VARBINARY(256)");
    }
    column("shard_scope", "INT");
    column("shard_identifier", "BIGINT");
    for (name, ty) in extra {
        column(name, ty);
    }
    format!(
        "JSON_TABLE({source}, '$[*]' COLUMNS ({columns})) {alias}",
        columns = columns.join(", ")
    )
}

/// Shards and values after each, as [`shard_table`] reads them:
/// `[[scope, identifier, ...], ...]`, the cell name first for control shards.
fn shard_json<'a>(items: impl IntoIterator<Item = (&'a ShardKey, Vec<i64>)>) -> String {
    let rows: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(key, extra)| {
            let shard = key.shard();
            let mut row = Vec::with_capacity(3 + extra.len());
            if let Some(cell) = key.cell_name() {
                row.push(serde_json::Value::from(cell));
            }
            row.push(serde_json::Value::from(shard.scope));
            row.push(serde_json::Value::from(shard.identifier));
            row.extend(extra.into_iter().map(serde_json::Value::from));
            serde_json::Value::Array(row)
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// A lease of the table lists the shard on alias `alias` (a subquery for `EXISTS`): the
/// leases' shard lists read as tables, compared column by column.
fn leased(names: &Names, alias: &str) -> String {
    format!(
        "SELECT 1 FROM outbox_drain_leases l CROSS JOIN {listed} \
         WHERE l.outbox_table = '{rows}' AND {same}",
        listed = shard_table(names, "l.shards", &[], "e"),
        rows = names.rows,
        same = names.same_shard("e", alias),
    )
}

/// `a.c1, a.c2, ...` for a list of columns `c1, c2, ...`.
fn prefixed(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a.shard_scope = :shard_scope AND ...` (the cell name first for control), bound by
/// [`shard_params`].
fn shard_is_named(names: &Names, alias: &str) -> String {
    names
        .shard
        .iter()
        .map(|column| format!("{alias}.{column} = :{column}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A shard's columns as named parameters, for [`shard_is_named`].
fn shard_params(key: &ShardKey) -> Vec<(&'static str, Param)> {
    let shard = key.shard();
    let mut params = vec![
        ("shard_scope", Param::BigInt(i64::from(shard.scope))),
        ("shard_identifier", Param::BigInt(shard.identifier)),
    ];
    if let Some(cell) = key.cell_name() {
        params.push(("cell_name", Param::Text(cell.to_owned())));
    }
    params
}

/// A JSON bind `ids` read as a table `j` of ids.
const ID_TABLE: &str = "JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) j";
/// [`ID_TABLE`] for a statement with `?` placeholders.
const ID_TABLE_POSITIONAL: &str = "JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) j";

/// Ids as a JSON array.
fn json_ids(ids: &[i64]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// The named lock of the shard whose columns are on alias `a`: named locks are the
/// server's, so the name holds the database and the table; hashed, since a name has at
/// most 64 characters. The cell name comes first and the two integers last, so the text
/// hashed names one shard only.
fn shard_lock(names: &Names, alias: &str) -> String {
    let parts = names
        .shard
        .iter()
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CONCAT('outbox-shard:', SHA1(CONCAT_WS('/', DATABASE(), '{rows}', {parts})))",
        rows = names.rows
    )
}

/// The named lock of the worker on connection `connection` (an expression): held while
/// it has a batch, and so while its lease exists.
fn worker_lock(connection: &str) -> String {
    format!("CONCAT('outbox-worker:', SHA1(CONCAT_WS('/', DATABASE(), {connection})))")
}

fn tombstone_table(table: TombstoneTable) -> &'static str {
    match table {
        TombstoneTable::Cell => "cell_tombstones",
        TombstoneTable::Control => "control_tombstones",
    }
}

/// Upserts a failure: every state column but `skipped`.
fn record_failure_sql(names: &Names) -> String {
    let columns: Vec<&str> = STATE_COLUMNS
        .iter()
        .copied()
        .filter(|column| *column != "skipped")
        .collect();
    let updates = columns
        .iter()
        .map(|column| format!("{column} = VALUES({column})"))
        .collect::<Vec<_>>()
        .join(", ");
    let marks = vec!["?"; names.shard.len() + columns.len()].join(", ");
    format!(
        "INSERT INTO {states} ({shard}, {columns}) VALUES ({marks}) \
         ON DUPLICATE KEY UPDATE {updates}",
        states = names.states,
        shard = names.shard.join(", "),
        columns = columns.join(", "),
    )
}

// ---- Claims.

/// The candidates of a periodic claim (see [`super::scan`]): one statement for the
/// oldest rows and the due schedules, then the states of the chosen shards that have one.
fn due_candidates(
    conn: &mut MysqlConnection,
    table: OutboxTable,
    scan: &DueScan,
    now: NaiveDateTime,
) -> QueryResult<super::scan::Scanned> {
    let names = Names::of(table);
    let text = super::scan::statement(&names, &|name| format!(":{name}"), &|alias| {
        cell_column(&names, alias)
    });
    let rows = statement(
        &text,
        &[
            ("from_id", Param::BigInt(scan.from_id)),
            ("to_id", Param::BigInt(scan.to_id)),
            ("scan_rows", Param::BigInt(scan.scan_rows)),
            ("now", Param::Time(now)),
            ("ignore", Param::Bool(scan.ignore_schedule)),
            ("max_shards", Param::BigInt(scan.max_shards)),
        ],
    )?
    .load::<super::scan::ScanRow>(conn)?;
    let mut found = super::scan::choose(table, rows, scan);
    let keys = found.keys_with_state();
    if !keys.is_empty() {
        let states = conn.load_shard_states(Token::new(), table, Some(&keys))?;
        found.set_states(states);
    }
    Ok(found)
}

/// Whether this connection got each named lock: `ord` 1, 2, ... for the shards in order,
/// 0 for the worker's own.
#[derive(diesel::QueryableByName)]
struct LockRow {
    #[diesel(sql_type = BigInt)]
    ord: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    locked: Option<i64>,
}

/// Claims the candidates of a claim statement's rows that no other worker holds: their
/// named locks and the worker's lock in one statement, then the lease, committed (the
/// caller is in autocommit) before any receiver runs.
fn take(
    conn: &mut MysqlConnection,
    table: OutboxTable,
    rows: Vec<ClaimRow>,
    now: NaiveDateTime,
    lease_seconds: i64,
) -> QueryResult<Claim> {
    let mut claim = Claim::empty(table);
    let mut candidates = Vec::new();
    for row in rows {
        claim.scanned_rows = row.scanned_rows;
        claim.last_scanned_id = row.last_scanned_id;
        if let Some(key) = row.shard(table) {
            candidates.push(ClaimedShard {
                state: row.state(&key),
                key,
                bound: row.bound.unwrap_or(i64::MIN),
            });
        }
    }
    take_candidates(conn, claim, candidates, now, lease_seconds)
}

/// [`take`] for candidates already read: `claim` carries the scan's figures.
fn take_candidates(
    conn: &mut MysqlConnection,
    mut claim: Claim,
    candidates: Vec<ClaimedShard>,
    now: NaiveDateTime,
    lease_seconds: i64,
) -> QueryResult<Claim> {
    let table = claim.table;
    if candidates.is_empty() {
        return Ok(claim);
    }
    let names = Names::of(table);
    let text = format!(
        "SELECT j.ord AS ord, GET_LOCK({shard}, 0) AS locked FROM {wanted} \
         UNION ALL SELECT 0, GET_LOCK({worker}, 0)",
        shard = shard_lock(&names, "j"),
        wanted = shard_table(&names, ":shards", &[], "j"),
        worker = worker_lock("CONNECTION_ID()"),
    );
    let json = shard_json(candidates.iter().map(|shard| (&shard.key, Vec::new())));
    let locks = statement(&text, &[("shards", Param::Text(json))])?.load::<LockRow>(conn)?;
    let mut held = vec![false; candidates.len()];
    let mut worker = false;
    for lock in locks {
        let got = lock.locked == Some(1);
        match usize::try_from(lock.ord) {
            Ok(0) => worker = got,
            Ok(ord) => {
                if let Some(slot) = held.get_mut(ord - 1) {
                    *slot = got;
                }
            }
            Err(_) => {}
        }
    }
    let (mine, busy): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .zip(held)
        .partition(|(_, held)| *held);
    let mine: Vec<ClaimedShard> = mine.into_iter().map(|(shard, _)| shard).collect();
    claim.busy += busy.len();
    let keys: Vec<&ShardKey> = mine.iter().map(|shard| &shard.key).collect();
    if mine.is_empty() || !worker {
        if !worker {
            // Another session holds this connection's name: impossible unless two
            // servers share a name space; claim nothing rather than write a lease no
            // lock protects.
            tracing::error!("a drain could not take its worker lock; no shard claimed");
            claim.busy += mine.len();
        }
        if !keys.is_empty() || worker {
            release_locks(conn, table, &keys, worker)?;
        }
        return Ok(claim);
    }
    let lease = random_lease_id();
    let written = statement(
        "INSERT INTO outbox_drain_leases (id, outbox_table, shards, taken_at, expires_at, holder) \
         VALUES (:id, :table, :shards, :now, :expires, CONNECTION_ID())",
        &[
            ("id", Param::BigInt(lease)),
            ("table", Param::Text(table.name().to_owned())),
            (
                "shards",
                Param::Text(encode_shards(
                    &mine
                        .iter()
                        .map(|shard| shard.key.clone())
                        .collect::<Vec<_>>(),
                )),
            ),
            ("now", Param::Time(now)),
            (
                "expires",
                Param::Time(now + chrono::Duration::seconds(lease_seconds)),
            ),
        ],
    )
    .and_then(|query| query.execute(conn));
    if let Err(error) = written {
        // Whatever happens to the release, the error to report is the lease's.
        let _ = release_locks(conn, table, &keys, true);
        return Err(error);
    }
    claim.shards = mine;
    claim.lease = Some(lease);
    Ok(claim)
}

/// Releases the named locks of `keys`, and the worker's own if `worker`.
fn release_locks(
    conn: &mut MysqlConnection,
    table: OutboxTable,
    keys: &[&ShardKey],
    worker: bool,
) -> QueryResult<()> {
    let names = Names::of(table);
    let mut text = format!(
        "SELECT RELEASE_LOCK({shard}) AS value FROM {wanted}",
        shard = shard_lock(&names, "j"),
        wanted = shard_table(&names, ":shards", &[], "j"),
    );
    if worker {
        text.push_str(" UNION ALL SELECT RELEASE_LOCK(");
        text.push_str(&worker_lock("CONNECTION_ID()"));
        text.push(')');
    }
    let json = shard_json(keys.iter().map(|key| (*key, Vec::new())));
    statement(&text, &[("shards", Param::Text(json))])?.load::<MaybeBigInt>(conn)?;
    Ok(())
}

fn delete_lease(conn: &mut MysqlConnection, lease: i64) -> QueryResult<usize> {
    statement(
        "DELETE FROM outbox_drain_leases WHERE id = :lease",
        &[("lease", Param::BigInt(lease))],
    )?
    .execute(conn)
}

/// A lease id no other worker picks: the lease is written with it, so the worker need
/// not ask for an auto-increment value (a round trip). 63 random bits: a collision is a
/// duplicate-key error, never a shared lease.
fn random_lease_id() -> i64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut hasher);
    std::thread::current().id().hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    i64::try_from(hasher.finish() >> 1).unwrap_or(i64::MAX)
}

// ---- Windows.

/// A row of a window join: the shard (`ord`), the row after its window if it is deeper
/// than the window (then no row), or one of its rows (or none if it has none).
#[derive(diesel::QueryableByName)]
struct WindowRow {
    #[diesel(sql_type = BigInt)]
    ord: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    cut: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    id: Option<i64>,
    #[diesel(sql_type = Nullable<Integer>)]
    shard_scope: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    shard_identifier: Option<i64>,
    #[diesel(sql_type = Nullable<Integer>)]
    category: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    object_identifier: Option<i64>,
    #[diesel(sql_type = Nullable<PayloadJson>)]
    payload: Option<JsonPayload>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    scheduled_from: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    scheduled_for: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    date_added: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    cell_name: Option<String>,
}

impl WindowRow {
    /// The row's message, if it carries one.
    fn into_message(self, table: OutboxTable) -> Option<OutboxMessage> {
        Some(OutboxMessage {
            table,
            id: self.id?,
            category: self.category?,
            shard: Shard {
                scope: self.shard_scope?,
                identifier: self.shard_identifier?,
            },
            object_identifier: self.object_identifier?,
            payload: self.payload,
            cell_name: match table {
                OutboxTable::Cell => None,
                OutboxTable::Control => Some(self.cell_name?),
            },
            date_added: self.date_added?,
            scheduled_from: self.scheduled_from?,
            scheduled_for: self.scheduled_for?,
        })
    }
}

/// The rows of a deep shard below `cut` (exactly a window): one range of its index.
fn load_below(
    conn: &mut MysqlConnection,
    names: &Names,
    shard: &ShardKey,
    cut: i64,
) -> QueryResult<Vec<OutboxMessage>> {
    let text = format!(
        "SELECT {columns} FROM {rows} o WHERE {shard} AND o.id < ? ORDER BY o.id",
        columns = names.message_columns("o", NULL_TEXT),
        rows = names.rows,
        shard = names.shard_is("o."),
    );
    let query = bind_shard(raw_sql(text), shard).bind::<BigInt, _>(cut);
    let found = Prepared(query).load::<MessageRow>(conn)?;
    Ok(found
        .into_iter()
        .map(|row| row.into_message(names.table))
        .collect())
}

// ---- Writes.

/// The write path's fresh object identifier (see `next_object_identifier`).
pub(crate) fn next_object_identifier_query() -> Prepared<RawStatement<'static>> {
    Prepared(raw_sql("SELECT CAST(UUID_SHORT() AS SIGNED) AS value"))
}

/// How to size the rows of one outbox table.
pub(crate) struct RowSizes<R> {
    table: OutboxTable,
    binds: usize,
    bytes: fn(&R) -> usize,
    identity: fn(&R) -> (i32, i64),
}

/// The cell table's rows as [`plan_statements`] sizes them.
pub(crate) const CELL_SIZES: RowSizes<NewCellOutbox> = RowSizes {
    table: OutboxTable::Cell,
    binds: NewCellOutbox::BINDS,
    bytes: NewCellOutbox::variable_bytes,
    identity: NewCellOutbox::identity,
};

/// The control table's rows as [`plan_statements`] sizes them.
pub(crate) const CONTROL_SIZES: RowSizes<NewControlOutbox> = RowSizes {
    table: OutboxTable::Control,
    binds: NewControlOutbox::BINDS,
    bytes: NewControlOutbox::variable_bytes,
    identity: NewControlOutbox::identity,
};

/// A statement of at most this size is sent without asking the server's limit: no MySQL
/// or MariaDB is configured below it in practice (the defaults are 16 to 64 MiB, and
/// were 1 MiB at the least).
const UNASKED_STATEMENT_BYTES: usize = 64 * 1024;

/// What one row adds to an INSERT besides its variable-size values: its binds' types
/// and fixed-size values, and its `(?, ...)` in the text (about 115 bytes, rounded up).
const ROW_BYTES: usize = 128;

/// What a statement adds besides its rows.
const STATEMENT_BYTES: usize = 1024;

/// The write path's INSERT of buffered outbox rows into `$table` on MySQL, for both
/// executors (sync: `[]` with diesel's `RunQueryDsl` in scope; diesel-async: `[.await]`
/// with its own): the statements [`plan_statements`] cuts, each one INSERT (one row: a
/// fixed statement, which diesel caches).
macro_rules! insert_mysql_rows {
    ($conn:expr, $rows:expr, $sized:expr, $table:ident, $values:ident, [$($await:tt)*]) => {{
        use $crate::row::schema::$table;
        let (rows, sized) = ($rows, $sized);
        let budget = if $crate::backend::mysql::asks_packet_limit(rows, sized) {
            $crate::backend::mysql::packet_budget(
                $crate::backend::mysql::max_allowed_packet_query()
                    .get_result::<$crate::backend::sql::BigIntValue>(&mut *$conn)
                    $($await)*?,
            )
        } else {
            usize::MAX
        };
        for range in $crate::backend::mysql::plan_statements(rows, sized, budget)? {
            let _: usize = match &rows[range] {
                [row] => diesel::insert_into($table::table)
                    .values($values::of(row))
                    .execute(&mut *$conn)
                    $($await)*?,
                chunk => diesel::insert_into($table::table)
                    .values(chunk.iter().map($values::of).collect::<Vec<_>>())
                    .execute(&mut *$conn)
                    $($await)*?,
            };
        }
        Ok(())
    }};
}
pub(crate) use insert_mysql_rows;

/// Whether `rows` may exceed the size sent without asking the server's limit.
pub(crate) fn asks_packet_limit<R>(rows: &[R], sized: &RowSizes<R>) -> bool {
    let total = STATEMENT_BYTES
        + rows
            .iter()
            .map(|row| ROW_BYTES + (sized.bytes)(row))
            .sum::<usize>();
    total > UNASKED_STATEMENT_BYTES
}

/// The statements (ranges of `rows`) that fit the bind limit and `budget` bytes each; a
/// row that cannot fit in a statement alone is an [`Error::PacketTooLarge`] before
/// anything is sent (the server would drop the connection instead).
pub(crate) fn plan_statements<R>(
    rows: &[R],
    sized: &RowSizes<R>,
    budget: usize,
) -> QueryResult<Vec<std::ops::Range<usize>>> {
    let sizes: Vec<usize> = rows
        .iter()
        .map(|row| ROW_BYTES + (sized.bytes)(row))
        .collect();
    if let Some((row, &bytes)) = rows.iter().zip(&sizes).find(|(_, bytes)| **bytes > budget) {
        let (category, object_identifier) = (sized.identity)(row);
        return Err(Error::PacketTooLarge {
            table: sized.table,
            category,
            object_identifier,
            bytes: bytes + STATEMENT_BYTES,
            max_allowed_packet: budget.saturating_add(STATEMENT_BYTES),
        }
        .into_diesel());
    }
    let per_statement = (MysqlConnection::MAX_BIND_PARAMS / sized.binds.max(1)).max(1);
    let (mut plan, mut start) = (Vec::new(), 0);
    while start < rows.len() {
        let (mut end, mut used) = (start, 0usize);
        while end < rows.len() && end - start < per_statement && used + sizes[end] <= budget {
            used += sizes[end];
            end += 1;
        }
        plan.push(start..end);
        start = end;
    }
    Ok(plan)
}

/// The server's `max_allowed_packet`.
pub(crate) fn max_allowed_packet_query() -> Prepared<RawStatement<'static>> {
    Prepared(raw_sql(
        "SELECT CAST(@@max_allowed_packet AS SIGNED) AS value",
    ))
}

/// What a statement's rows may take of the server's `max_allowed_packet`.
pub(crate) fn packet_budget(limit: BigIntValue) -> usize {
    usize::try_from(limit.value)
        .unwrap_or(usize::MAX)
        .saturating_sub(STATEMENT_BYTES)
}

/// `INSERT ... ON DUPLICATE KEY UPDATE c = VALUES(c), ...`: a replicated model's upsert
/// on MySQL, which the derive generates. diesel marks its own MySQL upsert unsafe to
/// cache; this one is cached wherever its INSERT is (one row), and `VALUES(c)` is read by
/// MySQL 8 and MariaDB alike. Like every `ON DUPLICATE KEY`, it updates the row that any
/// unique key of the table finds, not only the primary key.
#[doc(hidden)]
#[derive(Debug)]
pub struct MysqlUpsert<I> {
    insert: I,
    columns: &'static [&'static str],
    key: &'static str,
}

/// `insert` as an upsert that sets `columns` (SQL names) from the inserted values; with
/// no columns it sets the key to itself (nothing changes).
#[doc(hidden)]
pub fn mysql_upsert<I>(
    insert: I,
    columns: &'static [&'static str],
    key: &'static str,
) -> MysqlUpsert<I> {
    MysqlUpsert {
        insert,
        columns,
        key,
    }
}

impl<I: QueryFragment<Mysql>> QueryFragment<Mysql> for MysqlUpsert<I> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        self.insert.walk_ast(out.reborrow())?;
        out.push_sql(" ON DUPLICATE KEY UPDATE ");
        if self.columns.is_empty() {
            out.push_identifier(self.key)?;
            out.push_sql(" = ");
            out.push_identifier(self.key)?;
        }
        for (index, column) in self.columns.iter().enumerate() {
            if index > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
            out.push_sql(" = VALUES(");
            out.push_identifier(column)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<I> QueryId for MysqlUpsert<I> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<I, C> RunQueryDsl<C> for MysqlUpsert<I> {}

// ---- Setup.

/// A library table's engine and its text columns in another character set.
#[derive(diesel::QueryableByName)]
struct TableSetup {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    engine: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    other_charset: Option<String>,
}

/// Checks, after migrating, that every table of the library is InnoDB and utf8mb4, as
/// the migrations create them: a DBA's `ALTER`, or a server that substitutes another
/// engine, would otherwise break the outbox without an error (MyISAM has neither
/// transactions nor row locks; another character set refuses or mangles 4-byte
/// characters in payloads).
fn check_tables(conn: &mut MysqlConnection) -> Result<()> {
    let listed = TABLES
        .iter()
        .map(|table| format!("'{table}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "SELECT CAST(t.TABLE_NAME AS CHAR) AS table_name, CAST(t.ENGINE AS CHAR) AS engine, \
             (SELECT CAST(GROUP_CONCAT(c.COLUMN_NAME ORDER BY c.ORDINAL_POSITION) AS CHAR) \
              FROM information_schema.COLUMNS c \
              WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME \
                AND c.CHARACTER_SET_NAME IS NOT NULL AND c.CHARACTER_SET_NAME <> 'utf8mb4') \
             AS other_charset \
         FROM information_schema.TABLES t \
         WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME IN ({listed}) \
         ORDER BY t.TABLE_NAME"
    );
    let tables = raw_sql(text).load::<TableSetup>(conn)?;
    for table in tables {
        let engine = table.engine.unwrap_or_default();
        if !engine.eq_ignore_ascii_case("InnoDB") {
            return Err(Error::MysqlTableSetup {
                fix: format!("ALTER TABLE {} ENGINE = InnoDB", table.table_name),
                table: table.table_name,
                problem: format!(
                    "uses the {engine} engine, not InnoDB: outbox rows would not commit or \
                     roll back with the writes they describe, and shards could not be locked"
                ),
            });
        }
        if let Some(columns) = table.other_charset {
            return Err(Error::MysqlTableSetup {
                fix: format!(
                    "ALTER TABLE {} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                    table.table_name
                ),
                table: table.table_name,
                problem: format!(
                    "has text columns ({columns}) in a character set other than utf8mb4: \
                     payloads and names with 4-byte characters would be refused or mangled"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_become_positional_outside_quotes() {
        let (text, names) =
            positional("SELECT ':not' , x FROM t WHERE a = :now AND b < :now AND c = :max_2");
        assert_eq!(
            text,
            "SELECT ':not' , x FROM t WHERE a = ? AND b < ? AND c = ?"
        );
        assert_eq!(names, vec!["now", "now", "max_2"]);
        let (text, names) = positional("'2016-08-01 00:00:00' :a");
        assert_eq!(text, "'2016-08-01 00:00:00' ?");
        assert_eq!(names, vec!["a"]);
    }

    #[test]
    fn shards_travel_as_json_rows() {
        let cell = ShardKey::Cell(Shard {
            scope: 1,
            identifier: -2,
        });
        let control = ShardKey::Control {
            cell_name: "eu \"1\"".to_owned(),
            shard: Shard {
                scope: 3,
                identifier: 4,
            },
        };
        assert_eq!(
            shard_json([(&cell, vec![i64::MAX]), (&control, Vec::new())]),
            r#"[[1,-2,9223372036854775807],["eu \"1\"",3,4]]"#
        );
    }

    #[test]
    fn lease_ids_differ() {
        let ids: HashSet<i64> = (0..1000).map(|_| random_lease_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| *id >= 0));
    }
}
