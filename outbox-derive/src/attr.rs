//! Parsing the attributes: `#[outbox(...)]` (ours, strict) and `#[diesel(...)]` (diesel's,
//! read leniently: only the table, the primary key and column names matter here).

use proc_macro2::{Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, Path, Token};

use crate::ctxt::Ctxt;

const STRUCT_KEYS: &str = "`category`, `shard`, `payload`, `cells` or `flush`";
const FIELD_KEYS: &str = "`shard` or `cells`";

/// A value written once: remembers where, so a second write can be reported.
pub struct Once<T> {
    pub value: Option<(Span, T)>,
}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Once { value: None }
    }
}

impl<T> Once<T> {
    fn set(&mut self, cx: &mut Ctxt, key: &Path, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(key, format!("duplicate `{}` attribute", path_name(key)));
        } else {
            self.value = Some((key_span(key), value));
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, value)| value)
    }

    pub fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(span, _)| *span)
    }
}

/// `#[outbox(payload)]` or `#[outbox(payload = path)]`.
pub enum PayloadAttr {
    /// The model itself, serialised with serde.
    Model,
    /// The result of calling `path(&model)`.
    Function(Path),
}

/// The `#[outbox(...)]` keys on the struct.
#[derive(Default)]
pub struct StructAttrs {
    pub category: Once<Path>,
    pub shard: Once<Ident>,
    pub payload: Once<PayloadAttr>,
    pub cells: Once<Path>,
    pub flush: Once<bool>,
}

/// The `#[diesel(...)]` keys on the struct that matter here.
#[derive(Default)]
pub struct DieselStructAttrs {
    pub table_name: Option<Path>,
    pub primary_key: Option<Vec<Ident>>,
}

/// The `#[outbox(...)]` and `#[diesel(column_name = ...)]` keys on a field.
#[derive(Default)]
pub struct FieldAttrs {
    pub shard: Once<()>,
    pub cells: Once<()>,
    pub column_name: Option<Ident>,
}

pub fn parse_struct_attrs(cx: &mut Ctxt, attrs: &[Attribute]) -> (StructAttrs, DieselStructAttrs) {
    let mut outbox = StructAttrs::default();
    let mut diesel = DieselStructAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("outbox") {
            let parsed = attr.parse_nested_meta(|meta| parse_struct_key(cx, &mut outbox, meta));
            report(cx, parsed);
        } else if attr.path().is_ident("diesel") {
            let parsed = attr.parse_nested_meta(|meta| parse_diesel_struct_key(&mut diesel, meta));
            report(cx, parsed);
        }
    }
    (outbox, diesel)
}

fn parse_struct_key(
    cx: &mut Ctxt,
    out: &mut StructAttrs,
    meta: ParseNestedMeta,
) -> syn::Result<()> {
    let key = meta.path.clone();
    if key.is_ident("category") {
        out.category.set(cx, &key, meta.value()?.parse()?);
    } else if key.is_ident("shard") {
        out.shard.set(cx, &key, meta.value()?.parse()?);
    } else if key.is_ident("payload") {
        let payload = if meta.input.peek(Token![=]) {
            PayloadAttr::Function(meta.value()?.parse()?)
        } else {
            PayloadAttr::Model
        };
        out.payload.set(cx, &key, payload);
    } else if key.is_ident("cells") {
        out.cells.set(cx, &key, meta.value()?.parse()?);
    } else if key.is_ident("flush") {
        let flush: syn::LitBool = meta.value()?.parse()?;
        out.flush.set(cx, &key, flush.value);
    } else {
        return Err(meta.error(format!(
            "unknown `outbox` attribute `{}`; expected {STRUCT_KEYS}, e.g. `#[outbox(category = Category::ProjectUpdate)]`",
            path_name(&key)
        )));
    }
    Ok(())
}

fn parse_diesel_struct_key(out: &mut DieselStructAttrs, meta: ParseNestedMeta) -> syn::Result<()> {
    if meta.path.is_ident("table_name") {
        out.table_name = Some(meta.value()?.parse()?);
    } else if meta.path.is_ident("primary_key") {
        let mut keys = Vec::new();
        meta.parse_nested_meta(|key| {
            keys.push(key.path.require_ident()?.clone());
            Ok(())
        })?;
        out.primary_key = Some(keys);
    } else {
        skip_value(&meta)?;
    }
    Ok(())
}

pub fn parse_field_attrs(cx: &mut Ctxt, attrs: &[Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("outbox") {
            let parsed = attr.parse_nested_meta(|meta| {
                let key = meta.path.clone();
                if key.is_ident("shard") {
                    out.shard.set(cx, &key, ());
                } else if key.is_ident("cells") {
                    out.cells.set(cx, &key, ());
                } else {
                    return Err(meta.error(format!(
                        "unknown `outbox` field attribute `{}`; expected {FIELD_KEYS}, e.g. `#[outbox(shard)] organization_id: i64`",
                        path_name(&key)
                    )));
                }
                Ok(())
            });
            report(cx, parsed);
        } else if attr.path().is_ident("diesel") {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("column_name") {
                    out.column_name = Some(meta.value()?.parse()?);
                } else {
                    skip_value(&meta)?;
                }
                Ok(())
            });
            report(cx, parsed);
        }
    }
    out
}

/// Skips the value of a diesel key this crate does not use: `= expr` or `(...)`.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn report(cx: &mut Ctxt, parsed: syn::Result<()>) {
    if let Err(error) = parsed {
        cx.syn_error(error);
    }
}

fn path_name(path: &Path) -> String {
    path.segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn key_span(path: &Path) -> Span {
    path.segments
        .first()
        .map_or_else(Span::call_site, |segment| segment.ident.span())
}
