//! Expansion snapshots: what users get from the derives, formatted, checked into
//! `outbox-derive/snapshots/`. A change to the generated code shows up as a diff there.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p diesel-outbox-derive`.

use std::path::PathBuf;

use syn::{parse_quote, DeriveInput};

use crate::ast::Silo;
use crate::{expand, replicated_cell, replicated_control, valid};

/// The derive's output, then (since formatters leave macro bodies alone) the body of the
/// per-backend `macro_rules!` expanded for SQLite.
fn check(name: &str, input: &DeriveInput, silo: Silo, tokens: proc_macro2::TokenStream) {
    let file: syn::File = parse_quote! { #input #tokens };
    let model = valid::model(input, silo).expect("valid model");
    let writes = expand::writes_impl(&model, &quote::quote!(diesel::sqlite::SqliteConnection));
    let writes: syn::File = parse_quote! { #writes };
    let expanded = format!(
        "{}\n// `__outbox_model_writes!(diesel::sqlite::SqliteConnection)` expands to:\n\n{}",
        prettyplease::unparse(&file),
        prettyplease::unparse(&writes)
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("snapshots")
        .join(format!("{name}.expanded.rs"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("snapshots dir")).expect("create dir");
        std::fs::write(&path, &expanded).expect("write snapshot");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == expanded,
        "the expansion of {name} changed; review it and run UPDATE_SNAPSHOTS=1 cargo test -p diesel-outbox-derive\n--- new expansion ---\n{expanded}"
    );
}

#[test]
fn cell_model() {
    let input: DeriveInput = parse_quote! {
        #[derive(Queryable, Selectable, ReplicatedCell)]
        #[diesel(table_name = projects)]
        #[outbox(category = Category::ProjectUpdate)]
        pub struct Project {
            pub id: i64,
            pub organization_id: i64,
            pub name: String,
            pub description: Option<String>,
        }
    };
    check(
        "cell_model",
        &input,
        Silo::Cell,
        replicated_cell::derive(&input),
    );
}

#[test]
fn control_model() {
    let input: DeriveInput = parse_quote! {
        #[derive(Queryable, Selectable, ReplicatedControl)]
        #[diesel(table_name = users)]
        #[outbox(category = Category::UserUpdate, cells = User::cells, payload)]
        pub struct User {
            #[outbox(shard)]
            pub id: i64,
            pub name: String,
        }
    };
    check(
        "control_model",
        &input,
        Silo::Control,
        replicated_control::derive(&input),
    );
}
