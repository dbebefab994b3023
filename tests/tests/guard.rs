//! The runtime guard on every backend: each write form the compiler cannot refuse is
//! reported (diesel DSL column inserts and updates, `diesel::delete` of a filtered table,
//! `sql_query` with quoted and schema-qualified names, CTEs and upserts, an application's
//! own `table!` for `cell_outboxes`), and nothing is reported for the library's own
//! statements, the replicated models' generated writes, reads, or unprotected tables.
//!
//! The helpers' connections panic on a violation; these tests reinstall the guard to
//! record instead, to check exactly what it reports (and one checks the panic).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::prelude::*;
use diesel_outbox::drain::Exhaustion;
use diesel_outbox::guard::{self, Guard, OnViolation, Protection, Violation};
use diesel_outbox::silo::{record_tombstone, tombstones, TombstoneTable};
use diesel_outbox::testing::drain_until_empty;
use diesel_outbox::{
    outbox_context, CellOutbox, Error, ModelWrites, OutboxMessage, OutboxTable, Receivers,
    ReplicatedCell, Shard, ShardKey,
};
use diesel_outbox_tests::{backend_tests, protected, Dialect, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        AuditLogEvent = 2 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    invoices (id) {
        id -> BigInt,
        total -> BigInt,
    }
}

/// An application's own declaration of the library's private table.
mod own_schema {
    diesel::table! {
        cell_outboxes (id) {
            id -> BigInt,
            shard_scope -> Integer,
            shard_identifier -> BigInt,
            category -> Integer,
            object_identifier -> BigInt,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

fn project(id: i64, name: &str) -> Project {
    Project {
        id,
        organization_id: 7,
        name: name.to_owned(),
    }
}

/// The diesel DSL statements of these tests, written once per backend (diesel's DSL is
/// not generic over the connection without a page of bounds).
trait Writes: TestConnection {
    fn insert_project_columns(&mut self, id: i64) -> QueryResult<usize>;
    fn rename_filtered(&mut self, id: i64, name: &str) -> QueryResult<usize>;
    fn rename_found(&mut self, id: i64, name: &str) -> QueryResult<usize>;
    fn delete_projects_of(&mut self, organization_id: i64) -> QueryResult<usize>;
    fn delete_every_project(&mut self) -> QueryResult<usize>;
    fn project_names(&mut self) -> QueryResult<Vec<String>>;
    fn write_invoices(&mut self) -> QueryResult<()>;
    fn own_outbox_ids(&mut self) -> QueryResult<Vec<i64>>;
    fn own_outbox_update(&mut self) -> QueryResult<usize>;
    fn own_outbox_delete_shard(&mut self, shard: i64) -> QueryResult<usize>;
    /// `sql_query(sql).execute(self)`.
    fn run_sql(&mut self, sql: &str) -> QueryResult<usize>;
    /// The text column `name` of the one row `sql` returns.
    fn text(&mut self, sql: &str) -> QueryResult<String>;
}

macro_rules! writes {
    ($conn:ty) => {
        impl Writes for $conn {
            fn insert_project_columns(&mut self, id: i64) -> QueryResult<usize> {
                diesel::insert_into(projects::table)
                    .values((
                        projects::id.eq(id),
                        projects::organization_id.eq(7),
                        projects::name.eq("bypass"),
                    ))
                    .execute(self)
            }

            fn rename_filtered(&mut self, id: i64, name: &str) -> QueryResult<usize> {
                diesel::update(projects::table.filter(projects::id.eq(id)))
                    .set(projects::name.eq(name))
                    .execute(self)
            }

            fn rename_found(&mut self, id: i64, name: &str) -> QueryResult<usize> {
                diesel::update(projects::table.find(id))
                    .set(projects::name.eq(name))
                    .execute(self)
            }

            fn delete_projects_of(&mut self, organization_id: i64) -> QueryResult<usize> {
                diesel::delete(
                    projects::table.filter(projects::organization_id.eq(organization_id)),
                )
                .execute(self)
            }

            fn delete_every_project(&mut self) -> QueryResult<usize> {
                diesel::delete(projects::table).execute(self)
            }

            fn project_names(&mut self) -> QueryResult<Vec<String>> {
                projects::table
                    .select(projects::name)
                    .order(projects::id)
                    .load(self)
            }

            fn write_invoices(&mut self) -> QueryResult<()> {
                diesel::insert_into(invoices::table)
                    .values((invoices::id.eq(1), invoices::total.eq(10)))
                    .execute(self)?;
                diesel::update(invoices::table)
                    .set(invoices::total.eq(11))
                    .execute(self)?;
                diesel::sql_query("DELETE FROM invoices").execute(self)?;
                Ok(())
            }

            fn own_outbox_ids(&mut self) -> QueryResult<Vec<i64>> {
                own_schema::cell_outboxes::table
                    .select(own_schema::cell_outboxes::id)
                    .load(self)
            }

            fn own_outbox_update(&mut self) -> QueryResult<usize> {
                use own_schema::cell_outboxes;
                diesel::update(cell_outboxes::table)
                    .set(cell_outboxes::category.eq(99))
                    .execute(self)
            }

            fn own_outbox_delete_shard(&mut self, shard: i64) -> QueryResult<usize> {
                use own_schema::cell_outboxes;
                diesel::delete(
                    cell_outboxes::table.filter(cell_outboxes::shard_identifier.eq(shard)),
                )
                .execute(self)
            }

            fn run_sql(&mut self, sql: &str) -> QueryResult<usize> {
                diesel::sql_query(sql).execute(self)
            }

            fn text(&mut self, sql: &str) -> QueryResult<String> {
                diesel::sql_query(sql)
                    .get_result::<Name>(self)
                    .map(|row| row.name)
            }
        }
    };
}

writes!(diesel::SqliteConnection);
#[cfg(feature = "postgres")]
writes!(diesel::PgConnection);
#[cfg(feature = "mysql")]
writes!(diesel::MysqlConnection);

/// The tables, one project, and a guard that records.
fn setup<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    conn.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                name TEXT NOT NULL);
         CREATE TABLE invoices (id BIGINT PRIMARY KEY, total BIGINT NOT NULL);",
    )
    .expect("create tables");
    outbox_context(conn, |ctx| project(1, "acme").insert(ctx)).expect("insert a project");
    Guard::new(protected())
        .on_violation(OnViolation::Record)
        .install(conn);
}

/// The tables the recorded violations name, and what they are.
fn reported<C: TestConnection>(conn: &mut C) -> Vec<(String, Protection)> {
    Guard::take_violations(conn)
        .into_iter()
        .map(
            |Violation {
                 table, protection, ..
             }| (table, protection),
        )
        .collect()
}

fn model(table: &str) -> Vec<(String, Protection)> {
    vec![(table.to_owned(), Protection::Model)]
}

fn library(table: &str) -> Vec<(String, Protection)> {
    vec![(table.to_owned(), Protection::Library)]
}

fn nothing() -> Vec<(String, Protection)> {
    Vec::new()
}

/// `insert_into(t).values(column.eq(..))` and `update(t.filter(..)).set(column.eq(..))`:
/// reported outside a context, not inside one.
fn dsl_column_inserts_and_updates_are_reported<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    setup(conn);
    conn.insert_project_columns(2)
        .expect("the insert runs (the guard records)");
    assert_eq!(reported(conn), model("projects"));
    conn.rename_filtered(1, "renamed").expect("the update runs");
    assert_eq!(reported(conn), model("projects"));
    conn.rename_found(2, "again").expect("the update runs");
    assert_eq!(reported(conn), model("projects"));

    // Inside an outbox context a model's table may be written (the application records
    // its rows): the rule Sentry's guard enforces too.
    outbox_context(conn, |ctx| {
        ctx.connection().rename_found(2, "in a context")?;
        ctx.write(CellOutbox::new(Category::ProjectUpdate, 7, 2))
    })
    .expect("the context commits");
    assert_eq!(reported(conn), nothing());
}

/// `diesel::delete` of a filtered table, and of the whole table.
fn deletes_of_a_filtered_table_are_reported<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    setup(conn);
    conn.delete_projects_of(7).expect("the delete runs");
    assert_eq!(reported(conn), model("projects"));
    conn.delete_every_project().expect("runs");
    assert_eq!(reported(conn), model("projects"));
}

/// `sql_query` (and `batch_execute`) with quoted and schema-qualified names, CTEs ending
/// in a write, upserts and REPLACE.
fn sql_query_with_quoted_and_qualified_names_is_reported<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    setup(conn);
    let dialect = conn.dialect();
    let (quoted, qualified) = match dialect {
        Dialect::Mysql => {
            let database = current(conn, "SELECT DATABASE() AS name");
            ("`projects`".to_owned(), format!("`{database}`.`projects`"))
        }
        Dialect::Postgres => {
            let schema = current(conn, "SELECT current_schema()::text AS name");
            (
                r#""projects""#.to_owned(),
                format!(r#""{schema}"."projects""#),
            )
        }
        Dialect::Sqlite => (
            r#""projects""#.to_owned(),
            r#""main"."projects""#.to_owned(),
        ),
    };
    let statements = [
        format!("UPDATE {quoted} SET name = 'quoted' WHERE id = 1"),
        format!("UPDATE {qualified} SET name = 'qualified' WHERE id = 1"),
        format!("DELETE FROM {qualified} WHERE id = 99"),
        format!("insert into {quoted} (id, organization_id, name) values (3, 7, 'lower case')"),
        format!(
            "INSERT INTO {quoted} (id, organization_id, name) VALUES (3, 7, 'upsert') {}",
            dialect.upsert("id", &["name"])
        ),
        // MariaDB has no CTE before a DELETE: there it is inside.
        match dialect {
            Dialect::Mysql => format!(
                "DELETE FROM {qualified} WHERE id IN \
                 (WITH gone AS (SELECT id FROM invoices) SELECT id FROM gone)"
            ),
            _ => format!(
                "WITH gone AS (SELECT id FROM invoices) \
                 DELETE FROM {qualified} WHERE id IN (SELECT id FROM gone)"
            ),
        },
    ];
    for statement in &statements {
        conn.run_sql(statement)
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
        assert_eq!(reported(conn), model("projects"), "{statement}");
    }
    if dialect != Dialect::Postgres {
        let replace =
            format!("REPLACE INTO {quoted} (id, organization_id, name) VALUES (1, 7, 'r')");
        conn.batch_execute(&replace).expect("REPLACE runs");
        assert_eq!(reported(conn), model("projects"), "{replace}");
    }
    conn.batch_execute("SELECT 1; DELETE FROM projects WHERE id = 99")
        .expect("a batch runs");
    assert_eq!(reported(conn), model("projects"));
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

fn current<C: Writes>(conn: &mut C, sql: &str) -> String {
    conn.text(sql).expect("read the current schema")
}

/// An application's own `table!` for `cell_outboxes` writes it with no library rule: every
/// write is reported, inside a context too, and reading it is not.
fn an_own_table_for_cell_outboxes_is_reported<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    setup(conn);
    assert_eq!(conn.count("cell_outboxes"), 1, "the insert's row waits");
    let ids = conn.own_outbox_ids().expect("reading it is fine");
    assert_eq!(ids.len(), 1);
    assert_eq!(reported(conn), nothing());

    conn.own_outbox_update().expect("runs");
    assert_eq!(reported(conn), library("cell_outboxes"));
    outbox_context(conn, |ctx| {
        ctx.connection().own_outbox_delete_shard(7)?;
        Ok::<_, Error>(())
    })
    .expect("the context commits");
    assert_eq!(reported(conn), library("cell_outboxes"));
    assert_eq!(
        conn.count("cell_outboxes"),
        0,
        "recorded, so the delete ran"
    );
}

/// The helpers' guard panics before the statement runs: the write does not happen.
fn the_default_guard_panics_and_the_write_does_not_happen<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    conn.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                name TEXT NOT NULL)",
    )
    .expect("create projects");
    outbox_context(conn, |ctx| project(1, "acme").insert(ctx)).expect("insert");
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn.run_sql("DELETE FROM projects")
    }))
    .expect_err("the guard panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message
            .contains("writes `projects`, a replicated model's table, outside an outbox context"),
        "{message}"
    );
    assert!(message.contains("guard::allow"), "{message}");
    assert_eq!(conn.count("projects"), 1, "the DELETE never ran");

    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn.batch_execute("DELETE FROM cell_outboxes")
    }))
    .expect_err("the guard panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("one of the outbox's own tables"),
        "{message}"
    );
    assert_eq!(
        conn.count("cell_outboxes"),
        1,
        "the row waits for its receiver"
    );

    // The escape hatch, for a migration or an admin script.
    guard::allow(conn, |conn| {
        conn.batch_execute("DELETE FROM projects WHERE id = 1")
    })
    .expect("allowed");
    assert_eq!(conn.count("projects"), 0);
}

/// The whole life of rows, operators' actions and tombstones included: the library's own
/// statements and the generated writes are never reported; reads and unprotected tables
/// neither.
fn the_librarys_statements_and_generated_writes_are_not_reported<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    setup(conn);
    // Generated writes, one and many, and hand-written rows.
    outbox_context(conn, |ctx| {
        project(2, "two").insert(ctx)?;
        project(2, "two, renamed").update(ctx)?;
        Project::save_all(ctx, &[project(3, "three"), project(4, "four")])?;
        project(3, "three").delete(ctx)?;
        Project::delete_by_ids(ctx, &[4])?;
        let event = ctx.unique_object_identifier()?;
        ctx.write(CellOutbox::new(Category::AuditLogEvent, 7, event))
    })
    .expect("the context commits");
    assert_eq!(reported(conn), nothing());

    // Reads, and writes of a table no model owns.
    assert_eq!(
        conn.project_names().expect("read"),
        ["acme", "two, renamed"]
    );
    conn.batch_execute("SELECT * FROM cell_outboxes ORDER BY id")
        .expect("read");
    conn.write_invoices().expect("invoices");
    assert_eq!(reported(conn), nothing());

    // The drain: a failure (shard state), parking, an operator's retry, the kill switch,
    // tombstones, delivery. None of its statements is even read: the receivers write
    // nothing, so the guard reads nothing.
    let read = Guard::statements_read(conn).expect("a guard");
    let fail = Arc::new(AtomicUsize::new(1));
    let failing = Arc::clone(&fail);
    let receivers = Receivers::new()
        .cell(Category::ProjectUpdate, |_: &mut C, _: &OutboxMessage| {
            Ok::<_, Error>(())
        })
        .cell(
            Category::AuditLogEvent,
            move |_: &mut C, _: &OutboxMessage| {
                if failing.load(Ordering::SeqCst) > 0 {
                    return Err("the audit log is down");
                }
                Ok(())
            },
        );
    let outbox = diesel_outbox::Outbox::builder(receivers)
        .default_exhaustion(Exhaustion::Park { max_attempts: 1 })
        .build();
    outbox.drain_due_shards(conn).expect("a round");
    let parked = outbox
        .parked(conn, OutboxTable::Cell, 10)
        .expect("read parked");
    assert_eq!(parked.len(), 1, "the audit event is parked");
    fail.store(0, Ordering::SeqCst);
    outbox.retry_parked(conn, &parked[0].key).expect("retry");
    let shard = ShardKey::Cell(Shard {
        scope: 0,
        identifier: 7,
    });
    outbox.skip_shard(conn, &shard).expect("skip");
    outbox.unskip_shard(conn, &shard).expect("unskip");
    outbox.retry_shard_now(conn, &shard).expect("retry now");
    drain_until_empty(conn, &outbox, 5).expect("drained");
    record_tombstone(conn, TombstoneTable::Control, "projects", 3).expect("tombstone");
    assert_eq!(
        tombstones(conn, TombstoneTable::Control, None)
            .expect("read")
            .len(),
        1
    );
    outbox
        .context(conn, |ctx| project(5, "flushed").save(ctx))
        .expect("a flushed context");
    assert_eq!(
        Guard::statements_read(conn),
        Some(read),
        "the library's statements are not read"
    );
    assert_eq!(
        conn.count("cell_outboxes"),
        0,
        "delivered, the last by the flush"
    );
    assert_eq!(reported(conn), nothing());
}

/// A receiver is application code: the drain's own statements are trusted, the
/// receiver's writes are checked as any other.
fn a_receivers_own_writes_are_checked<C: Writes>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    setup(conn);
    let receivers = Receivers::new().cell(
        Category::ProjectUpdate,
        |conn: &mut C, message: &OutboxMessage| {
            conn.rename_found(message.object_identifier, "touched by a receiver")?;
            Ok::<_, Error>(())
        },
    );
    let outbox = diesel_outbox::Outbox::new(receivers);
    let read = Guard::statements_read(conn).expect("a guard");
    drain_until_empty(conn, &outbox, 3).expect("drained");
    assert_eq!(reported(conn), model("projects"));
    assert_eq!(
        Guard::statements_read(conn),
        Some(read + 1),
        "the receiver's one statement, and none of the drain's"
    );
}

backend_tests!(
    dsl_column_inserts_and_updates_are_reported,
    deletes_of_a_filtered_table_are_reported,
    sql_query_with_quoted_and_qualified_names_is_reported,
    an_own_table_for_cell_outboxes_is_reported,
    the_default_guard_panics_and_the_write_does_not_happen,
    the_librarys_statements_and_generated_writes_are_not_reported,
    a_receivers_own_writes_are_checked,
);
