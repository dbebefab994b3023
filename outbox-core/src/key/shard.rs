//! Which table a row lives in, where it shards, and the shard a drain works on.

use std::fmt;

use super::category::{Identifier, OutboxScope};

/// One of the two outbox tables.
///
/// `cell_outboxes` is written in a cell database and carries changes toward control;
/// `control_outboxes` is written in the control database and carries changes toward one
/// named cell per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutboxTable {
    /// `cell_outboxes`.
    Cell,
    /// `control_outboxes`.
    Control,
}

impl OutboxTable {
    /// Both tables, in the order a drain visits them.
    pub const ALL: [OutboxTable; 2] = [OutboxTable::Cell, OutboxTable::Control];

    /// The table's name.
    pub const fn name(self) -> &'static str {
        match self {
            OutboxTable::Cell => "cell_outboxes",
            OutboxTable::Control => "control_outboxes",
        }
    }

    /// The table of the same name, if it is one of the two.
    pub fn from_name(name: &str) -> Option<Self> {
        OutboxTable::ALL
            .into_iter()
            .find(|table| table.name() == name)
    }
}

impl fmt::Display for OutboxTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a row shards: scope number and shard identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// The scope's number (`shard_scope`).
    pub scope: i32,
    /// The shard key (`shard_identifier`).
    pub identifier: i64,
}

/// A shard as the drain sees it: its table, scope and identifier, and for control rows the
/// target cell. Rows of one shard are delivered in id order, by one worker at a time.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { OrganizationUpdate = 1 { scope: Organization, silo: both } }
/// # }
/// # fn main() {
/// use diesel_outbox::{OutboxTable, ShardKey};
/// let shard = ShardKey::control(Scope::Organization, 42, "us-east");
/// assert_eq!(shard.table(), OutboxTable::Control);
/// assert_eq!(shard.to_string(), "control_outboxes shard 0/42 for cell us-east");
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShardKey {
    /// A shard of `cell_outboxes`.
    Cell(Shard),
    /// A shard of `control_outboxes`: one cell's rows of `(scope, identifier)`.
    Control {
        /// The target cell.
        cell_name: String,
        /// Scope and identifier.
        shard: Shard,
    },
}

impl ShardKey {
    /// The cell-outbox shard `identifier` of `scope`.
    pub fn cell<S: OutboxScope>(_scope: S, identifier: impl Identifier) -> Self {
        ShardKey::Cell(Shard {
            scope: S::NUMBER,
            identifier: identifier.to_identifier(),
        })
    }

    /// The control-outbox shard `identifier` of `scope` for the cell `cell_name`.
    pub fn control<S: OutboxScope>(
        _scope: S,
        identifier: impl Identifier,
        cell_name: impl Into<String>,
    ) -> Self {
        ShardKey::Control {
            cell_name: cell_name.into(),
            shard: Shard {
                scope: S::NUMBER,
                identifier: identifier.to_identifier(),
            },
        }
    }

    /// The table the shard's rows live in.
    pub fn table(&self) -> OutboxTable {
        match self {
            ShardKey::Cell(_) => OutboxTable::Cell,
            ShardKey::Control { .. } => OutboxTable::Control,
        }
    }

    /// Scope and identifier.
    pub fn shard(&self) -> Shard {
        match self {
            ShardKey::Cell(shard) | ShardKey::Control { shard, .. } => *shard,
        }
    }

    /// The target cell of a control shard.
    pub fn cell_name(&self) -> Option<&str> {
        match self {
            ShardKey::Cell(_) => None,
            ShardKey::Control { cell_name, .. } => Some(cell_name),
        }
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shard = self.shard();
        write!(
            f,
            "{} shard {}/{}",
            self.table(),
            shard.scope,
            shard.identifier
        )?;
        if let Some(cell) = self.cell_name() {
            write!(f, " for cell {cell}")?;
        }
        Ok(())
    }
}
