//! Layer 5, delivery: who handles a row, and what a replicated model's row does in the
//! other silos. Uses the layers below it.
//!
//! * [`receiver`]: [`Receiver`](receiver::Receiver), [`BatchReceiver`](receiver::BatchReceiver)
//!   and the [`Receivers`](receiver::Receivers) registry;
//! * [`hooks`]: the replication hooks a model implements, and their context;
//! * [`replicated`]: the library's receivers for replicated models;
//! * [`silo`]: how a silo reaches the others' databases;
//! * [`tombstone`]: recording and reading tombstones;
//! * [`request`], [`remote`], [`apply`]: silos that talk over a transport instead of
//!   writing each other's databases: the request a replicated model's row becomes, the
//!   sending silo's receiver and [`Transport`](remote::Transport), and the receiving
//!   silo's [`Appliers`](apply::Appliers).

pub(crate) mod apply;
pub(crate) mod group;
pub(crate) mod hooks;
pub(crate) mod load;
pub(crate) mod receiver;
pub(crate) mod remote;
pub(crate) mod replicated;
pub(crate) mod request;
pub(crate) mod silo;
pub(crate) mod tombstone;
