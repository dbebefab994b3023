//! diesel's associations with replicated models, on every backend: the derives implement
//! `HasTable` and `Identifiable` for reads (their write uses, `diesel::update(&model)` and
//! `diesel::delete(&model)`, do not compile: see `ui/fail/*_through_identifiable.rs`), so
//! a replicated model is a parent (`belonging_to(&project)`, `grouped_by`) and a child
//! (`#[diesel(belongs_to(..))]`, `belonging_to(&organization)`) as any diesel model is.

use diesel::associations::HasTable;
use diesel::prelude::*;
use diesel_outbox::{outbox_context, ModelWrites, ReplicatedCell};
use diesel_outbox_tests::{backend_tests, TestConnection};

diesel_outbox::outbox_scopes_and_categories! {
    pub scopes Scope {
        Organization = 0 { shard: organization_id },
    }
    pub categories Category {
        ProjectUpdate = 1 { scope: Organization, silo: cell },
    }
}

diesel::table! {
    orgs (id) {
        id -> BigInt,
        name -> Text,
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
    project_notes (id) {
        id -> BigInt,
        project_id -> BigInt,
        body -> Text,
    }
}

diesel::joinable!(projects -> orgs (organization_id));
diesel::joinable!(project_notes -> projects (project_id));
diesel::allow_tables_to_appear_in_same_query!(orgs, projects, project_notes);

/// An ordinary diesel model: the parent of a replicated one.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = orgs)]
pub struct Org {
    pub id: i64,
    pub name: String,
}

/// A replicated model: a child of `Org`, the parent of `ProjectNote`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Associations, ReplicatedCell)]
#[diesel(table_name = projects, belongs_to(Org, foreign_key = organization_id))]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
}

/// An ordinary diesel model, child of a replicated one.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations, Insertable,
)]
#[diesel(table_name = project_notes, belongs_to(Project))]
pub struct ProjectNote {
    pub id: i64,
    pub project_id: i64,
    pub body: String,
}

/// The association reads, once per backend (diesel's DSL is not generic over the
/// connection without a page of bounds).
trait Reads: TestConnection {
    fn insert_orgs_and_notes(&mut self, orgs: &[Org], notes: &[ProjectNote]) -> QueryResult<()>;
    fn projects_of(&mut self, org: &Org) -> QueryResult<Vec<Project>>;
    fn notes_of(&mut self, project: &Project) -> QueryResult<Vec<ProjectNote>>;
    fn notes_grouped(&mut self, projects: &[Project]) -> QueryResult<Vec<Vec<ProjectNote>>>;
    fn projects_named(&mut self, name: &str) -> QueryResult<Vec<Project>>;
    fn projects_with_orgs(&mut self) -> QueryResult<Vec<(Project, Org)>>;
}

macro_rules! reads {
    ($conn:ty) => {
        impl Reads for $conn {
            fn insert_orgs_and_notes(
                &mut self,
                orgs: &[Org],
                notes: &[ProjectNote],
            ) -> QueryResult<()> {
                diesel::insert_into(orgs::table)
                    .values(orgs)
                    .execute(self)?;
                diesel::insert_into(project_notes::table)
                    .values(notes)
                    .execute(self)?;
                Ok(())
            }

            fn projects_of(&mut self, org: &Org) -> QueryResult<Vec<Project>> {
                Project::belonging_to(org)
                    .select(Project::as_select())
                    .order(projects::id)
                    .load(self)
            }

            fn notes_of(&mut self, project: &Project) -> QueryResult<Vec<ProjectNote>> {
                ProjectNote::belonging_to(project)
                    .select(ProjectNote::as_select())
                    .order(project_notes::id)
                    .load(self)
            }

            fn notes_grouped(
                &mut self,
                projects: &[Project],
            ) -> QueryResult<Vec<Vec<ProjectNote>>> {
                let notes = ProjectNote::belonging_to(projects)
                    .select(ProjectNote::as_select())
                    .order(project_notes::id)
                    .load(self)?;
                Ok(notes.grouped_by(projects))
            }

            fn projects_named(&mut self, name: &str) -> QueryResult<Vec<Project>> {
                Project::table()
                    .filter(projects::name.eq(name))
                    .select(Project::as_select())
                    .load(self)
            }

            fn projects_with_orgs(&mut self) -> QueryResult<Vec<(Project, Org)>> {
                projects::table
                    .inner_join(orgs::table)
                    .select((Project::as_select(), Org::as_select()))
                    .order(projects::id)
                    .load(self)
            }
        }
    };
}

reads!(diesel::SqliteConnection);
#[cfg(feature = "postgres")]
reads!(diesel::PgConnection);
#[cfg(feature = "mysql")]
reads!(diesel::MysqlConnection);

fn project(id: i64, organization_id: i64, name: &str) -> Project {
    Project {
        id,
        organization_id,
        name: name.to_owned(),
    }
}

fn note(id: i64, project_id: i64, body: &str) -> ProjectNote {
    ProjectNote {
        id,
        project_id,
        body: body.to_owned(),
    }
}

fn associations_read_replicated_parents_and_children<C: Reads>(conn: &mut C)
where
    Project: ModelWrites<C>,
{
    conn.batch_execute(
        "CREATE TABLE orgs (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL,
                                name TEXT NOT NULL);
         CREATE TABLE project_notes (id BIGINT PRIMARY KEY, project_id BIGINT NOT NULL,
                                     body TEXT NOT NULL);",
    )
    .expect("create tables");
    let acme = Org {
        id: 1,
        name: "acme".into(),
    };
    let other = Org {
        id: 2,
        name: "other".into(),
    };
    let projects = [
        project(10, 1, "rockets"),
        project(11, 1, "anvils"),
        project(20, 2, "x"),
    ];
    outbox_context(conn, |ctx| Project::insert_all(ctx, &projects)).expect("insert projects");
    conn.insert_orgs_and_notes(
        &[acme.clone(), other.clone()],
        &[
            note(1, 10, "fuel"),
            note(2, 11, "iron"),
            note(3, 10, "fins"),
        ],
    )
    .expect("orgs and notes");

    // The replicated model as a child.
    assert_eq!(
        conn.projects_of(&acme).expect("belonging_to an org"),
        projects[..2]
    );
    assert_eq!(conn.projects_of(&other).expect("read"), projects[2..]);
    // As a parent: one, several, grouped.
    assert_eq!(
        conn.notes_of(&projects[0]).expect("belonging_to a project"),
        [note(1, 10, "fuel"), note(3, 10, "fins")]
    );
    assert_eq!(
        conn.notes_grouped(&projects).expect("grouped_by"),
        [
            vec![note(1, 10, "fuel"), note(3, 10, "fins")],
            vec![note(2, 11, "iron")],
            vec![],
        ]
    );
    // The table `HasTable` names reads as the model's table does, and joins still work.
    assert_eq!(
        conn.projects_named("anvils")
            .expect("read through HasTable"),
        [project(11, 1, "anvils")]
    );
    assert_eq!(
        conn.projects_with_orgs().expect("join"),
        [
            (projects[0].clone(), acme.clone()),
            (projects[1].clone(), acme),
            (projects[2].clone(), other),
        ]
    );
}

backend_tests!(associations_read_replicated_parents_and_children);
