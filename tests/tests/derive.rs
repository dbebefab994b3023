//! The derives on every backend: each write method leaves exactly the expected model rows
//! and outbox rows.

use diesel::prelude::*;
use diesel_outbox::category::{OutboxCategory, OutboxScope};
use diesel_outbox::row::{CellOutboxRecord, ControlOutboxRecord};
use diesel_outbox::{outbox_context, Error, ReplicatedCell, ReplicatedControl};
use diesel_outbox_tests::{backend_tests, StatementLog, TestConnection};
use serde::{Deserialize, Serialize};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
        User = 1 { shard: user_id },
    }
    pub categories Category {
        OrganizationUpdate = 1 { scope: Organization, silo: both },
        ProjectUpdate = 2 { scope: Organization, silo: cell },
        UserUpdate = 3 { scope: User, silo: control },
    }
}

diesel::table! {
    projects (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
        description -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        home_cell -> Text,
    }
}

/// Shard from the scope's declared field (`organization_id`), payload = the model.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ReplicatedCell,
)]
#[diesel(table_name = projects)]
#[outbox(category = Category::ProjectUpdate, payload)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
    pub description: Option<String>,
}

/// Shard marked on the field, cells from a function.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = User::cells)]
pub struct User {
    #[outbox(shard)]
    pub id: i64,
    pub name: String,
    pub home_cell: String,
}

impl User {
    fn cells(&self) -> Vec<String> {
        vec![self.home_cell.clone(), "control-mirror".to_owned()]
    }
}

fn project(id: i64, organization_id: i64, name: &str) -> Project {
    Project {
        id,
        organization_id,
        name: name.to_owned(),
        description: None,
    }
}

fn user(id: i64, name: &str, home_cell: &str) -> User {
    User {
        id,
        name: name.to_owned(),
        home_cell: home_cell.to_owned(),
    }
}

fn create_tables<C: TestConnection>(conn: &mut C) {
    conn.batch_execute(
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                name TEXT NOT NULL, description TEXT NULL);
         CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, home_cell TEXT NOT NULL);",
    )
    .expect("create model tables");
}

fn expect_cell_row(row: &CellOutboxRecord, project: &Project) {
    assert_eq!(
        row.category,
        <Category::ProjectUpdate as OutboxCategory>::NUMBER
    );
    assert_eq!(
        row.shard_scope,
        <Scope::Organization as OutboxScope>::NUMBER
    );
    assert_eq!(row.shard_identifier, project.organization_id);
    assert_eq!(row.object_identifier, project.id);
    assert_eq!(
        row.payload_as::<Project>().expect("decodes").as_ref(),
        Some(project)
    );
}

backend_tests!(
    insert_writes_the_model_and_its_row,
    update_and_save_write_the_new_state,
    update_of_a_missing_row_is_an_error,
    delete_records_the_shard_the_row_had,
    failing_write_rolls_back_model_and_outbox,
    bulk_insert_of_a_thousand_models_is_one_insert_each,
    bulk_save_and_delete,
    control_models_write_one_row_per_cell,
);

fn insert_writes_the_model_and_its_row<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let acme = project(1, 42, "acme");
    outbox_context(conn, |ctx| acme.insert(ctx)).expect("insert commits");

    let loaded: Vec<Project> = <Project as diesel_outbox::ModelWrites<C>>::load_row(conn, 1)
        .expect("loads")
        .into_iter()
        .collect();
    assert_eq!(loaded, vec![acme.clone()]);
    let rows = conn.cell_rows();
    assert_eq!(rows.len(), 1);
    expect_cell_row(&rows[0], &acme);
    assert_eq!(
        acme.shard_identifier(),
        42,
        "the shard comes from the scope's field"
    );
}

fn update_and_save_write_the_new_state<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let mut acme = project(1, 42, "acme");
    outbox_context(conn, |ctx| acme.insert(ctx)).expect("insert");
    acme.name = "acme inc".into();
    acme.description = Some("renamed".into());
    outbox_context(conn, |ctx| acme.update(ctx)).expect("update");
    let mut beta = project(2, 43, "beta");
    outbox_context(conn, |ctx| beta.save(ctx)).expect("save inserts");
    beta.description = Some("saved twice".into());
    outbox_context(conn, |ctx| beta.save(ctx)).expect("save updates");
    // An update back to NULL writes NULL (the model's whole state is written).
    acme.description = None;
    outbox_context(conn, |ctx| acme.update(ctx)).expect("update to null");

    for expected in [&acme, &beta] {
        let stored =
            <Project as diesel_outbox::ModelWrites<C>>::load_row(conn, expected.id).expect("loads");
        assert_eq!(stored.as_ref(), Some(expected));
    }
    let rows = conn.cell_rows();
    assert_eq!(rows.len(), 5, "one outbox row per write transaction");
    expect_cell_row(&rows[3], &beta);
    expect_cell_row(&rows[4], &acme);
}

fn update_of_a_missing_row_is_an_error<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let ghost = project(9, 1, "ghost");
    let result = outbox_context(conn, |ctx| ghost.update(ctx));
    assert!(
        matches!(
            result,
            Err(Error::ModelNotFound {
                table: "projects",
                object_identifier: 9
            })
        ),
        "{result:?}"
    );
    assert_eq!(conn.count("cell_outboxes"), 0);
}

fn delete_records_the_shard_the_row_had<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let acme = project(1, 42, "acme");
    let beta = project(2, 43, "beta");
    outbox_context(conn, |ctx| {
        Project::insert_all(ctx, &[acme.clone(), beta.clone()])
    })
    .expect("insert");
    let deleted = outbox_context(conn, |ctx| {
        let by_id = Project::delete_by_id(ctx, 1)?;
        let missing = Project::delete_by_id(ctx, 77)?;
        // A stale in-memory copy: the row's stored shard (43) is what the row records.
        let stale = project(2, 999, "stale");
        let by_value = stale.delete(ctx)?;
        Ok::<_, Error>((by_id, missing, by_value))
    })
    .expect("delete");
    assert_eq!(deleted, (true, false, true));
    assert_eq!(conn.count("projects"), 0);
    let rows = conn.cell_rows();
    assert_eq!(rows.len(), 4);
    expect_cell_row(&rows[2], &acme);
    expect_cell_row(&rows[3], &beta);
}

fn failing_write_rolls_back_model_and_outbox<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let acme = project(1, 42, "acme");
    let result = outbox_context(conn, |ctx| {
        acme.insert(ctx)?;
        acme.insert(ctx) // duplicate primary key
    });
    assert!(matches!(result, Err(Error::Database(_))), "{result:?}");
    assert_eq!(conn.count("projects"), 0);
    assert_eq!(conn.count("cell_outboxes"), 0);
}

fn bulk_insert_of_a_thousand_models_is_one_insert_each<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let models: Vec<Project> = (0..1_000).map(|id| project(id, id % 10, "bulk")).collect();
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| Project::insert_all(ctx, &models)).expect("bulk insert");
    assert_eq!(log.matching(&["INSERT", "projects"]).len(), 1);
    assert_eq!(log.matching(&["INSERT", "cell_outboxes"]).len(), 1);
    assert_eq!(conn.count("projects"), 1_000);
    let rows = conn.cell_rows();
    assert_eq!(rows.len(), 1_000);
    for (row, model) in rows.iter().zip(&models) {
        expect_cell_row(row, model);
    }
}

fn bulk_save_and_delete<C: TestConnection>(conn: &mut C)
where
    Project: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let first: Vec<Project> = (0..50).map(|id| project(id, 1, "first")).collect();
    outbox_context(conn, |ctx| Project::insert_all(ctx, &first)).expect("insert");
    // Half existing, half new: one upsert.
    let second: Vec<Project> = (25..75).map(|id| project(id, 1, "second")).collect();
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| Project::save_all(ctx, &second)).expect("save_all");
    assert_eq!(log.matching(&["INSERT", "projects"]).len(), 1);
    assert_eq!(conn.count("projects"), 75);
    let renamed = <Project as diesel_outbox::ModelWrites<C>>::load_row(conn, 30).expect("loads");
    assert_eq!(renamed.map(|p| p.name), Some("second".to_owned()));

    let mut changed = second.clone();
    for model in &mut changed {
        model.name = "third".into();
    }
    outbox_context(conn, |ctx| Project::update_all(ctx, &changed)).expect("update_all");

    let ids: Vec<i64> = (0..60).collect();
    let deleted = outbox_context(conn, |ctx| Project::delete_by_ids(ctx, &ids)).expect("delete");
    assert_eq!(deleted, 60);
    let deleted = outbox_context(conn, |ctx| Project::delete_all(ctx, &changed)).expect("delete");
    assert_eq!(deleted, 15, "only the rows still there");
    assert_eq!(conn.count("projects"), 0);
    // Coalescing per transaction: 50 + 50 + 50 + 60 + 15 rows.
    assert_eq!(conn.count("cell_outboxes"), 225);
}

fn control_models_write_one_row_per_cell<C: TestConnection>(conn: &mut C)
where
    User: diesel_outbox::ModelWrites<C>,
{
    create_tables(conn);
    let ada = user(7, "ada", "eu");
    outbox_context(conn, |ctx| ada.save(ctx)).expect("save");
    let rows: Vec<ControlOutboxRecord> = conn.control_rows();
    let cells: Vec<&str> = rows.iter().map(|r| r.cell_name.as_str()).collect();
    assert_eq!(cells, vec!["control-mirror", "eu"]);
    for row in &rows {
        assert_eq!(
            row.category,
            <Category::UserUpdate as OutboxCategory>::NUMBER
        );
        assert_eq!(row.shard_scope, <Scope::User as OutboxScope>::NUMBER);
        assert_eq!((row.shard_identifier, row.object_identifier), (7, 7));
        assert_eq!(row.payload, None);
    }
    assert_eq!(
        ada.target_cells(),
        vec!["eu".to_owned(), "control-mirror".to_owned()]
    );
    outbox_context(conn, |ctx| User::delete_by_id(ctx, 7)).expect("delete");
    assert_eq!(conn.count("control_outboxes"), 4);
    assert_eq!(conn.count("users"), 0);
}
