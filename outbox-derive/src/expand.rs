//! Code generation for a checked [`Model`]. Everything is wrapped in `const _: () = {...}`,
//! reaches the runtime through its hidden path for this release alone
//! (`::diesel_outbox::__private_<version>`), and is handed to the runtime's
//! `__outbox_derive!` with this crate's version, which expands it only if the runtime is
//! of the same release (one clear error otherwise).
//!
//! What is generated, in order:
//! 1. a hidden row type, `Insertable` + `AsChangeset`, borrowing the model's fields (a
//!    `serialize_as` field is cloned) and carrying the model's write keys, so that
//!    diesel's own derives give them their meaning: the only way to write the table, and
//!    unnameable outside the block, so the model itself cannot be passed to
//!    `insert_into(..).values(..)` or `update(..).set(..)`;
//! 2. the `ReplicatedCell` / `ReplicatedControl` impl (category, identifiers, payload);
//! 3. `NamedField` impls, through which a scope's declaration finds its shard field, the
//!    check that neither the model nor a reference to it is `Insertable` or `AsChangeset`,
//!    and diesel's `HasTable` and `Identifiable` for associations (reads only);
//! 4. the model's SQL (`ModelWrites`) once per backend the runtime was built with: the
//!    row's INSERT and UPDATE, and an upsert that is one statement for many models unless
//!    the model's keys make each model's update its own (MySQL's upsert and delete come
//!    from [`crate::mysql`]);
//! 5. the write methods, which all take `&mut OutboxContext`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{option_inner, Cells, Derive, Model, Payload, Shard};

pub fn model(model: &Model<'_>) -> TokenStream {
    let row = row_type(model);
    let replicated = replicated_impl(model);
    let named_fields = named_field_impls(model);
    let no_bypass = no_bypass_check(model);
    let identity = identity_impls(model);
    let writes = model_writes(model);
    let methods = write_methods(model.ident, Some(model));
    wrap(quote! {
        #row
        #replicated
        #named_fields
        #no_bypass
        #identity
        #writes
        #methods
    })
}

/// The runtime's hidden path for this release.
fn private_path() -> TokenStream {
    let name = format!(
        "__private_{}",
        env!("CARGO_PKG_VERSION").replace(['.', '-', '+'], "_")
    );
    let ident = syn::Ident::new(&name, proc_macro2::Span::call_site());
    quote!(::diesel_outbox::#ident)
}

/// `items` in an anonymous const (nothing leaks into the user's namespace), with the lints
/// user crates commonly deny allowed (as serde_derive does), behind the version check.
fn wrap(items: TokenStream) -> TokenStream {
    let private = private_path();
    let version = env!("CARGO_PKG_VERSION");
    quote! {
        ::diesel_outbox::__outbox_derive! { #version,
            #[doc(hidden)]
            #[allow(
                non_upper_case_globals,
                non_camel_case_types,
                unused_attributes,
                unused_qualifications,
                unused_extern_crates,
                missing_docs,
                unreachable_pub,
                clippy::absolute_paths,
                clippy::used_underscore_binding,
                clippy::needless_lifetimes,
                clippy::missing_docs_in_private_items
            )]
            const _: () = {
                use #private as __outbox;
                #items
            };
        }
    }
}

/// The write methods alone, with unreachable bodies: emitted beside the errors of an
/// invalid model so that its call sites do not add a cascade of "no method" errors.
pub fn stubs(ident: &syn::Ident) -> TokenStream {
    wrap(write_methods(ident, None))
}

/// The hidden row: the model's fields as diesel's own `Insertable` and `AsChangeset` see
/// them, with the model's write-affecting `#[diesel(...)]` keys passed through, so that
/// each write means what those derives would make it mean. Unless the model says
/// otherwise, the whole state is written: `None` is NULL, never "leave as is" or DEFAULT.
fn row_type(model: &Model<'_>) -> TokenStream {
    let table = &model.table;
    let ident = model.ident;
    let key_column = &model.key().column;
    let (none_as_default, none_as_null) = (model.none_as_default, model.none_as_null);
    let mut fields = Vec::new();
    let mut inits = Vec::new();
    let mut borrows = false;
    for (index, field) in model.row_fields() {
        let name = field.ident;
        let mut keys = vec![{
            let column = &field.column;
            quote!(column_name = #column)
        }];
        if !model.inserts(index) {
            keys.push(quote!(skip_insertion));
        }
        // The key too: diesel finds the key by column name, `skip_update` says it plainly.
        if !model.updates(index) {
            keys.push(quote!(skip_update));
        }
        if let Some(value) = field.none_as_default {
            keys.push(quote!(treat_none_as_default_value = #value));
        }
        if let Some(value) = field.none_as_null {
            keys.push(quote!(treat_none_as_null = #value));
        }
        let (ty, init) = match (&field.serialize_as, option_inner(field.ty)) {
            // diesel converts the owned value with `Into`; the model is borrowed, so the
            // field is cloned first (an error at the field's type if it is not `Clone`).
            (Some(target), _) => {
                keys.push(quote!(serialize_as = #target));
                let ty = field.ty;
                let init = quote_spanned!(ty.span()=> ::core::clone::Clone::clone(&model.#name));
                (quote!(#ty), init)
            }
            // `Option<&T>` rather than `&Option<T>`: diesel's expressions exist for the former.
            (None, Some(inner)) => (
                quote!(::core::option::Option<&'__outbox #inner>),
                quote!(model.#name.as_ref()),
            ),
            (None, None) => {
                let ty = field.ty;
                (quote!(&'__outbox #ty), quote!(&model.#name))
            }
        };
        borrows |= field.serialize_as.is_none();
        fields.push(quote!(#[diesel(#(#keys),*)] #name: #ty));
        inits.push(quote!(#name: #init));
    }
    let as_changeset = updates_any(model).then(|| quote!(, __outbox::diesel::AsChangeset));
    let (lifetime, model_ref) = if borrows {
        (quote!(<'__outbox>), quote!(&'__outbox #ident))
    } else {
        (quote!(), quote!(&#ident))
    };
    quote! {
        #[derive(__outbox::diesel::Insertable #as_changeset)]
        #[diesel(
            table_name = #table,
            primary_key(#key_column),
            treat_none_as_default_value = #none_as_default,
            treat_none_as_null = #none_as_null
        )]
        #[doc(hidden)]
        pub struct __OutboxRow #lifetime { #(#fields),* }

        #[automatically_derived]
        impl #lifetime __OutboxRow #lifetime {
            fn of(model: #model_ref) -> Self {
                __OutboxRow { #(#inits),* }
            }
        }
    }
}

/// Whether an UPDATE of the model writes any column.
pub(crate) fn updates_any(model: &Model<'_>) -> bool {
    (0..model.fields.len()).any(|index| model.updates(index))
}

/// When an UPDATE of `model` (a `&Self` in the generated code) writes nothing: every
/// column it would write is a `None` it leaves as is. `None` when it always writes one.
pub(crate) fn changes_nothing(model: &Model<'_>) -> Option<TokenStream> {
    let mut nones = Vec::new();
    for (index, field) in model.fields.iter().enumerate() {
        if !model.updates(index) {
            continue;
        }
        if !model.updates_skip_none(index) {
            return None;
        }
        let name = field.ident;
        nones.push(quote!(model.#name.is_none()));
    }
    Some(match nones.as_slice() {
        [] => quote!(true),
        _ => quote!(#(#nones)&&*),
    })
}

fn replicated_impl(model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let category = &model.category;
    let category_type = quote_spanned!(category.span()=> type Category = #category;);
    let table_name = model.table_name();
    let flush = model.flush;
    let version = model.replication_version;
    let key = model.key();
    let (key_ident, key_ty) = (key.ident, key.ty);
    let object =
        quote_spanned!(key_ty.span()=> __outbox::Identifier::to_identifier(&self.#key_ident));
    let shard = match &model.shard {
        Shard::Field(index) => {
            let field = &model.fields[*index];
            let (ident, ty) = (field.ident, field.ty);
            quote_spanned!(ty.span()=> __outbox::Identifier::to_identifier(&self.#ident))
        }
        Shard::Scope => quote_spanned! {category.span()=>
            <<#category as __outbox::OutboxCategory>::Scope as __outbox::ShardOf<Self>>::shard_of(self)
        },
    };
    let payload = match &model.payload {
        Payload::None => quote!(::core::result::Result::Ok(::core::option::Option::None)),
        Payload::Model => {
            quote!(__outbox::JsonPayload::encode(self).map(::core::option::Option::Some))
        }
        Payload::Function(path) => {
            quote!(__outbox::JsonPayload::encode(&#path(self)).map(::core::option::Option::Some))
        }
    };
    let (trait_name, rows_into, cells) = match (&model.derive, &model.cells) {
        (Derive::Control, Some(cells)) => {
            let list = match cells {
                Cells::Field(index) => {
                    let field = &model.fields[*index];
                    let (ident, ty) = (field.ident, field.ty);
                    quote_spanned!(ty.span()=> __outbox::CellNames::cell_names(&self.#ident))
                }
                Cells::Function(path) => quote!(__outbox::CellNames::cell_names(&#path(self))),
            };
            (
                quote!(ReplicatedControl),
                quote!(control_rows_into),
                quote! {
                    fn target_cells(&self) -> ::std::vec::Vec<::std::string::String> { #list }
                },
            )
        }
        _ => (quote!(ReplicatedCell), quote!(cell_rows_into), quote!()),
    };
    quote! {
        #[automatically_derived]
        impl __outbox::#trait_name for #ident {
            #category_type
            const TABLE_NAME: &'static str = #table_name;
            const FLUSH: bool = #flush;
            const REPLICATION_VERSION: i32 = #version;

            fn object_identifier(&self) -> i64 { #object }
            fn shard_identifier(&self) -> i64 { #shard }
            fn outbox_payload(&self) -> __outbox::Result<::core::option::Option<__outbox::JsonPayload>> {
                #payload
            }
            #cells
        }

        #[automatically_derived]
        impl __outbox::OutboxRows for #ident {
            fn outbox_rows_into(
                &self,
                out: &mut ::std::vec::Vec<__outbox::OutboxWrite>,
            ) -> __outbox::Result<()> {
                __outbox::#rows_into(self, out)
            }
        }

        #[automatically_derived]
        impl __outbox::ModelIdentity for #ident {
            const TABLE: &'static str = #table_name;
            fn identity(&self) -> i64 { #object }
        }
    }
}

/// Fails to compile, naming the rule, if the model or a reference to it (of any lifetime:
/// `&'a Model`, `&'a mut Model`, `Box<Model>`) implements diesel's `Insertable` for its
/// table or `AsChangeset`, derived or written by hand: either would reopen the write path
/// that records no outbox row. Two candidate impls of one trait make the call ambiguous
/// only when the forbidden impl exists; regions play no part in choosing an impl, so one
/// generic lifetime covers every lifetime.
fn no_bypass_check(model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    // Spanned at the model's name, where the error for the model itself points too.
    let span = ident.span();
    let forms = [
        quote!(#ident),
        quote_spanned!(span=> &'__outbox #ident),
        quote_spanned!(span=> &'__outbox mut #ident),
        quote_spanned!(span=> ::std::boxed::Box<#ident>),
    ];
    quote! {
        const _: fn() = || {
            trait ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<Marker> {
                fn check() {}
            }
            #[automatically_derived]
            impl<T: ?Sized> ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<()> for T {}
            struct ImplementsInsertable;
            #[automatically_derived]
            impl<T: ?Sized + __outbox::diesel::Insertable<#table::table>> ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<ImplementsInsertable> for T {}

            trait ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<Marker> {
                fn check() {}
            }
            #[automatically_derived]
            impl<T: ?Sized> ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<()> for T {}
            struct ImplementsAsChangeset;
            #[automatically_derived]
            impl<T: ?Sized + __outbox::diesel::AsChangeset> ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<ImplementsAsChangeset> for T {}

            fn every_form<'__outbox>() {
                #(
                    let _ = <#forms as ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<_>>::check;
                    let _ = <#forms as ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<_>>::check;
                )*
            }
        };
    }
}

/// diesel's `HasTable` and `Identifiable`, for associations: the table is the model's own,
/// behind the runtime's `ReplicatedTable`, which reads as the table does and is never a
/// write target, so `diesel::update(&model)` and `diesel::delete(&model)` do not compile
/// while `Child::belonging_to(&model)`, `grouped_by` and the model's own `belongs_to` work.
/// A model that derives `Identifiable` as well has two of each (a conflict).
fn identity_impls(model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let key = model.key();
    let (key_ident, key_ty) = (key.ident, key.ty);
    quote! {
        #[automatically_derived]
        impl __outbox::diesel::associations::HasTable for #ident {
            type Table = __outbox::ReplicatedTable<#table::table>;

            fn table() -> Self::Table {
                __outbox::ReplicatedTable::new(#table::table)
            }
        }

        #[automatically_derived]
        impl<'__outbox> __outbox::diesel::associations::Identifiable for &'__outbox #ident {
            type Id = &'__outbox #key_ty;

            fn id(self) -> Self::Id {
                &self.#key_ident
            }
        }

        #[automatically_derived]
        impl<'__outbox, '__outbox_ref> __outbox::diesel::associations::Identifiable
            for &'__outbox_ref &'__outbox #ident
        {
            type Id = &'__outbox #key_ty;

            fn id(self) -> Self::Id {
                &self.#key_ident
            }
        }
    }
}

/// `NamedField` for every field, so that a scope's declaration (`shard: field`) finds its
/// shard. A field whose stored value may differ from the model's (`skip_insertion`,
/// `skip_update`, computed) answers with a type that is no identifier, so that a scope
/// naming it fails to compile with that type's name as the reason.
fn named_field_impls(model: &Model<'_>) -> TokenStream {
    let ident = model.ident;
    let mut not_stored = false;
    let impls: Vec<TokenStream> = model
        .fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let (name, ty) = (field.ident, field.ty);
            let key = name.to_string();
            let stored = model.inserts(index) && (model.updates(index) || model.is_key(index));
            let (value, access) = if stored {
                (quote!(#ty), quote!(&self.#name))
            } else {
                not_stored = true;
                let marker = quote!(ShardFieldMustBeWrittenByInsertAndUpdate);
                (marker.clone(), quote!(&#marker))
            };
            quote! {
                #[automatically_derived]
                impl __outbox::NamedField<{ __outbox::field_id(#key) }> for #ident {
                    type Value = #value;
                    fn field(&self) -> &#value { #access }
                }
            }
        })
        .collect();
    let marker = not_stored.then(|| {
        quote! {
            #[doc(hidden)]
            pub struct ShardFieldMustBeWrittenByInsertAndUpdate;
        }
    });
    quote!(#marker #(#impls)*)
}

fn model_writes(model: &Model<'_>) -> TokenStream {
    let writes_macro = format_ident!("__outbox_model_writes");
    let writes = writes_impl(model, &quote!($conn));
    let mysql_macro = format_ident!("__outbox_model_writes_mysql");
    let mysql = crate::mysql::writes_impl(model, &quote!($conn));
    let async_macro = format_ident!("__outbox_model_writes_async");
    let async_writes = async_writes_impl(model, &quote!($conn), Exec::Async);
    let async_sqlite_macro = format_ident!("__outbox_model_writes_async_sqlite");
    let async_sqlite = async_writes_impl(model, &quote!($conn), Exec::AsyncRowByRow);
    let async_mysql_macro = format_ident!("__outbox_model_writes_async_mysql");
    let async_mysql = crate::mysql::async_writes_impl(model, &quote!($conn));
    quote! {
        // Each is expanded only for the backends the runtime was built with (the async
        // ones only with its feature `async`: the runtime's macros decide, so the derive
        // needs no feature of its own).
        #[allow(unused_macros)]
        macro_rules! #writes_macro {
            ($conn:ty) => { #writes };
        }
        #[allow(unused_macros)]
        macro_rules! #mysql_macro {
            ($conn:ty) => { #mysql };
        }
        #[allow(unused_macros)]
        macro_rules! #async_macro {
            ($conn:ty) => { #async_writes };
        }
        #[allow(unused_macros)]
        macro_rules! #async_mysql_macro {
            ($conn:ty) => { #async_mysql };
        }
        #[allow(unused_macros)]
        macro_rules! #async_sqlite_macro {
            ($conn:ty) => { #async_sqlite };
        }
        ::diesel_outbox::__outbox_for_each_connection!(#writes_macro, mysql: #mysql_macro);
        ::diesel_outbox::__outbox_for_each_async_connection!(
            #async_macro, mysql: #async_mysql_macro, sqlite: #async_sqlite_macro
        );
    }
}

/// `ModelWrites<conn>`: the model's SQL, checked against one concrete connection type.
pub fn writes_impl(model: &Model<'_>, conn: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let key = model.key();
    let (key_ty, key_column) = (key.ty, &key.column);
    let table_name = model.table_name();
    let backend = quote!(<#conn as __outbox::diesel::Connection>::Backend);
    let writes = write_fns(model, conn, &backend, Exec::Sync);
    let pages = page_methods(model, conn);
    quote! {
        #[automatically_derived]
        impl __outbox::ModelWrites<#conn> for #ident {
            #writes

            fn load_row(conn: &mut #conn, id: i64) -> __outbox::Result<::core::option::Option<Self>> {
                let key = __outbox::primary_key::<#key_ty>(#table_name, id)?;
                let query = __outbox::diesel::QueryDsl::select(
                    __outbox::diesel::QueryDsl::find(#table::table, key),
                    <Self as __outbox::diesel::SelectableHelper<#backend>>::as_select(),
                );
                ::core::result::Result::Ok(__outbox::diesel::OptionalExtension::optional(
                    __outbox::diesel::RunQueryDsl::first(query, conn),
                )?)
            }

            fn load_rows(conn: &mut #conn, ids: &[i64]) -> __outbox::Result<::std::vec::Vec<Self>> {
                use __outbox::diesel::ExpressionMethods as _;
                let keys = ids
                    .iter()
                    .map(|id| __outbox::primary_key::<#key_ty>(#table_name, *id))
                    .collect::<__outbox::Result<::std::vec::Vec<_>>>()?;
                let query = __outbox::diesel::QueryDsl::select(
                    __outbox::diesel::QueryDsl::filter(#table::table, #table::#key_column.eq_any(keys)),
                    <Self as __outbox::diesel::SelectableHelper<#backend>>::as_select(),
                );
                ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::load(query, conn)?)
            }
            #pages
        }
    }
}

/// `AsyncModelWrites<conn>` (the runtime's feature `async`): the same write statements as
/// [`writes_impl`]'s, run by diesel-async on one concrete async connection type.
pub fn async_writes_impl(model: &Model<'_>, conn: &TokenStream, exec: Exec) -> TokenStream {
    let ident = model.ident;
    let backend = quote!(<#conn as __outbox::diesel_async::AsyncConnectionCore>::Backend);
    let writes = write_fns(model, conn, &backend, exec);
    quote! {
        #[automatically_derived]
        impl __outbox::AsyncModelWrites<#conn> for #ident {
            #writes
        }
    }
}

/// The write statements of `ModelWrites` (and `AsyncModelWrites`): `COLUMNS`,
/// `insert_rows`, `update_row`, `upsert_rows`, `delete_rows`, with the portable DELETE ...
/// RETURNING (MySQL's come from [`crate::mysql`]).
fn write_fns(
    model: &Model<'_>,
    conn: &TokenStream,
    backend: &TokenStream,
    exec: Exec,
) -> TokenStream {
    let table = &model.table;
    let key = model.key();
    let (key_ty, key_column) = (key.ty, &key.column);
    let table_name = model.table_name();
    let deleted = exec.run(
        "get_results",
        quote! {
            __outbox::diesel::delete(target).returning(
                <Self as __outbox::diesel::SelectableHelper<#backend>>::as_returning(),
            )
        },
    );
    let delete_rows = quote! {
        use __outbox::diesel::ExpressionMethods as _;
        let keys = ids
            .iter()
            .map(|id| __outbox::primary_key::<#key_ty>(#table_name, *id))
            .collect::<__outbox::Result<::std::vec::Vec<_>>>()?;
        let target = __outbox::diesel::QueryDsl::filter(#table::table, #table::#key_column.eq_any(keys));
        ::core::result::Result::Ok(#deleted?)
    };
    let upsert_rows = if model.upserts_one_by_one() {
        upsert_rows_one_by_one(model, exec)
    } else {
        upsert_rows_at_once(model, exec)
    };
    write_signatures(model, conn, exec, &upsert_rows, &delete_rows)
}

/// The write methods' signatures around their bodies, sync or async; the upsert and
/// `delete_rows` are the backend's own.
pub(crate) fn write_signatures(
    model: &Model<'_>,
    conn: &TokenStream,
    exec: Exec,
    upsert_rows: &TokenStream,
    delete_rows: &TokenStream,
) -> TokenStream {
    let columns = (0..model.fields.len())
        .filter(|&index| model.inserts(index))
        .count();
    let insert_rows = insert_rows(model, exec);
    let update_row = update_row(model, exec);
    let asyncness = match exec {
        Exec::Sync => quote!(),
        Exec::Async | Exec::AsyncRowByRow => quote!(async),
    };
    quote! {
        const COLUMNS: usize = #columns;

        #asyncness fn insert_rows(conn: &mut #conn, models: &[Self], _token: __outbox::Token<'_, Self>) -> __outbox::Result<()> {
            #insert_rows
        }

        #asyncness fn update_row(conn: &mut #conn, model: &Self, _token: __outbox::Token<'_, Self>) -> __outbox::Result<usize> {
            #update_row
        }

        #asyncness fn upsert_rows(conn: &mut #conn, models: &[Self], _token: __outbox::Token<'_, Self>) -> __outbox::Result<()> {
            #upsert_rows
        }

        #asyncness fn delete_rows(conn: &mut #conn, ids: &[i64], _token: __outbox::Token<'_, Self>) -> __outbox::Result<::std::vec::Vec<Self>> {
            #delete_rows
        }
    }
}

/// `load_page` and `count_rows`, the backfill's walk over the table in key order: the
/// same statements on every backend.
pub(crate) fn page_methods(model: &Model<'_>, conn: &TokenStream) -> TokenStream {
    let table = &model.table;
    let key = model.key();
    let (key_ty, key_column) = (key.ty, &key.column);
    let table_name = model.table_name();
    let select = quote! {
        <Self as __outbox::diesel::SelectableHelper<<#conn as __outbox::diesel::Connection>::Backend>>::as_select()
    };
    quote! {
        fn load_page(conn: &mut #conn, after: ::core::option::Option<i64>, limit: i64) -> __outbox::Result<::std::vec::Vec<Self>> {
            use __outbox::diesel::ExpressionMethods as _;
            // Two fixed statements (from the start, or after a key), each cached.
            let page = match after {
                ::core::option::Option::None => __outbox::diesel::RunQueryDsl::load(
                    __outbox::diesel::QueryDsl::limit(
                        __outbox::diesel::QueryDsl::order(
                            __outbox::diesel::QueryDsl::select(#table::table, #select),
                            #table::#key_column.asc(),
                        ),
                        limit,
                    ),
                    conn,
                )?,
                ::core::option::Option::Some(after) => {
                    let after = __outbox::primary_key::<#key_ty>(#table_name, after)?;
                    __outbox::diesel::RunQueryDsl::load(
                        __outbox::diesel::QueryDsl::limit(
                            __outbox::diesel::QueryDsl::order(
                                __outbox::diesel::QueryDsl::select(
                                    __outbox::diesel::QueryDsl::filter(#table::table, #table::#key_column.gt(after)),
                                    #select,
                                ),
                                #table::#key_column.asc(),
                            ),
                            limit,
                        ),
                        conn,
                    )?
                }
            };
            ::core::result::Result::Ok(page)
        }

        fn count_rows(conn: &mut #conn) -> __outbox::Result<i64> {
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::get_result(
                __outbox::diesel::QueryDsl::count(#table::table),
                conn,
            )?)
        }
    }
}

/// Who runs a model's statements: diesel's sync connections, or diesel-async's. The
/// statements themselves are built by the same code for both (the functions below take
/// an `Exec` and only its [`run`](Exec::run) differs), so no write rule is written twice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exec {
    Sync,
    Async,
    /// diesel-async's wrapper of `SqliteConnection`: diesel runs a multi-row INSERT on
    /// SQLite through an `ExecuteDsl` of `SqliteConnection` alone (SQLite has no DEFAULT
    /// in a VALUES list), which the wrapper cannot reach: one statement per model.
    AsyncRowByRow,
}

impl Exec {
    /// Whether many models are written with one statement.
    pub(crate) fn batches(self) -> bool {
        self != Exec::AsyncRowByRow
    }

    /// `RunQueryDsl::method(query, conn)`, awaited on diesel-async.
    pub(crate) fn run(self, method: &str, query: TokenStream) -> TokenStream {
        let method = format_ident!("{}", method);
        match self {
            Exec::Sync => quote!(__outbox::diesel::RunQueryDsl::#method(#query, &mut *conn)),
            Exec::Async | Exec::AsyncRowByRow => {
                quote!(__outbox::diesel_async::RunQueryDsl::#method(#query, &mut *conn).await)
            }
        }
    }
}

/// `execute(statement)`, its count of rows discarded (the callers check nothing by it).
pub(crate) fn execute(statement: TokenStream, exec: Exec) -> TokenStream {
    let run = exec.run("execute", statement);
    quote! {
        let _: usize = #run?;
    }
}

pub(crate) fn insert_rows(model: &Model<'_>, exec: Exec) -> TokenStream {
    let table = &model.table;
    let one = execute(
        quote!(__outbox::diesel::insert_into(#table::table).values(__OutboxRow::of(model))),
        exec,
    );
    if !exec.batches() {
        return quote! {
            for model in models {
                #one
            }
            ::core::result::Result::Ok(())
        };
    }
    let many = execute(
        quote!(__outbox::diesel::insert_into(#table::table).values(rows)),
        exec,
    );
    quote! {
        // One row: a fixed statement, which diesel caches as a prepared statement (a
        // multi-row VALUES list never is).
        if let [model] = models {
            #one
            return ::core::result::Result::Ok(());
        }
        let rows: ::std::vec::Vec<_> = models.iter().map(__OutboxRow::of).collect();
        #many
        ::core::result::Result::Ok(())
    }
}

/// The UPDATE by primary key; when the model has nothing to write, whether its row exists
/// (so that a missing row is still `ModelNotFound`, and an existing one records its row).
pub(crate) fn update_row(model: &Model<'_>, exec: Exec) -> TokenStream {
    let table = &model.table;
    let key = model.key().ident;
    let exists = exec.run(
        "get_result",
        quote! {
            __outbox::diesel::select(__outbox::diesel::dsl::exists(
                __outbox::diesel::QueryDsl::find(#table::table, &model.#key),
            ))
        },
    );
    let found = quote! {
        let found: bool = #exists?;
    };
    let updated = exec.run(
        "execute",
        quote!(__outbox::diesel::update(target).set(__OutboxRow::of(model))),
    );
    let update = quote! {
        let target = __outbox::diesel::QueryDsl::find(#table::table, &model.#key);
        ::core::result::Result::Ok(#updated?)
    };
    if !updates_any(model) {
        return quote! {
            #found
            ::core::result::Result::Ok(usize::from(found))
        };
    }
    match changes_nothing(model) {
        None => update,
        Some(nothing) => quote! {
            if #nothing {
                #found
                return ::core::result::Result::Ok(usize::from(found));
            }
            #update
        },
    }
}

/// One INSERT ... ON CONFLICT for all models: each updated column takes the value its
/// INSERT wrote (`excluded`), which is the model's whenever the model has no per-row rule.
fn upsert_rows_at_once(model: &Model<'_>, exec: Exec) -> TokenStream {
    let table = &model.table;
    let key_column = &model.key().column;
    let sets: Vec<TokenStream> = model
        .fields
        .iter()
        .enumerate()
        .filter(|(index, _)| model.updates(*index))
        .map(|(_, field)| {
            let column = &field.column;
            quote!(#table::#column.eq(__outbox::diesel::upsert::excluded(#table::#column)))
        })
        .collect();
    let action = if sets.is_empty() {
        quote!(do_nothing())
    } else {
        quote!(do_update().set((#(#sets,)*)))
    };
    let one = execute(
        quote! {
            __outbox::diesel::insert_into(#table::table)
                .values(__OutboxRow::of(model))
                .on_conflict(#table::#key_column)
                .#action
        },
        exec,
    );
    if !exec.batches() {
        return quote! {
            use __outbox::diesel::ExpressionMethods as _;
            for model in models {
                #one
            }
            ::core::result::Result::Ok(())
        };
    }
    let many = execute(
        quote! {
            __outbox::diesel::insert_into(#table::table)
                .values(rows)
                .on_conflict(#table::#key_column)
                .#action
        },
        exec,
    );
    quote! {
        use __outbox::diesel::ExpressionMethods as _;
        if let [model] = models {
            #one
            return ::core::result::Result::Ok(());
        }
        let rows: ::std::vec::Vec<_> = models.iter().map(__OutboxRow::of).collect();
        #many
        ::core::result::Result::Ok(())
    }
}

/// One INSERT ... ON CONFLICT per model, for models whose conflict branch must write
/// something other than what the INSERT wrote (DEFAULT inserted but NULL updated, a `None`
/// left as is, a `skip_insertion` column updated): the INSERT is the hidden row's
/// `Insertable`, the conflict branch its `AsChangeset`, exactly as `insert` and `update`.
fn upsert_rows_one_by_one(model: &Model<'_>, exec: Exec) -> TokenStream {
    let table = &model.table;
    let key_column = &model.key().column;
    let do_nothing = execute(quote!(statement.do_nothing()), exec);
    let do_update = execute(
        quote!(statement.do_update().set(__OutboxRow::of(model))),
        exec,
    );
    let write = match changes_nothing(model) {
        _ if !updates_any(model) => do_nothing,
        None => do_update,
        Some(nothing) => quote! {
            if #nothing {
                #do_nothing
            } else {
                #do_update
            }
        },
    };
    quote! {
        for model in models {
            let statement = __outbox::diesel::insert_into(#table::table)
                .values(__OutboxRow::of(model))
                .on_conflict(#table::#key_column);
            #write
        }
        ::core::result::Result::Ok(())
    }
}

/// The write methods, all taking `&mut OutboxContext`; with no model, their bodies are
/// unreachable stubs. The `*_async` forms (on diesel-async's connections) are expanded
/// only when the runtime has its feature `async`: the runtime's `__outbox_if_async!`
/// decides, in the runtime's crate, not a `cfg` evaluated in the user's.
fn write_methods(ident: &syn::Ident, model: Option<&Model<'_>>) -> TokenStream {
    let sync = methods_for(ident, model, Exec::Sync);
    let asynchronous = methods_for(ident, model, Exec::Async);
    quote! {
        #sync
        ::diesel_outbox::__outbox_if_async! { #asynchronous }
    }
}

/// One impl block of write methods, sync or async.
fn methods_for(ident: &syn::Ident, model: Option<&Model<'_>>, exec: Exec) -> TokenStream {
    let rows = match model.map(|model| model.derive) {
        Some(Derive::Control) => "one control outbox row per target cell",
        _ => "its cell outbox row",
    };
    let (suffix, asyncness, dot_await, conn_trait, writes_trait) = match exec {
        Exec::Sync => (
            "",
            quote!(),
            quote!(),
            quote!(OutboxConnection),
            quote!(ModelWrites),
        ),
        Exec::Async | Exec::AsyncRowByRow => (
            "_async",
            quote!(async),
            quote!(.await),
            quote!(AsyncOutboxConnection),
            quote!(AsyncModelWrites),
        ),
    };
    let name = |base: &str| format_ident!("{}{}", base, suffix);
    let (insert_fn, update_fn, save_fn, delete_fn) =
        (name("insert"), name("update"), name("save"), name("delete"));
    let body = |call: TokenStream| match model {
        Some(_) => call,
        None => quote!(::core::unreachable!("the model failed to derive")),
    };
    let insert = body(quote!(__outbox::#insert_fn(ctx, ::core::slice::from_ref(self))#dot_await));
    let update = body(quote!(__outbox::#update_fn(ctx, ::core::slice::from_ref(self))#dot_await));
    let save = body(quote!(__outbox::#save_fn(ctx, ::core::slice::from_ref(self))#dot_await));
    let delete = body(quote! {
        let id = <Self as __outbox::ModelIdentity>::identity(self);
        __outbox::#delete_fn::<C, Self>(ctx, &[id])#dot_await.map(|deleted| deleted > 0)
    });
    let delete_by_id = body(quote! {
        let id = __outbox::Identifier::to_identifier(&id);
        __outbox::#delete_fn::<C, Self>(ctx, &[id])#dot_await.map(|deleted| deleted > 0)
    });
    let insert_all = body(quote!(__outbox::#insert_fn(ctx, models)#dot_await));
    let update_all = body(quote!(__outbox::#update_fn(ctx, models)#dot_await));
    let save_all = body(quote!(__outbox::#save_fn(ctx, models)#dot_await));
    let delete_all = body(quote! {
        let ids: ::std::vec::Vec<i64> = models.iter().map(<Self as __outbox::ModelIdentity>::identity).collect();
        __outbox::#delete_fn::<C, Self>(ctx, &ids)#dot_await
    });
    let delete_by_ids = body(quote!(__outbox::#delete_fn::<C, Self>(ctx, ids)#dot_await));
    // Stubs keep only the bounds that mention `C`: a bound on the concrete model alone
    // would be one more error ("trivial bound not satisfied") on an invalid model.
    let bound = quote!(C: __outbox::#conn_trait, Self: __outbox::#writes_trait<C>);
    let (write_bound, identity) = match model {
        Some(_) => (
            quote!(#bound, Self: __outbox::OutboxRows),
            quote!(, Self: __outbox::ModelIdentity),
        ),
        None => (bound, quote!()),
    };
    let ctx = quote!(ctx: &mut __outbox::OutboxContext<'_, C>);
    let allow = quote!(#[allow(unused_variables, clippy::needless_lifetimes)]);
    let on = match exec {
        Exec::Sync => "",
        Exec::Async | Exec::AsyncRowByRow => {
            " On a diesel-async connection (`outbox_context_async`)."
        }
    };
    let insert_doc = format!("Inserts this model and records {rows}, in `ctx`'s transaction.{on}");
    let update_doc = format!(
            "Updates this model's row (by primary key) and records {rows}. Fails with `Error::ModelNotFound` if the row does not exist.{on}"
        );
    let save_doc = format!("Inserts this model or, if its primary key exists, updates it (one upsert), and records {rows}.{on}");
    let delete_doc = format!(
        "Deletes this model's row and records {rows}, as the row was. Returns whether it existed.{on}"
    );
    let delete_by_id_doc = format!("Deletes the object with this identifier, if it exists, and records its outbox rows. Returns whether it existed.{on}");
    let delete_all_doc = format!("Deletes the rows of all `models` with one DELETE and records their outbox rows. Returns how many existed.{on}");
    let delete_by_ids_doc = format!("Deletes the objects with these identifiers with one DELETE and records their outbox rows. Returns how many existed.{on}");
    let (insert_all_doc, update_all_doc, save_all_doc) = bulk_docs(model);
    let (insert_all_doc, update_all_doc, save_all_doc) = (
        format!("{insert_all_doc}{on}"),
        format!("{update_all_doc}{on}"),
        format!("{save_all_doc}{on}"),
    );
    let (
        delete_by_id_fn,
        insert_all_fn,
        update_all_fn,
        save_all_fn,
        delete_all_fn,
        delete_by_ids_fn,
    ) = (
        name("delete_by_id"),
        name("insert_all"),
        name("update_all"),
        name("save_all"),
        name("delete_all"),
        name("delete_by_ids"),
    );
    quote! {
        #[automatically_derived]
        impl #ident {
            #[doc = #insert_doc]
            #allow
            pub #asyncness fn #insert_fn<C>(&self, #ctx) -> __outbox::Result<()> where #write_bound { #insert }

            #[doc = #update_doc]
            #allow
            pub #asyncness fn #update_fn<C>(&self, #ctx) -> __outbox::Result<()>
            where #write_bound #identity { #update }

            #[doc = #save_doc]
            #allow
            pub #asyncness fn #save_fn<C>(&self, #ctx) -> __outbox::Result<()> where #write_bound { #save }

            #[doc = #delete_doc]
            #allow
            pub #asyncness fn #delete_fn<C>(&self, #ctx) -> __outbox::Result<bool>
            where #write_bound #identity { #delete }

            #[doc = #delete_by_id_doc]
            #allow
            pub #asyncness fn #delete_by_id_fn<C>(#ctx, id: impl __outbox::Identifier) -> __outbox::Result<bool>
            where #write_bound { #delete_by_id }

            #[doc = #insert_all_doc]
            #allow
            pub #asyncness fn #insert_all_fn<C>(#ctx, models: &[Self]) -> __outbox::Result<()> where #write_bound { #insert_all }

            #[doc = #update_all_doc]
            #allow
            pub #asyncness fn #update_all_fn<C>(#ctx, models: &[Self]) -> __outbox::Result<()>
            where #write_bound #identity { #update_all }

            #[doc = #save_all_doc]
            #allow
            pub #asyncness fn #save_all_fn<C>(#ctx, models: &[Self]) -> __outbox::Result<()> where #write_bound { #save_all }

            #[doc = #delete_all_doc]
            #allow
            pub #asyncness fn #delete_all_fn<C>(#ctx, models: &[Self]) -> __outbox::Result<usize>
            where #write_bound #identity { #delete_all }

            #[doc = #delete_by_ids_doc]
            #allow
            pub #asyncness fn #delete_by_ids_fn<C>(#ctx, ids: &[i64]) -> __outbox::Result<usize> where #write_bound { #delete_by_ids }
        }
    }
}

/// The bulk methods' docs, saying how many statements this model's writes take.
fn bulk_docs(model: Option<&Model<'_>>) -> (String, String, String) {
    let defaults = model
        .is_some_and(|model| (0..model.fields.len()).any(|index| model.inserts_default(index)));
    let one_by_one = model.is_some_and(Model::upserts_one_by_one);
    let insert_all = if defaults {
        "Inserts all `models` with one INSERT (split only at the backend's bind-parameter limit; on SQLite, which has no DEFAULT in a VALUES list, diesel writes a `None` inserted as DEFAULT with one INSERT per model) and records their outbox rows."
    } else {
        "Inserts all `models` with one INSERT (split only at the backend's bind-parameter limit) and records their outbox rows."
    };
    let update_all = "Updates every model's row by primary key (one UPDATE each: SQL has no portable multi-row UPDATE) and records their outbox rows.";
    let save_all = if one_by_one {
        "Inserts or updates every model, one upsert each (this model's `#[diesel(...)]` keys make each model's update its own: one SET clause cannot say it for many rows), and records their outbox rows."
    } else {
        "Inserts or updates all `models` with one upsert statement (split only at the backend's bind-parameter limit) and records their outbox rows."
    };
    (
        insert_all.to_owned(),
        update_all.to_owned(),
        save_all.to_owned(),
    )
}
