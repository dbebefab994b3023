//! Layer 4, the write side: what a transaction that records outbox rows needs. Uses the
//! layers below it.
//!
//! * [`buffer`]: the rows a context has written, coalesced, until its commit;
//! * [`context`]: `outbox_context` and [`OutboxContext`](context::OutboxContext);
//! * `context_async` (feature `async`): `outbox_context_async`, the same context on
//!   diesel-async's connections;
//! * [`model`]: the traits the derives implement, the model's own SQL included;
//! * [`associations`]: the table type a model's `Identifiable` names, readable and never
//!   a write target;
//! * [`engine`]: what the generated write methods call;
//! * [`backfill`]: the models a backfill walks, and one page of one written through a
//!   context;
//! * [`generated`]: the version check and per-backend expansion of generated code;
//! * `protect`: replicated models as the runtime guard protects their tables.

pub(crate) mod associations;
pub(crate) mod backfill;
pub(crate) mod buffer;
pub(crate) mod context;
#[cfg(feature = "async")]
pub(crate) mod context_async;
pub(crate) mod engine;
pub(crate) mod generated;
pub(crate) mod model;
mod protect;
