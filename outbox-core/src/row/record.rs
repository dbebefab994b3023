//! Outbox rows as read back from the tables: whole records, and the message a receiver is
//! called with.

use chrono::NaiveDateTime;
use serde::de::DeserializeOwned;

use super::payload::JsonPayload;
use super::schema::{cell_outboxes, control_outboxes};
use crate::key::category::{CategoryInfo, OutboxCategory};
use crate::key::error::Result;
use crate::key::shard::{OutboxTable, Shard, ShardKey};

/// The row a receiver is called with: the newest row of a coalesced group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxMessage {
    /// The table it was read from.
    pub table: OutboxTable,
    /// Its id; every older row of the same key is deleted with it.
    pub id: i64,
    /// The category's number.
    pub category: i32,
    /// Scope number and shard identifier.
    pub shard: Shard,
    /// The changed object.
    pub object_identifier: i64,
    /// Handler data, if any; decode it with [`OutboxMessage::payload_as`].
    pub payload: Option<JsonPayload>,
    /// The target cell (control rows only).
    pub cell_name: Option<String>,
    /// When the row was written (UTC).
    pub date_added: NaiveDateTime,
    /// When the row's schedule was set (UTC); as written, since schedules are kept per
    /// shard.
    pub scheduled_from: NaiveDateTime,
    /// When the row was due (UTC); as written, since schedules are kept per shard.
    pub scheduled_for: NaiveDateTime,
}

impl OutboxMessage {
    /// Decodes the payload into `T`; `Ok(None)` when the row has none. A payload that does
    /// not fit `T` is an [`Error::Payload`](crate::Error::Payload) naming the field:
    /// return it with `?` and the row stays for a later attempt.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.payload.as_ref().map(JsonPayload::decode).transpose()
    }

    /// Whether the row is of category `C`: the typed form of comparing
    /// [`category`](Self::category) with `C::NUMBER`.
    ///
    /// ```
    /// # diesel_outbox::outbox_scopes_and_categories! {
    /// #     pub scopes Scope { Organization = 0 { shard: organization_id } }
    /// #     pub categories Category { AuditLogEvent = 3 { scope: Organization, silo: cell } }
    /// # }
    /// # fn main() {}
    /// fn describe(msg: &diesel_outbox::OutboxMessage) -> &'static str {
    ///     if msg.is::<Category::AuditLogEvent>() { "an audit event" } else { "something else" }
    /// }
    /// ```
    pub fn is<C: OutboxCategory>(&self) -> bool {
        self.category == C::NUMBER
    }

    /// The row's category among those declared (`Category::ALL` of your
    /// `outbox_scopes_and_categories!`), with its name, scope and silos; `None` when the
    /// number is not declared (a row written by another release).
    pub fn category_in(&self, declared: &[CategoryInfo]) -> Option<CategoryInfo> {
        declared
            .iter()
            .find(|info| info.number == self.category)
            .copied()
    }

    /// The shard the row belongs to.
    pub fn shard_key(&self) -> ShardKey {
        match &self.cell_name {
            Some(cell_name) => ShardKey::Control {
                cell_name: cell_name.clone(),
                shard: self.shard,
            },
            None => ShardKey::Cell(self.shard),
        }
    }
}

/// A row of `cell_outboxes`.
///
/// `Queryable` only, loaded from a private column list: a `Selectable` record would hand out
/// the private table's diesel type (each column of its selection names it), and with it a
/// `diesel::delete` of undelivered rows.
#[derive(Clone, Debug, PartialEq, Eq, diesel::Queryable)]
pub struct CellOutboxRecord {
    /// Order of writing.
    pub id: i64,
    /// The scope's number.
    pub shard_scope: i32,
    /// The shard key.
    pub shard_identifier: i64,
    /// The category's number.
    pub category: i32,
    /// The changed object.
    pub object_identifier: i64,
    /// Handler data, if any.
    pub payload: Option<JsonPayload>,
    /// When the current schedule was set (UTC).
    pub scheduled_from: NaiveDateTime,
    /// When the row is next due (UTC).
    pub scheduled_for: NaiveDateTime,
    /// When the row was written (UTC).
    pub date_added: NaiveDateTime,
}

/// A row of `control_outboxes` (`Queryable` only, as [`CellOutboxRecord`]).
#[derive(Clone, Debug, PartialEq, Eq, diesel::Queryable)]
pub struct ControlOutboxRecord {
    /// Order of writing.
    pub id: i64,
    /// The scope's number.
    pub shard_scope: i32,
    /// The shard key.
    pub shard_identifier: i64,
    /// The category's number.
    pub category: i32,
    /// The changed object.
    pub object_identifier: i64,
    /// Handler data, if any.
    pub payload: Option<JsonPayload>,
    /// When the current schedule was set (UTC).
    pub scheduled_from: NaiveDateTime,
    /// When the row is next due (UTC).
    pub scheduled_for: NaiveDateTime,
    /// When the row was written (UTC).
    pub date_added: NaiveDateTime,
    /// The target cell.
    pub cell_name: String,
}

/// The columns of `cell_outboxes`, in [`CellOutboxRecord`]'s field order.
pub(crate) const CELL_COLUMNS: (
    cell_outboxes::id,
    cell_outboxes::shard_scope,
    cell_outboxes::shard_identifier,
    cell_outboxes::category,
    cell_outboxes::object_identifier,
    cell_outboxes::payload,
    cell_outboxes::scheduled_from,
    cell_outboxes::scheduled_for,
    cell_outboxes::date_added,
) = (
    cell_outboxes::id,
    cell_outboxes::shard_scope,
    cell_outboxes::shard_identifier,
    cell_outboxes::category,
    cell_outboxes::object_identifier,
    cell_outboxes::payload,
    cell_outboxes::scheduled_from,
    cell_outboxes::scheduled_for,
    cell_outboxes::date_added,
);

/// The columns of `control_outboxes`, in [`ControlOutboxRecord`]'s field order.
pub(crate) const CONTROL_COLUMNS: (
    control_outboxes::id,
    control_outboxes::shard_scope,
    control_outboxes::shard_identifier,
    control_outboxes::category,
    control_outboxes::object_identifier,
    control_outboxes::payload,
    control_outboxes::scheduled_from,
    control_outboxes::scheduled_for,
    control_outboxes::date_added,
    control_outboxes::cell_name,
) = (
    control_outboxes::id,
    control_outboxes::shard_scope,
    control_outboxes::shard_identifier,
    control_outboxes::category,
    control_outboxes::object_identifier,
    control_outboxes::payload,
    control_outboxes::scheduled_from,
    control_outboxes::scheduled_for,
    control_outboxes::date_added,
    control_outboxes::cell_name,
);

macro_rules! record_accessors {
    ($record:ty) => {
        impl $record {
            /// The row's shard.
            pub fn shard(&self) -> Shard {
                Shard {
                    scope: self.shard_scope,
                    identifier: self.shard_identifier,
                }
            }

            /// Decodes the payload into `T`; `Ok(None)` when the row has none.
            pub fn payload_as<T: DeserializeOwned>(&self) -> Result<Option<T>> {
                self.payload.as_ref().map(JsonPayload::decode).transpose()
            }
        }
    };
}

record_accessors!(CellOutboxRecord);
record_accessors!(ControlOutboxRecord);
