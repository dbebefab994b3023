//! Outbox rows as a writer describes them ([`CellOutbox`], [`ControlOutbox`]), and as
//! they are read back ([`OutboxMessage`], the table records).
//!
//! In the runtime this is layer 2, rows: it uses only layer 1, keys and errors.
//!
//! * `schema`: the library's tables, as diesel `table!` declarations;
//! * `payload`: JSON payloads, and how each backend stores them;
//! * `write`: [`CellOutbox`] and [`ControlOutbox`], the rows a context writes, and their
//!   coalescing key;
//! * `insert`: the rows as inserted (every column bound);
//! * `record`: the rows as read: table records and the message a receiver gets;
//! * `tombstone`: tombstones as read.

pub(crate) mod insert;
pub(crate) mod payload;
pub(crate) mod record;
pub(crate) mod schema;
pub(crate) mod tombstone;
pub(crate) mod write;

pub use crate::key::shard::Shard;
pub use payload::JsonPayload;
pub use record::{CellOutboxRecord, ControlOutboxRecord, OutboxMessage};
pub use schema::sql_types::PayloadJson;
pub use write::{
    validate_cell_name, CellOutbox, ControlOutbox, OutboxWrite, DUE_AT_ONCE, MAX_CELL_NAME_LEN,
};
