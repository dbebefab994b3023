//! The replica catching up after a version bump: a cell loses its user replicas (say, the
//! cell moved them to a new table), control raises `User`'s replication version from 1 to
//! 2, and its backfill writes every user's control outbox rows again (one per user and
//! cell); the drain delivers them, and the cell has every user back. The demo calls it
//! after the story (`examples/hybrid.rs`).

use diesel::prelude::*;
use diesel_outbox::backfill::{BackfillOptions, Backfills};
use diesel_outbox::{BoxError, ModelWrites, Outbox, Receivers, ReplicatedControl};

use super::check::Convergence;
use super::models::{schema, Category, DemoSql, Organization, User};
use super::Deployment;

/// `User` as the next release declares it: the same table and cells, at replication
/// version 2 (the story's `User` is at version 1, the default).
#[derive(Clone, Debug, Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = schema::users)]
#[outbox(category = Category::UserUpdate, cells = UserV2::cell_names, replication_version = 2)]
pub struct UserV2 {
    /// Primary key, and the shard.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// The cells the user belongs to, comma-separated.
    pub cells: String,
}

impl UserV2 {
    fn cell_names(&self) -> Vec<&str> {
        self.cells
            .split(',')
            .filter(|cell| !cell.is_empty())
            .collect()
    }
}

/// Empties `cell`'s user replicas, backfills control's users at version 2, drains, and
/// returns the check of the whole deployment.
pub fn replica_catches_up<C>(
    world: &mut Deployment<C>,
    cell: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Convergence, BoxError>
where
    C: DemoSql,
    User: ModelWrites<C>,
    Organization: ModelWrites<C>,
    UserV2: ModelWrites<C>,
{
    world
        .cell(cell)?
        .conn
        .batch_execute("DELETE FROM user_replicas")?;
    say(&format!(
        "9. {cell} loses its user replicas (a new replica table, say). Control's next release"
    ));
    say("   declares User at replication_version = 2, and its backfill writes every user's rows again.");
    let backfill = Outbox::builder(Receivers::new())
        .clock(world.clock.clone())
        .backfill(Backfills::new().control::<UserV2>())
        .build();
    let options = BackfillOptions {
        rows_per_second: None,
        ..BackfillOptions::default()
    };
    let mut batches = 0;
    loop {
        let report = backfill.backfill(&mut world.control.conn, &options)?;
        if let Some(failure) = report.failures.first() {
            return Err(failure.error.to_string().into());
        }
        batches += report.batches.len();
        if report.next_batch_at.is_none() {
            break;
        }
    }
    let status = backfill
        .backfill_status(&mut world.control.conn)?
        .into_iter()
        .find(|status| status.model == "users")
        .ok_or("no backfill status for users")?;
    say(&format!(
        "   {} batch(es): {} users, last key {:?}; stored version now {}.",
        batches, status.rows_done, status.last_id, status.stored_version
    ));
    let report = world.drain()?;
    let names: Vec<String> = world
        .cell(cell)?
        .conn
        .user_replicas()?
        .into_iter()
        .map(|user| user.name)
        .collect();
    say(&format!(
        "   The drain delivers {} row(s): {cell} has the users {} again.",
        report.delivered,
        names.join(", ")
    ));
    let check = world.check()?;
    if check.converged() {
        say("   Converged again: every replica equals its source.");
    } else {
        for problem in &check.problems {
            say(&format!("   NOT CONVERGED: {problem}"));
        }
    }
    Ok(check)
}
