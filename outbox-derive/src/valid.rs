//! Checks: from the parsed input and attributes to a [`Model`], or spanned errors that say
//! what the correct form is.

use proc_macro2::Span;
use syn::{Data, DeriveInput, Fields, Ident, Path};

use crate::ast::{Cells, Field, Model, Payload, Shard, Silo};
use crate::attr::{self, FieldAttrs, PayloadAttr};
use crate::ctxt::Ctxt;

/// Checks `input` for `silo`'s derive. Every problem found is reported, not just the first.
pub fn model(input: &DeriveInput, silo: Silo) -> syn::Result<Model<'_>> {
    let mut cx = Ctxt::default();
    let model = check(&mut cx, input, silo);
    cx.check()?;
    // `check` returns `None` only after recording an error.
    model.ok_or_else(|| syn::Error::new(Span::call_site(), "invalid replicated model"))
}

fn check<'a>(cx: &mut Ctxt, input: &'a DeriveInput, silo: Silo) -> Option<Model<'a>> {
    let derive = silo.derive_name();
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
        let column = attrs.column_name.clone().unwrap_or_else(|| ident.clone());
        fields.push(Field {
            ident,
            ty: &field.ty,
            column,
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
    let table = diesel.table_name.clone().unwrap_or_else(|| {
        Path::from(Ident::new(
            &infer_table_name(&input.ident.to_string()),
            input.ident.span(),
        ))
    });
    let key = primary_key(cx, input, &fields, diesel.primary_key.as_deref());
    if fields.len() < 2 {
        cx.error_spanned_by(
            &input.ident,
            format!("`{derive}` needs at least one column besides the primary key"),
        );
    }
    let shard = shard(cx, &fields, &field_attrs, outbox.shard.get());
    let payload = match outbox.payload.value {
        None => Payload::None,
        Some((_, PayloadAttr::Model)) => Payload::Model,
        Some((_, PayloadAttr::Function(path))) => Payload::Function(path),
    };
    let cells = cells(
        cx,
        silo,
        input,
        &fields,
        &field_attrs,
        outbox.cells.get(),
        outbox.cells.span(),
    );

    Some(Model {
        silo,
        ident: &input.ident,
        table,
        fields,
        key: key?,
        category: category?,
        shard: shard?,
        payload,
        cells,
        flush: outbox.flush.get().copied().unwrap_or(true),
    })
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
    silo: Silo,
    input: &DeriveInput,
    fields: &[Field<'_>],
    attrs: &[FieldAttrs],
    named: Option<&Path>,
    named_span: Option<Span>,
) -> Option<Cells> {
    let marked: Vec<usize> = (0..fields.len())
        .filter(|&i| attrs[i].cells.get().is_some())
        .collect();
    if silo == Silo::Cell {
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

    fn errors(input: DeriveInput, silo: Silo) -> String {
        match model(&input, silo) {
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
        let model = model(&input, Silo::Cell).expect("valid");
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
        let message = errors(input, Silo::Cell);
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
        assert!(errors(control, Silo::Control).contains("needs the target cells"));
        let cell: DeriveInput = parse_quote! {
            #[outbox(category = Category::ProjectUpdate, cells = regions)]
            struct Project { id: i64, name: String }
        };
        assert!(errors(cell, Silo::Cell).contains("`ReplicatedControl` models only"));
    }

    #[test]
    fn cells_may_name_a_field_or_a_function() {
        let by_field: DeriveInput = parse_quote! {
            #[outbox(category = Category::UserUpdate, cells = regions)]
            struct User { id: i64, regions: Vec<String> }
        };
        assert!(matches!(
            model(&by_field, Silo::Control).expect("valid").cells,
            Some(Cells::Field(1))
        ));
        let by_function: DeriveInput = parse_quote! {
            #[outbox(category = Category::UserUpdate, cells = Self::regions)]
            struct User { id: i64, name: String }
        };
        assert!(matches!(
            model(&by_function, Silo::Control).expect("valid").cells,
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
        assert!(errors(input, Silo::Cell).contains("composite primary keys"));
    }
}
