//! Checks: from the parsed input and attributes to a [`Model`], or spanned errors that say
//! what the correct form is.

use proc_macro2::Span;
use syn::{Data, DeriveInput, Fields, Ident, LitInt, Path, Type};

use crate::ast::{option_inner, Cells, Derive, Field, Model, Payload, Shard};
use crate::attr::{self, FieldAttrs, PayloadAttr};
use crate::ctxt::Ctxt;

/// Checks `input` for the derive `kind`. Every problem found is reported, not just the first.
pub fn model(input: &DeriveInput, kind: Derive) -> syn::Result<Model<'_>> {
    let mut cx = Ctxt::default();
    let model = check(&mut cx, input, kind);
    cx.check()?;
    // `check` returns `None` only after recording an error.
    model.ok_or_else(|| syn::Error::new(Span::call_site(), "invalid replicated model"))
}

fn check<'a>(cx: &mut Ctxt, input: &'a DeriveInput, kind: Derive) -> Option<Model<'a>> {
    let derive = kind.derive_name();
    let named = named_fields(cx, input, derive)?;
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            format!("`{derive}` does not support generic models: replicate a concrete struct"),
        );
    }

    let (outbox, diesel) = attr::parse_struct_attrs(cx, &input.attrs);
    let mut fields = Vec::new();
    let mut field_attrs = Vec::new();
    for field in named {
        let attrs = attr::parse_field_attrs(cx, &field.attrs);
        let ident = field.ident.as_ref()?;
        check_field_attrs(cx, ident, &field.ty, &attrs);
        fields.push(Field {
            ident,
            ty: &field.ty,
            column: attrs
                .column_name
                .get()
                .cloned()
                .unwrap_or_else(|| ident.clone()),
            skip_insertion: attrs.skip_insertion.get().is_some(),
            skip_update: attrs.skip_update.get().is_some(),
            computed: attrs.select_expression.get().is_some(),
            serialize_as: attrs.serialize_as.get().cloned(),
            none_as_default: attrs.none_as_default.get().copied(),
            none_as_null: attrs.none_as_null.get().copied(),
        });
        field_attrs.push(attrs);
    }

    let category = outbox.category.get().cloned();
    if category.is_none() {
        cx.error_spanned_by(
            &input.ident,
            format!(
                "`{derive}` needs the category of the model's outbox rows: add `#[outbox(category = Category::YourCategory)]`"
            ),
        );
    }
    let table = diesel.table_name.get().cloned().unwrap_or_else(|| {
        Path::from(Ident::new(
            &infer_table_name(&input.ident.to_string()),
            input.ident.span(),
        ))
    });
    let key = primary_key(cx, input, &fields, diesel.primary_key.as_deref());
    if let Some(key) = key {
        check_key_is_written(cx, &fields[key], &field_attrs[key]);
    }
    if fields.len() < 2 {
        cx.error_spanned_by(
            &input.ident,
            format!("`{derive}` needs at least one column besides the primary key"),
        );
    }
    let shard = shard(cx, &fields, &field_attrs, outbox.shard.get());
    if let (Some(Shard::Field(index)), Some(key)) = (&shard, key) {
        if *index != key {
            check_shard_is_written(cx, &fields[*index], &field_attrs[*index]);
        }
    }
    let payload = match outbox.payload.value {
        None => Payload::None,
        Some((_, PayloadAttr::Model)) => Payload::Model,
        Some((_, PayloadAttr::Function(path))) => Payload::Function(path),
    };
    let cells = cells(
        cx,
        kind,
        input,
        &fields,
        &field_attrs,
        outbox.cells.get(),
        outbox.cells.span(),
    );

    let replication_version = replication_version(cx, outbox.replication_version.get());

    Some(Model {
        derive: kind,
        ident: &input.ident,
        table,
        fields,
        key: key?,
        category: category?,
        shard: shard?,
        payload,
        cells,
        flush: outbox.flush.get().copied().unwrap_or(true),
        replication_version: replication_version?,
        none_as_default: diesel.none_as_default.get().copied().unwrap_or(false),
        none_as_null: diesel.none_as_null.get().copied().unwrap_or(true),
    })
}

/// The replication version: a positive integer that fits the stored `INTEGER` (1 when
/// not given). 0 is what a model never backfilled has stored, so it cannot be declared.
fn replication_version(cx: &mut Ctxt, literal: Option<&LitInt>) -> Option<i32> {
    let Some(literal) = literal else {
        return Some(1);
    };
    match literal.base10_parse::<i32>() {
        Ok(version) if version >= 1 => Some(version),
        _ => {
            cx.syn_error(syn::Error::new(
                literal.span(),
                format!(
                    "`replication_version` is a whole number from 1 to {}: raise it by one to backfill the model again",
                    i32::MAX
                ),
            ));
            None
        }
    }
}

/// What a field's diesel keys cannot mean on a replicated model, whichever field it is.
fn check_field_attrs(cx: &mut Ctxt, ident: &Ident, ty: &Type, attrs: &FieldAttrs) {
    if let Some(span) = attrs.embed.span() {
        cx.syn_error(syn::Error::new(
            span,
            "`#[diesel(embed)]` cannot be replicated: the embedded struct's columns would be written through its own `Insertable`/`AsChangeset` for this table, a write that records no outbox row; declare its fields on the model itself",
        ));
    }
    let not_option = option_inner(ty).is_none();
    for (key, span) in [
        ("treat_none_as_default_value", attrs.none_as_default.span()),
        ("treat_none_as_null", attrs.none_as_null.span()),
    ] {
        if let (Some(span), true) = (span, not_option) {
            cx.syn_error(syn::Error::new(
                span,
                format!("`{key}` applies to `Option` fields (diesel's rule): `{ident}` is never `None`; remove the attribute"),
            ));
        }
    }
}

/// The primary key is the object identifier every outbox row of the model records: the
/// table must hold exactly the model's value.
fn check_key_is_written(cx: &mut Ctxt, key: &Field<'_>, attrs: &FieldAttrs) {
    let name = key.ident;
    let problems = [
        (
            attrs.skip_insertion.span(),
            format!("the primary key `{name}` cannot be `skip_insertion`: it is the object identifier the outbox row records, so the insert must write the model's value (a key the database assigns is not known when the row is recorded)"),
        ),
        (
            attrs.select_expression.span(),
            format!("the primary key `{name}` cannot be a `select_expression`: it is the object identifier the outbox row records, a column of the table"),
        ),
        (
            attrs.serialize_as.span(),
            format!("the primary key `{name}` cannot be `serialize_as`: the key is looked up and converted to the object identifier as it is; give the field the column's own type"),
        ),
    ];
    report_all(cx, problems);
}

/// The shard of a model's outbox rows is read from the model: the table must hold the same
/// value, or its rows and their outbox rows disagree about the shard.
fn check_shard_is_written(cx: &mut Ctxt, shard: &Field<'_>, attrs: &FieldAttrs) {
    let name = shard.ident;
    let why = "its outbox rows take the shard from the model, so every write must store the model's value";
    let problems = [
        (
            attrs.skip_insertion.span(),
            format!("the shard field `{name}` cannot be `skip_insertion`: {why}"),
        ),
        (
            attrs.skip_update.span(),
            format!("the shard field `{name}` cannot be `skip_update`: {why}"),
        ),
        (
            attrs.select_expression.span(),
            format!("the shard field `{name}` cannot be a `select_expression`: {why}, and a computed field is not stored"),
        ),
    ];
    report_all(cx, problems);
}

fn report_all<const N: usize>(cx: &mut Ctxt, problems: [(Option<Span>, String); N]) {
    for (span, message) in problems {
        if let Some(span) = span {
            cx.syn_error(syn::Error::new(span, message));
        }
    }
}

fn named_fields<'a>(
    cx: &mut Ctxt,
    input: &'a DeriveInput,
    derive: &str,
) -> Option<&'a syn::punctuated::Punctuated<syn::Field, syn::Token![,]>> {
    let expected = format!(
        "`{derive}` works on a struct with named fields, like a diesel model: `struct Project {{ id: i64, ... }}`"
    );
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Some(&named.named),
            Fields::Unnamed(unnamed) => {
                cx.error_spanned_by(
                    unnamed,
                    format!("tuple structs cannot be replicated: {expected}"),
                );
                None
            }
            Fields::Unit => {
                cx.error_spanned_by(
                    &input.ident,
                    format!("unit structs cannot be replicated: {expected}"),
                );
                None
            }
        },
        Data::Enum(data) => {
            cx.error_spanned_by(
                data.enum_token,
                format!("enums cannot be replicated: {expected}"),
            );
            None
        }
        Data::Union(data) => {
            cx.error_spanned_by(
                data.union_token,
                format!("unions cannot be replicated: {expected}"),
            );
            None
        }
    }
}

fn primary_key(
    cx: &mut Ctxt,
    input: &DeriveInput,
    fields: &[Field<'_>],
    declared: Option<&[Ident]>,
) -> Option<usize> {
    let position = |name: &Ident| fields.iter().position(|field| field.ident == name);
    match declared {
        None => {
            let found = fields.iter().position(|field| field.ident == "id");
            if found.is_none() {
                cx.error_spanned_by(
                    &input.ident,
                    "no usable primary key: add an `id` field, or name the key field with `#[diesel(primary_key(field))]`",
                );
            }
            found
        }
        Some([]) => {
            cx.error_spanned_by(
                &input.ident,
                "`#[diesel(primary_key())]` names no field: write `#[diesel(primary_key(field))]`",
            );
            None
        }
        Some([key]) => {
            let found = position(key);
            if found.is_none() {
                cx.error_spanned_by(
                    key,
                    format!("the primary key `{key}` is not a field of this struct"),
                );
            }
            found
        }
        Some([_, second, ..]) => {
            cx.error_spanned_by(
                second,
                "composite primary keys cannot be replicated: the object identifier is one column; use a single-column key",
            );
            None
        }
    }
}

fn shard(
    cx: &mut Ctxt,
    fields: &[Field<'_>],
    attrs: &[FieldAttrs],
    named: Option<&Ident>,
) -> Option<Shard> {
    let marked: Vec<usize> = (0..fields.len())
        .filter(|&i| attrs[i].shard.get().is_some())
        .collect();
    if let [_, second, ..] = marked.as_slice() {
        cx.error_spanned_by(
            fields[*second].ident,
            "only one field can be the shard: remove `#[outbox(shard)]` from all but one",
        );
        return None;
    }
    match (marked.first(), named) {
        (Some(&index), Some(name)) => {
            cx.error_spanned_by(
                name,
                format!(
                    "the shard is given twice: `{}` is marked `#[outbox(shard)]`; remove one of the two",
                    fields[index].ident
                ),
            );
            None
        }
        (Some(&index), None) => Some(Shard::Field(index)),
        (None, Some(name)) => match fields.iter().position(|field| field.ident == name) {
            Some(index) => Some(Shard::Field(index)),
            None => {
                cx.error_spanned_by(
                    name,
                    format!("`#[outbox(shard = {name})]` names no field of this struct: name the field that holds the shard identifier"),
                );
                None
            }
        },
        (None, None) => Some(Shard::Scope),
    }
}

fn cells(
    cx: &mut Ctxt,
    kind: Derive,
    input: &DeriveInput,
    fields: &[Field<'_>],
    attrs: &[FieldAttrs],
    named: Option<&Path>,
    named_span: Option<Span>,
) -> Option<Cells> {
    let marked: Vec<usize> = (0..fields.len())
        .filter(|&i| attrs[i].cells.get().is_some())
        .collect();
    if kind == Derive::Cell {
        if let Some(span) =
            named_span.or_else(|| marked.first().and_then(|&i| attrs[i].cells.span()))
        {
            cx.syn_error(syn::Error::new(
                span,
                "`cells` applies to `ReplicatedControl` models only: a cell model's rows go to control",
            ));
        }
        return None;
    }
    let from_field = |path: &Path| {
        path.get_ident()
            .and_then(|name| fields.iter().position(|field| field.ident == name))
    };
    match (marked.as_slice(), named) {
        ([], None) => {
            cx.error_spanned_by(
                &input.ident,
                "`ReplicatedControl` needs the target cells: add `#[outbox(cells = field_or_function)]` or mark a field `#[outbox(cells)]`",
            );
            None
        }
        ([index], None) => Some(Cells::Field(*index)),
        ([], Some(path)) => Some(match from_field(path) {
            Some(index) => Cells::Field(index),
            None => Cells::Function(path.clone()),
        }),
        _ => {
            cx.error_spanned_by(
                &input.ident,
                "the target cells are given more than once: keep one `cells`",
            );
            None
        }
    }
}

/// diesel's default table name: the struct name in snake case, plus `s`.
pub fn infer_table_name(name: &str) -> String {
    let mut table = String::with_capacity(name.len() + 4);
    for (index, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && index > 0 {
            table.push('_');
        }
        table.extend(ch.to_lowercase());
    }
    table.push('s');
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors(input: DeriveInput, kind: Derive) -> String {
        match model(&input, kind) {
            Ok(_) => String::new(),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn table_names_follow_diesel() {
        assert_eq!(infer_table_name("Project"), "projects");
        assert_eq!(
            infer_table_name("OrganizationMapping"),
            "organization_mappings"
        );
    }

    #[test]
    fn a_plain_model_passes() {
        let input: DeriveInput = parse_quote! {
            #[diesel(table_name = crate::schema::projects, check_for_backend(diesel::sqlite::Sqlite))]
            #[outbox(category = Category::ProjectUpdate)]
            struct Project { id: i64, #[outbox(shard)] organization_id: i64, name: String }
        };
        let model = model(&input, Derive::Cell).expect("valid");
        assert_eq!(model.table_name(), "projects");
        assert_eq!(model.key().ident, "id");
        assert!(matches!(model.shard, Shard::Field(1)));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let input: DeriveInput = parse_quote! {
            #[outbox(shard = nope, colour = red)]
            struct Project { name: String }
        };
        let message = errors(input, Derive::Cell);
        assert!(
            message.contains("unknown `outbox` attribute `colour`"),
            "{message}"
        );
        assert!(message.contains("needs the category"), "{message}");
        assert!(message.contains("no usable primary key"), "{message}");
        assert!(message.contains("names no field"), "{message}");
    }

    #[test]
    fn control_models_need_cells_and_cell_models_refuse_them() {
        let control: DeriveInput = parse_quote! {
            #[outbox(category = Category::UserUpdate)]
            struct User { id: i64, name: String }
        };
        assert!(errors(control, Derive::Control).contains("needs the target cells"));
        let cell: DeriveInput = parse_quote! {
            #[outbox(category = Category::ProjectUpdate, cells = regions)]
            struct Project { id: i64, name: String }
        };
        assert!(errors(cell, Derive::Cell).contains("`ReplicatedControl` models only"));
    }

    #[test]
    fn cells_may_name_a_field_or_a_function() {
        let by_field: DeriveInput = parse_quote! {
            #[outbox(category = Category::UserUpdate, cells = regions)]
            struct User { id: i64, regions: Vec<String> }
        };
        assert!(matches!(
            model(&by_field, Derive::Control).expect("valid").cells,
            Some(Cells::Field(1))
        ));
        let by_function: DeriveInput = parse_quote! {
            #[outbox(category = Category::UserUpdate, cells = Self::regions)]
            struct User { id: i64, name: String }
        };
        assert!(matches!(
            model(&by_function, Derive::Control).expect("valid").cells,
            Some(Cells::Function(_))
        ));
    }

    #[test]
    fn composite_keys_are_refused_at_the_second_key() {
        let input: DeriveInput = parse_quote! {
            #[diesel(primary_key(a, b))]
            #[outbox(category = Category::ProjectUpdate)]
            struct Pair { a: i64, b: i64, c: i64 }
        };
        assert!(errors(input, Derive::Cell).contains("composite primary keys"));
    }

    #[test]
    fn diesel_reading_keys_are_accepted_and_change_no_write() {
        let input: DeriveInput = parse_quote! {
            #[diesel(table_name = projects, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
            #[diesel(belongs_to(Organization, foreign_key = organization_id), sql_type = Row)]
            #[diesel(base_query = projects::table.order(projects::id), base_query_type = Q<A, B>)]
            #[diesel(aggregate, not_sized, foreign_derive)]
            #[outbox(category = Category::ProjectUpdate)]
            struct Project {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                id: i64,
                #[diesel(deserialize_as = Map<String, i64>, sql_type = Nullable<Text>)]
                organization_id: i64,
                name: String,
            }
        };
        let model = model(&input, Derive::Cell).expect("valid");
        assert_eq!(model.table_name(), "projects");
        assert!(!model.upserts_one_by_one());
        assert!((0..3).all(|index| model.inserts(index)));
        assert!((1..3).all(|index| model.updates(index)));
    }

    #[test]
    fn unknown_diesel_keys_are_errors() {
        let input: DeriveInput = parse_quote! {
            #[diesel(table = projects)]
            #[outbox(category = Category::ProjectUpdate)]
            struct Project { id: i64, #[diesel(skip_updates)] name: String }
        };
        let message = errors(input, Derive::Cell);
        assert!(
            message.contains("unknown `diesel` attribute `table`"),
            "{message}"
        );
        assert!(
            message.contains("unknown `diesel` field attribute `skip_updates`"),
            "{message}"
        );
    }

    #[test]
    fn diesel_1_attribute_forms_that_change_a_write_are_refused() {
        let input: DeriveInput = parse_quote! {
            #[table_name = "legacy_projects"]
            #[outbox(category = Category::ProjectUpdate)]
            struct Project { id: i64, #[column_name = "org"] organization_id: i64, #[sql_type = "Text"] name: String }
        };
        let message = errors(input, Derive::Cell);
        assert!(
            message.contains("the deprecated `#[table_name ...]`"),
            "{message}"
        );
        assert!(
            message.contains("the deprecated `#[column_name ...]`"),
            "{message}"
        );
        assert!(!message.contains("sql_type"), "{message}");
    }

    #[test]
    fn write_keys_decide_each_write() {
        let input: DeriveInput = parse_quote! {
            #[diesel(treat_none_as_null = false)]
            #[outbox(category = Category::ProjectUpdate)]
            struct Project {
                #[diesel(column_name = "type")]
                id: i64,
                #[diesel(skip_insertion)]
                revision: i32,
                #[diesel(skip_update)]
                author: String,
                #[diesel(select_expression = projects::name.concat("!"))]
                shout: String,
                #[diesel(treat_none_as_default_value = true, treat_none_as_null = true)]
                theme: Option<String>,
                note: Option<String>,
                #[diesel(serialize_as = String)]
                title: Title,
            }
        };
        let model = model(&input, Derive::Cell).expect("valid");
        assert_eq!(model.fields[0].column.to_string(), "r#type");
        let inserts: Vec<bool> = (0..7).map(|index| model.inserts(index)).collect();
        assert_eq!(inserts, [true, false, true, false, true, true, true]);
        let updates: Vec<bool> = (0..7).map(|index| model.updates(index)).collect();
        assert_eq!(updates, [false, true, false, false, true, true, true]);
        assert!(model.inserts_default(4) && !model.inserts_default(5));
        assert!(!model.updates_skip_none(4) && model.updates_skip_none(5));
        assert!(model.upserts_one_by_one());
        assert_eq!(
            model.row_fields().count(),
            6,
            "the computed field is not in the row"
        );
    }

    #[test]
    fn the_key_and_the_shard_are_stored_as_the_model_holds_them() {
        let input: DeriveInput = parse_quote! {
            #[outbox(category = Category::ProjectUpdate)]
            struct Project {
                #[diesel(skip_insertion, serialize_as = i64)]
                id: i64,
                #[outbox(shard)]
                #[diesel(skip_update)]
                organization_id: i64,
                #[diesel(embed, treat_none_as_null = true)]
                naming: Naming,
            }
        };
        let message = errors(input, Derive::Cell);
        for expected in [
            "the primary key `id` cannot be `skip_insertion`",
            "the primary key `id` cannot be `serialize_as`",
            "the shard field `organization_id` cannot be `skip_update`",
            "`#[diesel(embed)]` cannot be replicated",
            "`treat_none_as_null` applies to `Option` fields",
        ] {
            assert!(message.contains(expected), "{expected} in {message}");
        }
    }

    #[test]
    fn the_replication_version_is_one_unless_raised_and_never_below_one() {
        let plain: DeriveInput = parse_quote! {
            #[outbox(category = Category::ProjectUpdate)]
            struct Project { id: i64, name: String }
        };
        assert_eq!(
            model(&plain, Derive::Cell)
                .expect("valid")
                .replication_version,
            1
        );
        let raised: DeriveInput = parse_quote! {
            #[outbox(category = Category::ProjectUpdate, replication_version = 3)]
            struct Project { id: i64, name: String }
        };
        assert_eq!(
            model(&raised, Derive::Cell)
                .expect("valid")
                .replication_version,
            3
        );
        for bad in [
            quote::quote!(0),
            quote::quote!(-1),
            quote::quote!(3000000000),
            quote::quote!("2"),
        ] {
            let input: DeriveInput = parse_quote! {
                #[outbox(category = Category::ProjectUpdate, replication_version = #bad)]
                struct Project { id: i64, name: String }
            };
            let message = errors(input, Derive::Cell);
            assert!(!message.is_empty(), "{bad} is refused");
        }
    }

    #[test]
    fn a_shard_that_is_the_key_may_carry_skip_update() {
        let input: DeriveInput = parse_quote! {
            #[outbox(category = Category::UserUpdate, cells = regions)]
            struct User { #[outbox(shard)] #[diesel(skip_update)] id: i64, regions: Vec<String> }
        };
        assert!(model(&input, Derive::Control).is_ok());
    }
}
