//! Outbox rows as read back from the tables.

use chrono::NaiveDateTime;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::payload::JsonPayload;
use crate::row::Shard;
use crate::schema::{cell_outboxes, control_outboxes};

/// A row of `cell_outboxes`.
#[derive(Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = cell_outboxes)]
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

/// A row of `control_outboxes`.
#[derive(Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = control_outboxes)]
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
