//! Which table a row lives in, and the shard a drain works on.

use std::fmt;

use crate::category::{Identifier, OutboxScope};
use crate::row::Shard;

/// One of the two outbox tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Silo {
    /// `cell_outboxes`.
    Cell,
    /// `control_outboxes`.
    Control,
}

impl Silo {
    /// Both tables, in the order a drain visits them.
    pub const ALL: [Silo; 2] = [Silo::Cell, Silo::Control];

    /// The table's name.
    pub const fn table(self) -> &'static str {
        match self {
            Silo::Cell => "cell_outboxes",
            Silo::Control => "control_outboxes",
        }
    }
}

impl fmt::Display for Silo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table())
    }
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
/// use diesel_outbox::{ShardKey, Silo};
/// let shard = ShardKey::control(Scope::Organization, 42, "us-east");
/// assert_eq!(shard.silo(), Silo::Control);
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
    pub fn silo(&self) -> Silo {
        match self {
            ShardKey::Cell(_) => Silo::Cell,
            ShardKey::Control { .. } => Silo::Control,
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
            self.silo(),
            shard.scope,
            shard.identifier
        )?;
        if let Some(cell) = self.cell_name() {
            write!(f, " for cell {cell}")?;
        }
        Ok(())
    }
}
