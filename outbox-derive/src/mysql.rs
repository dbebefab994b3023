//! `ModelWrites` for MySQL and MariaDB, which differ from the other backends in two
//! statements: the upsert is `INSERT ... ON DUPLICATE KEY UPDATE` (for many models at once
//! the runtime's `mysql_upsert`, `c = VALUES(c)`, cached like a plain INSERT), and a delete
//! reads and locks the rows (`SELECT ... FOR UPDATE`) before deleting exactly those, since
//! MySQL 8 has no `DELETE ... RETURNING`. The INSERT and the UPDATE are the portable ones
//! of [`expand`](crate::expand).

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Model;
use crate::expand::{changes_nothing, execute, page_methods, updates_any, write_signatures, Exec};

/// `ModelWrites<conn>` for a MySQL connection type.
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

/// `AsyncModelWrites<conn>` for diesel-async's MySQL connection: the same statements.
pub fn async_writes_impl(model: &Model<'_>, conn: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let backend = quote!(<#conn as __outbox::diesel_async::AsyncConnectionCore>::Backend);
    let writes = write_fns(model, conn, &backend, Exec::Async);
    quote! {
        #[automatically_derived]
        impl __outbox::AsyncModelWrites<#conn> for #ident {
            #writes
        }
    }
}

/// MySQL's write statements, sync or async. diesel connects with CLIENT_FOUND_ROWS (and
/// so does diesel-async): an UPDATE counts the rows it found, so one that changes nothing
/// still counts its row, as on the other backends.
fn write_fns(
    model: &Model<'_>,
    conn: &TokenStream,
    backend: &TokenStream,
    exec: Exec,
) -> TokenStream {
    let table = &model.table;
    let key = model.key();
    let (key_ident, key_ty, key_column) = (key.ident, key.ty, &key.column);
    let table_name = model.table_name();
    let upsert_rows = if model.upserts_one_by_one() {
        upsert_rows_one_by_one(model, exec)
    } else {
        upsert_rows_at_once(model, exec)
    };
    let load = exec.run("load", quote!(query));
    let delete = exec.run("execute", quote!(__outbox::diesel::delete(target)));
    let delete_rows = quote! {
        use __outbox::diesel::ExpressionMethods as _;
        let keys = ids
            .iter()
            .map(|id| __outbox::primary_key::<#key_ty>(#table_name, *id))
            .collect::<__outbox::Result<::std::vec::Vec<_>>>()?;
        // The rows as they were, locked until the transaction ends, so that the
        // DELETE below removes exactly them: a row inserted meanwhile under one of
        // `ids` stays (nothing records its deletion).
        let query = __outbox::diesel::QueryDsl::for_update(__outbox::diesel::QueryDsl::select(
            __outbox::diesel::QueryDsl::filter(#table::table, #table::#key_column.eq_any(keys)),
            <Self as __outbox::diesel::SelectableHelper<#backend>>::as_select(),
        ));
        let found: ::std::vec::Vec<Self> = #load?;
        if found.is_empty() {
            return ::core::result::Result::Ok(found);
        }
        let keys = found
            .iter()
            .map(|model| __outbox::primary_key::<#key_ty>(
                #table_name,
                __outbox::Identifier::to_identifier(&model.#key_ident),
            ))
            .collect::<__outbox::Result<::std::vec::Vec<_>>>()?;
        let target = __outbox::diesel::QueryDsl::filter(#table::table, #table::#key_column.eq_any(keys));
        let _: usize = #delete?;
        ::core::result::Result::Ok(found)
    };
    write_signatures(model, conn, exec, &upsert_rows, &delete_rows)
}

/// One `INSERT ... ON DUPLICATE KEY UPDATE c = VALUES(c)` for all models: each updated
/// column takes the value its INSERT wrote, as `excluded` does elsewhere. With nothing to
/// update, the key is set to itself (nothing changes).
fn upsert_rows_at_once(model: &Model<'_>, exec: Exec) -> TokenStream {
    let table = &model.table;
    let key_column = &model.key().column;
    let updated: Vec<TokenStream> = model
        .fields
        .iter()
        .enumerate()
        .filter(|(index, _)| model.updates(*index))
        .map(|(_, field)| {
            let column = &field.column;
            quote!(<#table::#column as __outbox::diesel::Column>::NAME)
        })
        .collect();
    let upsert = |values: TokenStream| {
        execute(
            quote! {
                __outbox::mysql_upsert(
                    __outbox::diesel::insert_into(#table::table).values(#values),
                    UPDATED,
                    <#table::#key_column as __outbox::diesel::Column>::NAME,
                )
            },
            exec,
        )
    };
    let one = upsert(quote!(__OutboxRow::of(model)));
    let many = upsert(quote!(rows));
    quote! {
        const UPDATED: &[&str] = &[#(#updated),*];
        if let [model] = models {
            #one
            return ::core::result::Result::Ok(());
        }
        let rows: ::std::vec::Vec<_> = models.iter().map(__OutboxRow::of).collect();
        #many
        ::core::result::Result::Ok(())
    }
}

/// One `INSERT ... ON DUPLICATE KEY UPDATE` per model, for models whose conflict branch
/// must write something other than what the INSERT wrote: the INSERT is the hidden row's
/// `Insertable`, the update its `AsChangeset`, as `insert` and `update` (see
/// [`expand`](crate::expand)'s one-by-one upsert).
fn upsert_rows_one_by_one(model: &Model<'_>, exec: Exec) -> TokenStream {
    let table = &model.table;
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
                .on_conflict(__outbox::diesel::dsl::DuplicatedKeys);
            #write
        }
        ::core::result::Result::Ok(())
    }
}
