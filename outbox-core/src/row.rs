//! Outbox rows as a writer describes them: [`CellOutbox`] and [`ControlOutbox`].

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::category::{CellCategory, ControlCategory, Identifier, OutboxCategory, OutboxScope};
use crate::drain::{ShardKey, Silo};
use crate::error::{Error, Result};
use crate::payload::JsonPayload;
use crate::schema::{cell_outboxes, control_outboxes};

/// The longest cell name the `control_outboxes.cell_name` column stores.
pub const MAX_CELL_NAME_LEN: usize = 64;

/// The instant a fresh row is scheduled for: in the past, so it is due at once (the same
/// instant Sentry uses, 2016-08-01 00:00:00 UTC).
pub const DUE_AT_ONCE: NaiveDateTime = match chrono::DateTime::from_timestamp(1_470_009_600, 0) {
    Some(instant) => instant.naive_utc(),
    None => NaiveDateTime::MIN,
};

/// Where a row shards: scope number and shard identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// The scope's number (`shard_scope`).
    pub scope: i32,
    /// The shard key (`shard_identifier`).
    pub identifier: i64,
}

/// A row for the cell outbox (`cell_outboxes`).
///
/// The category's type decides the scope and proves at compile time that the cell outbox
/// carries it.
///
/// ```
/// # diesel_outbox::outbox_scopes_and_categories! {
/// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
/// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: cell } }
/// # }
/// # #[derive(serde::Serialize)] struct Event { action: &'static str }
/// # fn main() -> Result<(), diesel_outbox::Error> {
/// use diesel_outbox::CellOutbox;
/// let row = CellOutbox::new(Category::AuditLogEvent, 42, 7)
///     .payload(&Event { action: "member.invite" })?;
/// assert_eq!(row.shard().identifier, 42);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellOutbox {
    category: i32,
    shard: Shard,
    object_identifier: i64,
    payload: Option<JsonPayload>,
    flush: bool,
}

impl CellOutbox {
    /// A row of `category` for the object `object_identifier` in shard `shard_identifier`.
    pub fn new<C: CellCategory>(
        _category: C,
        shard_identifier: impl Identifier,
        object_identifier: impl Identifier,
    ) -> Self {
        Self::typed::<C>(shard_identifier, object_identifier)
    }

    /// [`CellOutbox::new`] for a category named by type.
    pub(crate) fn typed<C: CellCategory>(
        shard_identifier: impl Identifier,
        object_identifier: impl Identifier,
    ) -> Self {
        CellOutbox {
            category: C::NUMBER,
            shard: Shard {
                scope: <C::Scope as OutboxScope>::NUMBER,
                identifier: shard_identifier.to_identifier(),
            },
            object_identifier: object_identifier.to_identifier(),
            payload: None,
            flush: true,
        }
    }

    /// Attaches `value`, serialised as JSON. Fails only if serde cannot serialise it.
    pub fn payload<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        self.payload = Some(JsonPayload::encode(value)?);
        Ok(self)
    }

    /// Whether [`Outbox::context`](crate::Outbox::context) flushes this row's shard after
    /// commit (default `true`). With `false` the row waits for a drain.
    pub fn flush(mut self, flush: bool) -> Self {
        self.flush = flush;
        self
    }

    /// Attaches an already serialised payload.
    pub fn json_payload(mut self, payload: JsonPayload) -> Self {
        self.payload = Some(payload);
        self
    }

    /// The category's number.
    pub fn category(&self) -> i32 {
        self.category
    }

    /// The row's shard.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The changed object.
    pub fn object_identifier(&self) -> i64 {
        self.object_identifier
    }
}

/// A row for the control outbox (`control_outboxes`), delivered to one named cell.
///
/// A change that concerns three cells writes three rows. The cell name is a required
/// argument, so a control row without one does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlOutbox {
    cell: CellOutbox,
    cell_name: String,
}

impl ControlOutbox {
    /// A row of `category` for `object_identifier` in shard `shard_identifier`, to be
    /// delivered to the cell `cell_name`.
    pub fn new<C: ControlCategory>(
        _category: C,
        shard_identifier: impl Identifier,
        object_identifier: impl Identifier,
        cell_name: impl Into<String>,
    ) -> Self {
        Self::typed::<C>(shard_identifier, object_identifier, cell_name)
    }

    /// [`ControlOutbox::new`] for a category named by type.
    pub(crate) fn typed<C: ControlCategory>(
        shard_identifier: impl Identifier,
        object_identifier: impl Identifier,
        cell_name: impl Into<String>,
    ) -> Self {
        ControlOutbox {
            cell: CellOutbox {
                category: C::NUMBER,
                shard: Shard {
                    scope: <<C as OutboxCategory>::Scope as OutboxScope>::NUMBER,
                    identifier: shard_identifier.to_identifier(),
                },
                object_identifier: object_identifier.to_identifier(),
                payload: None,
                flush: true,
            },
            cell_name: cell_name.into(),
        }
    }

    /// Attaches `value`, serialised as JSON. Fails only if serde cannot serialise it.
    pub fn payload<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        self.cell = self.cell.payload(value)?;
        Ok(self)
    }

    /// Attaches an already serialised payload.
    pub fn json_payload(mut self, payload: JsonPayload) -> Self {
        self.cell = self.cell.json_payload(payload);
        self
    }

    /// Whether [`Outbox::context`](crate::Outbox::context) flushes this row's shard after
    /// commit (default `true`). With `false` the row waits for a drain.
    pub fn flush(mut self, flush: bool) -> Self {
        self.cell.flush = flush;
        self
    }

    /// The category's number.
    pub fn category(&self) -> i32 {
        self.cell.category
    }

    /// The row's shard.
    pub fn shard(&self) -> Shard {
        self.cell.shard
    }

    /// The changed object.
    pub fn object_identifier(&self) -> i64 {
        self.cell.object_identifier
    }

    /// The target cell.
    pub fn cell_name(&self) -> &str {
        &self.cell_name
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let len = self.cell_name.chars().count();
        if len == 0 || len > MAX_CELL_NAME_LEN {
            return Err(Error::InvalidCellName {
                name: self.cell_name.clone(),
            });
        }
        Ok(())
    }
}

/// Either kind of row, as accepted by [`OutboxContext::write`](crate::OutboxContext::write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxWrite {
    /// A cell outbox row.
    Cell(CellOutbox),
    /// A control outbox row.
    Control(ControlOutbox),
}

impl From<CellOutbox> for OutboxWrite {
    fn from(row: CellOutbox) -> Self {
        OutboxWrite::Cell(row)
    }
}

impl From<ControlOutbox> for OutboxWrite {
    fn from(row: ControlOutbox) -> Self {
        OutboxWrite::Control(row)
    }
}

/// Rows with the same key collapse into the newest (DESIGN: shard + category + object).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CoalescingKey {
    Cell {
        shard: Shard,
        category: i32,
        object: i64,
    },
    Control {
        cell_name: String,
        shard: Shard,
        category: i32,
        object: i64,
    },
}

impl OutboxWrite {
    /// The shard to flush after commit, unless the row opted out.
    pub(crate) fn flush_shard(&self) -> Option<ShardKey> {
        match self {
            OutboxWrite::Cell(row) => row.flush.then_some(ShardKey::Cell(row.shard)),
            OutboxWrite::Control(row) => row.cell.flush.then(|| ShardKey::Control {
                cell_name: row.cell_name.clone(),
                shard: row.cell.shard,
            }),
        }
    }

    /// The table and category, for the saved-rows counter.
    pub(crate) fn silo_and_category(&self) -> (Silo, i32) {
        match self {
            OutboxWrite::Cell(row) => (Silo::Cell, row.category),
            OutboxWrite::Control(row) => (Silo::Control, row.cell.category),
        }
    }

    /// Opts the row out of the flush (its context turned flush off).
    pub(crate) fn disable_flush(&mut self) {
        match self {
            OutboxWrite::Cell(row) => row.flush = false,
            OutboxWrite::Control(row) => row.cell.flush = false,
        }
    }

    pub(crate) fn coalescing_key(&self) -> CoalescingKey {
        match self {
            OutboxWrite::Cell(row) => CoalescingKey::Cell {
                shard: row.shard,
                category: row.category,
                object: row.object_identifier,
            },
            OutboxWrite::Control(row) => CoalescingKey::Control {
                cell_name: row.cell_name.clone(),
                shard: row.cell.shard,
                category: row.cell.category,
                object: row.cell.object_identifier,
            },
        }
    }
}

/// One `cell_outboxes` row as inserted. Every column is bound (no DEFAULT), which keeps a
/// batch one statement on SQLite too.
#[doc(hidden)]
#[derive(Debug, diesel::Insertable)]
#[diesel(table_name = cell_outboxes, treat_none_as_default_value = false)]
pub struct NewCellOutbox {
    shard_scope: i32,
    shard_identifier: i64,
    category: i32,
    object_identifier: i64,
    payload: Option<JsonPayload>,
    scheduled_from: NaiveDateTime,
    scheduled_for: NaiveDateTime,
    date_added: NaiveDateTime,
}

impl NewCellOutbox {
    /// Bind parameters per row.
    pub(crate) const BINDS: usize = 8;

    pub(crate) fn new(row: CellOutbox, now: NaiveDateTime) -> Self {
        NewCellOutbox {
            shard_scope: row.shard.scope,
            shard_identifier: row.shard.identifier,
            category: row.category,
            object_identifier: row.object_identifier,
            payload: row.payload,
            scheduled_from: now,
            scheduled_for: DUE_AT_ONCE,
            date_added: now,
        }
    }
}

/// One `control_outboxes` row as inserted.
#[doc(hidden)]
#[derive(Debug, diesel::Insertable)]
#[diesel(table_name = control_outboxes, treat_none_as_default_value = false)]
pub struct NewControlOutbox {
    shard_scope: i32,
    shard_identifier: i64,
    category: i32,
    object_identifier: i64,
    payload: Option<JsonPayload>,
    scheduled_from: NaiveDateTime,
    scheduled_for: NaiveDateTime,
    date_added: NaiveDateTime,
    cell_name: String,
}

impl NewControlOutbox {
    /// Bind parameters per row.
    pub(crate) const BINDS: usize = 9;

    pub(crate) fn new(row: ControlOutbox, now: NaiveDateTime) -> Self {
        let ControlOutbox { cell, cell_name } = row;
        NewControlOutbox {
            shard_scope: cell.shard.scope,
            shard_identifier: cell.shard.identifier,
            category: cell.category,
            object_identifier: cell.object_identifier,
            payload: cell.payload,
            scheduled_from: now,
            scheduled_for: DUE_AT_ONCE,
            date_added: now,
            cell_name,
        }
    }
}
