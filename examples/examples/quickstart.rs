//! Quick start: save a row with its outbox rows on SQLite, watch the receivers run after
//! commit, a failing receiver retried later with backoff, and the outbox end empty.
//!
//! Run with `cargo run -p diesel-outbox-examples --example quickstart`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Duration;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_outbox::sqlite::SqliteOptions;
use diesel_outbox::testing::{cell_records, ManualClock};
use diesel_outbox::{
    outbox_context, run_migrations, CellOutbox, Clock, Error, Outbox, OutboxMessage, Receivers,
    ShardKey,
};
use serde::{Deserialize, Serialize};

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

#[derive(Serialize, Deserialize)]
struct AuditEvent {
    action: String,
    actor: i64,
}

/// Copies an organization into `organization_replicas`: standing in for "send it to the
/// other silo". Idempotent, as every receiver must be.
fn replicate_organization(
    conn: &mut SqliteConnection,
    message: &OutboxMessage,
) -> Result<(), Error> {
    let id = message.object_identifier;
    conn.batch_execute(&format!(
        "INSERT INTO organization_replicas (id, name) SELECT id, name FROM organizations \
         WHERE id = {id} ON CONFLICT (id) DO UPDATE SET name = excluded.name"
    ))?;
    println!("  receiver: replicated organization {id}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("diesel-outbox-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("cell.db");
    // WAL and a busy timeout: what the outbox needs of a SQLite connection.
    let mut conn = SqliteOptions::new().establish(&path.display().to_string())?;
    run_migrations(&mut conn)?;
    conn.batch_execute(
        "CREATE TABLE organizations (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE organization_replicas (id BIGINT PRIMARY KEY, name TEXT NOT NULL);",
    )?;
    println!(
        "A cell database at {} with the outbox tables.\n",
        path.display()
    );

    // The audit service is down at first: its receiver fails until it comes back.
    let audit_service_up = Arc::new(AtomicBool::new(false));
    let audit_up = audit_service_up.clone();
    let receivers = Receivers::new()
        .cell(Category::OrganizationUpdate, replicate_organization)
        .cell(
            Category::AuditLogEvent,
            move |_conn: &mut SqliteConnection, message: &OutboxMessage| {
                if !audit_up.load(Ordering::SeqCst) {
                    return Err("the audit service is unreachable".into());
                }
                let event: Option<AuditEvent> = message.payload_as()?;
                if let Some(event) = event {
                    println!(
                        "  receiver: audit log '{}' by user {}",
                        event.action, event.actor
                    );
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            },
        );
    // A manual clock lets the example skip the backoff's wait; a service uses the default
    // system clock.
    let clock = ManualClock::starting_now();
    let outbox = Outbox::builder(receivers).clock(clock.clone()).build();

    // One transaction: the organization row and its outbox rows commit together. Right
    // after the commit, the outbox flushes the shard the transaction touched.
    println!("Saving organization 42 (created, then renamed) with two audit events:");
    outbox.context(&mut conn, |ctx| {
        ctx.connection()
            .batch_execute("INSERT INTO organizations (id, name) VALUES (42, 'Acme')")?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))?;
        // Renaming in the same transaction coalesces to one row.
        ctx.connection()
            .batch_execute("UPDATE organizations SET name = 'Acme Inc' WHERE id = 42")?;
        ctx.write(CellOutbox::new(Category::OrganizationUpdate, 42, 42))?;
        // Audit events never coalesce: each gets a unique object identifier.
        for action in ["org.create", "org.rename"] {
            let event_id = ctx.unique_object_identifier()?;
            let event = AuditEvent {
                action: action.to_owned(),
                actor: 7,
            };
            ctx.write(CellOutbox::new(Category::AuditLogEvent, 42, event_id).payload(&event)?)?;
        }
        Ok::<_, Error>(())
    })?;
    let replica: String = diesel::sql_query("SELECT name FROM organization_replicas")
        .get_result::<Name>(&mut conn)?
        .name;
    println!("The commit returned; the replica already says '{replica}'.");
    println!(
        "(The organization's receiver ran twice: the audit receiver failed in the same \
         batch, which was rolled back and replayed without the failing key. Delivery is at \
         least once; receivers are idempotent.)"
    );
    println!("The audit receiver failed, so its rows stay, backed off:");
    print_outbox(&mut conn, &outbox, &clock)?;

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
        "\nA failing transaction was rolled back: {}",
        failed.is_err()
    );

    // The periodic drain (what a `Worker` runs) leaves the shard alone until it is due.
    let report = outbox.drain_due_shards(&mut conn)?;
    println!(
        "Draining right away: {} groups delivered (the shard is backing off).",
        report.delivered
    );

    println!("\nTwo seconds later the audit service is back:");
    audit_service_up.store(true, Ordering::SeqCst);
    clock.advance(Duration::seconds(2));
    let report = outbox.drain_due_shards(&mut conn)?;
    println!(
        "Drained: {} groups delivered, {} rows deleted, {} failures.",
        report.delivered,
        report.rows_deleted,
        report.failures.len()
    );
    print_outbox(&mut conn, &outbox, &clock)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

fn print_outbox(
    conn: &mut SqliteConnection,
    outbox: &Outbox<SqliteConnection>,
    clock: &dyn Clock,
) -> Result<(), Error> {
    let rows = cell_records(conn)?;
    if rows.is_empty() {
        println!("cell_outboxes is empty.");
        return Ok(());
    }
    println!("cell_outboxes holds {} rows:", rows.len());
    println!(
        "{:>3}  {:<18}  {:>5}  {:>6}  {:<38}  due in",
        "id", "category", "shard", "object", "payload"
    );
    for row in &rows {
        let category = Category::info(row.category).map_or("?", |c| c.name);
        let payload = row.payload.as_ref().map_or("-", |p| p.as_str());
        // Schedules are kept per shard: a shard without a stored state is due now.
        let shard = ShardKey::cell(Scope::Organization, row.shard_identifier);
        let due_in = outbox.shard_state(conn, &shard)?.map_or(0.0, |state| {
            (state.scheduled_for - clock.now()).num_milliseconds() as f64 / 1000.0
        });
        println!(
            "{:>3}  {:<18}  {:>5}  {:>6}  {:<38}  {due_in:.0} s",
            row.id, category, row.shard_identifier, row.object_identifier, payload,
        );
    }
    Ok(())
}
