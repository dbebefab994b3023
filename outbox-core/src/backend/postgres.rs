//! PostgreSQL: the production backend.
//!
//! A claimed shard is held with a session advisory lock on a hash of its key: taken
//! without waiting (a busy shard is left to its holder), kept across the lease's commit
//! and the delivery's, released when the batch is done, and dropped by the server if the
//! worker's connection dies. Sets of shards, rows and keys travel as arrays, so a batch of
//! hundreds of shards costs a handful of round trips.

use chrono::NaiveDateTime;
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
use diesel::{Connection, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::claim::{
    decode_shards, Claim, ClaimedShard, DueFound, DueScan, KeyAfterWindow, Lease, LeaseInfo,
    RowIdentity, WindowRequest,
};
use super::parked::{ParkRequest, ParkedKey};
use super::shared::{bind_parked_key, bind_scan, bind_shard, shared_statements, NULL_TEXT};
use super::sql::{
    numbered, numbered_from, parked, BigIntValue, ClaimRow, IdentityRow, LeaseInfoRow, LeaseRow,
    MessageRow, Names, Prepared, TextValue,
};
use super::{OutboxConnection, Sealed};
use crate::key::error::{Error, Result};
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;
use crate::row::record::OutboxMessage;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

impl Sealed for PgConnection {}

/// The write path's fresh object identifier (see `next_object_identifier`).
pub(crate) fn next_object_identifier_query() -> Prepared<diesel::query_builder::SqlQuery> {
    Prepared(diesel::sql_query(
        "SELECT nextval('diesel_outbox_object_ids') AS value",
    ))
}

/// The write path's wake-up of listening workers (see `notify_rows_written`). The payload
/// names the schema, so that outboxes in several schemas of one database (channels are per
/// database) wake only their own workers. PostgreSQL folds identical notifications of one
/// transaction into one.
pub(crate) fn notify_query() -> Prepared<diesel::query_builder::SqlQuery> {
    Prepared(diesel::sql_query(format!(
        "SELECT pg_notify('{NOTIFY_CHANNEL}', COALESCE(current_schema(), ''))"
    )))
}

impl OutboxConnection for PgConnection {
    /// The wire protocol counts bind parameters in 16 bits.
    const MAX_BIND_PARAMS: usize = 65_535;
    const BACKEND_NAME: &'static str = "PostgreSQL";
    const LEASED_DELIVERY_BY_DEFAULT: bool = false;

    fn run_outbox_migrations(&mut self) -> Result<()> {
        self.run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(Error::Migration)
    }

    shared_statements!(text = numbered_text);

    fn begin_context_transaction(&mut self, _token: Token<'_>) -> QueryResult<()> {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        AnsiTransactionManager::begin_transaction(self)
    }

    fn next_object_identifier(&mut self, _token: Token<'_>) -> QueryResult<i64> {
        next_object_identifier_query()
            .get_result::<BigIntValue>(self)
            .map(|row| row.value)
    }

    fn check_worker_connection(&mut self, _token: Token<'_>) -> QueryResult<()> {
        Ok(())
    }

    fn drain_transaction<T, E, F>(&mut self, _token: Token<'_>, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>,
    {
        // The advisory locks do the excluding; READ COMMITTED lets each statement see
        // the latest committed rows.
        self.transaction(f)
    }

    fn abandoned_leases(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        _now: NaiveDateTime,
        own: Option<i64>,
    ) -> QueryResult<Vec<Lease>> {
        // A live worker holds its lease's lock from the statement that wrote the lease
        // until after the commit that deleted it: a lease whose lock we get is abandoned.
        // The lock is let go at once: a drain recovering the lease deletes its row in
        // the transaction that backs its shards off, so another drain that finds it
        // meanwhile waits on that row (in `forget_lease`) rather than skip it and claim
        // its shards back to the receiver that killed their worker. Our own lease is left
        // out: a session's advisory locks are re-entrant, so its lock would be "got".
        let text = format!(
            "WITH tried AS MATERIALIZED (SELECT id, shards, pg_try_advisory_lock({key}) AS got \
                 FROM outbox_drain_leases WHERE outbox_table = $1 \
                 AND id IS DISTINCT FROM $2) \
             SELECT id, shards FROM tried \
             WHERE CASE WHEN got THEN pg_advisory_unlock({key}) ELSE FALSE END ORDER BY id",
            key = lease_key("id")
        );
        let found = Prepared(
            diesel::sql_query(text)
                .bind::<Text, _>(table.name())
                .bind::<Nullable<BigInt>, _>(own),
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
        _now: NaiveDateTime,
    ) -> QueryResult<Vec<LeaseInfo>> {
        // Liveness is the lease's lock: the session holding it is its worker. pg_locks
        // splits a bigint advisory key into classid (high half) and objid (low half).
        let text = format!(
            "SELECT l.id, l.shards, l.taken_at, l.expires_at, h.pid::int8 AS holder, \
                 (h.pid IS NOT NULL)::int4::int8 AS live \
             FROM outbox_drain_leases l LEFT JOIN LATERAL (\
                 SELECT k.pid FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted \
                 AND k.objsubid = 1 AND k.database = (SELECT oid FROM pg_database \
                     WHERE datname = current_database()) \
                 AND ((k.classid::int8 << 32) | k.objid::int8) = {key} LIMIT 1) h ON TRUE \
             WHERE l.outbox_table = $1 ORDER BY l.id",
            key = lease_key("l.id")
        );
        let found = Prepared(diesel::sql_query(text).bind::<Text, _>(table.name()))
            .load::<LeaseInfoRow>(self)?;
        Ok(found.into_iter().map(|row| row.into_info(table)).collect())
    }

    fn forget_lease(&mut self, _token: Token<'_>, lease: i64) -> QueryResult<bool> {
        let deleted = Prepared(
            diesel::sql_query("DELETE FROM outbox_drain_leases WHERE id = $1")
                .bind::<BigInt, _>(lease),
        )
        .execute(self)?;
        Ok(deleted > 0)
    }

    fn claim_due_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<Claim> {
        let names = Names::of(table);
        let text = claim_statement(
            &names,
            &due_scan(&names),
            &due_candidates(&names, "$3"),
            &Tail {
                bound: UNBOUNDED,
                now: "$4",
                lease_seconds: "$7",
                max: "$6",
            },
        );
        let query = bind_scan(diesel::sql_query(text).into_boxed(), scan, now)
            .bind::<BigInt, _>(scan.lease_seconds);
        let rows = Prepared(query).load::<ClaimRow>(self)?;
        Ok(claim_from_rows(table, rows))
    }

    fn due_shards(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<DueFound> {
        // Nothing is claimed: the rows are grouped in the process (see `scan`), from a
        // statement simpler to plan and run than the claim's.
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
            format!("${}", index + 1)
        };
        let text = super::scan::statement(&names, &param, &|alias| {
            names.cell_name_of(alias, NULL_TEXT)
        });
        let query = bind_scan(diesel::sql_query(text).into_boxed(), scan, now);
        let rows = Prepared(query).load::<super::scan::ScanRow>(self)?;
        let found = super::scan::choose(table, rows, scan);
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
        // Binds: $1 now, $2 the lease's seconds. Unlike a failing shard, an isolated one
        // waits for its schedule even when new rows arrive: each attempt may cost a
        // process, and a shard still being written to would otherwise crash a worker per
        // new row. A shard listed in a lease is left alone even when its lock is free:
        // its worker died and the lease is not recovered yet (the recovery backs it off
        // and deletes the lease in one transaction); taking it now would let the receiver
        // that killed that worker kill this one too. The leases are read only when an
        // isolated shard is due (rarely), once; among the 64 due first, at most one per
        // worker can be leased (an isolated shard is claimed alone).
        let candidates = format!(
            "due_isolated AS MATERIALIZED (\
                 SELECT {st_shard}, st.scheduled_for FROM {states} st \
                 WHERE st.isolated AND NOT st.skipped AND st.scheduled_for <= $1 \
                 ORDER BY st.scheduled_for LIMIT 64), \
             leased AS MATERIALIZED (\
                 SELECT e.value AS shard FROM outbox_drain_leases l \
                 CROSS JOIN LATERAL jsonb_array_elements(l.shards::jsonb) e \
                 WHERE l.outbox_table = '{rows}' AND EXISTS (SELECT 1 FROM due_isolated)), \
             candidates AS MATERIALIZED (\
                 SELECT {d_shard}, 0::int8 AS first_id FROM due_isolated d \
                 WHERE NOT EXISTS (SELECT 1 FROM leased x \
                     WHERE x.shard = jsonb_build_array({d_shard})) \
                 ORDER BY d.scheduled_for LIMIT 1)",
            st_shard = names.shard_of("st"),
            d_shard = names.shard_of("d"),
            states = names.states,
            rows = names.rows,
        );
        let text = claim_statement(
            &names,
            NOTHING_SCANNED,
            &candidates,
            &Tail {
                bound: UNBOUNDED,
                now: "$1",
                lease_seconds: "$2",
                max: "1",
            },
        );
        let query = diesel::sql_query(text)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(lease_seconds);
        let rows = Prepared(query).load::<ClaimRow>(self)?;
        Ok(claim_from_rows(table, rows))
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
        let shards: Vec<&ShardKey> = shards.iter().filter(|s| s.table() == table).collect();
        if shards.is_empty() {
            return Ok(Claim::empty(table));
        }
        let (scopes, identifiers, cells) = shard_arrays(&shards);
        let wanted = match table {
            OutboxTable::Cell => "SELECT w.shard_scope, w.shard_identifier, w.ord AS first_id \
                 FROM unnest($1::int4[], $2::int8[]) WITH ORDINALITY \
                 AS w(shard_scope, shard_identifier, ord)"
                .to_owned(),
            OutboxTable::Control => "SELECT w.cell_name, w.shard_scope, w.shard_identifier, \
                 w.ord AS first_id \
                 FROM unnest($3::text[], $1::int4[], $2::int8[]) WITH ORDINALITY \
                 AS w(cell_name, shard_scope, shard_identifier, ord)"
                .to_owned(),
        };
        // Binds: $1 scopes, $2 identifiers, $3 cell names, $4 now, $5 the lease's
        // seconds. A shard with stored state is failing or skipped, and a shard a lease
        // lists is being delivered or was when its worker died (its lock died with it):
        // the flush leaves them to the periodic drain rather than make the writer pay for
        // another's trouble, or run a receiver that killed a worker.
        let candidates = format!(
            "candidates AS MATERIALIZED (SELECT * FROM ({wanted}) w \
             WHERE NOT EXISTS (SELECT 1 FROM {states} st WHERE {same}) \
               AND NOT EXISTS (SELECT 1 FROM outbox_drain_leases l \
                   CROSS JOIN LATERAL jsonb_array_elements(l.shards::jsonb) e(shard) \
                   WHERE l.outbox_table = '{rows}' AND e.shard = jsonb_build_array({json})))",
            states = names.states,
            same = names.same_shard("st", "w"),
            rows = names.rows,
            json = names.shard_of("w"),
        );
        let bound = format!(
            "(SELECT MAX(o.id) FROM {rows} o WHERE {same})",
            rows = names.rows,
            same = names.same_shard("o", "p")
        );
        let text = claim_statement(
            &names,
            NOTHING_SCANNED,
            &candidates,
            &Tail {
                bound: &bound,
                now: "$4",
                lease_seconds: "$5",
                max: "2147483647",
            },
        );
        let query = diesel::sql_query(text)
            .bind::<Array<Integer>, _>(scopes)
            .bind::<Array<BigInt>, _>(identifiers)
            .bind::<Array<Text>, _>(cells)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(lease_seconds);
        // A shard emptied since the writer committed comes back with no rows to load
        // (bound `i64::MIN`); it is released with the rest.
        let rows = Prepared(query).load::<ClaimRow>(self)?;
        Ok(claim_from_rows(table, rows))
    }

    fn release_claim(&mut self, _token: Token<'_>, claim: &Claim) -> QueryResult<()> {
        let names = Names::of(claim.table);
        let held: Vec<&ShardKey> = claim.shards.iter().map(|shard| &shard.key).collect();
        let (scopes, identifiers, cells) = shard_arrays(&held);
        let keys = match claim.table {
            OutboxTable::Cell => format!(
                "SELECT {key} AS k FROM unnest($1::int4[], $2::int8[]) AS p(shard_scope, shard_identifier)",
                key = shard_key_expr(&names, "p")
            ),
            OutboxTable::Control => format!(
                "SELECT {key} AS k FROM unnest($3::text[], $1::int4[], $2::int8[]) \
                 AS p(cell_name, shard_scope, shard_identifier)",
                key = shard_key_expr(&names, "p")
            ),
        };
        // $4: the lease whose lock goes; $5: the lease row to delete, unless the delivery's
        // commit did.
        let text = format!(
            "WITH gone AS (DELETE FROM outbox_drain_leases WHERE id = $5) \
             SELECT COUNT(*) AS value FROM ({keys} \
                 UNION ALL SELECT {lease} FROM (SELECT $4::int8 AS id) l WHERE l.id IS NOT NULL) keys \
             WHERE pg_advisory_unlock(keys.k)",
            lease = lease_key("l.id")
        );
        let query = diesel::sql_query(text)
            .bind::<Array<Integer>, _>(scopes)
            .bind::<Array<BigInt>, _>(identifiers)
            .bind::<Array<Text>, _>(cells)
            .bind::<Nullable<BigInt>, _>(claim.lease)
            .bind::<Nullable<BigInt>, _>(claim.lease.filter(|_| !claim.lease_deleted));
        Prepared(query).get_result::<BigIntValue>(self)?;
        Ok(())
    }

    fn load_windows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        shards: &[WindowRequest],
        window: i64,
        max_rows: i64,
    ) -> QueryResult<Vec<OutboxMessage>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let names = Names::of(table);
        let keys: Vec<&ShardKey> = shards.iter().map(|request| &request.shard).collect();
        let (scopes, identifiers, cells) = shard_arrays(&keys);
        let bounds: Vec<i64> = shards.iter().map(|request| request.bound).collect();
        let wanted = match table {
            OutboxTable::Cell => {
                "unnest($1::int4[], $2::int8[], $4::int8[]) \
                 AS w(shard_scope, shard_identifier, bound)"
            }
            OutboxTable::Control => {
                "unnest($3::text[], $1::int4[], $2::int8[], $4::int8[]) \
                 AS w(cell_name, shard_scope, shard_identifier, bound)"
            }
        };
        // LATERAL with LIMIT: each shard's window is its own index range scan, shard after
        // shard in the order given (a nested loop over the unnest), and the outer LIMIT
        // stops reading when the batch has its rows.
        let text = format!(
            "SELECT {columns} FROM {wanted} CROSS JOIN LATERAL (\
                 SELECT * FROM {rows} o WHERE {same} AND o.id <= w.bound \
                 ORDER BY o.id LIMIT $5) o LIMIT $6",
            columns = names.message_columns("o", NULL_TEXT),
            rows = names.rows,
            same = names.same_shard("o", "w"),
        );
        let query = diesel::sql_query(text)
            .bind::<Array<Integer>, _>(scopes)
            .bind::<Array<BigInt>, _>(identifiers)
            .bind::<Array<Text>, _>(cells)
            .bind::<Array<BigInt>, _>(bounds)
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(max_rows);
        let found = Prepared(query).load::<MessageRow>(self)?;
        Ok(found
            .into_iter()
            .map(|row| row.into_message(table))
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
            "SELECT {columns} FROM {rows} o WHERE o.id = ANY($1) ORDER BY o.id",
            columns = names.message_columns("o", NULL_TEXT),
            rows = names.rows,
        );
        let found = Prepared(diesel::sql_query(text).bind::<Array<BigInt>, _>(ids.to_vec()))
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
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names = Names::of(table);
        let shards: Vec<&ShardKey> = keys.iter().map(|key| &key.shard).collect();
        let (scopes, identifiers, cells) = shard_arrays(&shards);
        let categories: Vec<i32> = keys.iter().map(|key| key.category).collect();
        let objects: Vec<i64> = keys.iter().map(|key| key.object_identifier).collect();
        let after: Vec<i64> = keys.iter().map(|key| key.after_id).collect();
        let bound: Vec<i64> = keys.iter().map(|key| key.bound).collect();
        let wanted = match table {
            OutboxTable::Cell => {
                "unnest($1::int4[], $2::int8[], $4::int4[], $5::int8[], \
                 $6::int8[], $7::int8[]) AS k(shard_scope, shard_identifier, category, \
                 object_identifier, after_id, bound)"
            }
            OutboxTable::Control => {
                "unnest($3::text[], $1::int4[], $2::int8[], $4::int4[], \
                 $5::int8[], $6::int8[], $7::int8[]) AS k(cell_name, shard_scope, \
                 shard_identifier, category, object_identifier, after_id, bound)"
            }
        };
        let text = format!(
            "SELECT {columns} FROM {wanted} JOIN {rows} o ON {same} \
             AND o.category = k.category AND o.object_identifier = k.object_identifier \
             AND o.id > k.after_id AND o.id <= k.bound ORDER BY o.id",
            columns = names.identity_columns("o", NULL_TEXT),
            rows = names.rows,
            same = names.same_shard("o", "k"),
        );
        let query = diesel::sql_query(text)
            .bind::<Array<Integer>, _>(scopes)
            .bind::<Array<BigInt>, _>(identifiers)
            .bind::<Array<Text>, _>(cells)
            .bind::<Array<Integer>, _>(categories)
            .bind::<Array<BigInt>, _>(objects)
            .bind::<Array<BigInt>, _>(after)
            .bind::<Array<BigInt>, _>(bound);
        let found = Prepared(query).load::<IdentityRow>(self)?;
        Ok(found
            .into_iter()
            .map(|row| row.into_identity(table))
            .collect())
    }

    fn unreadable_rows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        scan_rows: i64,
    ) -> QueryResult<Vec<RowIdentity>> {
        let text = numbered_text(&super::sql::rows::unreadable(
            &Names::of(table),
            NULL_TEXT,
            "NOT (isfinite(o.scheduled_for) AND isfinite(o.scheduled_from) AND isfinite(o.date_added))",
        ));
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
             scheduled_for = CASE WHEN isfinite(scheduled_for) THEN scheduled_for ELSE $1 END, \
             scheduled_from = CASE WHEN isfinite(scheduled_from) THEN scheduled_from ELSE $1 END, \
             date_added = CASE WHEN isfinite(date_added) THEN date_added ELSE $1 END \
             WHERE id = $2",
            rows = Names::of(table).rows
        );
        let query = diesel::sql_query(text)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(id);
        Ok(Prepared(query).execute(self)? > 0)
    }

    fn discard_row(&mut self, _token: Token<'_>, table: OutboxTable, id: i64) -> QueryResult<bool> {
        let text = format!(
            "DELETE FROM {rows} WHERE id = $1",
            rows = Names::of(table).rows
        );
        Ok(Prepared(diesel::sql_query(text).bind::<BigInt, _>(id)).execute(self)? > 0)
    }

    fn delete_delivered(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        ids: &[i64],
        lease: Option<i64>,
    ) -> QueryResult<usize> {
        let text = format!(
            "WITH gone AS (DELETE FROM outbox_drain_leases WHERE id = $2) \
             DELETE FROM {rows} WHERE id = ANY($1)",
            rows = Names::of(table).rows
        );
        Prepared(
            diesel::sql_query(text)
                .bind::<Array<BigInt>, _>(ids.to_vec())
                .bind::<Nullable<BigInt>, _>(lease),
        )
        .execute(self)
    }

    fn park_rows(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        request: &ParkRequest,
    ) -> QueryResult<usize> {
        let names = Names::of(table);
        let columns = names.row_columns();
        // One statement: the rows leave the outbox and arrive parked together.
        let text = format!(
            "WITH moved AS (DELETE FROM {rows} WHERE id = ANY($1) AND {shard} RETURNING {columns}) \
             INSERT INTO {parked} ({columns}, parked_at, attempts, first_failure_at, last_error) \
             SELECT {columns}, $2, $3, $4, $5 FROM moved",
            rows = names.rows,
            parked = names.parked,
            shard = numbered_from(&names.shard_is(""), 6),
        );
        let query = diesel::sql_query(text)
            .into_boxed()
            .bind::<Array<BigInt>, _>(request.ids.clone())
            .bind::<Timestamp, _>(request.parked_at)
            .bind::<Integer, _>(request.attempts)
            .bind::<Timestamp, _>(request.first_failure_at)
            .bind::<Text, _>(request.error.clone());
        Prepared(bind_shard(query, &request.shard)).execute(self)
    }

    fn restore_parked(
        &mut self,
        _token: Token<'_>,
        table: OutboxTable,
        key: Option<&ParkedKey>,
    ) -> QueryResult<usize> {
        let names = Names::of(table);
        let columns = names.row_columns();
        let text = numbered(&format!(
            "WITH moved AS (DELETE FROM {parked} WHERE {filter} RETURNING {columns}) \
             INSERT INTO {rows} ({columns}) SELECT {columns} FROM moved",
            rows = names.rows,
            parked = names.parked,
            filter = parked::filter(&names, key.is_some()),
        ));
        let query = bind_parked_key(diesel::sql_query(text).into_boxed(), key);
        Prepared(query).execute(self)
    }

    fn notify_rows_written(&mut self, _token: Token<'_>) -> QueryResult<()> {
        notify_query().execute(self)?;
        Ok(())
    }

    fn listen_for_rows(&mut self, _token: Token<'_>) -> QueryResult<Option<String>> {
        use diesel::connection::SimpleConnection;
        self.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))?;
        let schema = Prepared(diesel::sql_query(
            "SELECT COALESCE(current_schema(), '') AS value",
        ))
        .get_result::<TextValue>(self)?;
        Ok(Some(schema.value))
    }

    fn stop_listening(&mut self, _token: Token<'_>) -> QueryResult<()> {
        use diesel::connection::SimpleConnection;
        self.batch_execute(&format!("UNLISTEN {NOTIFY_CHANNEL}"))?;
        // Notifications that arrived meanwhile would wait for the connection's next user.
        for notification in self.notifications_iter() {
            notification?;
        }
        Ok(())
    }

    fn take_notifications(&mut self, _token: Token<'_>) -> QueryResult<Vec<String>> {
        let mut payloads = Vec::new();
        for notification in self.notifications_iter() {
            let notification = notification?;
            if notification.channel == NOTIFY_CHANNEL {
                payloads.push(notification.payload);
            }
        }
        Ok(payloads)
    }
}

/// The channel of [`OutboxConnection::notify_rows_written`].
const NOTIFY_CHANNEL: &str = "diesel_outbox";

/// The shared statements are written with `?`.
fn numbered_text(sql: &str) -> String {
    numbered(sql)
}

/// The advisory lock key of the shard whose columns are on alias `a`. Advisory locks are
/// per database, so the key starts with the table's oid: outboxes in two schemas of one
/// database (a silo per schema, say) never hold each other's shards.
fn shard_key_expr(names: &Names, alias: &str) -> String {
    let parts = names
        .shard
        .iter()
        .map(|column| format!("{alias}.{column}::text"))
        .collect::<Vec<_>>()
        .join(" || '/' || ");
    format!(
        "hashtextextended('{}'::regclass::oid::text || '/' || {parts}, 0)",
        names.rows
    )
}

/// The advisory lock key of the lease whose id is `id` (after the lease table's oid).
fn lease_key(id: &str) -> String {
    format!(
        "hashtextextended('outbox_drain_leases'::regclass::oid::text || '/lease/' || {id}::text, 0)"
    )
}

/// The rows a periodic claim reads: binds $1 from id, $2 to id, $3 rows.
fn due_scan(names: &Names) -> String {
    format!(
        "SELECT o.id, {columns}, o.scheduled_for FROM {rows} o \
         WHERE o.id >= $1 AND o.id < $2 ORDER BY o.id LIMIT $3",
        columns = names.shard_of("o"),
        rows = names.rows
    )
}

/// The candidates of a periodic claim, at most `limit` (a parameter). Binds: $1 from id,
/// $2 to id, $3 rows to scan, $4 now, $5 ignore schedules.
fn due_candidates(names: &Names, limit: &str) -> String {
    format!(
        "found AS (\
             SELECT {s_shard}, MIN(s.id) AS first_id FROM scanned s \
             LEFT JOIN {states} st ON {same_s} \
             WHERE CASE WHEN $5 THEN (st.shard_scope IS NULL OR NOT st.skipped OR s.id > st.covered_id) \
                   ELSE (s.scheduled_for <= $4 AND (st.shard_scope IS NULL \
                         OR (NOT st.isolated AND st.attempts = 0 AND s.id > st.covered_id))) END \
             GROUP BY {s_shard}), \
         timed AS (\
             SELECT {st_shard}, 0::int8 AS first_id FROM {states} st \
             WHERE NOT $5 AND st.scheduled_for <= $4 AND NOT st.skipped AND NOT st.isolated \
             ORDER BY st.scheduled_for LIMIT {limit}), \
         candidates AS MATERIALIZED (\
             SELECT {u_shard}, MIN(u.first_id) AS first_id \
             FROM (SELECT * FROM found UNION ALL SELECT * FROM timed) u \
             GROUP BY {u_shard} ORDER BY MIN(u.first_id) LIMIT {limit})",
        s_shard = names.shard_of("s"),
        st_shard = names.shard_of("st"),
        u_shard = names.shard_of("u"),
        states = names.states,
        same_s = names.same_shard("st", "s"),
    )
}

/// A claim that scans no rows.
const NOTHING_SCANNED: &str = "SELECT NULL::int8 AS id WHERE FALSE";

/// The bound of a shard that is drained whole.
const UNBOUNDED: &str = "9223372036854775807::int8";

/// The parts of a claim statement that differ by claim: each claimed shard's bound (an
/// expression over the candidate `p`), and the parameters holding now and the lease's
/// lifetime in seconds.
struct Tail<'a> {
    bound: &'a str,
    now: &'a str,
    lease_seconds: &'a str,
    /// How many candidates to take at most.
    max: &'a str,
}

/// One statement that claims `candidates` (a CTE named `candidates` with the shard's
/// columns and `first_id`, which may read `scanned`, the rows `scanned` selects): goes
/// through them oldest first, try-locking each, until it holds `max`; writes the lease of
/// those it got and locks the lease; and returns one row per claimed shard, plus one per
/// busy candidate when it ran out of candidates (or one empty row), with the scan's
/// figures. In autocommit the lease commits with the statement, before any receiver runs.
///
/// The lock is a filter under a LIMIT over an already sorted subquery: the executor pulls
/// candidates one by one and stops at `max` locked, so no lock is taken on a row the
/// statement does not return, and a second worker skips the shards the first one holds
/// instead of stopping at them.
fn claim_statement(names: &Names, scanned: &str, candidates: &str, tail: &Tail<'_>) -> String {
    let cell = match names.table {
        OutboxTable::Cell => format!("{NULL_TEXT} AS cell_name"),
        OutboxTable::Control => "p.cell_name".to_owned(),
    };
    format!(
        "WITH scanned AS MATERIALIZED ({scanned}), \
         {candidates}, \
         picked AS MATERIALIZED (SELECT c.* \
             FROM (SELECT * FROM candidates ORDER BY first_id OFFSET 0) c \
             WHERE pg_try_advisory_lock({key}) LIMIT {max}), \
         lease AS (INSERT INTO outbox_drain_leases (outbox_table, shards, taken_at, expires_at) \
             SELECT '{rows}', json_agg(json_build_array({json}) ORDER BY p.first_id)::text, \
                 {now}, {now} + make_interval(secs => {lease_seconds}) \
             FROM picked p HAVING COUNT(*) > 0 RETURNING id), \
         lease_lock AS MATERIALIZED (SELECT l.id, pg_try_advisory_lock({lease}) AS locked \
             FROM lease l), \
         busy AS (SELECT c.* FROM candidates c \
             WHERE (SELECT COUNT(*) FROM picked) < {max} \
               AND NOT EXISTS (SELECT 1 FROM picked p WHERE {same_busy})), \
         outcome AS (SELECT p.*, TRUE AS locked FROM picked p \
             UNION ALL SELECT b.*, FALSE AS locked FROM busy b), \
         figures AS (SELECT COUNT(*) AS scanned_rows, MAX(id) AS last_scanned_id FROM scanned) \
         SELECT p.shard_scope, p.shard_identifier, {cell}, p.locked, \
             COALESCE({bound}, '-9223372036854775808'::int8) AS bound, \
             (SELECT id FROM lease_lock) AS lease_id, \
             f.scanned_rows, f.last_scanned_id, {state} \
         FROM figures f LEFT JOIN outcome p ON TRUE \
         LEFT JOIN {states} st ON {same} \
         ORDER BY p.first_id",
        rows = names.rows,
        states = names.states,
        json = names.shard_of("p"),
        key = shard_key_expr(names, "c"),
        lease = lease_key("l.id"),
        state = names.state_columns("st"),
        same = names.same_shard("st", "p"),
        bound = tail.bound,
        now = tail.now,
        lease_seconds = tail.lease_seconds,
        max = tail.max,
        same_busy = names.same_shard("p", "c"),
    )
}

/// The claim a claim statement's rows describe.
fn claim_from_rows(table: OutboxTable, rows: Vec<ClaimRow>) -> Claim {
    let mut claim = Claim::empty(table);
    for row in rows {
        claim.scanned_rows = row.scanned_rows;
        claim.last_scanned_id = row.last_scanned_id;
        if row.lease_id.is_some() {
            claim.lease = row.lease_id;
        }
        let Some(key) = row.shard(table) else {
            continue;
        };
        if row.locked != Some(true) {
            claim.busy += 1;
            continue;
        }
        claim.shards.push(ClaimedShard {
            state: row.state(&key),
            key,
            bound: row.bound.unwrap_or(i64::MIN),
        });
    }
    claim
}

/// Shards as the three arrays `unnest` takes: scopes, identifiers, cell names (empty for
/// cell shards).
fn shard_arrays(shards: &[&ShardKey]) -> (Vec<i32>, Vec<i64>, Vec<String>) {
    let mut scopes = Vec::with_capacity(shards.len());
    let mut identifiers = Vec::with_capacity(shards.len());
    let mut cells = Vec::new();
    for key in shards {
        let shard = key.shard();
        scopes.push(shard.scope);
        identifiers.push(shard.identifier);
        if let Some(cell) = key.cell_name() {
            cells.push(cell.to_owned());
        }
    }
    (scopes, identifiers, cells)
}
