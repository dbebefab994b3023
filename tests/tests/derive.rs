//! The derives on every backend: each write method leaves exactly the expected model rows
//! and outbox rows, and each write-affecting `#[diesel(...)]` key a model carries means
//! what diesel's own `Insertable` / `AsChangeset` make it mean.

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
        AttributeUpdate = 4 { scope: Organization, silo: cell },
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
    treat_none_as_null_false_leaves_none_columns_on_update_and_save,
    an_update_with_nothing_to_write_checks_the_row_and_records_it,
    treat_none_as_default_value_inserts_default_and_updates_null,
    skip_insertion_and_skip_update_leave_their_columns,
    column_name_serialize_as_and_computed_fields,
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

// ---- `#[diesel(...)]` keys that change what a write does.

diesel::table! {
    drafts (id) {
        id -> BigInt,
        organization_id -> BigInt,
        title -> Text,
        body -> Nullable<Text>,
        note -> Nullable<Text>,
    }
}

diesel::table! {
    tags (id) {
        id -> BigInt,
        label -> Nullable<Text>,
    }
}

diesel::table! {
    settings (id) {
        id -> BigInt,
        organization_id -> BigInt,
        theme -> Nullable<Text>,
    }
}

diesel::table! {
    tickets (id) {
        id -> BigInt,
        organization_id -> BigInt,
        number -> Integer,
        opened_by -> Text,
        subject -> Text,
    }
}

diesel::table! {
    labels (label_id) {
        label_id -> BigInt,
        org -> BigInt,
        name -> Text,
        shade -> Text,
    }
}

/// `treat_none_as_null = false`: an update leaves a `None` column as it is, except where
/// the field says `treat_none_as_null = true`. Inserts still write NULL.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = drafts, treat_none_as_null = false)]
#[outbox(category = Category::AttributeUpdate)]
pub struct Draft {
    pub id: i64,
    pub organization_id: i64,
    pub title: String,
    pub body: Option<String>,
    #[diesel(treat_none_as_null = true)]
    pub note: Option<String>,
}

/// Every column an update writes may be `None`: an update of `None` writes nothing.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = tags, treat_none_as_null = false)]
#[outbox(category = Category::AttributeUpdate)]
pub struct Tag {
    #[outbox(shard)]
    pub id: i64,
    pub label: Option<String>,
}

/// `treat_none_as_default_value = true`: an insert writes the column's DEFAULT for `None`;
/// an update (the derive's default, `treat_none_as_null`) writes NULL.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = settings)]
#[outbox(category = Category::AttributeUpdate)]
pub struct Setting {
    pub id: i64,
    pub organization_id: i64,
    #[diesel(treat_none_as_default_value = true)]
    pub theme: Option<String>,
}

/// `skip_insertion`: the insert leaves `number` to its DEFAULT, updates write it;
/// `skip_update`: the insert writes `opened_by`, updates leave it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = tickets)]
#[outbox(category = Category::AttributeUpdate)]
pub struct Ticket {
    pub id: i64,
    pub organization_id: i64,
    #[diesel(skip_insertion)]
    pub number: i32,
    #[diesel(skip_update)]
    pub opened_by: String,
    pub subject: String,
}

/// A name kept as typed but stored upper case.
#[derive(Debug, Clone, PartialEq)]
pub struct Shouted(pub String);

impl From<Shouted> for String {
    fn from(name: Shouted) -> String {
        name.0.to_uppercase()
    }
}

impl From<String> for Shouted {
    fn from(stored: String) -> Shouted {
        Shouted(stored)
    }
}

/// `column_name` (an identifier and a string), `serialize_as`, and a computed field
/// (`select_expression`), which no write touches.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = labels, primary_key(id))]
#[outbox(category = Category::AttributeUpdate, shard = organization)]
pub struct Label {
    #[diesel(column_name = label_id)]
    pub id: i64,
    #[diesel(column_name = "org")]
    pub organization: i64,
    #[diesel(serialize_as = String, deserialize_as = String)]
    pub name: Shouted,
    #[diesel(select_expression = labels::shade.concat("!"), select_expression_type = diesel::dsl::Concat<labels::shade, &'static str>)]
    pub shade_shouted: String,
    pub shade: String,
}

fn create_attribute_tables<C: TestConnection>(conn: &mut C) {
    conn.batch_execute(
        "CREATE TABLE drafts (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                              title TEXT NOT NULL, body TEXT NULL, note TEXT NULL);
         CREATE TABLE tags (id BIGINT PRIMARY KEY, label TEXT NULL);
         CREATE TABLE settings (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                theme TEXT NULL DEFAULT 'light');
         CREATE TABLE tickets (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                               number INTEGER NOT NULL DEFAULT 7, opened_by TEXT NOT NULL,
                               subject TEXT NOT NULL);
         CREATE TABLE labels (label_id BIGINT PRIMARY KEY, org BIGINT NOT NULL,
                              name TEXT NOT NULL, shade TEXT NOT NULL);",
    )
    .expect("create attribute tables");
}

/// Whether exactly one row of `table` satisfies `condition` (SQL, the same on every
/// backend): what the table really holds, read past the model.
fn holds<C: TestConnection>(conn: &mut C, table: &str, condition: &str) -> bool {
    conn.scalar(&format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE {condition}"
    )) == 1
}

/// The object identifiers of the cell outbox rows, in order.
fn recorded_objects<C: TestConnection>(conn: &mut C) -> Vec<i64> {
    conn.cell_rows()
        .iter()
        .map(|row| row.object_identifier)
        .collect()
}

fn draft(id: i64, body: Option<&str>, note: Option<&str>) -> Draft {
    Draft {
        id,
        organization_id: 5,
        title: format!("draft {id}"),
        body: body.map(str::to_owned),
        note: note.map(str::to_owned),
    }
}

fn treat_none_as_null_false_leaves_none_columns_on_update_and_save<C: TestConnection>(conn: &mut C)
where
    Draft: diesel_outbox::ModelWrites<C>,
{
    create_attribute_tables(conn);
    // Inserts write the whole state: `None` is NULL.
    let first = draft(1, Some("body 1"), Some("note 1"));
    let second = draft(2, None, None);
    outbox_context(conn, |ctx| {
        Draft::insert_all(ctx, &[first.clone(), second.clone()])
    })
    .expect("insert");
    assert!(holds(
        conn,
        "drafts",
        "id = 2 AND body IS NULL AND note IS NULL"
    ));

    // `body: None` is left as it is; `note` says `treat_none_as_null = true`: NULL.
    let mut renamed = draft(1, None, None);
    renamed.title = "renamed".into();
    outbox_context(conn, |ctx| renamed.update(ctx)).expect("update");
    assert!(holds(
        conn,
        "drafts",
        "id = 1 AND title = 'renamed' AND body = 'body 1' AND note IS NULL"
    ));
    // A `Some` is written.
    outbox_context(conn, |ctx| draft(1, Some("body 2"), None).update(ctx)).expect("update");
    assert!(holds(conn, "drafts", "id = 1 AND body = 'body 2'"));

    // `save` of an existing row is an update by the same rule; of a new row an insert.
    outbox_context(conn, |ctx| draft(1, None, Some("note 3")).save(ctx)).expect("save");
    assert!(holds(
        conn,
        "drafts",
        "id = 1 AND title = 'draft 1' AND body = 'body 2' AND note = 'note 3'"
    ));
    // `save_all`, mixed: each model's own `None`s are left, one upsert per model.
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| {
        Draft::save_all(
            ctx,
            &[
                draft(1, None, None),
                draft(2, Some("body 2b"), None),
                draft(3, None, Some("note 3c")),
            ],
        )
    })
    .expect("save_all");
    assert_eq!(log.matching(&["INSERT", "drafts"]).len(), 3);
    assert!(holds(
        conn,
        "drafts",
        "id = 1 AND body = 'body 2' AND note IS NULL"
    ));
    assert!(holds(
        conn,
        "drafts",
        "id = 2 AND body = 'body 2b' AND note IS NULL"
    ));
    assert!(holds(
        conn,
        "drafts",
        "id = 3 AND body IS NULL AND note = 'note 3c'"
    ));
    // `update_all` by the same rule.
    outbox_context(conn, |ctx| {
        Draft::update_all(ctx, &[draft(2, None, Some("n")), draft(3, Some("b"), None)])
    })
    .expect("update_all");
    assert!(holds(
        conn,
        "drafts",
        "id = 2 AND body = 'body 2b' AND note = 'n'"
    ));
    assert!(holds(
        conn,
        "drafts",
        "id = 3 AND body = 'b' AND note IS NULL"
    ));
    assert_eq!(
        recorded_objects(conn),
        vec![1, 2, 1, 1, 1, 1, 2, 3, 2, 3],
        "one outbox row per model written"
    );
}

fn an_update_with_nothing_to_write_checks_the_row_and_records_it<C: TestConnection>(conn: &mut C)
where
    Tag: diesel_outbox::ModelWrites<C>,
{
    create_attribute_tables(conn);
    let tagged = Tag {
        id: 1,
        label: Some("red".into()),
    };
    let blank = |id| Tag { id, label: None };
    outbox_context(conn, |ctx| tagged.insert(ctx)).expect("insert");
    // Nothing to write: the row is only checked, and the write still records its row.
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| blank(1).update(ctx)).expect("update of nothing");
    assert!(log.matching(&["UPDATE", "tags"]).is_empty());
    assert!(holds(conn, "tags", "id = 1 AND label = 'red'"));
    let missing = outbox_context(conn, |ctx| blank(9).update(ctx));
    assert!(
        matches!(
            missing,
            Err(Error::ModelNotFound {
                table: "tags",
                object_identifier: 9
            })
        ),
        "{missing:?}"
    );
    // `save`: an existing row is kept as it is, a new one inserted with NULL.
    outbox_context(conn, |ctx| Tag::save_all(ctx, &[blank(1), blank(2)])).expect("save");
    assert!(holds(conn, "tags", "id = 1 AND label = 'red'"));
    assert!(holds(conn, "tags", "id = 2 AND label IS NULL"));
    assert_eq!(recorded_objects(conn), vec![1, 1, 1, 2]);
}

fn treat_none_as_default_value_inserts_default_and_updates_null<C: TestConnection>(conn: &mut C)
where
    Setting: diesel_outbox::ModelWrites<C>,
{
    create_attribute_tables(conn);
    let setting = |id: i64, theme: Option<&str>| Setting {
        id,
        organization_id: 3,
        theme: theme.map(str::to_owned),
    };
    outbox_context(conn, |ctx| setting(1, None).insert(ctx)).expect("insert");
    assert!(holds(conn, "settings", "id = 1 AND theme = 'light'"));
    outbox_context(conn, |ctx| {
        Setting::insert_all(ctx, &[setting(2, Some("dark")), setting(3, None)])
    })
    .expect("insert_all");
    assert!(holds(conn, "settings", "id = 2 AND theme = 'dark'"));
    assert!(holds(conn, "settings", "id = 3 AND theme = 'light'"));
    // An update writes NULL (the update's rule, `treat_none_as_null`, is the default).
    outbox_context(conn, |ctx| setting(2, None).update(ctx)).expect("update");
    assert!(holds(conn, "settings", "id = 2 AND theme IS NULL"));
    // `save`: a new row's `None` is the DEFAULT, an existing row's is NULL.
    outbox_context(conn, |ctx| {
        Setting::save_all(ctx, &[setting(3, None), setting(4, None)])
    })
    .expect("save_all");
    assert!(holds(conn, "settings", "id = 3 AND theme IS NULL"));
    assert!(holds(conn, "settings", "id = 4 AND theme = 'light'"));
    outbox_context(conn, |ctx| setting(4, Some("dark")).save(ctx)).expect("save");
    assert!(holds(conn, "settings", "id = 4 AND theme = 'dark'"));
    assert_eq!(recorded_objects(conn), vec![1, 2, 3, 2, 3, 4, 4]);
}

fn skip_insertion_and_skip_update_leave_their_columns<C: TestConnection>(conn: &mut C)
where
    Ticket: diesel_outbox::ModelWrites<C>,
{
    create_attribute_tables(conn);
    let ticket = |id: i64, number: i32, opened_by: &str, subject: &str| Ticket {
        id,
        organization_id: 8,
        number,
        opened_by: opened_by.to_owned(),
        subject: subject.to_owned(),
    };
    // The insert leaves `number` to the column's DEFAULT (7) and writes `opened_by`.
    outbox_context(conn, |ctx| ticket(1, 100, "ada", "s1").insert(ctx)).expect("insert");
    assert!(holds(
        conn,
        "tickets",
        "id = 1 AND number = 7 AND opened_by = 'ada' AND subject = 's1'"
    ));
    // The update writes `number` and leaves `opened_by`.
    outbox_context(conn, |ctx| ticket(1, 100, "bob", "s2").update(ctx)).expect("update");
    assert!(holds(
        conn,
        "tickets",
        "id = 1 AND number = 100 AND opened_by = 'ada' AND subject = 's2'"
    ));
    // `save`: an insert for a new row, an update for an existing one, each as above.
    outbox_context(conn, |ctx| {
        Ticket::save_all(
            ctx,
            &[ticket(1, 101, "carl", "s3"), ticket(2, 200, "dora", "t1")],
        )
    })
    .expect("save_all");
    assert!(holds(
        conn,
        "tickets",
        "id = 1 AND number = 101 AND opened_by = 'ada' AND subject = 's3'"
    ));
    assert!(holds(
        conn,
        "tickets",
        "id = 2 AND number = 7 AND opened_by = 'dora' AND subject = 't1'"
    ));
    assert_eq!(recorded_objects(conn), vec![1, 1, 1, 2]);
}

fn column_name_serialize_as_and_computed_fields<C: TestConnection>(conn: &mut C)
where
    Label: diesel_outbox::ModelWrites<C>,
{
    create_attribute_tables(conn);
    let label = |id: i64, name: &str, shade: &str| Label {
        id,
        organization: 4,
        name: Shouted(name.to_owned()),
        shade_shouted: "never written".to_owned(),
        shade: shade.to_owned(),
    };
    outbox_context(conn, |ctx| label(1, "urgent", "red").insert(ctx)).expect("insert");
    assert!(holds(
        conn,
        "labels",
        "label_id = 1 AND org = 4 AND name = 'URGENT' AND shade = 'red'"
    ));
    // Many rows: one statement, `excluded` for every written column.
    let log = StatementLog::attach(conn);
    outbox_context(conn, |ctx| {
        Label::save_all(ctx, &[label(1, "later", "blue"), label(2, "new", "green")])
    })
    .expect("save_all");
    assert_eq!(log.matching(&["INSERT", "labels"]).len(), 1);
    assert!(holds(
        conn,
        "labels",
        "label_id = 1 AND name = 'LATER' AND shade = 'blue'"
    ));
    outbox_context(conn, |ctx| label(2, "renamed", "green").update(ctx)).expect("update");
    assert!(holds(conn, "labels", "label_id = 2 AND name = 'RENAMED'"));
    // Read back through `Selectable`: the computed field is computed.
    let stored = <Label as diesel_outbox::ModelWrites<C>>::load_row(conn, 2).expect("loads");
    assert_eq!(
        stored,
        Some(Label {
            name: Shouted("RENAMED".into()),
            shade_shouted: "green!".into(),
            ..label(2, "", "green")
        })
    );
    // A delete returns the row through `Selectable`, the computed field included.
    let deleted = outbox_context(conn, |ctx| Label::delete_by_ids(ctx, &[1, 2])).expect("delete");
    assert_eq!(deleted, 2);
    assert_eq!(conn.count("labels"), 0);
    let rows = conn.cell_rows();
    assert_eq!(recorded_objects(conn), vec![1, 1, 2, 2, 1, 2]);
    assert!(rows.iter().all(|row| row.shard_identifier == 4));
}
