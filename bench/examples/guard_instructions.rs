//! Instructions per transaction, with and without the runtime guard, counted by valgrind
//! (the machine is shared and noisy; instruction counts repeat). SQLite in memory: no
//! I/O, so the guard's share is the largest it can be.
//!
//! ```text
//! cargo build --release -p diesel-outbox-bench --example guard_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/guard_instructions saves 1 200 guard
//! ```
//!
//! Arguments: `saves|application|drain PER_TXN TXNS none|guard`. `saves` runs the
//! model's `save`s (the library's statements, which the guard trusts); `application` the
//! same upserts written with plain diesel inside an outbox context (statements the guard
//! reads); `drain` writes the rows of `saves` and then drains them (a receiver that does
//! nothing). BENCHMARKS.md takes the difference between TXNS and 2 × TXNS transactions,
//! so that opening the database and the migrations cancel out.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_outbox::guard::{self, Guard, OnViolation, Protected};
use diesel_outbox::{outbox_context, Outbox, OutboxMessage, Receivers, ReplicatedCell};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope { Organization = 0 { shard: organization_id } }
    pub categories Category { ProjectUpdate = 1 { scope: Organization, silo: cell } }
}

diesel::table! {
    projects (id) { id -> BigInt, organization_id -> BigInt, name -> Text }
}

/// The replicated model.
#[derive(Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    /// Primary key.
    pub id: i64,
    /// Shard.
    pub organization_id: i64,
    /// Data.
    pub name: String,
}

fn upsert(conn: &mut SqliteConnection, p: &Project) -> QueryResult<usize> {
    diesel::insert_into(projects::table)
        .values((
            projects::id.eq(p.id),
            projects::organization_id.eq(p.organization_id),
            projects::name.eq(&p.name),
        ))
        .on_conflict(projects::id)
        .do_update()
        .set((
            projects::organization_id.eq(excluded(projects::organization_id)),
            projects::name.eq(excluded(projects::name)),
        ))
        .execute(conn)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: guard_instructions saves|application|drain PER_TXN TXNS none|guard";
    let [_, work, per_txn, txns, with_guard] = args.as_slice() else {
        return Err(usage.into());
    };
    let (per_txn, txns): (i64, i64) = (per_txn.parse()?, txns.parse()?);
    let mut conn = SqliteConnection::establish(":memory:")?;
    diesel_outbox::run_migrations(&mut conn)?;
    conn.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, \
         name TEXT NOT NULL)",
    )?;
    if with_guard == "guard" {
        Guard::new(Protected::models::<Project>())
            .on_violation(OnViolation::Panic)
            .install(&mut conn);
    }
    let mut id = 0;
    for txn in 0..txns {
        let models: Vec<Project> = (0..per_txn)
            .map(|_| {
                id += 1;
                Project {
                    id,
                    organization_id: id % 100,
                    name: format!("p{id}"),
                }
            })
            .collect();
        outbox_context(&mut conn, |ctx| {
            for p in &models {
                if work != "application" {
                    p.save(ctx)?;
                } else {
                    upsert(ctx.connection(), p)?;
                }
            }
            Ok::<_, diesel_outbox::Error>(())
        })?;
        if txn % 50 == 49 && work != "drain" {
            guard::allow(&mut conn, |conn| {
                conn.batch_execute("DELETE FROM cell_outboxes")
            })?;
        }
    }
    if work == "drain" {
        let receivers = Receivers::new().cell(
            Category::ProjectUpdate,
            |_: &mut SqliteConnection, _: &OutboxMessage| Ok::<_, diesel_outbox::Error>(()),
        );
        let outbox = Outbox::new(receivers);
        while outbox.drain_due_shards(&mut conn)?.did_work() {}
    }
    Ok(())
}
