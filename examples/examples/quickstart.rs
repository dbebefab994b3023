//! Quick start: write outbox rows through `outbox_context` on SQLite and print them.
//!
//! Run with `cargo run -p diesel-outbox-examples --example quickstart`.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::schema::cell_outboxes;
use diesel_outbox::{outbox_context, run_migrations, CellOutbox, CellOutboxRecord, Error};
use serde::Serialize;

diesel_outbox::outbox_scopes_and_categories! {
    /// How this application shards its outbox rows.
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    /// What its outbox rows are about.
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: cell },
        UserUpdate = 2 { scope: User, silo: control },
        AuditLogEvent = 3 { scope: Organization, silo: cell },
    }
}

#[derive(Serialize)]
struct AuditEvent<'a> {
    action: &'a str,
    actor: i64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("diesel-outbox-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("cell.db");
    let mut conn = SqliteConnection::establish(&path.display().to_string())?;
    run_migrations(&mut conn)?;
    conn.batch_execute("CREATE TABLE organizations (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")?;
    println!(
        "A cell database at {} with the outbox tables.\n",
        path.display()
    );

    // One transaction: the organization row and its outbox rows commit together.
    outbox_context(&mut conn, |ctx| {
        ctx.connection()
            .batch_execute("INSERT INTO organizations (id, name) VALUES (42, 'Acme')")?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))?;
        // Renaming twice in one transaction coalesces to one row.
        ctx.connection()
            .batch_execute("UPDATE organizations SET name = 'Acme Inc' WHERE id = 42")?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))?;
        // Audit events never coalesce: each gets a unique object identifier.
        for action in ["org.create", "org.rename"] {
            let event_id = ctx.unique_object_identifier()?;
            let event = AuditEvent { action, actor: 7 };
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, event_id).payload(&event)?)?;
        }
        Ok::<_, Error>(())
    })?;

    // A transaction that fails leaves nothing behind, neither data nor outbox rows.
    let failed = outbox_context(&mut conn, |ctx| {
        ctx.connection()
            .batch_execute("INSERT INTO organizations (id, name) VALUES (43, 'Oops')")?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 43, 43))?;
        ctx.connection()
            .batch_execute("INSERT INTO no_such_table VALUES (1)")?;
        Ok::<_, Error>(())
    });
    println!(
        "A failing transaction was rolled back: {}\n",
        failed.is_err()
    );

    let rows: Vec<CellOutboxRecord> = cell_outboxes::table
        .select(CellOutboxRecord::as_select())
        .order(cell_outboxes::id)
        .load(&mut conn)?;
    println!("cell_outboxes now holds {} rows:", rows.len());
    println!(
        "{:>3}  {:<18}  {:>5}  {:>6}  {:<42}  scheduled_for",
        "id", "category", "shard", "object", "payload"
    );
    for row in &rows {
        let category = Category::info(row.category).map_or("?", |c| c.name);
        let payload = row.payload.as_ref().map_or("-", |p| p.as_str());
        println!(
            "{:>3}  {:<18}  {:>5}  {:>6}  {:<42}  {}",
            row.id,
            category,
            row.shard_identifier,
            row.object_identifier,
            payload,
            row.scheduled_for
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
