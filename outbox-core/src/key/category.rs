//! Scopes and categories: what an outbox row is about, and who shards it.
//!
//! The library does not know any category. An application declares its own with
//! [`outbox_scopes_and_categories!`](crate::outbox_scopes_and_categories), which turns
//! each scope and each category into a unit struct implementing the traits below. Because
//! they are types, the compiler checks every use: a category carried only by the control
//! outbox cannot be written into the cell outbox, and a category's scope is never
//! spelled twice.

use std::fmt;

/// Which outbox tables may carry a category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Silos {
    /// Only `cell_outboxes`: written in a cell, processed there, pushing toward control.
    Cell,
    /// Only `control_outboxes`: written in control, fanned out to named cells.
    Control,
    /// Both tables.
    Both,
}

impl Silos {
    /// Whether the cell outbox may carry the category.
    pub const fn includes_cell(self) -> bool {
        matches!(self, Silos::Cell | Silos::Both)
    }

    /// Whether the control outbox may carry the category.
    pub const fn includes_control(self) -> bool {
        matches!(self, Silos::Control | Silos::Both)
    }
}

/// A family of categories that share one sharding key (e.g. all organization rows shard
/// by organization id). Implemented by the scopes an application declares.
pub trait OutboxScope: Copy + fmt::Debug + Send + Sync + 'static {
    /// The number stored in `shard_scope`. Stable on disk: never renumber a scope.
    const NUMBER: i32;
    /// The scope's name, for errors and metrics.
    const NAME: &'static str;
}

/// What kind of change an outbox row describes; decides which receiver runs.
/// Implemented by the categories an application declares.
pub trait OutboxCategory: Copy + fmt::Debug + Send + Sync + 'static {
    /// The number stored in `category`. Stable on disk: never renumber a category.
    const NUMBER: i32;
    /// The category's name, for errors and metrics.
    const NAME: &'static str;
    /// The scope whose shard key rows of this category use.
    type Scope: OutboxScope;
    /// Which outbox tables carry this category.
    const SILOS: Silos;

    /// The category's description as a plain value.
    fn info() -> CategoryInfo {
        CategoryInfo {
            number: Self::NUMBER,
            name: Self::NAME,
            scope: ScopeInfo {
                number: <Self::Scope as OutboxScope>::NUMBER,
                name: <Self::Scope as OutboxScope>::NAME,
            },
            silos: Self::SILOS,
        }
    }
}

/// A category the cell outbox may carry (declared with `silo: cell` or `silo: both`).
#[diagnostic::on_unimplemented(
    message = "category `{Self}` is not carried by the cell outbox",
    label = "declared for the control silo only",
    note = "declare it with `silo: cell` or `silo: both` in `outbox_scopes_and_categories!`, or write a `ControlOutbox` row"
)]
pub trait CellCategory: OutboxCategory {}

/// A category the control outbox may carry (declared with `silo: control` or `silo: both`).
#[diagnostic::on_unimplemented(
    message = "category `{Self}` is not carried by the control outbox",
    label = "declared for the cell silo only",
    note = "declare it with `silo: control` or `silo: both` in `outbox_scopes_and_categories!`, or write a `CellOutbox` row"
)]
pub trait ControlCategory: OutboxCategory {}

/// A scope as a plain value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScopeInfo {
    /// The number stored in `shard_scope`.
    pub number: i32,
    /// The declared name.
    pub name: &'static str,
}

/// A category as a plain value, e.g. to name the category of a row read back from the
/// table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CategoryInfo {
    /// The number stored in `category`.
    pub number: i32,
    /// The declared name.
    pub name: &'static str,
    /// The category's scope.
    pub scope: ScopeInfo,
    /// Which outbox tables carry it.
    pub silos: Silos,
}

impl fmt::Display for CategoryInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.number)
    }
}

/// How a scope finds the shard identifier of a model: from a named field, or a fixed
/// value. Implemented by the declaration macro; used by the derives when a model marks no
/// `#[outbox(shard)]` field.
#[diagnostic::on_unimplemented(
    message = "scope `{Self}` cannot find its shard identifier in `{M}`",
    label = "the scope's declaration names a shard field this model does not have",
    note = "give the model the field the scope names, or mark the field that holds the shard with `#[outbox(shard)]`"
)]
pub trait ShardOf<M: ?Sized> {
    /// The shard identifier of `model`.
    fn shard_of(model: &M) -> i64;
}

/// A model field reachable by the hash of its name (see [`field_id`]). The derives
/// implement it for every named field so that a scope's declaration can name a field
/// that the derive never sees.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no field named by its category's scope as the shard",
    label = "this category's scope takes the shard identifier from a field `{Self}` lacks",
    note = "the scope's declaration (`shard: field_name`) names the field; add it to the model, or mark the field that holds the shard with `#[outbox(shard)]`"
)]
pub trait NamedField<const ID: u64> {
    /// The field's type.
    type Value;
    /// The field.
    fn field(&self) -> &Self::Value;
}

/// FNV-1a hash of a field name: the const-generic key of [`NamedField`].
#[doc(hidden)]
pub const fn field_id(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// A value usable as a shard or object identifier: it converts to `i64` without loss.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an outbox shard or object identifier",
    note = "identifiers are stored as BIGINT: use i64, i32, i16, u32 or u16 (or a reference to one)"
)]
pub trait Identifier {
    /// The identifier as stored.
    fn to_identifier(&self) -> i64;
}

macro_rules! identifier_via_into {
    ($($t:ty),*) => {$(
        impl Identifier for $t {
            fn to_identifier(&self) -> i64 {
                i64::from(*self)
            }
        }
    )*};
}
identifier_via_into!(i64, i32, i16, i8, u32, u16, u8);

impl<T: Identifier + ?Sized> Identifier for &T {
    fn to_identifier(&self) -> i64 {
        (**self).to_identifier()
    }
}
