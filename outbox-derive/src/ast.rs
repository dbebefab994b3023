//! The checked description of a replicated model that code generation works from.

use syn::{Ident, Path, Type};

/// Which derive is running.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Silo {
    Cell,
    Control,
}

impl Silo {
    pub fn derive_name(self) -> &'static str {
        match self {
            Silo::Cell => "ReplicatedCell",
            Silo::Control => "ReplicatedControl",
        }
    }
}

/// One named field and the column it maps to.
pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub column: Ident,
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
    pub silo: Silo,
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
}

impl Model<'_> {
    pub fn key(&self) -> &Field<'_> {
        &self.fields[self.key]
    }

    /// The fields that are not the primary key.
    pub fn value_fields(&self) -> impl Iterator<Item = &Field<'_>> {
        let key = self.key;
        self.fields
            .iter()
            .enumerate()
            .filter(move |(index, _)| *index != key)
            .map(|(_, field)| field)
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
