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
//!   [`silo::tombstones`] of objects deleted there;
//! * [`apply`]: silos that talk over a transport (e.g. the signed HTTP one of
//!   `diesel-outbox-http`) instead of writing each other's databases;
//! * [`testing::drain_until_empty`]: "run the outboxes" in a test, and
//!   [`testing::establish`]: a test's connection, with the runtime [`guard`] that
//!   reports the writes the compiler cannot refuse;
//! * [`backfill`]: every object's rows written again when a model's replication version
//!   goes up.
//!
//! Everyday names are at the root; every public item also lives in a module named for
//! its concept: [`category`], [`row`], [`model`], [`receive`], [`drain`], [`silo`],
//! [`testing`], [`inspect`], [`apply`], [`guard`]. How the runtime is layered, and the life of one
//! row from `save` to its deletion, is in the repository's `ARCHITECTURE.md`.
//!
//! Backends are chosen by features: `sqlite` (default, bundled: nothing to install),
//! `postgres`, and `mysql` (MySQL 8 and MariaDB 10.6 or later, through the system's
//! libmysqlclient or libmariadb).
#![deny(missing_docs)]
// Without a backend the crate still builds (a crate generic over the connection, like a
// relay, may depend on it so), but its SQL has no user.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code, unused_imports, unused_macros)
)]

// The layers, bottom up: each uses only those above it in this list (checked by the
// `layers` test below).
mod backend; // 3: the connection trait and every SQL statement
mod deliver; // 5: receivers, hooks, silos, tombstones
pub mod drain; // 6: discovery, claims, batches, flush, reports
mod key; // 1: keys and errors
mod outbox;
pub mod row; // 2: rows as written and as read
mod write; // 4: buffer, context, model traits, write engine // 7: the Outbox handle, the worker, test helpers

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private_0_1_0;

pub use backend::migrations::run_migrations;
pub use backend::OutboxConnection;
pub use deliver::hooks::{
    CellReplicationHooks, ControlReplicationHooks, ReplicationBatch, ReplicationContext,
};
pub use deliver::receiver::{BatchError, BatchReceiver, Receiver, Receivers};
pub use deliver::silo::{DatabaseUrl, SiloConnector, SiloDirectory};
pub use diesel_outbox_derive::{ReplicatedCell, ReplicatedControl};
pub use drain::{DrainReport, DueShards};
pub use key::clock::{Clock, ManualClock, SystemClock};
pub use key::error::{BoxError, Error, PayloadProblem, Result};
pub use key::shard::{OutboxTable, Shard, ShardKey};
pub use key::silo_id::SiloId;
#[cfg(feature = "pool")]
pub use outbox::worker::{Worker, WorkerOptions};
pub use outbox::{Outbox, OutboxBuilder};
pub use row::{CellOutbox, ControlOutbox, JsonPayload, OutboxMessage};
pub use write::context::{outbox_context, ContextHost, OutboxContext};
#[cfg(feature = "async")]
pub use write::context_async::outbox_context_async;
pub use write::model::{ModelWrites, ReplicatedCell, ReplicatedControl};

/// Scopes and categories: what an outbox row is about, and who shards it. Declared by
/// the application with [`outbox_scopes_and_categories!`].
pub mod category {
    #[doc(hidden)]
    pub use crate::key::category::{field_id, NamedField};
    pub use crate::key::category::{
        CategoryInfo, CellCategory, ControlCategory, Identifier, OutboxCategory, OutboxScope,
        ScopeInfo, ShardOf, Silos,
    };
}

/// Replicated models: the traits the derives implement, and the hooks processing calls.
pub mod model {
    pub use crate::deliver::hooks::{
        CellReplicationHooks, ControlReplicationHooks, Deleted, ReplicationBatch,
        ReplicationContext,
    };
    pub use crate::write::associations::{
        ReplicatedKey, ReplicatedTable, UpdatedThroughAnOutboxContext,
        WrittenThroughAnOutboxContext,
    };
    pub use crate::write::model::{CellNames, ModelWrites, ReplicatedCell, ReplicatedControl};
}

/// Receivers: what runs for the rows of each category.
pub mod receive {
    pub use crate::deliver::receiver::{BatchError, BatchReceiver, Receiver, Receivers};
    pub use crate::row::record::OutboxMessage;
}

/// Silos: which silo a process is, how it reaches the others' databases, and the
/// tombstones of objects deleted there.
pub mod silo {
    pub use crate::deliver::silo::{DatabaseUrl, SiloConnector, SiloDirectory};
    pub use crate::deliver::tombstone::{record_tombstone, tombstones};
    pub use crate::key::silo_id::SiloId;
    pub use crate::row::tombstone::{Tombstone, TombstoneTable};
}

/// Silos that talk over a transport instead of writing each other's databases: the
/// request a replicated model's change becomes, the sending silo's receiver, and the
/// receiving silo's appliers.
///
/// * sending silo: [`Outgoing`](apply::Outgoing) lists the models it sends, and
///   [`Receivers::remote`] registers a [`RemoteReceiver`](apply::RemoteReceiver) that
///   turns each delivered row into an [`ApplyRequest`](apply::ApplyRequest) (the model's
///   state, or a deletion) and hands a batch of them to a [`Transport`](apply::Transport);
/// * receiving silo: [`Appliers`](apply::Appliers) checks that the caller may send each
///   request and applies it in its own transaction: the model's
///   [`CellApplyHooks`](apply::CellApplyHooks) or [`ControlApplyHooks`](apply::ControlApplyHooks),
///   and for a deletion the tombstone first; the [`ApplyOutcome`](apply::ApplyOutcome)s
///   say exactly what was committed.
///
/// The crate `diesel-outbox-http` is a signed HTTP transport for them. The direct-database
/// [`SiloDirectory`] remains for single-database and test setups.
pub mod apply {
    pub use crate::deliver::apply::{
        Appliers, ApplyBatch, ApplyContext, ApplyError, CellApplyHooks, ControlApplyHooks, Refusal,
    };
    pub use crate::deliver::hooks::Deleted;
    pub use crate::deliver::remote::{Outgoing, RemoteReceiver, Transport};
    pub use crate::deliver::request::{ApplyOutcome, ApplyRequest, Change, ModelState};
}

/// The backfill: when a replicated model's `#[outbox(replication_version = N)]` goes up,
/// every existing object's outbox rows are written again, in key order, in throttled
/// batches whose position is stored with them, one process per model at a time.
///
/// Register the models with [`Backfills`](backfill::Backfills) on
/// [`OutboxBuilder::backfill`], then run it with [`Outbox::backfill`] (one step, for a
/// scheduler) or a `Worker` with [`WorkerOptions::backfill`](crate::WorkerOptions::backfill);
/// [`Outbox::backfill_status`] (and `diesel-outbox backfill status`) shows where each
/// model stands.
pub mod backfill {
    pub use crate::key::error::BackfillProblem;
    pub use crate::outbox::backfill::{
        BackfillBatch, BackfillFailure, BackfillOptions, BackfillPhase, BackfillReport,
        BackfillStatus,
    };
    pub use crate::write::backfill::Backfills;
}

/// The runtime guard: a diesel instrumentation that reports the writes the compiler
/// cannot refuse (`sql_query("DELETE FROM users")`, an own `table!` for an outbox table)
/// when they break the outbox's rules. See [`Guard`](guard::Guard).
pub mod guard {
    pub use crate::backend::guard::{
        allow, Guard, OnViolation, Protected, ProtectedModels, Protection, Violation,
    };
}

/// For tests: "run the outboxes", the outbox tables read whole, a clock moved by hand,
/// connections with the runtime guard.
pub mod testing {
    pub use crate::key::clock::ManualClock;
    pub use crate::outbox::testing::{
        cell_records, control_records, drain_until_empty, establish, install_guard,
    };
}

/// What an operator reads and does: depths, the delivery lag, stuck shards with their
/// errors, parked groups (see the [`Outbox`] methods `status`, `shard_depths`,
/// `stuck_shards`, `parked`, `retry_parked`, `discard_parked`, `retry_shard_now`).
pub mod inspect {
    pub use crate::backend::claim::LeaseInfo;
    pub use crate::backend::inspect::{CategoryDepth, OldestRow, ShardDepth};
    pub use crate::backend::parked::{ParkedCounts, ParkedGroup, ParkedKey};
    pub use crate::backend::state::ShardState;
    pub use crate::outbox::inspect::TableStatus;
}

/// The write side's settings.
pub mod context {
    #[doc(hidden)]
    pub use crate::write::context::HostParts;
    pub use crate::write::context::{
        outbox_context, ContextHost, OutboxContext, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_NOTIFY,
    };
}

/// Async services (feature `async`): the write path on diesel-async's connections
/// (`AsyncPgConnection`, `AsyncMysqlConnection`, `SyncConnectionWrapper<SqliteConnection>`).
///
/// [`crate::outbox_context_async`] and [`crate::Outbox::context_async`] open the same
/// [`crate::OutboxContext`] as the sync ones, with the same rules; the
/// derives generate `insert_async`, `update_async`, `save_async`, `delete_async`,
/// `delete_by_id_async` and the bulk `*_all_async`, `delete_by_ids_async`, taking it. The
/// drain stays on sync connections and threads (see [`crate::worker`]).
#[cfg(feature = "async")]
pub mod asynchronous {
    pub use crate::backend::asynchronous::AsyncOutboxConnection;
    pub use crate::write::context_async::{outbox_context_async, AsyncContextFn, AsyncContextHost};
    pub use crate::write::model::AsyncModelWrites;
    /// diesel-async, as this build of diesel-outbox uses it.
    pub use diesel_async;
}

/// SQLite: opening connections the way the outbox needs them (WAL, a busy timeout).
#[cfg(feature = "sqlite")]
pub mod sqlite {
    pub use crate::backend::sqlite_options::SqliteOptions;
}

/// The worker: drain threads sharing a connection pool.
#[cfg(feature = "pool")]
pub mod worker {
    pub use crate::outbox::worker::{Worker, WorkerOptions};
}

#[cfg(test)]
mod layers;
