//! Expansion snapshots: what users get from the derives, formatted, checked into
//! `outbox-derive/snapshots/`. A change to the generated code shows up as a diff there.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p diesel-outbox-derive`.

use std::path::PathBuf;

use syn::{parse_quote, DeriveInput};

use crate::ast::Derive;
use crate::{expand, replicated_cell, replicated_control, valid};

/// The derive's output, with the body of its `__outbox_derive!` version gate formatted as
/// items, then (since formatters leave macro bodies alone) the body of the per-backend
/// `macro_rules!` expanded for SQLite.
fn check(name: &str, input: &DeriveInput, derive: Derive, tokens: proc_macro2::TokenStream) {
    let (version, items) = gated_items(tokens);
    let file: syn::File = parse_quote! { #input };
    let model = valid::model(input, derive).expect("valid model");
    let writes = expand::writes_impl(&model, &quote::quote!(diesel::sqlite::SqliteConnection));
    let writes: syn::File = parse_quote! { #writes };
    let expanded = format!(
        "{}\n// ::diesel_outbox::__outbox_derive! {{ {version:?}, ... }} wraps:\n\n{}\n// `__outbox_model_writes!(diesel::sqlite::SqliteConnection)` expands to:\n\n{}",
        prettyplease::unparse(&file),
        prettyplease::unparse(&items),
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

/// The version literal and the items of `::diesel_outbox::__outbox_derive! { "x.y.z", items }`.
fn gated_items(tokens: proc_macro2::TokenStream) -> (String, syn::File) {
    let gate: syn::ItemMacro = syn::parse2(tokens).expect("the expansion is one macro call");
    let last = gate.mac.path.segments.last().expect("a macro path");
    assert_eq!(
        last.ident, "__outbox_derive",
        "the expansion is gated by version"
    );
    let parser = |input: syn::parse::ParseStream<'_>| {
        let version: syn::LitStr = input.parse()?;
        input.parse::<syn::Token![,]>()?;
        Ok((version.value(), input.parse::<syn::File>()?))
    };
    syn::parse::Parser::parse2(parser, gate.mac.tokens).expect("version, then items")
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
        Derive::Cell,
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
        Derive::Control,
        replicated_control::derive(&input),
    );
}

/// Every write-affecting diesel key a replicated model may carry, passed through to the
/// hidden row, and the per-model upsert it calls for.
#[test]
fn diesel_attributes_model() {
    let input: DeriveInput = parse_quote! {
        #[derive(Queryable, Selectable, ReplicatedCell)]
        #[diesel(table_name = crate::schema::documents, check_for_backend(diesel::sqlite::Sqlite))]
        #[diesel(treat_none_as_null = false)]
        #[outbox(category = Category::DocumentUpdate)]
        pub struct Document {
            #[diesel(column_name = document_id)]
            pub id: i64,
            #[outbox(shard)]
            pub organization_id: i64,
            #[diesel(serialize_as = String)]
            pub title: Title,
            #[diesel(treat_none_as_default_value = true, treat_none_as_null = true)]
            pub status: Option<String>,
            pub summary: Option<String>,
            #[diesel(skip_insertion)]
            pub revision: i32,
            #[diesel(skip_update)]
            pub created_by: String,
            #[diesel(select_expression = crate::schema::documents::title.concat("!"), select_expression_type = diesel::dsl::Concat<crate::schema::documents::title, &'static str>)]
            pub shout: String,
        }
    };
    check(
        "diesel_attributes_model",
        &input,
        Derive::Cell,
        replicated_cell::derive(&input),
    );
}
