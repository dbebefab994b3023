//! Parsing the attributes: `#[outbox(...)]` (ours) and `#[diesel(...)]` (diesel's), both
//! strictly. Every diesel key a model can carry is known here: the ones that change what
//! a write does are recorded for [`valid`](crate::valid) to honour or reject, the ones
//! only diesel's reading derives use are accepted and skipped, and any other key is an
//! error (diesel's own derives would reject it too, but a typo must never silently change
//! what the hidden row writes).

use proc_macro2::{Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::discouraged::Speculative;
use syn::{Attribute, Ident, LitBool, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

const STRUCT_KEYS: &str =
    "`category`, `shard`, `payload`, `cells`, `flush` or `replication_version`";
const FIELD_KEYS: &str = "`shard` or `cells`";

/// diesel's struct keys that only its reading or type derives use (`Queryable`,
/// `Selectable`, `QueryableByName`, `Associations`, `Identifiable`, `HasQuery`,
/// `SqlType`, `AsExpression`, `ValidGrouping`...): diesel's `Insertable` and
/// `AsChangeset` ignore them, and so does a replicated model's write.
const DIESEL_STRUCT_READ_KEYS: &[&str] = &[
    "aggregate",
    "not_sized",
    "foreign_derive",
    "sql_type",
    "belongs_to",
    "mysql_type",
    "sqlite_type",
    "postgres_type",
    "check_for_backend",
    "base_query",
    "base_query_type",
];

/// diesel's field keys that only its reading derives use.
const DIESEL_FIELD_READ_KEYS: &[&str] = &["sql_type", "deserialize_as", "select_expression_type"];

/// diesel 1's attribute forms that change a write (`#[table_name = "t"]`...): diesel 2's
/// derives still read them under its `with-deprecated` feature, this derive does not, so
/// they are refused rather than ignored.
const DEPRECATED_STRUCT_FORMS: &[&str] = &["table_name", "primary_key", "changeset_options"];
const DEPRECATED_FIELD_FORMS: &[&str] = &["column_name"];

const DIESEL_STRUCT_KEYS: &str = "`table_name`, `primary_key`, `treat_none_as_null`, `treat_none_as_default_value`, or one of diesel's reading keys (`check_for_backend`, `belongs_to`, `sql_type`, `base_query`, ...)";
const DIESEL_FIELD_KEYS: &str = "`column_name`, `treat_none_as_null`, `treat_none_as_default_value`, `serialize_as`, `skip_insertion`, `skip_update`, `select_expression`, or one of diesel's reading keys (`sql_type`, `deserialize_as`, `select_expression_type`)";

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
    /// `replication_version = N`: the literal, checked by [`valid`](crate::valid).
    pub replication_version: Once<LitInt>,
}

/// The `#[diesel(...)]` keys on the struct that change what a write does.
#[derive(Default)]
pub struct DieselStructAttrs {
    pub table_name: Once<Path>,
    pub primary_key: Option<Vec<Ident>>,
    pub none_as_default: Once<bool>,
    pub none_as_null: Once<bool>,
}

/// The `#[outbox(...)]` and write-affecting `#[diesel(...)]` keys on a field. Spans are
/// the keys', for errors that point at the attribute.
#[derive(Default)]
pub struct FieldAttrs {
    pub shard: Once<()>,
    pub cells: Once<()>,
    pub column_name: Once<Ident>,
    pub none_as_default: Once<bool>,
    pub none_as_null: Once<bool>,
    pub serialize_as: Once<Type>,
    pub skip_insertion: Once<()>,
    pub skip_update: Once<()>,
    pub select_expression: Once<()>,
    pub embed: Once<()>,
}

pub fn parse_struct_attrs(cx: &mut Ctxt, attrs: &[Attribute]) -> (StructAttrs, DieselStructAttrs) {
    let mut outbox = StructAttrs::default();
    let mut diesel = DieselStructAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("outbox") {
            let parsed = attr.parse_nested_meta(|meta| parse_struct_key(cx, &mut outbox, meta));
            report(cx, parsed);
        } else if attr.path().is_ident("diesel") {
            let parsed =
                attr.parse_nested_meta(|meta| parse_diesel_struct_key(cx, &mut diesel, meta));
            report(cx, parsed);
        } else {
            reject_deprecated_form(cx, attr, DEPRECATED_STRUCT_FORMS);
        }
    }
    (outbox, diesel)
}

fn reject_deprecated_form(cx: &mut Ctxt, attr: &Attribute, forms: &[&str]) {
    if is_one_of(attr.path(), forms) {
        let name = path_name(attr.path());
        cx.error_spanned_by(
            attr.path(),
            format!("a replicated model reads diesel's attributes in the `#[diesel({name} = ...)]` form only: write the deprecated `#[{name} ...]` that way"),
        );
    }
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
        let flush: LitBool = meta.value()?.parse()?;
        out.flush.set(cx, &key, flush.value);
    } else if key.is_ident("replication_version") {
        out.replication_version
            .set(cx, &key, meta.value()?.parse()?);
    } else {
        return Err(meta.error(format!(
            "unknown `outbox` attribute `{}`; expected {STRUCT_KEYS}, e.g. `#[outbox(category = Category::ProjectUpdate)]`",
            path_name(&key)
        )));
    }
    Ok(())
}

fn parse_diesel_struct_key(
    cx: &mut Ctxt,
    out: &mut DieselStructAttrs,
    meta: ParseNestedMeta,
) -> syn::Result<()> {
    let key = meta.path.clone();
    if key.is_ident("table_name") {
        let table = meta.value()?.parse()?;
        if out.table_name.get().is_some() {
            // diesel's `Insertable` takes several tables; a replicated model has one.
            cx.error_spanned_by(
                &key,
                "a replicated model writes one table: keep one `table_name` (its outbox rows name one object of one table)",
            );
        } else {
            out.table_name.set(cx, &key, table);
        }
    } else if key.is_ident("primary_key") {
        let mut keys = Vec::new();
        meta.parse_nested_meta(|key| {
            keys.push(key.path.require_ident()?.clone());
            Ok(())
        })?;
        out.primary_key = Some(keys);
    } else if key.is_ident("treat_none_as_default_value") {
        out.none_as_default.set(cx, &key, parse_bool(&meta)?);
    } else if key.is_ident("treat_none_as_null") {
        out.none_as_null.set(cx, &key, parse_bool(&meta)?);
    } else if is_one_of(&key, DIESEL_STRUCT_READ_KEYS) {
        skip_value(&meta)?;
    } else {
        return Err(meta.error(format!(
            "unknown `diesel` attribute `{}` on a replicated model; expected {DIESEL_STRUCT_KEYS}",
            path_name(&key)
        )));
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
            let parsed = attr.parse_nested_meta(|meta| parse_diesel_field_key(cx, &mut out, meta));
            report(cx, parsed);
        } else {
            reject_deprecated_form(cx, attr, DEPRECATED_FIELD_FORMS);
        }
    }
    out
}

fn parse_diesel_field_key(
    cx: &mut Ctxt,
    out: &mut FieldAttrs,
    meta: ParseNestedMeta,
) -> syn::Result<()> {
    let key = meta.path.clone();
    if key.is_ident("column_name") {
        out.column_name.set(cx, &key, parse_column_name(&meta)?);
    } else if key.is_ident("treat_none_as_default_value") {
        out.none_as_default.set(cx, &key, parse_bool(&meta)?);
    } else if key.is_ident("treat_none_as_null") {
        out.none_as_null.set(cx, &key, parse_bool(&meta)?);
    } else if key.is_ident("serialize_as") {
        out.serialize_as.set(cx, &key, meta.value()?.parse()?);
    } else if key.is_ident("select_expression") {
        skip_value(&meta)?;
        out.select_expression.set(cx, &key, ());
    } else if key.is_ident("skip_insertion") {
        require_flag(&meta)?;
        out.skip_insertion.set(cx, &key, ());
    } else if key.is_ident("skip_update") {
        require_flag(&meta)?;
        out.skip_update.set(cx, &key, ());
    } else if key.is_ident("embed") {
        require_flag(&meta)?;
        out.embed.set(cx, &key, ());
    } else if is_one_of(&key, DIESEL_FIELD_READ_KEYS) {
        skip_value(&meta)?;
    } else {
        return Err(meta.error(format!(
            "unknown `diesel` field attribute `{}` on a replicated model; expected {DIESEL_FIELD_KEYS}",
            path_name(&key)
        )));
    }
    Ok(())
}

/// `column_name = name` or `column_name = "name"`, as diesel reads it (a string that is a
/// keyword becomes a raw identifier).
fn parse_column_name(meta: &ParseNestedMeta) -> syn::Result<Ident> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        let name: LitStr = value.parse()?;
        let text = name.value();
        return syn::parse_str::<Ident>(&text)
            .or_else(|_| syn::parse_str::<Ident>(&format!("r#{text}")))
            .map(|mut ident| {
                ident.set_span(name.span());
                ident
            })
            .map_err(|_| {
                syn::Error::new(
                    name.span(),
                    format!("`{text}` is not a column name diesel can address: name the column as in `table!`"),
                )
            });
    }
    value.parse()
}

fn parse_bool(meta: &ParseNestedMeta) -> syn::Result<bool> {
    let value: LitBool = meta.value()?.parse()?;
    Ok(value.value)
}

/// diesel's flags (`skip_insertion`, `skip_update`, `embed`) take no value.
fn require_flag(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!(
            "`{0}` takes no value: write `#[diesel({0})]`",
            path_name(&meta.path)
        )));
    }
    Ok(())
}

fn is_one_of(key: &Path, names: &[&str]) -> bool {
    names.iter().any(|name| key.is_ident(name))
}

/// Skips the value of a diesel key that does not change a write: `= Type` (`sql_type =
/// Nullable<Text>`), `= expr` (`base_query = ...`) or `(...)`.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let value = meta.value()?;
        let fork = value.fork();
        if fork.parse::<Type>().is_ok() && (fork.is_empty() || fork.peek(Token![,])) {
            value.advance_to(&fork);
        } else {
            value.parse::<syn::Expr>()?;
        }
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
