//! Layer 3, backends: what the library needs from a diesel connection, and **every** SQL
//! statement of every backend. Uses only [`key`](crate::key) and [`row`](crate::row).
//!
//! * this file: [`OutboxConnection`], the trait implemented once per backend;
//! * [`claim`]: what a drain asks for when it claims shards, and what it gets;
//! * [`state`]: a shard's schedule, failures and kill switch as stored;
//! * [`parked`]: rows moved out of the outbox after their last allowed attempt;
//! * [`inspect`]: depths and the oldest due row, as an operator reads them;
//! * [`backfill`]: the backfill's state per model, and its statements (a supertrait of
//!   [`OutboxConnection`], not more methods of it);
//! * [`sql`]: the pieces of SQL text and the row types the backends share;
//! * `shared`: the statements that are the same on every backend, written once;
//! * [`transaction`]: reading and unwinding diesel's transaction depth;
//! * [`guard`]: the runtime guard, which reports writes of protected tables that break
//!   the outbox's rules, and the scope through which the library marks its own statements;
//! * [`migrations`]: the embedded migrations and [`run_migrations`](migrations::run_migrations);
//! * `sqlite`, `postgres`, `mysql`: the backends; `sqlite_options`: the SQLite settings
//!   the outbox relies on (WAL, a busy timeout).
//!
//! Every hidden method takes a [`Token`]: the trait is public so that it can be named in
//! bounds, but only the runtime can call what writes an outbox table.

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, Connection};
use diesel::QueryResult;

use crate::key::error::Result;
use crate::key::shard::{OutboxTable, ShardKey};
use crate::key::token::Token;
use crate::row::insert::{NewCellOutbox, NewControlOutbox};
use crate::row::record::{CellOutboxRecord, ControlOutboxRecord, OutboxMessage};

pub(crate) mod applied;
#[cfg(feature = "async")]
pub(crate) mod asynchronous;
pub(crate) mod backfill;
pub(crate) mod claim;
pub(crate) mod guard;
pub(crate) mod inspect;
pub(crate) mod migrations;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "mysql")]
mod mysql_raw;
pub(crate) mod parked;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod scan;
mod shared;
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite_options;
pub(crate) mod state;
pub(crate) mod transaction;

use crate::row::tombstone::{Tombstone, TombstoneTable};
use backfill::BackfillStatements;
use claim::{Claim, DueFound, DueScan, KeyAfterWindow, Lease, RowIdentity, WindowRequest};
use inspect::{CategoryDepth, OldestRow, ShardDepth};
use parked::{ParkRequest, ParkedCounts, ParkedGroup, ParkedKey};
use state::{ShardFailure, ShardState};

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// A diesel connection the outbox can work on: `SqliteConnection` (feature `sqlite`),
/// `PgConnection` (feature `postgres`) and `MysqlConnection` (feature `mysql`: MySQL 8 and
/// MariaDB 10.6 or later). A pooled connection works through `&mut *pooled`.
///
/// The trait is sealed (this crate implements it), and its hidden methods, the library's
/// per-backend SQL, each take a token that only the runtime can make: application code can
/// name the trait in bounds, never call what writes an outbox table.
pub trait OutboxConnection:
    Connection<TransactionManager = AnsiTransactionManager>
    + applied::AppliedLedger
    + BackfillStatements
    + Sealed
    + Send
    + 'static
{
    /// The backend's limit on bind parameters in one statement; multi-row INSERTs are
    /// split only where they would exceed it.
    const MAX_BIND_PARAMS: usize;

    /// The backend's name, for messages.
    const BACKEND_NAME: &'static str;

    /// Whether a drain delivers under leases unless told otherwise (see
    /// [`Delivery`](crate::drain::Delivery)): SQLite, whose one write lock a receiver
    /// inside the drain's transaction would keep from every writer.
    const LEASED_DELIVERY_BY_DEFAULT: bool;

    /// Runs the library's migrations (see [`run_migrations`](crate::run_migrations)).
    fn run_outbox_migrations(&mut self) -> Result<()>;

    // ---- The write side.

    /// Opens the transaction of an `outbox_context` (a savepoint when one is open). On
    /// SQLite the outermost one is `BEGIN IMMEDIATE`: it waits for the write lock up front
    /// (busy timeout) instead of failing with "database is locked" at its first write.
    #[doc(hidden)]
    fn begin_context_transaction(&mut self, token: Token<'_>) -> QueryResult<()>;

    #[doc(hidden)]
    fn insert_cell_rows(&mut self, token: Token<'_>, rows: &[NewCellOutbox]) -> QueryResult<()>;

    #[doc(hidden)]
    fn insert_control_rows(
        &mut self,
        token: Token<'_>,
        rows: &[NewControlOutbox],
    ) -> QueryResult<()>;

    #[doc(hidden)]
    fn next_object_identifier(&mut self, token: Token<'_>) -> QueryResult<i64>;

    // ---- Tombstones.

    /// Records tombstones of `table_name`'s objects (those it has already are kept);
    /// how many are new.
    #[doc(hidden)]
    fn insert_tombstones(
        &mut self,
        token: Token<'_>,
        table: TombstoneTable,
        table_name: &str,
        object_identifiers: &[i64],
        now: NaiveDateTime,
    ) -> QueryResult<usize>;

    #[doc(hidden)]
    fn load_tombstones(
        &mut self,
        token: Token<'_>,
        table: TombstoneTable,
        table_name: Option<&str>,
    ) -> QueryResult<Vec<Tombstone>>;

    // ---- The drain: claiming.

    /// The transaction a drain writes in: on SQLite `BEGIN IMMEDIATE` (the write lock up
    /// front), elsewhere an ordinary one; a savepoint inside an open transaction.
    #[doc(hidden)]
    fn drain_transaction<T, E, F>(&mut self, token: Token<'_>, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Self) -> std::result::Result<T, E>,
        E: From<diesel::result::Error>;

    /// Leases of `table` whose worker is gone, oldest first, except `own` (the lease of
    /// the claim this connection holds). Another drain may be recovering one of them at
    /// the same time: [`forget_lease`](Self::forget_lease) tells which of the two does.
    #[doc(hidden)]
    fn abandoned_leases(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
        own: Option<i64>,
    ) -> QueryResult<Vec<Lease>>;

    /// Deletes a lease; whether it still existed (inside a drain transaction, so that an
    /// abandoned lease is turned into backoffs exactly once: a drain recovering the same
    /// lease meanwhile makes this wait for its commit, then find the lease gone).
    #[doc(hidden)]
    fn forget_lease(&mut self, token: Token<'_>, lease: i64) -> QueryResult<bool>;

    /// Moves `lease`'s expiry to `expires_at` (a leased delivery's heartbeat, and its check
    /// before it deletes anything); whether the lease is still there: one that another
    /// drain recovered (it found it expired) is gone, and its shards are no longer ours.
    #[doc(hidden)]
    fn renew_lease(
        &mut self,
        token: Token<'_>,
        lease: i64,
        expires_at: NaiveDateTime,
    ) -> QueryResult<bool>;

    /// Every lease of `table`, oldest first, live or not (see
    /// [`LeaseInfo`](claim::LeaseInfo)).
    #[doc(hidden)]
    fn leases(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
    ) -> QueryResult<Vec<claim::LeaseInfo>>;

    /// Finds due shards of `table` and claims up to `scan.max_shards` of them: each is
    /// held by this connection alone (PostgreSQL: a session advisory lock; MySQL: a named
    /// lock; SQLite: the lease, under the one writer) and listed in one committed lease,
    /// until [`release_claim`](Self::release_claim).
    #[doc(hidden)]
    fn claim_due_shards(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<Claim>;

    /// The shards [`claim_due_shards`](Self::claim_due_shards) would claim now, oldest
    /// first, without claiming them (and whether another worker holds them or not), with
    /// the scan's figures.
    #[doc(hidden)]
    fn due_shards(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        scan: &DueScan,
        now: NaiveDateTime,
    ) -> QueryResult<DueFound>;

    /// Claims one shard that must be delivered alone (a worker died while delivering its
    /// batch) and whose schedule has passed, if there is one: new rows do not make it
    /// due sooner.
    #[doc(hidden)]
    fn claim_isolated_shard(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
        lease_seconds: i64,
    ) -> QueryResult<Claim>;

    /// Claims those of `shards` that have rows, no stored state (not failing, not
    /// skipped) and no other holder, each bounded by its newest id now: a flush.
    #[doc(hidden)]
    fn claim_flush_shards(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        shards: &[ShardKey],
        now: NaiveDateTime,
        lease_seconds: i64,
    ) -> QueryResult<Claim>;

    /// Lets go of a claim's shards, and deletes its lease if the delivery did not.
    #[doc(hidden)]
    fn release_claim(&mut self, token: Token<'_>, claim: &Claim) -> QueryResult<()>;

    // ---- The drain: reading.

    /// Up to `window` rows of each shard, lowest ids first, up to each shard's bound, and
    /// at most `max_rows` in all: the shards are read in the order given, so when the cap
    /// binds, the last shard read may be cut short and the shards after it are not read.
    #[doc(hidden)]
    fn load_windows(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        shards: &[WindowRequest],
        window: i64,
        max_rows: i64,
    ) -> QueryResult<Vec<OutboxMessage>>;

    /// The identities (integers only, which always read) of a shard's window, to find the
    /// row that cannot be read.
    #[doc(hidden)]
    fn window_identities(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        shard: &WindowRequest,
        window: i64,
    ) -> QueryResult<Vec<RowIdentity>>;

    /// Whole rows by id.
    #[doc(hidden)]
    fn load_messages(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        ids: &[i64],
    ) -> QueryResult<Vec<OutboxMessage>>;

    /// The rows of each key after its window (`after_id < id <= bound`).
    #[doc(hidden)]
    fn rows_after_windows(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        keys: &[KeyAfterWindow],
    ) -> QueryResult<Vec<RowIdentity>>;

    /// Of the oldest `scan_rows` rows of `table`, those whose schedule (or date added)
    /// cannot be decoded ('infinity' on PostgreSQL, a text that is no date on SQLite, a
    /// zero date on MySQL): such a row sorts after every "now", so no claim would find it.
    #[doc(hidden)]
    fn unreadable_rows(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        scan_rows: i64,
    ) -> QueryResult<Vec<RowIdentity>>;

    /// Makes one row readable and due now: its schedule and date added, if they cannot be
    /// decoded, become `now` (an operator's repair). Whether the row exists.
    #[doc(hidden)]
    fn repair_row(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        id: i64,
        now: NaiveDateTime,
    ) -> QueryResult<bool>;

    /// Deletes one row without delivery (an operator's discard). Whether it existed.
    #[doc(hidden)]
    fn discard_row(&mut self, token: Token<'_>, table: OutboxTable, id: i64) -> QueryResult<bool>;

    /// The shard's newest id.
    #[doc(hidden)]
    fn shard_max_id(&mut self, token: Token<'_>, shard: &ShardKey) -> QueryResult<Option<i64>>;

    // ---- The drain: finishing.

    /// Deletes delivered rows by id, and the batch's lease in the same round trip.
    #[doc(hidden)]
    fn delete_delivered(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        ids: &[i64],
        lease: Option<i64>,
    ) -> QueryResult<usize>;

    /// Records failures: each shard's schedule, attempts and last error (never touching
    /// its kill switch).
    #[doc(hidden)]
    fn record_failures(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        failures: &[ShardFailure],
    ) -> QueryResult<()>;

    /// Forgets the failures of shards that were delivered: their state row goes, unless
    /// the kill switch keeps it, in which case `covered_id` moves to the given id.
    #[doc(hidden)]
    fn record_successes(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        shards: &[(ShardKey, i64)],
    ) -> QueryResult<()>;

    // ---- Operators and inspection.

    /// Turns the kill switch of `shard` on or off. Off makes the shard due at once.
    #[doc(hidden)]
    fn set_skipped(
        &mut self,
        token: Token<'_>,
        shard: &ShardKey,
        skipped: bool,
        now: NaiveDateTime,
    ) -> QueryResult<()>;

    /// The stored states of `table`: of `shards` if given, otherwise every one, failing
    /// first.
    #[doc(hidden)]
    fn load_shard_states(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        shards: Option<&[ShardKey]>,
    ) -> QueryResult<Vec<ShardState>>;

    /// The states of `table`'s isolated shards (a worker died delivering them): one
    /// statement, whatever the number of shards a drain holds.
    #[doc(hidden)]
    fn load_isolated_states(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<Vec<ShardState>>;

    /// Rows a drain still has to deliver: every row but the newest rows a kill switch
    /// keeps.
    #[doc(hidden)]
    fn deliverable_rows(&mut self, token: Token<'_>, table: OutboxTable) -> QueryResult<u64>;

    /// Every `cell_outboxes` row, in id order.
    #[doc(hidden)]
    fn load_cell_records(&mut self, token: Token<'_>) -> QueryResult<Vec<CellOutboxRecord>>;

    /// Every `control_outboxes` row, in id order.
    #[doc(hidden)]
    fn load_control_records(&mut self, token: Token<'_>) -> QueryResult<Vec<ControlOutboxRecord>>;

    /// Checks, once, that the connection a worker drains through is set up as the backend
    /// needs (SQLite: a busy timeout), warning otherwise.
    #[doc(hidden)]
    fn check_worker_connection(&mut self, token: Token<'_>) -> QueryResult<()>;

    /// The lowest and highest id of `table`.
    #[doc(hidden)]
    fn outbox_id_bounds(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<Option<(i64, i64)>>;

    /// Turns a failing shard's backoff into "due now", keeping its attempts; whether it
    /// had a stored state.
    #[doc(hidden)]
    fn retry_shard_now(
        &mut self,
        token: Token<'_>,
        shard: &ShardKey,
        now: NaiveDateTime,
    ) -> QueryResult<bool>;

    /// The deepest shards of `table`, at most `limit`.
    #[doc(hidden)]
    fn shard_depths(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        limit: i64,
    ) -> QueryResult<Vec<ShardDepth>>;

    /// Rows of `table` per category.
    #[doc(hidden)]
    fn category_depths(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
    ) -> QueryResult<Vec<CategoryDepth>>;

    /// The oldest row of `table` still to be delivered.
    #[doc(hidden)]
    fn oldest_due_row(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        now: NaiveDateTime,
    ) -> QueryResult<Option<OldestRow>>;

    // ---- Parking.

    /// Moves one key's rows (by id) out of the outbox into its parked table, with the
    /// failure that parks them, in the caller's transaction.
    #[doc(hidden)]
    fn park_rows(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        request: &ParkRequest,
    ) -> QueryResult<usize>;

    /// Moves parked rows back into the outbox with their ids: one key's, or every one of
    /// `table`. How many returned.
    #[doc(hidden)]
    fn restore_parked(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        key: Option<&ParkedKey>,
    ) -> QueryResult<usize>;

    /// Deletes parked rows without delivery (an operator's discard): one key's, or every
    /// one of `table`. How many were deleted.
    #[doc(hidden)]
    fn discard_parked(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        key: Option<&ParkedKey>,
    ) -> QueryResult<usize>;

    /// The parked groups of `table`, oldest first, at most `limit`.
    #[doc(hidden)]
    fn load_parked(
        &mut self,
        token: Token<'_>,
        table: OutboxTable,
        limit: i64,
    ) -> QueryResult<Vec<ParkedGroup>>;

    /// How many groups and rows `table` has parked.
    #[doc(hidden)]
    fn parked_counts(&mut self, token: Token<'_>, table: OutboxTable) -> QueryResult<ParkedCounts>;

    // ---- Wake-ups (PostgreSQL's LISTEN/NOTIFY; nothing elsewhere).

    /// Tells listening workers, once the current transaction commits, that it wrote
    /// outbox rows. PostgreSQL delivers one notification per transaction however often
    /// this is called in it.
    #[doc(hidden)]
    fn notify_rows_written(&mut self, token: Token<'_>) -> QueryResult<()>;

    /// Starts listening for [`notify_rows_written`](Self::notify_rows_written) of other
    /// connections; the payload that names this connection's outbox tables, or `None` where
    /// the backend cannot listen.
    #[doc(hidden)]
    fn listen_for_rows(&mut self, token: Token<'_>) -> QueryResult<Option<String>>;

    /// Stops what [`listen_for_rows`](Self::listen_for_rows) started.
    #[doc(hidden)]
    fn stop_listening(&mut self, token: Token<'_>) -> QueryResult<()>;

    /// The payloads of the notifications received since the last call, without waiting.
    #[doc(hidden)]
    fn take_notifications(&mut self, token: Token<'_>) -> QueryResult<Vec<String>>;
}
