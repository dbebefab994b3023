//! Puts an outbox in the shape an operator meets: a backlog, a shard whose receiver keeps
//! failing, a parked group, a skipped shard. Then try the CLI on it:
//!
//! ```text
//! export DATABASE_URL=/tmp/troubled.db    # or postgres://...
//! cargo run -p diesel-outbox-cli --example troubled_outbox
//! cargo run -p diesel-outbox-cli -- status
//! cargo run -p diesel-outbox-cli -- stuck --category-names 1=OrganizationUpdate,2=ProjectUpdate,3=AuditLogEvent
//! ```

use std::error::Error as StdError;

use diesel::Connection;
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::{
    run_migrations, CellOutbox, ControlOutbox, Error, Outbox, OutboxConnection, OutboxMessage,
    Receivers, ShardKey,
};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
        ProjectUpdate = 2 { scope: Organization, silo: cell },
        AuditLogEvent = 3 { scope: Organization, silo: cell },
    }
}

fn main() -> Result<(), Box<dyn StdError>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        shape(&mut diesel::PgConnection::establish(&url)?)
    } else {
        shape(&mut diesel::SqliteConnection::establish(&url)?)
    }
}

fn shape<C: OutboxConnection>(conn: &mut C) -> Result<(), Box<dyn StdError>> {
    run_migrations(conn)?;
    let receivers = Receivers::new()
        .cell(
            Category::OrganizationUpdate,
            |_conn: &mut C, message: &OutboxMessage| {
                if message.shard.identifier == 42 {
                    return Err("billing-api: 503 Service Unavailable (POST /v1/orgs/42/sync)");
                }
                Ok(())
            },
        )
        .cell(
            Category::AuditLogEvent,
            |_conn: &mut C, _message: &OutboxMessage| {
                Err("audit-log: payload rejected: field `actor` is required")
            },
        );
    let outbox = Outbox::builder(receivers)
        .flush_on_commit(false)
        .exhaustion(
            Category::AuditLogEvent,
            Exhaustion::Park { max_attempts: 1 },
        )
        .build();
    outbox.context(conn, |ctx| {
        for object in 1..=3 {
            ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, object))?;
        }
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 17, 9001))
    })?;
    outbox.drain_due_shards(conn)?;
    outbox.context(conn, |ctx| {
        for shard in [5, 6, 7] {
            for object in 0..shard * 40 {
                ctx.write(CellOutbox::new(Category::ProjectUpdate, shard, object))?;
            }
        }
        for cell in ["us-east", "eu-west"] {
            ctx.write(ControlOutbox::new(
                Category::OrganizationUpdate,
                42,
                42,
                cell,
            ))?;
        }
        Ok::<_, Error>(())
    })?;
    outbox.skip_shard(conn, &ShardKey::cell(Scope::Organization, 13))?;
    println!(
        "the outbox has a backlog, a failing shard (0/42), a parked group and a skipped shard"
    );
    Ok(())
}
