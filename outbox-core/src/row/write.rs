//! Outbox rows as a writer describes them: [`CellOutbox`] and [`ControlOutbox`].

use chrono::NaiveDateTime;
use serde::Serialize;

use super::payload::JsonPayload;
use crate::key::category::{
    CellCategory, ControlCategory, Identifier, OutboxCategory, OutboxScope,
};
use crate::key::error::{Error, Result};
use crate::key::shard::{OutboxTable, Shard, ShardKey};

/// The longest cell name the `control_outboxes.cell_name` column stores.
pub const MAX_CELL_NAME_LEN: usize = 64;

/// The instant a fresh row is scheduled for: in the past, so it is due at once (the same
/// instant Sentry uses, 2016-08-01 00:00:00 UTC).
pub const DUE_AT_ONCE: NaiveDateTime = match chrono::DateTime::from_timestamp(1_470_009_600, 0) {
    Some(instant) => instant.naive_utc(),
    None => NaiveDateTime::MIN,
};

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
    category_name: &'static str,
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
            category_name: C::NAME,
            shard: Shard {
                scope: <C::Scope as OutboxScope>::NUMBER,
                identifier: shard_identifier.to_identifier(),
            },
            object_identifier: object_identifier.to_identifier(),
            payload: None,
            flush: true,
        }
    }

    /// Attaches `value`, serialised as JSON. Fails only if serde cannot serialise it; the
    /// error names the category and object. (Whether every backend can store it, its size
    /// and characters, is checked when the row is written to a context.)
    pub fn payload<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        let payload = JsonPayload::encode(value).map_err(|error| self.own(error))?;
        self.payload = Some(payload);
        Ok(self)
    }

    /// Whether [`Outbox::context`](crate::Outbox::context) flushes this row's shard after
    /// commit (default `true`). With `false` the row waits for a drain.
    pub fn flush(mut self, flush: bool) -> Self {
        self.flush = flush;
        self
    }

    /// Names this row's category and object in a payload error.
    fn own(&self, error: Error) -> Error {
        match error {
            Error::Payload { problem, .. } => Error::Payload {
                category: Some(self.category_name),
                object_identifier: Some(self.object_identifier),
                problem,
            },
            other => other,
        }
    }

    /// The payload, taken for insertion.
    pub(crate) fn into_payload(self) -> Option<JsonPayload> {
        self.payload
    }

    /// Checks that every backend can store the payload (see
    /// [`OutboxContext::set_max_payload_bytes`](crate::OutboxContext::set_max_payload_bytes)).
    pub(crate) fn check_payload(&self, max_bytes: usize) -> Result<()> {
        match &self.payload {
            Some(payload) => payload
                .check_storable(max_bytes)
                .map_err(|problem| self.own(Error::payload(problem))),
            None => Ok(()),
        }
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
                category_name: C::NAME,
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

    /// The cell part and the cell name, taken for insertion.
    pub(crate) fn into_parts(self) -> (CellOutbox, String) {
        (self.cell, self.cell_name)
    }

    /// Checks that every backend can store the row: its cell name and its payload.
    pub(crate) fn validate(&self, max_payload_bytes: usize) -> Result<()> {
        validate_cell_name(&self.cell_name)?;
        self.cell.check_payload(max_payload_bytes)
    }
}

/// Checks that a cell name can be stored in `control_outboxes.cell_name` on every backend
/// and printed in a log line: 1 to [`MAX_CELL_NAME_LEN`] characters, none of them a
/// control character (PostgreSQL refuses U+0000 in text, naming neither row nor cell).
pub fn validate_cell_name(name: &str) -> Result<()> {
    let reason = match name.chars().count() {
        0 => Some("a cell name must not be empty"),
        len if len > MAX_CELL_NAME_LEN => Some("a cell name must be at most 64 characters long"),
        _ if name.chars().any(char::is_control) => {
            Some("a cell name must not hold control characters (such as U+0000 or a newline)")
        }
        _ => None,
    };
    match reason {
        Some(reason) => Err(Error::InvalidCellName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
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

/// Rows with the same key collapse into the newest: shard, category and object (and the
/// target cell of a control row).
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

    /// Whether the row asks for a flush after commit.
    pub(crate) fn flushes(&self) -> bool {
        match self {
            OutboxWrite::Cell(row) => row.flush,
            OutboxWrite::Control(row) => row.cell.flush,
        }
    }

    /// The table and category, for the saved-rows counter.
    pub(crate) fn table_and_category(&self) -> (OutboxTable, i32) {
        match self {
            OutboxWrite::Cell(row) => (OutboxTable::Cell, row.category),
            OutboxWrite::Control(row) => (OutboxTable::Control, row.cell.category),
        }
    }

    /// Checks that every backend can store the row (see [`ControlOutbox::validate`]).
    pub(crate) fn validate(&self, max_payload_bytes: usize) -> Result<()> {
        match self {
            OutboxWrite::Cell(row) => row.check_payload(max_payload_bytes),
            OutboxWrite::Control(row) => row.validate(max_payload_bytes),
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
