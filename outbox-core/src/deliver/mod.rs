//! Layer 5, delivery: who handles a row, and what a replicated model's row does in the
//! other silos. Uses the layers below it.
//!
//! * [`receiver`]: [`Receiver`](receiver::Receiver), [`BatchReceiver`](receiver::BatchReceiver)
//!   and the [`Receivers`](receiver::Receivers) registry;
//! * [`hooks`]: the replication hooks a model implements, and their context;
//! * [`replicated`]: the library's receivers for replicated models;
//! * [`silo`]: how a silo reaches the others' databases;
//! * [`tombstone`]: recording and reading tombstones.

pub(crate) mod hooks;
pub(crate) mod receiver;
pub(crate) mod replicated;
pub(crate) mod silo;
pub(crate) mod tombstone;
