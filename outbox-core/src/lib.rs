//! # diesel-outbox
//!
//! The transactional outbox pattern of Sentry's hybrid cloud, for diesel: every write of
//! a replicated model records an *outbox row* in the same database transaction, and a
//! drain delivers the rows to receivers after commit, at least once.
//!
//! This crate is the runtime. Start with:
//! * [`outbox_scopes_and_categories!`]: declare what your rows are about;
//! * [`run_migrations`]: create the outbox tables;
//! * `#[derive(ReplicatedCell)]` / `#[derive(ReplicatedControl)]` (see the traits
//!   [`ReplicatedCell`] and [`ReplicatedControl`]): models whose every write records its
//!   outbox row, and which cannot be written outside an [`OutboxContext`];
//! * [`outbox_context`]: the transaction that records outbox rows, with
//!   [`CellOutbox`] and [`ControlOutbox`] as the rows you can write by hand;
//! * [`Receivers`] and [`Outbox`]: who handles each category, and the handle whose
//!   [`Outbox::context`] flushes after commit and whose [`Outbox::drain_due_shards`] (or a
//!   `Worker` on a connection pool, feature `pool`) delivers the rest;
//! * [`CellReplicationHooks`] / [`ControlReplicationHooks`] and
//!   [`Receivers::replicated_cell`]: what processing does with a replicated model;
//! * [`SiloDirectory`] and [`Receivers::for_silos`]: how a silo reaches the others, and
//!   [`tombstones`] of objects deleted there;
//! * [`drain_until_empty`]: "run the outboxes" in a test.
//!
//! Backends are chosen by features: `sqlite` (default, bundled: nothing to install) and
//! `postgres`. The `mysql` feature is reserved for the MySQL / MariaDB backend.
#![deny(missing_docs)]

mod backend;
mod buffer;
mod category;
mod clock;
mod context;
mod declare;
mod drain;
mod error;
mod metrics;
mod migrations;
mod model;
mod payload;
mod receivers;
mod record;
mod replicated;
mod row;
pub mod schema;
mod silo;
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
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{outbox_context, ContextHost, OutboxContext};
pub use diesel_outbox_derive::{ReplicatedCell, ReplicatedControl};
pub use drain::{
    drain_until_empty, Claim, DeliveryFailure, DrainReport, DueShards, FailureCause, Outbox,
    OutboxBuilder, ShardKey, Silo,
};
#[cfg(feature = "pool")]
pub use drain::{Worker, WorkerOptions};
pub use error::{Error, Result};
pub use metrics::{Metrics, NoMetrics};
pub use migrations::run_migrations;
pub use model::{
    CellNames, CellReplicationHooks, ControlReplicationHooks, ReplicatedCell, ReplicatedControl,
    ReplicationContext,
};
pub use payload::JsonPayload;
pub use private::ModelWrites;
pub use receivers::{BoxError, OutboxMessage, Receiver, Receivers};
pub use record::{CellOutboxRecord, ControlOutboxRecord};
pub use row::{CellOutbox, ControlOutbox, OutboxWrite, Shard, DUE_AT_ONCE, MAX_CELL_NAME_LEN};
pub use silo::{DatabaseUrl, SiloConnector, SiloDirectory, SiloId};
pub use tombstone::{record_tombstone, tombstones, Tombstone, TombstoneTable};

#[doc(hidden)]
pub use row::{NewCellOutbox, NewControlOutbox};
