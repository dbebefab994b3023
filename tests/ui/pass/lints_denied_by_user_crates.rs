//! A crate that denies the lints user crates commonly deny: the derives' expansion must
//! compile clean under them.
#![forbid(unsafe_code)]
#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    missing_copy_implementations,
    unnameable_types,
    unreachable_pub,
    unused_qualifications,
    unused_extern_crates,
    unused_import_braces,
    unused_lifetimes,
    unused_results,
    unused_macro_rules,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    rust_2018_idioms,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    elided_lifetimes_in_paths,
    explicit_outlives_requirements,
    let_underscore_drop,
    macro_use_extern_crate,
    meta_variable_misuse,
    redundant_lifetimes,
    unit_bindings,
    variant_size_differences
)]

use diesel::prelude::*;
use diesel_outbox::{outbox_context, ReplicatedCell, ReplicatedControl};

diesel_outbox::outbox_scopes_and_categories! {
    /// The application's scopes.
    pub scopes Scope {
        /// Shards by organization.
        Organization = 0 { shard: organization_id },
        /// Shards by user.
        User = 1 { shard: user_id },
    }
    /// The application's categories.
    pub categories Category {
        /// A project changed.
        ProjectUpdate = 1 { scope: Organization, silo: cell },
        /// A user changed.
        UserUpdate = 2 { scope: User, silo: control },
    }
}

/// The database schema.
pub mod schema {
    diesel::table! {
        /// Projects.
        projects (id) {
            /// Key.
            id -> BigInt,
            /// Shard.
            organization_id -> BigInt,
            /// Name.
            name -> Text,
            /// Description.
            description -> Nullable<Text>,
        }
    }

    diesel::table! {
        /// Notes.
        notes (id) {
            /// Key.
            id -> BigInt,
            /// Shard.
            organization_id -> BigInt,
            /// Text.
            text -> Nullable<Text>,
            /// Revision.
            revision -> Integer,
            /// Author.
            author -> Text,
        }
    }

    diesel::table! {
        /// Users.
        users (id) {
            /// Key.
            id -> BigInt,
            /// Name.
            name -> Text,
        }
    }
}

/// A cell model.
#[derive(Debug, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = schema::projects)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Project {
    /// Key.
    pub id: i64,
    /// Shard.
    pub organization_id: i64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// A cell model with diesel's write keys: a per-model upsert, an update that may write
/// nothing, fields a scope cannot take as its shard.
#[derive(Debug, Queryable, Selectable, ReplicatedCell)]
#[diesel(table_name = schema::notes, treat_none_as_null = false)]
#[outbox(category = Category::ProjectUpdate)]
pub struct Note {
    /// Key.
    pub id: i64,
    /// Shard.
    pub organization_id: i64,
    /// Text.
    #[diesel(treat_none_as_default_value = true)]
    pub text: Option<String>,
    /// Revision.
    #[diesel(skip_insertion, skip_update)]
    pub revision: i32,
    /// Author.
    #[diesel(skip_update)]
    pub author: String,
}

/// A control model.
#[derive(Debug, Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = schema::users)]
#[outbox(category = Category::UserUpdate, cells = User::cells, payload = User::summary)]
pub struct User {
    /// Key and shard.
    #[outbox(shard)]
    pub id: i64,
    /// Name.
    pub name: String,
}

impl User {
    fn cells(&self) -> Vec<&'static str> {
        vec!["eu"]
    }

    fn summary(&self) -> String {
        self.name.clone()
    }
}

fn main() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    diesel_outbox::run_migrations(&mut conn).unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        "CREATE TABLE projects (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, name TEXT NOT NULL, description TEXT);
         CREATE TABLE notes (id BIGINT PRIMARY KEY, organization_id BIGINT NOT NULL, text TEXT DEFAULT 'empty', revision INTEGER NOT NULL DEFAULT 1, author TEXT NOT NULL);
         CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);",
    )
    .unwrap();
    let project = Project { id: 1, organization_id: 7, name: "acme".into(), description: None };
    let user = User { id: 2, name: "ada".into() };
    let note = Note { id: 3, organization_id: 7, text: None, revision: 9, author: "ada".into() };
    outbox_context(&mut conn, |ctx| {
        project.save(ctx)?;
        user.insert(ctx)?;
        Note::save_all(ctx, std::slice::from_ref(&note))?;
        note.update(ctx)?;
        Project::delete_by_id(ctx, 1).map(drop)
    })
    .unwrap();
    // The project's save and delete coalesce in one transaction: one row, and the note's.
    assert_eq!(diesel_outbox::testing::cell_records(&mut conn).unwrap().len(), 2);
    assert_eq!(diesel_outbox::testing::control_records(&mut conn).unwrap().len(), 1);
}
