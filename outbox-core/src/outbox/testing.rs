//! Test helpers: "run the outboxes", the outbox tables read whole, and connections with
//! the runtime guard.

use std::time::{Duration, Instant};

use super::Outbox;
use crate::backend::guard::{self, Guard, OnViolation, Protected, ProtectedModels};
use crate::backend::OutboxConnection;
use crate::drain::options::DueShards;
use crate::drain::report::DrainReport;
use crate::drain::round::{drain_due, Schedules};
use crate::key::error::{Error, Result};
use crate::key::shard::OutboxTable;
use crate::key::token::Token;
use crate::row::record::{CellOutboxRecord, ControlOutboxRecord};

/// How long [`drain_until_empty`] waits, in all, for shards other workers hold.
const WAIT_FOR_HOLDERS: Duration = Duration::from_secs(60);

/// Delivers every outbox row, in rounds, until nothing is left to deliver: "run the
/// outboxes" in a test. Each round drains every shard with rows up to the newest row at
/// its start, ignoring schedules and backoff; receivers that write outbox rows cause
/// further rounds, up to `max_rounds`. Shards other workers hold are waited for. The
/// newest rows that a kill switch keeps do not count as left.
///
/// Fails with [`Error::Undelivered`] as soon as a round has a failure, and with
/// [`Error::NotDrained`] when rows remain after `max_rounds`.
pub fn drain_until_empty<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    max_rounds: usize,
) -> Result<DrainReport> {
    guard::as_library(conn, |conn| rounds_until_empty(conn, outbox, max_rounds))
}

fn rounds_until_empty<C: OutboxConnection>(
    conn: &mut C,
    outbox: &Outbox<C>,
    max_rounds: usize,
) -> Result<DrainReport> {
    let deadline = Instant::now() + WAIT_FOR_HOLDERS;
    let mut total = DrainReport::default();
    let mut rounds = 0;
    while rounds < max_rounds {
        if remaining(conn)? == 0 {
            return Ok(total);
        }
        let mut round = DrainReport::default();
        for table in OutboxTable::ALL {
            let Some((_, top)) = conn.outbox_id_bounds(Token::new(), table)? else {
                continue;
            };
            let due = DueShards::new().table(table).limit(usize::MAX);
            round.merge(drain_due(
                outbox.drainer(),
                conn,
                &due,
                Schedules::IgnoreUpTo(top),
            )?);
        }
        // Nothing claimed but rows are held by others: wait for them, without counting.
        if round.shards == 0 && round.shards_not_claimed > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        total.merge(round.into_result()?);
        rounds += 1;
    }
    match remaining(conn)? {
        0 => Ok(total),
        remaining => Err(Error::NotDrained {
            rounds: max_rounds,
            remaining,
        }),
    }
}

fn remaining<C: OutboxConnection>(conn: &mut C) -> Result<u64> {
    let mut rows = 0;
    for table in OutboxTable::ALL {
        rows += conn.deliverable_rows(Token::new(), table)?;
    }
    Ok(rows)
}

/// Installs the runtime guard on `conn` for a test: it panics at any write that breaks
/// the outbox's rules (a table of one of the models `M`, a tuple of replicated models,
/// written outside an outbox context; an outbox table written outside the library),
/// before the write runs, whatever the build. Statements a test writes on purpose go in
/// [`guard::allow`](crate::guard::allow).
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
/// # }
/// # diesel::table! { projects (id) { id -> BigInt, organization_id -> BigInt } }
/// # #[derive(diesel::Queryable, diesel::Selectable, diesel_outbox::ReplicatedCell)]
/// # #[diesel(table_name = projects)]
/// # #[outbox(category = Category::ProjectUpdate)]
/// # struct Project { id: i64, organization_id: i64 }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel::connection::SimpleConnection;
/// use diesel::SqliteConnection;
/// use diesel_outbox::testing;
///
/// let mut conn = testing::establish::<SqliteConnection, (Project,)>(":memory:")?;
/// diesel_outbox::run_migrations(&mut conn)?;
/// conn.batch_execute("CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT)")?;
/// let bypass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
///     conn.batch_execute("INSERT INTO projects VALUES (1, 7)")
/// }));
/// assert!(bypass.is_err(), "no outbox row would record it: the guard panics");
/// # Ok(()) }
/// ```
pub fn install_guard<M: ProtectedModels, C: OutboxConnection>(conn: &mut C) {
    Guard::new(Protected::models::<M>())
        .on_violation(OnViolation::Panic)
        .install(conn);
}

/// A new connection to `url`, with the guard of [`install_guard`] for the models `M`.
pub fn establish<C: OutboxConnection, M: ProtectedModels>(url: &str) -> Result<C> {
    let mut conn = C::establish(url)?;
    install_guard::<M, C>(&mut conn);
    Ok(conn)
}

/// Every row of `cell_outboxes`, in id order.
pub fn cell_records<C: OutboxConnection>(conn: &mut C) -> Result<Vec<CellOutboxRecord>> {
    Ok(guard::as_library(conn, |conn| {
        conn.load_cell_records(Token::new())
    })?)
}

/// Every row of `control_outboxes`, in id order.
pub fn control_records<C: OutboxConnection>(conn: &mut C) -> Result<Vec<ControlOutboxRecord>> {
    Ok(guard::as_library(conn, |conn| {
        conn.load_control_records(Token::new())
    })?)
}
