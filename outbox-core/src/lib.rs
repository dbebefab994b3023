//! # diesel-outbox
//!
//! The transactional outbox pattern of Sentry's hybrid cloud, for diesel: every write of
//! a replicated model records an *outbox row* in the same database transaction, and a
//! drain delivers the rows to receivers after commit, at least once.
//!
//! This crate is the runtime. Start with:
//! * [`outbox_scopes_and_categories!`]: declare what your rows are about;
//! * [`run_migrations`]: create the outbox tables;
//! * [`outbox_context`]: the transaction that records outbox rows, with
//!   [`CellOutbox`] and [`ControlOutbox`] as the rows you can write by hand.
//!
//! Backends are chosen by features: `sqlite` (default, bundled: nothing to install) and
//! `postgres`. The `mysql` feature is reserved for the MySQL / MariaDB backend.
#![deny(missing_docs)]

mod backend;
mod buffer;
mod category;
mod context;
mod declare;
mod error;
mod migrations;
mod model;
mod payload;
mod record;
mod row;
pub mod schema;
mod tombstone;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
use __private as private;

pub use backend::OutboxConnection;
pub use category::{
    field_id, CategoryInfo, CellCategory, ControlCategory, Identifier, NamedField, OutboxCategory,
    OutboxScope, ScopeInfo, ShardOf, Silos,
};
pub use context::{outbox_context, ContextHost, OutboxContext};
pub use diesel_outbox_derive::{ReplicatedCell, ReplicatedControl};
pub use error::{Error, Result};
pub use migrations::run_migrations;
pub use model::{
    BoxError, CellNames, CellReplicationHooks, ControlReplicationHooks, ReplicatedCell,
    ReplicatedControl, ReplicationContext,
};
pub use payload::JsonPayload;
pub use private::ModelWrites;
pub use record::{CellOutboxRecord, ControlOutboxRecord};
pub use row::{CellOutbox, ControlOutbox, OutboxWrite, Shard, DUE_AT_ONCE, MAX_CELL_NAME_LEN};
pub use tombstone::{record_tombstone, tombstones, Tombstone, TombstoneTable};

#[doc(hidden)]
pub use row::{NewCellOutbox, NewControlOutbox};
