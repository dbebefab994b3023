//! The checked description of a replicated model that code generation works from.

use syn::{Ident, Path, Type};

/// Which derive is running.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    Cell,
    Control,
}

impl Derive {
    pub fn derive_name(self) -> &'static str {
        match self {
            Derive::Cell => "ReplicatedCell",
            Derive::Control => "ReplicatedControl",
        }
    }
}

/// One named field, the column it maps to, and how writes treat it (its
/// `#[diesel(...)]` keys, with diesel's meaning).
pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub column: Ident,
    /// `skip_insertion`: the INSERT leaves the column to its default.
    pub skip_insertion: bool,
    /// `skip_update`: an UPDATE leaves the column as it is.
    pub skip_update: bool,
    /// `select_expression`: computed when read, not a column; never written.
    pub computed: bool,
    /// `serialize_as = T`: written as `T::from(field.clone())`.
    pub serialize_as: Option<Type>,
    /// The field's own `treat_none_as_default_value`, if stated.
    pub none_as_default: Option<bool>,
    /// The field's own `treat_none_as_null`, if stated.
    pub none_as_null: Option<bool>,
}

/// Where the shard identifier comes from.
pub enum Shard {
    /// A field of the model (index into `Model::fields`).
    Field(usize),
    /// The field or value the category's scope declares.
    Scope,
}

/// Where the payload comes from.
pub enum Payload {
    None,
    /// The model itself, serialised with serde.
    Model,
    /// `path(&model)`, serialised with serde.
    Function(Path),
}

/// Where a control model's target cells come from.
pub enum Cells {
    /// A field (index into `Model::fields`).
    Field(usize),
    /// `path(&model)`.
    Function(Path),
}

/// A replicated model that passed every check.
pub struct Model<'a> {
    pub derive: Derive,
    pub ident: &'a Ident,
    /// The diesel table module, e.g. `projects` or `crate::schema::projects`.
    pub table: Path,
    pub fields: Vec<Field<'a>>,
    /// Index of the primary key in `fields`.
    pub key: usize,
    pub category: Path,
    pub shard: Shard,
    pub payload: Payload,
    /// `Some` exactly for control models.
    pub cells: Option<Cells>,
    /// Whether writes are flushed after commit (`#[outbox(flush = false)]`).
    pub flush: bool,
    /// `#[outbox(replication_version = N)]`, 1 by default: raising it makes the backfill
    /// write every existing object's outbox rows again.
    pub replication_version: i32,
    /// The struct's `treat_none_as_default_value`; the derive's default is `false`: a
    /// `None` is inserted as NULL (the model's whole state is written).
    pub none_as_default: bool,
    /// The struct's `treat_none_as_null`; the derive's default is `true`: an update
    /// writes a `None` as NULL.
    pub none_as_null: bool,
}

impl Model<'_> {
    pub fn key(&self) -> &Field<'_> {
        &self.fields[self.key]
    }

    /// Whether the field at `index` is the primary key.
    pub fn is_key(&self, index: usize) -> bool {
        index == self.key
    }

    /// The fields the hidden row carries: every field some write writes.
    pub fn row_fields(&self) -> impl Iterator<Item = (usize, &Field<'_>)> {
        self.fields
            .iter()
            .enumerate()
            .filter(move |(index, _)| self.inserts(*index) || self.updates(*index))
    }

    /// Whether an INSERT writes the field.
    pub fn inserts(&self, index: usize) -> bool {
        let field = &self.fields[index];
        !field.computed && !field.skip_insertion
    }

    /// Whether an UPDATE writes the field (never the key, as with diesel's `AsChangeset`).
    pub fn updates(&self, index: usize) -> bool {
        let field = &self.fields[index];
        !self.is_key(index) && !field.computed && !field.skip_update
    }

    /// Whether an INSERT may write DEFAULT for the field (a `None` under
    /// `treat_none_as_default_value`), diesel's `Insertable` rule.
    pub fn inserts_default(&self, index: usize) -> bool {
        let field = &self.fields[index];
        let written_type = field.serialize_as.as_ref().unwrap_or(field.ty);
        self.inserts(index)
            && field.none_as_default.unwrap_or(self.none_as_default)
            && option_inner(written_type).is_some()
    }

    /// Whether an UPDATE leaves the field as it is when it is `None` (no
    /// `treat_none_as_null`), diesel's `AsChangeset` rule.
    pub fn updates_skip_none(&self, index: usize) -> bool {
        let field = &self.fields[index];
        self.updates(index)
            && !field.none_as_null.unwrap_or(self.none_as_null)
            && option_inner(field.ty).is_some()
    }

    /// Whether an upsert of this model must be one statement per model: its conflict
    /// branch writes something other than what its INSERT wrote (`excluded`), which one
    /// SET clause for many rows cannot say.
    pub fn upserts_one_by_one(&self) -> bool {
        (0..self.fields.len()).any(|index| {
            self.inserts_default(index)
                || self.updates_skip_none(index)
                || (self.updates(index) && !self.inserts(index))
        })
    }

    /// The table's name as diesel knows it: the path's last segment.
    pub fn table_name(&self) -> String {
        self.table
            .segments
            .last()
            .map(|segment| segment.ident.to_string())
            .unwrap_or_default()
    }
}

/// `T` if `ty` is written `Option<T>` (with any path prefix).
pub fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let segment = path.path.segments.last()?;
    if segment.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}
